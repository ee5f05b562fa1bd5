//! Writes the seed corpora to `fuzz/corpus/<target>/seed-*` (or to the directory given as
//! the only argument). Files not starting with `seed-` (inputs the fuzzer found and someone
//! chose to keep) are left alone; stale `seed-*` files are removed.
//!
//! ```sh
//! cargo run -p sealpost-fuzz --bin gen_seeds
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::fs;
use std::path::PathBuf;

fn main() {
    let root = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus"),
        PathBuf::from,
    );
    let seeds = sealpost_fuzz::seeds::all();
    for (target, _) in sealpost_fuzz::TARGETS {
        let dir = root.join(target);
        fs::create_dir_all(&dir).expect("create corpus directory");
        for entry in fs::read_dir(&dir).expect("read corpus directory") {
            let path = entry.expect("directory entry").path();
            let is_seed = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"));
            if is_seed {
                fs::remove_file(&path).expect("remove stale seed");
            }
        }
        let mine: Vec<_> = seeds.iter().filter(|s| s.target == *target).collect();
        let bytes: usize = mine.iter().map(|s| s.bytes.len()).sum();
        for s in &mine {
            fs::write(dir.join(&s.name), &s.bytes).expect("write seed");
        }
        println!("{target}: {} seeds, {bytes} bytes", mine.len());
    }
}
