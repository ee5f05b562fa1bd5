//! End-to-end tests of the `sealpost` binary: two users, each with their own data
//! directory, against a real relay started in-process on 127.0.0.1 (QUIC, pinned
//! self-signed certificate, SQLite), with verification codes captured instead of sent.
// Tests fail loudly: unwrap/expect/panic are how they report; output lines are indexed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use std::io::Write;
use std::process::Stdio;

#[test]
fn two_users_register_talk_verify_and_chat() {
    let root = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&root.path().join("relay"));
    let (addr, fingerprint) = (relay.addr(), relay.fingerprint());
    let (alice, bob) = (home(root.path(), "alice"), home(root.path(), "bob"));

    // Alice registers in one go, typing the code on stdin when asked.
    let mut child = sealpost(
        &alice,
        &[
            "register",
            "--relay",
            &addr,
            "--fingerprint",
            &fingerprint,
            "--account",
            ALICE,
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let (out, err) = (
        read_all(child.stdout.take().unwrap()),
        read_all(child.stderr.take().unwrap()),
    );
    let code = relay.codes.wait(ALICE);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{code}").unwrap();
    drop(stdin);
    let registered = wait(child, out, err);
    assert!(registered.status.success(), "{registered:?}");
    assert!(
        registered
            .stdout
            .contains(&format!("Registered {ALICE} as device 1.")),
        "{registered:?}"
    );
    for step in [
        "✓ verification code sent",
        "✓ registered",
        "prekeys published",
    ] {
        assert!(registered.stderr.contains(step), "{registered:?}");
    }
    assert!(!registered.stdout.contains(&code) && !registered.stderr.contains(&code));
    let config = std::fs::read_to_string(alice.join("config.toml")).unwrap();
    assert!(
        config.contains(&addr) && config.contains(&fingerprint),
        "{config}"
    );
    assert!(!config.contains(PASSPHRASE));

    // Bob in two steps: request the code, then register with --code; the relay and its
    // fingerprint are remembered from the first step.
    let requested = ok(sealpost(
        &bob,
        &[
            "register",
            "--relay",
            &addr,
            "--fingerprint",
            &fingerprint,
            "--account",
            BOB,
            "--request-only",
        ],
    ));
    assert!(
        requested.stdout.contains("register --code"),
        "{requested:?}"
    );
    let code = relay.codes.wait(BOB);
    let bob_registered = ok(sealpost(&bob, &["register", "--code", &code]));
    let bob_identity = bob_registered
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Identity fingerprint: "))
        .unwrap()
        .to_owned();

    // Send, and receive on the other side.
    let sent = ok(sealpost(&alice, &["send", BOB, "Where is my order #1042?"]));
    assert!(sent.stdout.contains("accepted by the relay"), "{sent:?}");
    let received = ok(sealpost(&bob, &["receive", "--wait", "60", "--count", "1"]));
    let line = received
        .stdout
        .lines()
        .find(|l| l.contains("Where is my order #1042?"))
        .unwrap_or_else(|| panic!("message not received: {received:?}"));
    assert!(line.contains(ALICE) && line.contains("UTC]"), "{line}");

    // Safety numbers: the same 12 groups of 5 digits on both sides, and a QR code.
    let on_alice = ok(sealpost(&alice, &["safety-number", BOB]));
    let on_bob = ok(sealpost(&bob, &["safety-number", ALICE, "--device", "1"]));
    let (ga, gb) = (
        safety_groups(&on_alice.stdout),
        safety_groups(&on_bob.stdout),
    );
    assert_eq!(ga.len(), 12, "{on_alice:?}");
    assert!(ga.iter().all(|g| g.len() == 5), "{ga:?}");
    assert_eq!(ga, gb);
    assert!(qr_lines(&on_alice.stdout) >= 10, "{on_alice:?}");
    assert!(qr_lines(&on_bob.stdout) >= 10, "{on_bob:?}");

    // Devices: our own by default, and Bob's with the identity his registration showed.
    let own = ok(sealpost(&alice, &["devices"]));
    assert!(
        own.stdout.contains(&format!("Devices of {ALICE}")),
        "{own:?}"
    );
    assert!(own.stdout.contains("device 1"), "{own:?}");
    assert!(own.stdout.contains("(this device)"), "{own:?}");
    let bobs = ok(sealpost(&alice, &["devices", BOB]));
    assert!(bobs.stdout.contains("device 1"), "{bobs:?}");
    assert!(bobs.stdout.contains(&bob_identity), "{bobs:?}");

    // Chat, driven through stdin: Alice types a line, Bob receives it and answers, the
    // answer appears in Alice's chat, and /quit ends it.
    let mut chat = Interactive::spawn(sealpost(&alice, &["chat", BOB]));
    chat.expect("Where is my order #1042?"); // the history shown at the start
    chat.type_line("Can I still change the delivery address?");
    chat.expect("✓ delivered: Can I still change");
    let received = ok(sealpost(&bob, &["receive", "--wait", "60", "--count", "1"]));
    assert!(
        received
            .stdout
            .contains("Can I still change the delivery address?"),
        "{received:?}"
    );
    ok(sealpost(
        &bob,
        &["send", ALICE, "Yes, until it reaches the depot."],
    ));
    let answer = chat.expect("Yes, until it reaches the depot.");
    assert!(answer.contains(BOB), "{answer}");

    // Bob re-registers on a new device (a new identity) while Alice chats: her next message
    // goes to the new device, and the chat warns her prominently.
    let bob_new = home(root.path(), "bob-new-phone");
    ok(sealpost(
        &bob_new,
        &[
            "register",
            "--relay",
            &addr,
            "--fingerprint",
            &fingerprint,
            "--account",
            BOB,
            "--request-only",
        ],
    ));
    let code = relay.codes.wait(BOB);
    let again = ok(sealpost(&bob_new, &["register", "--code", &code]));
    assert!(again.stdout.contains("as device 2"), "{again:?}");
    chat.type_line("Are you on a new phone?");
    let warning = chat.expect("SAFETY NUMBER CHANGED");
    assert!(
        warning.contains(BOB) && warning.contains("device 2"),
        "{warning}"
    );
    chat.expect("safety-number +15550003002 --device 2");
    chat.expect("✓ delivered: Are you on a new phone?");
    chat.type_line("/quit");
    let ended = chat.finish();
    assert!(ended.status.success(), "{ended:?}");
    let received = ok(sealpost(
        &bob_new,
        &["receive", "--wait", "60", "--count", "1"],
    ));
    assert!(
        received.stdout.contains("Are you on a new phone?"),
        "{received:?}"
    );
    // The old device was replaced.
    let gone = fails(sealpost(&bob, &["receive", "--wait", "30"]));
    assert!(gone.contains("no longer registered"), "{gone}");

    // Errors are one clear line and a non-zero exit.
    let unknown = fails(sealpost(&alice, &["send", "+15550009999", "hello?"]));
    assert!(unknown.contains("not registered"), "{unknown}");
    let mut cmd = sealpost(&bob_new, &["receive", "--wait", "1"]);
    cmd.env("SEALPOST_PASSPHRASE", "not the passphrase");
    let wrong = fails(cmd);
    assert!(wrong.contains("wrong passphrase"), "{wrong}");

    relay.stop();
}

#[test]
fn usage_errors_are_clear() {
    let root = tempfile::tempdir().unwrap();
    let nobody = home(root.path(), "nobody");
    let e = fails(sealpost(&nobody, &["receive"]));
    assert!(e.contains("sealpost register"), "{e}");
    let e = fails(sealpost(
        &nobody,
        &[
            "register",
            "--relay",
            "127.0.0.1:9",
            "--relay-pin",
            "abcd",
            "--account",
            ALICE,
        ],
    ));
    assert!(e.contains("invalid relay pin"), "{e}");
    // A certificate fingerprint (what earlier versions pinned) is refused with the way out.
    let e = fails(sealpost(
        &nobody,
        &[
            "register",
            "--relay",
            "127.0.0.1:9",
            "--fingerprint",
            &"ab".repeat(32),
            "--account",
            ALICE,
        ],
    ));
    assert!(
        e.contains("certificate fingerprint") && e.contains("--print-pin"),
        "{e}"
    );
    let e = fails(sealpost(&nobody, &["send", "5551234", "hi"]));
    assert!(e.contains("invalid account"), "{e}");
}

#[test]
fn pin_locks_registration_and_the_pin_recovers_it() {
    const PIN: &str = "482915";
    let root = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&root.path().join("relay"));
    let phone = home(root.path(), "phone");
    let (_, cmd) = register_two_step(&relay, &phone, ALICE);
    ok(cmd);

    let mut set = sealpost(&phone, &["pin", "set"]);
    set.env("SEALPOST_PIN", PIN);
    let out = ok(set);
    assert!(
        out.stdout.contains("Two-step verification is on"),
        "{out:?}"
    );
    assert!(
        ok(sealpost(&phone, &["pin", "status"]))
            .stdout
            .contains("on")
    );
    let mut check = sealpost(&phone, &["pin", "check"]);
    check.env("SEALPOST_PIN", PIN);
    assert!(ok(check).stdout.contains("Correct"));
    let mut wrong = sealpost(&phone, &["pin", "check"]);
    wrong.env("SEALPOST_PIN", "000000");
    assert!(fails(wrong).contains("not your PIN"));

    // A new phone: the code alone is refused with the lapse time; a wrong PIN counts; the
    // right PIN registers.
    let new_phone = home(root.path(), "new-phone");
    let (code, cmd) = register_two_step(&relay, &new_phone, ALICE);
    let out = run(cmd, "");
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stdout.contains("is protected by a PIN"), "{out:?}");
    assert!(
        out.stdout.contains("lapses in 7 days 0 hours")
            || out.stdout.contains("lapses in 6 days 23 hours"),
        "{out:?}"
    );
    assert!(out.stderr.contains("no PIN"), "{out:?}");
    let mut cmd = sealpost(&new_phone, &["register", "--code", &code]);
    cmd.env("SEALPOST_PIN", "111111");
    assert!(fails(cmd).contains("wrong PIN; 9 attempts left"));
    let mut cmd = sealpost(&new_phone, &["register", "--code", &code]);
    cmd.env("SEALPOST_PIN", PIN);
    let out = ok(cmd);
    assert!(
        out.stdout
            .contains(&format!("Registered {ALICE} as device 2.")),
        "{out:?}"
    );
    assert!(
        !out.stdout.contains(PIN) && !out.stderr.contains(PIN),
        "{out:?}"
    );
    relay.stop();
}

#[test]
fn a_store_in_use_is_refused_with_a_clear_message() {
    let root = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&root.path().join("relay"));
    let alice = home(root.path(), "alice");
    let (_, cmd) = register_two_step(&relay, &alice, ALICE);
    ok(cmd);
    let store = alice.join("store.db");

    // `chat` in one terminal, `send` in another: the second process is refused at once.
    let mut chat = Interactive::spawn(sealpost(&alice, &["chat", BOB]));
    chat.expect("Chat of");
    let busy = fails(sealpost(&alice, &["send", BOB, "from a second terminal"]));
    assert!(
        busy.contains(&format!(
            "another sealpost process is using the store at {}",
            store.display()
        )),
        "{busy}"
    );
    chat.type_line("/quit");
    let ended = chat.finish();
    assert!(ended.status.success(), "{ended:?}");

    // The SDK in this process holds the store: the CLI is refused; released on drop.
    let held = sealpost_client::store::SqliteClientStore::open(&store).unwrap();
    let busy = fails(sealpost(&alice, &["receive", "--wait", "1"]));
    assert!(
        busy.contains("another sealpost process is using the store"),
        "{busy}"
    );
    drop(held);
    let out = run(sealpost(&alice, &["receive", "--wait", "2"]), "");
    assert!(out.status.success(), "{out:?}");
    relay.stop();
}

#[test]
fn a_verified_contacts_new_identity_holds_messages_until_approved() {
    let root = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&root.path().join("relay"));
    let (alice, bob) = (home(root.path(), "alice"), home(root.path(), "bob"));
    ok(register_two_step(&relay, &alice, ALICE).1);
    ok(register_two_step(&relay, &bob, BOB).1);
    ok(sealpost(&alice, &["send", BOB, "hello"]));

    let digits = safety_groups(&ok(sealpost(&alice, &["safety-number", BOB])).stdout).join(" ");
    let wrong = fails(sealpost(
        &alice,
        &["verify", BOB, "--safety-number", &"1".repeat(60)],
    ));
    assert!(wrong.contains("does not match"), "{wrong}");
    let verified = ok(sealpost(
        &alice,
        &["verify", BOB, "--safety-number", &digits],
    ));
    assert!(
        verified
            .stdout
            .contains(&format!("Verified {BOB} device 1")),
        "{verified:?}"
    );

    // Bob's number moves to a new phone: Alice's next message is held, and she is told.
    let bob_new = home(root.path(), "bob-new-phone");
    ok(register_two_step(&relay, &bob_new, BOB).1);
    let held = run(sealpost(&alice, &["send", BOB, "are you really Bob?"]), "");
    assert!(!held.status.success(), "{held:?}");
    assert!(
        held.stderr
            .contains("whose safety number you verified, has CHANGED")
            && held.stderr.contains("stays queued")
            && held.stderr.contains(&format!("sealpost approve {BOB}")),
        "{held:?}"
    );
    assert!(!held.stderr.contains("SAFETY NUMBER CHANGED"), "{held:?}");

    let approved = ok(sealpost(&alice, &["approve", BOB]));
    assert!(
        approved.stdout.contains("Approved the new identity")
            && approved.stdout.contains("Held messages sent."),
        "{approved:?}"
    );
    let received = ok(sealpost(
        &bob_new,
        &["receive", "--wait", "60", "--count", "1"],
    ));
    assert!(
        received.stdout.contains("are you really Bob?"),
        "{received:?}"
    );
    let again = ok(sealpost(&alice, &["approve", BOB]));
    assert!(again.stdout.contains("Nothing to approve"), "{again:?}");
    relay.stop();
}

/// `--relay` repeated: the nodes of one deployment, tried in order (the first one here has
/// nothing listening), remembered as a list in `config.toml` and used by later commands.
#[test]
fn several_relays_are_tried_in_order_and_remembered() {
    let root = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&root.path().join("relay"));
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let alice = home(root.path(), "alice");
    let (live, pin) = (relay.addr(), relay.fingerprint());
    ok(sealpost(
        &alice,
        &[
            "register",
            "--relay",
            &dead,
            "--relay",
            &live,
            "--relay-pin",
            &pin,
            "--account",
            ALICE,
            "--request-only",
        ],
    ));
    let code = relay.codes.wait(ALICE);
    let out = ok(sealpost(&alice, &["register", "--code", &code]));
    assert!(
        out.stdout
            .contains(&format!("Registered {ALICE} as device 1.")),
        "{out:?}"
    );
    let config = std::fs::read_to_string(alice.join("config.toml")).unwrap();
    assert!(
        config.contains(&format!("relay = [\"{dead}\", \"{live}\"]")),
        "{config}"
    );
    // Each run tries the dead address first (the next one a second later).
    ok(sealpost(&alice, &["receive", "--wait", "5"]));
    relay.stop();
}
