//! What the CLI tests share: a relay in-process, running `sealpost` commands and reading
//! their output.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use sealpost_client::AccountId;
use sealpost_relay::{CodeSender, Relay, RelayConfig, RelayHandle, VerificationCode};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const PASSPHRASE: &str = "correct horse battery staple";
pub const ALICE: &str = "+15550003001";
pub const BOB: &str = "+15550003002";
/// Generous bound for one command; a hung command fails the test instead of hanging CI.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// Captures verification codes instead of sending SMS.
#[derive(Default)]
pub struct Codes(Mutex<HashMap<String, String>>);

impl CodeSender for Codes {
    fn send_code(&self, account: &AccountId, code: &VerificationCode) {
        self.0
            .lock()
            .unwrap()
            .insert(account.as_str().to_owned(), code.as_str().to_owned());
    }
}

impl Codes {
    /// Waits for the code sent to `account` and takes it.
    pub fn wait(&self, account: &str) -> String {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            if let Some(code) = self.0.lock().unwrap().remove(account) {
                return code;
            }
            assert!(Instant::now() < deadline, "no code was sent to {account}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A relay on its own runtime, so that the test drives processes synchronously.
pub struct TestRelay {
    pub runtime: tokio::runtime::Runtime,
    pub handle: Option<RelayHandle>,
    pub codes: Arc<Codes>,
}

impl TestRelay {
    pub fn start(dir: &Path) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let codes = Arc::new(Codes::default());
        let mut config = RelayConfig::for_tests(dir);
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.shutdown_grace_secs = 2;
        config.code_sender = Some(codes.clone());
        let handle = runtime.block_on(Relay::start(config)).unwrap();
        Self {
            runtime,
            handle: Some(handle),
            codes,
        }
    }

    pub fn handle(&self) -> &RelayHandle {
        self.handle.as_ref().unwrap()
    }

    pub fn addr(&self) -> String {
        self.handle().local_addr().to_string()
    }

    /// The relay's public-key pin (`--fingerprint` is an alias of `--relay-pin`).
    pub fn fingerprint(&self) -> String {
        self.handle().spki_pin().to_string()
    }

    pub fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            self.runtime.block_on(h.shutdown());
        }
    }
}

/// `sealpost --data-dir HOME ARGS…` with the passphrase in the environment.
pub fn sealpost(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealpost"));
    cmd.arg("--data-dir")
        .arg(home)
        .args(args)
        .env("SEALPOST_PASSPHRASE", PASSPHRASE)
        .env_remove("SEALPOST_HOME")
        .env_remove("RUST_LOG")
        .current_dir(home.parent().unwrap());
    cmd
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

pub fn read_all(r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        BufReader::new(r).read_to_string(&mut s).unwrap();
        s
    })
}

/// Waits for `child` (killing it after [`COMMAND_TIMEOUT`]).
pub fn wait(mut child: Child, stdout: JoinHandle<String>, stderr: JoinHandle<String>) -> Output {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            let _ = child.wait();
            panic!(
                "command timed out\n--- stdout ---\n{}--- stderr ---\n{}",
                stdout.join().unwrap(),
                stderr.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs a command to completion with `input` on stdin.
pub fn run(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = read_all(child.stdout.take().unwrap());
    let err = read_all(child.stderr.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    wait(child, out, err)
}

/// Runs a command that must succeed.
pub fn ok(cmd: Command) -> Output {
    let out = run(cmd, "");
    assert!(out.status.success(), "command failed: {out:?}");
    out
}

/// Runs a command that must fail with a one-line error.
pub fn fails(cmd: Command) -> String {
    let out = run(cmd, "");
    assert!(!out.status.success(), "command should fail: {out:?}");
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected: {out:?}");
    assert_eq!(
        out.stderr.lines().last(),
        errors.first().copied(),
        "{out:?}"
    );
    errors[0].to_owned()
}

/// A running interactive command: lines of its stdout arrive on a channel.
pub struct Interactive {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    pub stderr: JoinHandle<String>,
}

impl Interactive {
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        let stderr = read_all(child.stderr.take().unwrap());
        Self {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for a stdout line containing `needle`.
    pub fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no line with {needle:?}; saw:\n{}", self.seen.join("\n"));
                }
            }
        }
    }

    /// Closes stdin and waits for the exit.
    pub fn finish(mut self) -> Output {
        drop(self.stdin.take());
        let (tx, rx) = mpsc::channel();
        let lines = self.lines;
        let seen = self.seen;
        std::thread::spawn(move || {
            let mut all = seen;
            all.extend(lines.iter());
            let _ = tx.send(all.join("\n") + "\n");
        });
        let out = std::thread::spawn(move || rx.recv().unwrap());
        wait(self.child, out, self.stderr)
    }
}

/// The 5-digit groups of a `safety-number` output.
pub fn safety_groups(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| {
            let t = l.trim();
            !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == ' ')
        })
        .flat_map(|l| l.split_whitespace().map(str::to_owned))
        .collect()
}

/// Lines of a QR code drawn with half blocks.
pub fn qr_lines(out: &str) -> usize {
    out.lines()
        .filter(|l| {
            l.chars().count() >= 21
                && l.chars().all(|c| matches!(c, '█' | '▀' | '▄' | ' '))
                && l.contains('█')
        })
        .count()
}

pub fn home(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

/// Registers `account` in `dir` in two steps (`--request-only`, then `--code`).
pub fn register_two_step(relay: &TestRelay, dir: &Path, account: &str) -> (String, Command) {
    let (addr, fingerprint) = (relay.addr(), relay.fingerprint());
    ok(sealpost(
        dir,
        &[
            "register",
            "--relay",
            &addr,
            "--fingerprint",
            &fingerprint,
            "--account",
            account,
            "--request-only",
        ],
    ));
    let code = relay.codes.wait(account);
    let cmd = sealpost(dir, &["register", "--code", &code]);
    (code, cmd)
}

/// Links a new device in `dir` to the business whose owner is in `owner`, with a name and
/// a role; returns its device id.
pub fn link_as(relay: &TestRelay, owner: &Path, dir: &Path, name: &str, role: &str) -> u32 {
    let mut link = Interactive::spawn(sealpost(
        dir,
        &[
            "link",
            "--relay",
            &relay.addr(),
            "--relay-pin",
            &relay.fingerprint(),
        ],
    ));
    let line = link.expect("sealpost devices link sealpost-link:");
    let invitation = line
        .split_whitespace()
        .find(|w| w.starts_with("sealpost-link:"))
        .unwrap()
        .to_owned();
    let linked = ok(sealpost(
        owner,
        &[
            "devices",
            "link",
            &invitation,
            "--name",
            name,
            "--role",
            role,
        ],
    ));
    let id: u32 = linked
        .stdout
        .split("as device ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no device id: {linked:?}"));
    link.expect(&format!("as device {id}."));
    let out = link.finish();
    assert!(out.status.success(), "{out:?}");
    id
}
