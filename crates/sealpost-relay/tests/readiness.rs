//! A relay whose store is not writable does not start (and so never reports ready): it
//! says why and exits, instead of accepting connections and failing every request
//! (issue 12, spec/relay.md section 5). Runs the `sealpost-relay` binary.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The unprivileged user the relay runs as when the tests run as root (root ignores
/// permission bits, so a read-only directory would not be read-only to it).
const NOBODY: u32 = 65534;

fn relay(data: &Path, as_nobody: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealpost-relay"));
    cmd.args(["--dev-log-codes", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("SEALPOST_RELAY_CONFIG")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if as_nobody {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    cmd
}

#[test]
fn a_read_only_data_directory_is_refused_at_start_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let as_root = std::fs::metadata(tmp.path()).unwrap().uid() == 0;
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    if as_root {
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&data, Some(NOBODY), Some(NOBODY)).unwrap();
    }

    // A first start fills the directory (certificate, keys, database) and serves.
    let mut first = relay(&data, as_root).spawn().unwrap();
    let out = BufReader::new(first.stdout.take().unwrap());
    assert!(
        out.lines()
            .map_while(Result::ok)
            .any(|l| l.starts_with("public-key pin")),
        "the relay did not start on a writable directory"
    );
    first.kill().unwrap();
    first.wait().unwrap();

    // Read-only now: the next start must fail, naming the problem and the directory.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut second = relay(&data, as_root).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            second.kill().unwrap();
            panic!("a relay on a read-only data directory kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = second.wait_with_output().unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!status.success(), "{status}");
    assert!(
        !stdout.contains("public-key pin"),
        "reported ready: {stdout}"
    );
    assert!(
        stderr.contains("store is not writable") && stderr.contains(&*data.to_string_lossy()),
        "{stderr}"
    );
}
