//! The seed corpora committed in `fuzz/corpus/<target>/`, generated deterministically.
//!
//! `cargo run -p sealpost-fuzz --bin gen_seeds` writes them; `tests/replay_corpora.rs`
//! checks that the committed files still contain every seed generated here (so a change
//! of an encoding is noticed) and replays all of them through their targets.

mod devices;
mod pin;
mod relay;
mod session;

use devices::{business, contents, device_lists, history_parts, provisioning};
use pin::{pin_frames, pin_local_verifiers, pin_recovery, pin_vault_records};
use relay::{relay_frames, relay_handler};
use session::{
    addresses, bundles, decrypt, handshakes, pickles, scanned, session_messages, stateful,
};

/// One seed file: `fuzz/corpus/<target>/<name>`.
#[derive(Clone, Debug)]
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub bytes: Vec<u8>,
}

fn seed(target: &'static str, name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Seed {
    Seed {
        target,
        name: format!("seed-{}", name.into()),
        bytes: bytes.into(),
    }
}

/// All seeds of all targets.
pub fn all() -> Vec<Seed> {
    let mut out = Vec::new();
    out.extend(session_messages());
    out.extend(bundles());
    out.extend(addresses());
    out.extend(scanned());
    out.extend(decrypt());
    out.extend(stateful());
    out.extend(pickles());
    out.extend(handshakes());
    out.extend(relay_frames());
    out.extend(relay_handler());
    out.extend(pin_vault_records());
    out.extend(pin_recovery());
    out.extend(pin_local_verifiers());
    out.extend(pin_frames());
    out.extend(device_lists());
    out.extend(provisioning());
    out.extend(history_parts());
    out.extend(contents());
    out.extend(business());
    out
}
