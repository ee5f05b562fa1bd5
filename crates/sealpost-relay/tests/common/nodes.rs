//! What the nodes of one deployment share on disk.

use std::path::Path;

/// Copies the secret files the nodes of one deployment share (README, "PostgreSQL: several
/// relay nodes") from the data directory `from` into each of `to`: everything but the node's
/// own store and lock (`relay.*`), that is the key files and the self-signed certificate
/// and its key (`tls/`), so that every node answers with the same certificate and checks
/// codes and credentials another node issued.
pub fn share_key_files(from: &Path, to: &[&Path]) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("relay.") {
            continue;
        }
        for dir in to {
            copy(&entry.path(), &dir.join(&name));
        }
    }
}

/// Copies a file, or a directory with everything in it.
fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}
