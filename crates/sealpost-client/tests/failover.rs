//! Coming back fast (issue 12): a relay killed with SIGKILL and restarted on the same
//! address and data directory costs a connected client seconds, not a minute (the restarted
//! relay resets the old connection at the client's next keep-alive, thanks to its persistent
//! stateless-reset key); and a client given several relay addresses works through the
//! second when the first is dead.
//!
//! The killed relay is a separate process: this test binary run again in "child" mode
//! (the environment variable [`CHILD_DATA_DIR`] set), where the test below starts a relay
//! with `Relay::start`, as the `sealpost-relay` binary does, prints its address and pin,
//! and serves until killed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use common::{Codes, Collector, acct, bulk_limits, open_store, start_relay};
use sealpost_client::{AccountId, Backoff, Client, ClientConfig, ClientEvent, RelayAddr, SpkiPin};
use sealpost_relay::{CodeSender, Relay, RelayConfig, VerificationCode};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// In a child process: the relay's data directory.
const CHILD_DATA_DIR: &str = "SEALPOST_TEST_CHILD_DATA_DIR";
/// In a child process: the address to listen on.
const CHILD_LISTEN: &str = "SEALPOST_TEST_CHILD_LISTEN";
/// In a child process: the directory verification codes are written to.
const CHILD_CODES: &str = "SEALPOST_TEST_CHILD_CODES";
/// The test that doubles as the child relay.
const KILL_TEST: &str = "a_relay_killed_with_sigkill_costs_a_connected_client_seconds";

/// Writes each verification code to `<dir>/<account>` (the parent process reads it).
struct FileCodes(PathBuf);

impl CodeSender for FileCodes {
    fn send_code(&self, account: &AccountId, code: &VerificationCode) {
        let tmp = self.0.join(format!("{}.tmp", account.as_str()));
        std::fs::write(&tmp, code.as_str()).unwrap();
        std::fs::rename(&tmp, self.0.join(account.as_str())).unwrap();
    }
}

/// The child: a relay on the given address and data directory, serving until killed.
async fn child_relay(data_dir: String) {
    let mut config = RelayConfig::for_tests(&data_dir);
    config.listen = std::env::var(CHILD_LISTEN).unwrap().parse().unwrap();
    config.limits = bulk_limits();
    config.code_sender = Some(Arc::new(FileCodes(
        std::env::var(CHILD_CODES).unwrap().into(),
    )));
    let relay = Relay::start(config).await.unwrap();
    println!("READY {} {}", relay.local_addr(), relay.spki_pin());
    std::future::pending::<()>().await;
}

/// The child relay process, killed (SIGKILL) when dropped, so that a failing test leaves
/// no relay behind.
struct RelayProcess(Child);

impl RelayProcess {
    fn kill(&mut self) {
        self.0.kill().unwrap(); // SIGKILL
        self.0.wait().unwrap();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the child relay and waits (bounded) for its start-up line.
async fn spawn_relay(data_dir: &Path, codes: &Path, listen: SocketAddr) -> (RelayProcess, SpkiPin) {
    let (data_dir, codes) = (data_dir.to_path_buf(), codes.to_path_buf());
    tokio::task::spawn_blocking(move || spawn_relay_blocking(&data_dir, &codes, listen))
        .await
        .unwrap()
}

fn spawn_relay_blocking(
    data_dir: &Path,
    codes: &Path,
    listen: SocketAddr,
) -> (RelayProcess, SpkiPin) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([KILL_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DATA_DIR, data_dir)
            .env(CHILD_LISTEN, listen.to_string())
            .env(CHILD_CODES, codes)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let ready = stdout.lines().map_while(Result::ok).find_map(|line| {
            // libtest writes the test's name on the same line first.
            line.split_once("READY ")
                .map(|(_, rest)| rest)
                .map(|rest| rest.split(' ').nth(1).unwrap().parse::<SpkiPin>().unwrap())
        });
        match ready {
            Some(pin) => return (RelayProcess(child), pin),
            // The child failed (the port of the killed relay not yet free): try again.
            None => {
                let status = child.wait().unwrap();
                assert!(
                    Instant::now() < deadline,
                    "the relay did not start: {status}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Waits (bounded) for the code the child relay sent to `phone`.
async fn code_for(codes: &Path, phone: &str) -> String {
    let path = codes.join(phone);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(code) = std::fs::read_to_string(&path) {
            std::fs::remove_file(&path).unwrap();
            return code;
        }
        assert!(Instant::now() < deadline, "no code for {phone}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn register_with_files(
    config: &ClientConfig,
    codes: &Path,
    home: &Path,
    phone: &str,
) -> (Client, Collector) {
    Client::request_code(config, &acct(phone)).await.unwrap();
    let code = code_for(codes, phone).await;
    let (client, rx) =
        Client::register(open_store(home, phone), config.clone(), acct(phone), &code)
            .await
            .unwrap();
    let seen = Collector::default();
    seen.spawn(rx);
    (client, seen)
}

fn free_udp_port() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// SIGKILL, restart on the same address and data directory, and measure the time from
/// the restarted relay's start-up line to the first message delivered to a client that
/// was connected to the killed one. With the SDK's default keep-alive (3 s) and the
/// relay's persistent stateless-reset key, the old connection is reset at the next
/// keep-alive; without that key it would linger until the idle timeout. The bound is a
/// few seconds (the requirement), far below the 60 s observed before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_with_sigkill_costs_a_connected_client_seconds() {
    if let Ok(dir) = std::env::var(CHILD_DATA_DIR) {
        return child_relay(dir).await;
    }
    common::init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let (data, codes, home) = (
        tmp.path().join("relay"),
        tmp.path().join("codes"),
        tmp.path().join("home"),
    );
    std::fs::create_dir_all(&codes).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let listen = free_udp_port();
    let (mut relay, pin) = spawn_relay(&data, &codes, listen).await;

    // The SDK's defaults (keep-alive, idle timeout, request timeout, backoff).
    let config = ClientConfig::new(listen, pin);
    let (alice, alice_seen) = register_with_files(&config, &codes, &home, "+15550001001").await;
    let (bob, bob_seen) = register_with_files(&config, &codes, &home, "+15550001002").await;
    bob.send_text(&acct("+15550001001"), "before")
        .await
        .unwrap();
    alice_seen
        .wait("the message before the kill", 30, |c| c.count() == 1)
        .await;

    relay.kill(); // SIGKILL
    let (mut relay, restarted_pin) = spawn_relay(&data, &codes, listen).await;
    let restarted = Instant::now();
    assert_eq!(restarted_pin, pin, "same data directory, same key");
    bob.send_text(&acct("+15550001001"), "after").await.unwrap();
    alice_seen
        .wait("the message after the restart", 60, |c| c.count() == 2)
        .await;
    let gap = restarted.elapsed();
    println!("gap from the relay's restart to the first delivered message: {gap:?}");
    assert_eq!(alice_seen.texts(), ["before", "after"]);
    assert!(
        alice_seen.count_events(|e| matches!(e, ClientEvent::Disconnected)) >= 1,
        "Alice's connection to the killed relay ended"
    );
    assert!(bob_seen.delivered() >= 2);
    assert!(
        gap < Duration::from_secs(5),
        "a relay restart cost a connected client {gap:?}"
    );
    alice.shutdown().await;
    bob.shutdown().await;
    relay.kill();
}

/// Two relay addresses, the first with nothing listening: registration, sending and
/// receiving all work through the second, and the pin is checked there as on any node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_address_fails_over_to_the_second() {
    let tmp = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(
        &tmp.path().join("relay"),
        "127.0.0.1:0".parse().unwrap(),
        &codes,
        bulk_limits(),
    )
    .await;
    let dead = free_udp_port();
    let config = ClientConfig::new(dead, relay.spki_pin())
        .with_relays([
            RelayAddr::Socket(dead),
            RelayAddr::Socket(relay.local_addr()),
        ])
        .with_connect_timeout(Duration::from_millis(500))
        .with_reconnect(Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(400),
        });
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let register = |phone: &'static str| {
        let (config, codes, home) = (config.clone(), codes.clone(), home.clone());
        async move {
            Client::request_code(&config, &acct(phone)).await.unwrap();
            let code = codes.take(phone);
            let (client, rx) =
                Client::register(open_store(&home, phone), config, acct(phone), &code)
                    .await
                    .unwrap();
            let seen = Collector::default();
            seen.spawn(rx);
            (client, seen)
        }
    };
    let (alice, alice_seen) = register("+15550002001").await;
    let (bob, bob_seen) = register("+15550002002").await;
    bob.send_text(&acct("+15550002001"), "through the second node")
        .await
        .unwrap();
    alice_seen.wait("the message", 30, |c| c.count() == 1).await;
    alice
        .send_text(&acct("+15550002002"), "and back")
        .await
        .unwrap();
    bob_seen.wait("the reply", 30, |c| c.count() == 1).await;
    assert_eq!(alice_seen.texts(), ["through the second node"]);
    assert_eq!(bob_seen.texts(), ["and back"]);

    // A node with another key is refused on every address: the pins are per deployment.
    let other = tempfile::tempdir().unwrap();
    let wrong = sealpost_relay::tls::load_or_generate(other.path(), &[])
        .unwrap()
        .spki_pin;
    let refused = ClientConfig::new(dead, wrong)
        .with_relays([
            RelayAddr::Socket(dead),
            RelayAddr::Socket(relay.local_addr()),
        ])
        .with_connect_timeout(Duration::from_millis(500));
    assert!(matches!(
        Client::request_code(&refused, &acct("+15550002003")).await,
        Err(sealpost_client::ClientError::PinMismatch { .. })
    ));
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await;
}
