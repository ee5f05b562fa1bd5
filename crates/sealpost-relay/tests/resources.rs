//! The relay's resources and answers under abuse (spec/relay.md sections 1, 2, 5 and 7), over
//! real QUIC on 127.0.0.1 with real SQLite files in temporary directories.
#![cfg(feature = "server")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Codes, config};
use sealpost_relay::{Relay, RelayError};
use std::sync::Arc;

/// spec/relay.md section 5: one relay per data directory. A second one fails at once with a
/// typed error naming the directory; once the first has stopped, the directory is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_relay_on_the_same_data_directory_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let first = Relay::start(config(dir.path(), &codes)).await.unwrap();
    let second = Relay::start(config(dir.path(), &codes)).await.unwrap_err();
    let second = second.downcast::<RelayError>().unwrap();
    assert!(
        matches!(&second, RelayError::DataDirInUse { dir: d } if d == dir.path()),
        "{second:?}"
    );
    assert_eq!(
        second.to_string(),
        format!("another sealpost-relay is using {}", dir.path().display())
    );
    first.shutdown().await;
    let again = Relay::start(config(dir.path(), &codes)).await.unwrap();
    again.shutdown().await;
}

/// The same across processes: the binary exits with an error that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_relay_process_on_the_same_data_directory_exits() {
    let dir = tempfile::tempdir().unwrap();
    let _first = common::RelayProcess::start(dir.path()).await;
    let path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sealpost-relay"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&path)
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("another sealpost-relay is using {}", dir.path().display());
    assert!(stderr.contains(&expected), "{stderr}");
}
