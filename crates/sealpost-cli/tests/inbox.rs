//! `sealpost inbox` driven for real: the binary runs in a pseudo-terminal (portable-pty),
//! what it draws is read back as a screen (vt100), keys are typed into it. A customer
//! writes; the conversation appears live; the agent claims it and replies, and the customer
//! sees the agent's name on the reply; an internal note is shown as internal; the agent
//! transfers the conversation to a colleague, whose inbox shows the history verified by the
//! customer; `/quit` leaves and restores the terminal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use portable_pty::{Child, CommandBuilder, PtySize, native_pty_system};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROWS: u16 = 40;
const COLS: u16 = 150;

/// A program in a pseudo-terminal, and the screen it has drawn so far.
struct Tty {
    child: Box<dyn Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    screen: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Tty {
    fn spawn(home: &Path, args: &[&str]) -> Self {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_sealpost"));
        cmd.arg("--data-dir");
        cmd.arg(home);
        cmd.args(args);
        cmd.env("SEALPOST_PASSPHRASE", PASSPHRASE);
        cmd.env("TERM", "xterm-256color");
        cmd.env_remove("SEALPOST_HOME");
        cmd.env_remove("RUST_LOG");
        cmd.cwd(home.parent().unwrap());
        let child = pair.slave.spawn_command(cmd).unwrap();
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        let writer = pair.master.take_writer().unwrap();
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            ROWS.try_into().unwrap(),
            COLS.try_into().unwrap(),
            0,
        )));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (screen.clone(), raw.clone());
        std::thread::spawn(move || {
            // Keeps the master open for as long as the program runs.
            let _master = pair.master;
            let mut buf = [0u8; 8192];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        s.lock().unwrap().process(&buf[..n]);
                        r.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                }
            }
        });
        Self {
            child,
            writer,
            screen,
            raw,
        }
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits until the screen shows every one of `needles`.
    fn expect(&mut self, needles: &[&str]) -> String {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let screen = self.contents();
            if needles.iter().all(|n| screen.contains(n)) {
                return screen;
            }
            if Instant::now() > deadline || self.child.try_wait().unwrap().is_some() {
                let _ = self.child.kill();
                panic!("the screen never showed {needles:?}; it shows:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn keys(&mut self, bytes: &str) {
        self.writer.write_all(bytes.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Types a line and Enter.
    fn line(&mut self, text: &str) {
        self.keys(text);
        self.keys("\r");
    }

    /// Waits for the exit.
    fn wait(mut self) -> (portable_pty::ExitStatus, Vec<u8>) {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.raw.lock().unwrap().clone());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the inbox did not exit; it shows:\n{}", self.contents());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn an_agent_answers_a_new_customer_in_the_inbox() {
    let root = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&root.path().join("relay"));
    let shop = home(root.path(), "shop");
    let agent = home(root.path(), "agent");
    let customer = home(root.path(), "customer");
    let (_, mut cmd) = register_two_step(&relay, &shop, BOB);
    cmd.args(["--business", "--name", "Shop owner"]);
    ok(cmd);
    let (_, cmd) = register_two_step(&relay, &customer, ALICE);
    ok(cmd);
    let lars = home(root.path(), "lars");
    assert_eq!(link_as(&relay, &shop, &agent, "Lina, support", "agent"), 2);
    assert_eq!(link_as(&relay, &shop, &lars, "Lars, support", "agent"), 3);
    ok(sealpost(
        &shop,
        &["business", "profile", "set", "--name", "Velo Shop"],
    ));
    ok(sealpost(&shop, &["business", "route", "2"]));

    let mut inbox = Tty::spawn(&agent, &["inbox"]);
    inbox.expect(&[
        "Conversations",
        "Unassigned (0)",
        "Mine (0)",
        "● connected",
        "/claim",
        "/quit",
    ]);

    // A customer writes: the conversation appears live, unassigned, and is selected.
    ok(sealpost(
        &customer,
        &["send", BOB, "Hello, is my bike ready?"],
    ));
    inbox.expect(&[
        "Unassigned (1)",
        ALICE,
        "customer: Hello, is my bike ready?",
    ]);
    inbox.keys("\x1b[B");
    inbox.keys("\x1b[A");

    // A mistyped command is explained, sends nothing, and stays in the input line to be
    // corrected (Backspace).
    inbox.line("/frobnicate");
    inbox.expect(&["unknown command /frobnicate", "│/frobnicate "]);
    inbox.keys(&"\x7f".repeat("/frobnicate".len()));

    inbox.line("/claim");
    let screen = inbox.expect(&["Mine (1)", "Unassigned (0)", "Assigned: mine"]);
    assert!(
        screen.contains(&format!("You have {ALICE} now.")),
        "{screen}"
    );

    inbox.line("Your bike is ready.");
    inbox.expect(&["Lina, support · agent (you): Your bike is ready."]);
    let got = ok(sealpost(
        &customer,
        &["receive", "--wait", "60", "--count", "1"],
    ));
    assert!(
        got.stdout.contains(&format!(
            "{BOB} — Lina, support (agent): Your bike is ready."
        )),
        "{got:?}"
    );

    inbox.line("/note Picks it up on Friday");
    inbox.expect(&["[internal] Lina, support · agent (you): Picks it up on Friday"]);

    // Lina's shift ends: she hands the conversation to Lars, whose inbox shows it with the
    // history checked against the customer's own record. The customer stays in a chat so
    // that its client confirms the transcript to Lars at once.
    let mut chat = Interactive::spawn(sealpost(&customer, &["chat", BOB]));
    chat.expect("Chat of");
    let mut other = Tty::spawn(&lars, &["inbox"]);
    other.expect(&[
        "Others (1)",
        ALICE,
        "→ Lina, support · agent",
        "● connected",
    ]);
    inbox.line("/transfer lars Picks it up on Friday");
    inbox.expect(&[
        "Others (1)",
        &format!("Handed {ALICE} to Lars, support · agent"),
    ]);
    chat.expect(&format!(
        "{BOB} now answers this conversation from Lars, support (agent)"
    ));
    let screen = other.expect(&[
        "Mine (1)",
        "Handoff from Lina, support · agent (2 messages): history verified by the customer (2 messages)",
        "Handoff note: Picks it up on Friday",
        "customer: Hello, is my bike ready?",
        "Lina, support · agent: Your bike is ready.",
    ]);
    // Lina's internal note went to the devices on the conversation then (Lina) and the
    // owner, not to Lars, who was not on it.
    assert!(!screen.contains("[internal]"), "{screen}");
    other.line("/quit");
    let (status, _) = other.wait();
    assert!(status.success(), "{status:?}");
    chat.type_line("/quit");
    let out = chat.finish();
    assert!(out.status.success(), "{out:?}");
    assert!(
        !out.stdout.contains("Picks it up"),
        "a note reached the customer: {out:?}"
    );

    inbox.line("/quit");
    let (status, raw) = inbox.wait();
    assert!(status.success(), "{status:?}");
    // The alternate screen was left (the terminal is restored).
    let raw = String::from_utf8_lossy(&raw);
    let entered = raw
        .find("\x1b[?1049h")
        .expect("never entered the alternate screen");
    let left = raw
        .rfind("\x1b[?1049l")
        .expect("never left the alternate screen");
    assert!(left > entered);
    relay.stop();
}
