//! `sealpost link` and `sealpost devices` end to end: a customer links a desktop to the
//! account of their phone, both receive what a shop sends, reading and deleting the
//! conversation on one reaches the other (`sealpost read`, `sealpost delete`), the desktop
//! cannot manage devices, and the phone unlinks it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;

#[test]
fn a_desktop_is_linked_receives_and_is_unlinked() {
    let root = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&root.path().join("relay"));
    let (addr, pin) = (relay.addr(), relay.fingerprint());
    let (phone, desktop, shop) = (
        home(root.path(), "phone"),
        home(root.path(), "desktop"),
        home(root.path(), "shop"),
    );
    let (_, cmd) = register_two_step(&relay, &phone, ALICE);
    ok(cmd);
    let (_, cmd) = register_two_step(&relay, &shop, BOB);
    ok(cmd);

    // The desktop shows an invitation (text and QR code) and waits.
    let mut link = Interactive::spawn(sealpost(
        &desktop,
        &["link", "--relay", &addr, "--relay-pin", &pin],
    ));
    let line = link.expect("sealpost devices link sealpost-link:");
    let invitation = line
        .split_whitespace()
        .find(|w| w.starts_with("sealpost-link:"))
        .unwrap()
        .to_owned();
    assert_eq!(invitation.len(), "sealpost-link:".len() + 152, "{line}");
    // The phone links it under a name.
    let linked = ok(sealpost(
        &phone,
        &["devices", "link", &invitation, "--name", "Desktop"],
    ));
    assert!(linked.stdout.contains("as device 2"), "{linked:?}");
    link.expect(&format!("Linked to {ALICE} as device 2."));
    let out = link.finish();
    assert!(out.status.success(), "{out:?}");
    assert!(qr_lines(&out.stdout) >= 21, "{out:?}");

    // Both list the signed list: names and roles, each marking itself.
    for (dir, me) in [(&phone, 1), (&desktop, 2)] {
        let listed = ok(sealpost(dir, &["devices"])).stdout;
        let rows: Vec<&str> = listed
            .lines()
            .filter(|l| l.trim_start().starts_with("device "))
            .collect();
        assert_eq!(rows.len(), 2, "{listed}");
        assert!(
            rows[0].contains("device 1") && rows[0].contains("primary"),
            "{listed}"
        );
        assert!(
            rows[1].contains("device 2")
                && rows[1].contains("linked")
                && rows[1].contains("Desktop"),
            "{listed}"
        );
        let own: Vec<&&str> = rows
            .iter()
            .filter(|r| r.contains("(this device)"))
            .collect();
        assert_eq!(own.len(), 1, "{listed}");
        assert!(own[0].contains(&format!("device {me}")), "{listed}");
        // The other device was seen (both connected): its last seen is a UTC date.
        let other = rows.iter().find(|r| !r.contains("(this device)")).unwrap();
        assert!(listed.contains("last seen"), "{listed}");
        assert!(
            other.split_whitespace().any(is_date),
            "no last-seen date: {listed}"
        );
    }

    // The shop's message reaches both devices of the account.
    ok(sealpost(
        &shop,
        &["send", ALICE, "Your order 1042 has shipped."],
    ));
    for dir in [&phone, &desktop] {
        let got = ok(sealpost(dir, &["receive", "--wait", "60", "--count", "1"]));
        assert!(
            got.stdout.contains("Your order 1042 has shipped."),
            "{got:?}"
        );
    }

    // The invitation was single use. The refused link drops the history parts it queued,
    // so the syncs below are not held behind them (spec/client-store.md 6.2).
    let again = fails(sealpost(
        &phone,
        &["devices", "link", &invitation, "--name", "Again"],
    ));
    assert!(again.contains("linking the device"), "{again}");

    // The phone marks the conversation read, the desktop deletes it: each device is told of
    // the other's change. The shop's next message reaches a device after the sync that was
    // sent before it, so waiting for the message is waiting for the sync.
    let read = ok(sealpost(&phone, &["read", BOB]));
    assert!(
        read.stdout
            .contains(&format!("Marked the conversation with {BOB} read.")),
        "{read:?}"
    );
    let again = ok(sealpost(&phone, &["read", BOB]));
    assert!(again.stdout.contains("read already"), "{again:?}");
    ok(sealpost(&shop, &["send", ALICE, "Tracking: 1Z999."]));
    let got = ok(sealpost(
        &desktop,
        &["receive", "--wait", "60", "--count", "1"],
    ));
    assert!(
        got.stdout.contains("Tracking: 1Z999.")
            && got.stderr.contains(&format!(
                "the conversation with {BOB} was read on this account's device 1"
            )),
        "{got:?}"
    );
    let deleted = ok(sealpost(&desktop, &["delete", BOB]));
    assert!(
        deleted
            .stdout
            .contains(&format!("Deleted the conversation with {BOB}.")),
        "{deleted:?}"
    );
    ok(sealpost(&shop, &["send", ALICE, "Out for delivery."]));
    let got = ok(sealpost(
        &phone,
        &["receive", "--wait", "60", "--count", "2"],
    ));
    assert!(
        got.stdout.contains("Tracking: 1Z999.")
            && got.stdout.contains("Out for delivery.")
            && got.stderr.contains(&format!(
                "the conversation with {BOB} was deleted on this account's device 2, and here"
            )),
        "{got:?}"
    );

    // Only the primary manages devices.
    let e = fails(sealpost(&desktop, &["devices", "remove", "1"]));
    assert!(e.contains("primary device"), "{e}");
    // The phone unlinks the desktop: it is logged out, and the shop's next message reaches
    // the phone alone.
    let removed = ok(sealpost(&phone, &["devices", "remove", "2"]));
    assert!(removed.stdout.contains("Device 2 removed"), "{removed:?}");
    let e = fails(sealpost(&desktop, &["receive", "--wait", "5"]));
    assert!(e.contains("no longer registered"), "{e}");
    ok(sealpost(&shop, &["send", ALICE, "Delivered today."]));
    let got = ok(sealpost(
        &phone,
        &["receive", "--wait", "60", "--count", "1"],
    ));
    assert!(got.stdout.contains("Delivered today."), "{got:?}");
    let listed = ok(sealpost(&phone, &["devices"])).stdout;
    assert!(!listed.contains("Desktop"), "{listed}");
    relay.stop();
}

/// A business registers as owner, links an agent by role, and the customer sees the
/// agent's signed name and role on its messages, before and after a rename; a role of the
/// consumer family is refused.
#[test]
fn a_business_links_an_agent_and_the_customer_sees_who_answered() {
    let root = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&root.path().join("relay"));
    let (addr, pin) = (relay.addr(), relay.fingerprint());
    let (shop, agent, customer) = (
        home(root.path(), "shop"),
        home(root.path(), "agent"),
        home(root.path(), "customer"),
    );
    let (_, mut cmd) = register_two_step(&relay, &shop, BOB);
    cmd.args(["--business", "--name", "Shop owner"]);
    ok(cmd);
    let (_, cmd) = register_two_step(&relay, &customer, ALICE);
    ok(cmd);

    let mut link = Interactive::spawn(sealpost(
        &agent,
        &["link", "--relay", &addr, "--relay-pin", &pin],
    ));
    let line = link.expect("sealpost devices link sealpost-link:");
    let invitation = line
        .split_whitespace()
        .find(|w| w.starts_with("sealpost-link:"))
        .unwrap()
        .to_owned();
    // A consumer role on a business account is refused before anything is sent.
    let e = fails(sealpost(
        &shop,
        &[
            "devices",
            "link",
            &invitation,
            "--name",
            "X",
            "--role",
            "linked",
        ],
    ));
    assert!(e.contains("role linked is not allowed"), "{e}");
    let linked = ok(sealpost(
        &shop,
        &[
            "devices",
            "link",
            &invitation,
            "--name",
            "Lina, support",
            "--role",
            "agent",
        ],
    ));
    assert!(linked.stdout.contains("(agent) as device 2"), "{linked:?}");
    link.expect(&format!("Linked to {BOB} as device 2."));
    assert!(link.finish().status.success());
    let listed = ok(sealpost(&shop, &["devices"])).stdout;
    assert!(
        listed
            .lines()
            .any(|l| l.contains("device 1") && l.contains("owner") && l.contains("Shop owner")),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.contains("device 2") && l.contains("agent") && l.contains("Lina, support")),
        "{listed}"
    );

    // The agent answers; the customer sees who.
    ok(sealpost(&agent, &["send", ALICE, "Hi, Lina here."]));
    let got = ok(sealpost(
        &customer,
        &["receive", "--wait", "60", "--count", "1"],
    ));
    assert!(
        got.stdout
            .contains(&format!("{BOB} — Lina, support (agent): Hi, Lina here.")),
        "{got:?}"
    );

    // The owner renames the agent; the customer's next message fetches the list and
    // notes the change, and the agent's next message carries the new name.
    let updated = ok(sealpost(
        &shop,
        &["devices", "update", "2", "--name", "Lina, sales"],
    ));
    assert!(
        updated
            .stdout
            .contains("Device 2 is now \"Lina, sales\" (agent)"),
        "{updated:?}"
    );
    // The owner keeps its role.
    let e = fails(sealpost(
        &shop,
        &["devices", "update", "1", "--role", "admin"],
    ));
    assert!(e.contains("role admin is not allowed"), "{e}");
    let sent = ok(sealpost(&customer, &["send", BOB, "Thanks!"]));
    assert!(
        sent.stderr
            .contains("renamed or gave a new role to a device: Lina, sales (device 2, agent)"),
        "{sent:?}"
    );
    ok(sealpost(&agent, &["send", ALICE, "You're welcome."]));
    let got = ok(sealpost(
        &customer,
        &["receive", "--wait", "60", "--count", "1"],
    ));
    assert!(
        got.stdout
            .contains(&format!("{BOB} — Lina, sales (agent): You're welcome.")),
        "{got:?}"
    );
    relay.stop();
}

/// `YYYY-MM-DD`.
fn is_date(w: &str) -> bool {
    let b = w.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
        && w.starts_with("20")
}
