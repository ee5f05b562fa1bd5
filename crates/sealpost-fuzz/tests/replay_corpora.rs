//! Replays every committed corpus file (and any local crash artifact) through its target on
//! the stable toolchain, and checks that the corpora, the generated seeds, the target list
//! and the cargo-fuzz package agree with each other.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealpost_fuzz::TARGETS;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// Every target's corpus must hold at least this many files.
const MIN_FILES: usize = 4;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn target(name: &str) -> fn(&[u8]) {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no target {name}"))
        .1
}

/// Runs every file of `fuzz/corpus/<name>/` and `fuzz/artifacts/<name>/` (if present),
/// reporting all failing files at once.
fn replay(name: &str) {
    let run = target(name);
    let corpus = fuzz_dir().join("corpus").join(name);
    assert!(
        corpus.is_dir(),
        "missing corpus directory {}",
        corpus.display()
    );
    let mut files = files_in(&corpus);
    assert!(
        files.len() >= MIN_FILES,
        "{} has {} files, expected at least {MIN_FILES}",
        corpus.display(),
        files.len()
    );
    let artifacts = fuzz_dir().join("artifacts").join(name);
    if artifacts.is_dir() {
        files.extend(files_in(&artifacts));
    }
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = fs::read(path).expect("read corpus file");
            catch_unwind(AssertUnwindSafe(|| run(&data))).is_err()
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{name} failed on:\n{}",
        failed.join("\n")
    );
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*

        #[test]
        fn every_target_is_replayed() {
            let tested = [$(stringify!($name)),*];
            let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, tested);
        }
    };
}

replay_tests!(
    decode_session_message,
    decode_bundle,
    decode_address,
    verify_scanned,
    decrypt_arbitrary,
    ratchet_stateful,
    unpickle,
    handshake_respond,
    relay_frames,
    relay_handler,
    pin_vault_record,
    pin_recovery,
    pin_local_verifier,
    pin_frames,
    device_list,
    provisioning_open,
    history_part,
    content,
    business,
);

/// The committed corpora contain every seed the generator produces, byte for byte: if an
/// encoding or the fixture changes, rerun `cargo run -p sealpost-fuzz --bin gen_seeds`.
#[test]
fn committed_seeds_are_current() {
    let corpus = fuzz_dir().join("corpus");
    let stale: Vec<String> = sealpost_fuzz::seeds::all()
        .into_iter()
        .filter(|s| fs::read(corpus.join(s.target).join(&s.name)).ok() != Some(s.bytes.clone()))
        .map(|s| format!("{}/{}", s.target, s.name))
        .collect();
    assert!(
        stale.is_empty(),
        "missing or outdated seeds (run gen_seeds): {stale:?}"
    );
}

/// Each target has a cargo-fuzz binary that calls it, declared in fuzz/Cargo.toml.
#[test]
fn cargo_fuzz_package_declares_every_target() {
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] {name}"
        );
        let path = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let source = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        assert!(
            source.contains(&format!("sealpost_fuzz::{name}(")),
            "{} does not call sealpost_fuzz::{name}",
            path.display()
        );
    }
}
