//! The health probes of a real relay over real HTTP on 127.0.0.1: `/readyz` answers 503 with
//! the reason while the relay starts (its store is not open yet) and 200 once it serves;
//! `/healthz` answers 200 from the start. Its own test binary: the relay installs the
//! process-wide metrics recorder.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Codes, config};
use sealpost_relay::Relay;
use sealpost_relay::server::DB_FILE;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path`: the status code and the body; `None` while nothing listens.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: relay\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.get(9..12).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1.to_owned();
    Some((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_while_starting_and_200_once_ready() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // Another writer holds the database while the relay starts: opening the store waits for
    // it (SQLite's busy timeout), and the probes already answer meanwhile.
    let db = rusqlite::Connection::open(data.join(DB_FILE)).unwrap();
    let mode: String = db
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();

    // `metrics_listen` must be known before `Relay::start` returns: take a free port.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let codes = Arc::new(Codes::default());
    let mut cfg = config(&data, &codes);
    cfg.metrics_listen = Some(addr);
    let start = tokio::spawn(Relay::start(cfg));

    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, body) = loop {
        if let Some(answer) = get(addr, "/readyz").await {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "the probe listener never came up"
        );
        assert!(!start.is_finished(), "{:?}", start.await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, "starting: opening the store\n");
    assert_eq!(get(addr, "/ready").await.unwrap().0, 503);
    for live in ["/healthz", "/live"] {
        assert_eq!(get(addr, live).await.unwrap(), (200, "live\n".to_owned()));
    }
    assert!(!start.is_finished());

    // The other writer lets go: the relay opens its store, listens and is ready.
    db.execute_batch("COMMIT").unwrap();
    drop(db);
    let relay = start.await.unwrap().unwrap();
    assert_eq!(relay.metrics_addr(), Some(addr));
    for ready in ["/readyz", "/ready"] {
        assert_eq!(get(addr, ready).await.unwrap(), (200, "ready\n".to_owned()));
    }
    assert_eq!(get(addr, "/healthz").await.unwrap().0, 200);
    relay.shutdown().await;
}
