//! `sealpost desk` and `sealpost business agents` end to end: a shop with an owner, an
//! order bot and an agent; a customer writes; the bot answers and transfers the
//! conversation to the agent, who sees the history verified by the customer; an internal
//! note never reaches the customer; the agent resolves the conversation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;

#[test]
fn a_bot_hands_a_customer_to_an_agent_with_verified_history() {
    let root = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&root.path().join("relay"));
    let shop = home(root.path(), "shop");
    let bot = home(root.path(), "bot");
    let agent = home(root.path(), "agent");
    let customer = home(root.path(), "customer");
    let (_, mut cmd) = register_two_step(&relay, &shop, BOB);
    cmd.args(["--business", "--name", "Shop owner"]);
    ok(cmd);
    let (_, cmd) = register_two_step(&relay, &customer, ALICE);
    ok(cmd);
    assert_eq!(link_as(&relay, &shop, &bot, "Order bot", "bot"), 2);
    assert_eq!(link_as(&relay, &shop, &agent, "Lina, support", "agent"), 3);

    // A desk is for business devices only; the inbox needs a terminal.
    let e = fails(sealpost(&customer, &["desk", "list", "--wait", "0"]));
    assert!(e.contains("not a business account's device"), "{e}");
    let e = fails(sealpost(&agent, &["inbox"]));
    assert!(e.contains("needs an interactive terminal"), "{e}");

    // New conversations go to the bot (and the owner).
    ok(sealpost(
        &shop,
        &["business", "profile", "set", "--name", "Velo Shop"],
    ));
    ok(sealpost(&shop, &["business", "route", "2"]));
    let agents = ok(sealpost(&shop, &["business", "agents"])).stdout;
    let row = |id: u32| {
        agents
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("device {id} ")))
            .unwrap_or_else(|| panic!("no device {id}: {agents}"))
            .to_owned()
    };
    assert!(
        row(1).contains("owner") && row(1).contains("yes"),
        "{agents}"
    );
    assert!(row(1).contains("Shop owner (this device)"), "{agents}");
    assert!(row(2).contains("bot") && row(2).contains("yes"), "{agents}");
    assert!(row(2).contains("Order bot"), "{agents}");
    assert!(
        row(3).contains("agent") && row(3).contains(" no "),
        "{agents}"
    );
    assert!(row(3).contains("Lina, support"), "{agents}");

    // The customer stays in a chat, so that its client answers the route at once.
    let mut chat = Interactive::spawn(sealpost(&customer, &["chat", BOB]));
    chat.type_line("Where is my order #1042?");
    chat.expect("✓ delivered: Where is my order #1042?");
    let got = ok(sealpost(&bot, &["receive", "--wait", "60", "--count", "1"]));
    assert!(got.stdout.contains("Where is my order #1042?"), "{got:?}");
    ok(sealpost(
        &bot,
        &["send", ALICE, "Let me find a person for you."],
    ));
    chat.expect("Order bot (bot): Let me find a person for you.");

    // An unknown device is refused before anything is sent.
    let e = fails(sealpost(
        &bot,
        &["desk", "transfer", ALICE, "--to", "Nobody"],
    ));
    assert!(e.contains("no device named \"Nobody\""), "{e}");
    let moved = ok(sealpost(
        &bot,
        &[
            "desk",
            "transfer",
            ALICE,
            "--to",
            "lina",
            "--note",
            "Asks about a refund",
        ],
    ));
    assert!(
        moved.stdout.contains(&format!(
            "Transferred the conversation with {ALICE} to Lina, support · agent"
        )),
        "{moved:?}"
    );
    // The customer's client is told who answers now, and confirms its transcript to them.
    chat.expect(&format!(
        "{BOB} now answers this conversation from Lina, support (agent)"
    ));
    chat.type_line("Thanks!");
    chat.expect("✓ delivered: Thanks!");

    // The agent gets the handoff, the confirmation and the customer's next message, in
    // that order (each mailbox delivers in the relay's order).
    let got = ok(sealpost(
        &agent,
        &["receive", "--wait", "60", "--count", "1"],
    ));
    assert!(got.stdout.contains("Thanks!"), "{got:?}");
    // The handoff and the customer's confirmation may still be on their way: look until
    // the check is there.
    let shown = show_until(&agent, "history verified by the customer");
    for expected in [
        format!("Conversation with {ALICE} (mine)"),
        "Handoff from Order bot · bot (2 messages): history verified by the customer (2 messages)"
            .to_owned(),
        "Handoff note: Asks about a refund".to_owned(),
        "customer: Where is my order #1042?".to_owned(),
        "Order bot · bot: Let me find a person for you.".to_owned(),
        "customer: Thanks!".to_owned(),
    ] {
        assert!(shown.contains(&expected), "{expected:?} not in:\n{shown}");
    }
    let listed = ok(sealpost(&agent, &["desk", "list"])).stdout;
    let mine = section(&listed, "Mine (1):");
    assert!(
        mine.contains(ALICE)
            && mine.contains("→ Lina, support · agent")
            && mine.contains("[handoff: history verified by the customer (2 messages)]"),
        "{listed}"
    );
    // The bot no longer has it: it may not route it any more.
    let e = fails(sealpost(&bot, &["desk", "claim", ALICE]));
    assert!(e.contains("may not route this conversation"), "{e}");

    // An internal note, then a reply: the customer gets the reply and never the note.
    let noted = ok(sealpost(
        &agent,
        &["desk", "note", ALICE, "VIP: refund approved by Sam"],
    ));
    assert!(noted.stdout.contains("Internal note on"), "{noted:?}");
    ok(sealpost(
        &agent,
        &["send", ALICE, "Lina here: your refund is on its way."],
    ));
    chat.expect("Lina, support (agent): Lina here: your refund is on its way.");
    let shown = ok(sealpost(&agent, &["desk", "show", ALICE])).stdout;
    assert!(
        shown.contains("[internal] Lina, support · agent (you): VIP: refund approved by Sam"),
        "{shown}"
    );
    assert!(
        shown.contains("Lina, support · agent (you): Lina here: your refund is on its way."),
        "{shown}"
    );

    // Resolved: it goes back to the default route.
    let resolved = ok(sealpost(&agent, &["desk", "resolve", ALICE]));
    assert!(
        resolved
            .stdout
            .contains(&format!("Resolved the conversation with {ALICE}")),
        "{resolved:?}"
    );
    chat.expect(&format!(
        "{BOB} now answers this conversation from Order bot (bot)"
    ));
    let listed = ok(sealpost(&agent, &["desk", "list"])).stdout;
    assert!(
        section(&listed, "Resolved (1):").contains(ALICE),
        "{listed}"
    );

    chat.type_line("/quit");
    let out = chat.finish();
    assert!(out.status.success(), "{out:?}");
    assert!(
        !out.stdout.contains("VIP"),
        "the note reached the customer: {out:?}"
    );
    relay.stop();
}

/// `desk show ALICE` on `dir` until its output contains `needle` (or the test times out).
fn show_until(dir: &std::path::Path, needle: &str) -> String {
    let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
    loop {
        let out = ok(sealpost(dir, &["-v", "desk", "show", ALICE, "--wait", "1"]));
        if out.stdout.contains(needle) {
            return out.stdout;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{needle:?} never shown: {out:?}"
        );
    }
}

/// The lines of `listing` from the heading `title` to the next heading.
fn section(listing: &str, title: &str) -> String {
    let mut lines = listing.lines().skip_while(|l| !l.starts_with(title));
    let mut out: Vec<&str> = lines.next().into_iter().collect();
    out.extend(lines.take_while(|l| l.starts_with(' ')));
    out.join("\n")
}
