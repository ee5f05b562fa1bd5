//! Fuzz target bodies for Sealpost.
//!
//! Every target is a plain `pub fn <name>(data: &[u8])` so that it can be driven both by
//! cargo-fuzz (`fuzz/fuzz_targets/<name>.rs`, a one-line `fuzz_target!`) and by the ordinary
//! test `tests/replay_corpora.rs`, which replays the committed seed corpora on the stable
//! toolchain. A target reports a bug by panicking: an `assert!` on an invariant, or a panic
//! inside the code under test.
//!
//! Everything is deterministic: key material comes from fixed seeds ([`fixture`]) and any
//! randomness a call needs comes from a `StdRng` seeded from the input, so a crashing input
//! reproduces exactly.
//!
//! | target | what it checks |
//! |---|---|
//! | [`decode_session_message`] | decoders agree, `Ok` values re-encode to the same bytes |
//! | [`decode_bundle`] | round trip; `VerifiedBundle::verify` and `initiate` never panic |
//! | [`decode_address`] | `DeviceAddress::decode_from` round trip through `Reader` |
//! | [`verify_scanned`] | `SafetyNumber::verify_scanned` accepts exactly the peer's payload |
//! | [`decrypt_arbitrary`] | arbitrary and mutated messages fail without changing the session |
//! | [`ratchet_stateful`] | an op program on two parties checked against a Double Ratchet model |
//! | [`unpickle`] | state/pickle decoding never panics and round-trips |
//! | [`handshake_respond`] | `respond` on arbitrary prekey messages; store unchanged on error |
//! | [`relay_frames`] | relay `Request`/`Response`/`Push` decoders are total and canonical |
//! | [`relay_handler`] | the relay handler over `MemoryStore` under request programs: no panic, one-time prekeys served at most once per upload, auth/registration only with valid proofs |
//! | [`pin_vault_record`] | `VaultRecord::decode` is total and canonical |
//! | [`pin_recovery`] | PIN recovery against arbitrary guardian answers: only the true secret, only with the right PIN and `t` honest answers; every other answer reported |
//! | [`pin_local_verifier`] | local verifier and reminder-state codecs round-trip; the rate limit and schedule keep their bounds |
//! | [`device_list`] | device lists decode canonically; only the fixture's own lists verify under its account key; the update rule never goes back |
//! | [`provisioning_open`] | only the genuine provisioning envelope opens; invitation text parsing is total |
//! | [`history_part`] | history-bundle parts decode canonically; packing their records again keeps them all, in order |
//! | [`content`] | message contents (text, bytes, sent copies, sync contents, history parts) decode canonically; a sent copy holds a message; sync contents stay within their bounds |
//! | [`business()`] | business profiles, verification statements, routes and their payload decode canonically; only the fixture's own profile, statement and route verify |
//! | [`pin_frames`] | every PIN request/response kind decodes totally and canonically; payloads go through `sealpost-pin` |

// This crate is a test harness: panicking on a violated invariant is its whole purpose, and
// indexing into buffers it built itself is clearer than `.get()` chains. The workspace lints
// that forbid these in library code therefore do not apply here. Docs are in this header and
// in each target's module.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

pub mod fixture;
pub mod input;
pub mod seeds;

pub mod business;
mod decrypt;
pub mod devices;
mod handshake;
mod pickle;
pub mod pin;
mod relay;
mod stateful;
mod wire;

pub use business::business;
pub use decrypt::{DecryptOutcome, Mutated, decrypt_arbitrary, decrypt_arbitrary_outcome};
pub use devices::{device_list, history_part, provisioning_open};
pub use handshake::handshake_respond;
pub use pickle::unpickle;
pub use pin::{pin_frames, pin_local_verifier, pin_recovery, pin_vault_record};
pub use relay::{RelayOp, RelayStats, relay_frames, relay_handler, relay_handler_stats};
pub use stateful::{Op, Stats, ratchet_stateful, ratchet_stateful_stats};
pub use wire::{content, decode_address, decode_bundle, decode_session_message, verify_scanned};

/// A target body.
pub type Target = fn(&[u8]);

/// Every target, by the name used for its cargo-fuzz binary and its corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("decode_session_message", decode_session_message),
    ("decode_bundle", decode_bundle),
    ("decode_address", decode_address),
    ("verify_scanned", verify_scanned),
    ("decrypt_arbitrary", decrypt_arbitrary),
    ("ratchet_stateful", ratchet_stateful),
    ("unpickle", unpickle),
    ("handshake_respond", handshake_respond),
    ("relay_frames", relay_frames),
    ("relay_handler", relay_handler),
    ("pin_vault_record", pin_vault_record),
    ("pin_recovery", pin_recovery),
    ("pin_local_verifier", pin_local_verifier),
    ("pin_frames", pin_frames),
    ("device_list", device_list),
    ("provisioning_open", provisioning_open),
    ("history_part", history_part),
    ("content", content),
    ("business", business),
];
