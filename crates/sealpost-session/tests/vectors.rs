//! Test vectors for Sealpost (`spec/vectors/*.json`).
//!
//! Every value is computed twice: once through the public `sealpost-session` API (prekey
//! store, `hazmat::initiate_with_secrets`, `respond`, `Session::encrypt`/`decrypt`, pickles, safety
//! numbers) and once by a small reference model in this file that follows the byte-level
//! definitions directly with `sealpost-crypto` primitives (X25519, HKDF-SHA256,
//! HMAC-SHA256, ChaCha20-Poly1305, ML-KEM-1024). Both must agree, and both must agree with
//! the committed JSON.
//!
//! * `cargo test -p sealpost-session --test vectors` checks the committed files: it reads
//!   the inputs (secrets, RNG draws, plaintexts, delivery schedule) from the JSON, recomputes
//!   every output and reports each field that differs.
//! * `SEALPOST_WRITE_VECTORS=1 cargo test -p sealpost-session --test vectors` regenerates
//!   them. Every secret is then `SHA-256("sealpost-vector-" || label)` (64-byte values:
//!   the hashes of `label || ".d"` and `label || ".z"` concatenated).
//!
//! Secrets the API draws from an RNG (prekeys, new ratchet keys, pickle salts) come from a
//! FIFO test RNG that hands out recorded byte strings and checks each draw's length, so the
//! JSON records exactly which bytes each key came from.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use rand_core::{TryCryptoRng, TryRng};
use sealpost_crypto::ed25519::SigningKey;
use sealpost_crypto::kem::{KemCiphertext, KemKeyPair, KemPublic};
use sealpost_crypto::x25519::{X25519Public, X25519Secret};
use sealpost_crypto::{Zeroizing, aead, kdf};
use sealpost_session::fingerprint::{self, FINGERPRINT_ITERATIONS, FINGERPRINT_VERSION};
use sealpost_session::hazmat::{self, InitiatorSecrets, initiate_with_secrets};
use sealpost_session::{
    AccountId, CHAIN_KEY_CONSTANT, DecryptError, DeviceAddress, DeviceId, EncryptError,
    HANDSHAKE_INFO, HANDSHAKE_PREFIX, IdentityKeyPair, KDF_RK_INFO, KemPreKeyKind,
    LEGACY_SESSION_STATE_VERSION, MESSAGE_KEY_CONSTANT, NONCE_KEY_CONSTANT, PICKLE_INFO,
    PICKLE_VERSION, PickleKey, PreKeyStore, SESSION_STATE_VERSION, SafetyNumber, Session,
    SessionAddresses, SessionConfig, SessionMessage, VerifiedBundle, initiate, respond,
};
use sealpost_wire::DecodeError;
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------
// Spec constants, written out independently of the library's exports.
// ---------------------------------------------------------------------------------------

const SPEC_HANDSHAKE_INFO: &[u8] = b"Sealpost_PQXDH_X25519_SHA-256_ML-KEM-1024_v2";
const SPEC_RATCHET_INFO: &[u8] = b"Sealpost_Ratchet_v1";
const SPEC_PICKLE_INFO: &[u8] = b"Sealpost_Pickle_v1";
const SPEC_SIGNED_PREKEY_LABEL: &[u8] = b"Sealpost_SignedPreKey_v1";
const SPEC_KEM_PREKEY_LABEL: &[u8] = b"Sealpost_KemPreKey_v1";
/// Version byte of PreKeyMessage and RatchetMessage, and of the session state encoding.
const SPEC_SESSION_VERSION: u8 = 0x02;
/// The account ids of the vectors' two devices (Bob's device id is per handshake case).
const ALICE_ACCOUNT: &str = "+15551230001";
const ALICE_DEVICE: u32 = 1;
const BOB_ACCOUNT: &str = "+15551230002";
const SPEC_MAX_SKIP: u32 = 1000;
const SPEC_MAX_SKIPPED_KEYS: u32 = 2000;
const SPEC_MAX_PREVIOUS_RATCHET_KEYS: usize = 8;
const SEED_PREFIX: &str = "sealpost-vector-";

#[test]
fn library_constants_match_the_spec() {
    assert_eq!(HANDSHAKE_INFO, SPEC_HANDSHAKE_INFO);
    assert_eq!(HANDSHAKE_PREFIX, [0xFF; 32]);
    assert_eq!(KDF_RK_INFO, SPEC_RATCHET_INFO);
    assert_eq!(MESSAGE_KEY_CONSTANT, 0x01);
    assert_eq!(CHAIN_KEY_CONSTANT, 0x02);
    assert_eq!(NONCE_KEY_CONSTANT, 0x03);
    assert_eq!(SESSION_STATE_VERSION, SPEC_SESSION_VERSION);
    assert_eq!(LEGACY_SESSION_STATE_VERSION, 0x01);
    assert_eq!(sealpost_wire::SESSION_MESSAGE_VERSION, SPEC_SESSION_VERSION);
    assert_eq!(PICKLE_INFO, SPEC_PICKLE_INFO);
    assert_eq!(PICKLE_VERSION, 0x01);
    assert_eq!(FINGERPRINT_VERSION, 0);
    assert_eq!(FINGERPRINT_ITERATIONS, 5200);
    let config = SessionConfig::default();
    assert_eq!(config.max_skip(), SPEC_MAX_SKIP);
    assert_eq!(config.max_skipped_keys(), SPEC_MAX_SKIPPED_KEYS);
}

// ---------------------------------------------------------------------------------------
// Files, modes and JSON helpers.
// ---------------------------------------------------------------------------------------

fn vectors_dir() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = crate_dir.ancestors().nth(2).unwrap_or(crate_dir);
    workspace.join("spec").join("vectors")
}

fn write_mode() -> bool {
    std::env::var("SEALPOST_WRITE_VECTORS").is_ok_and(|v| v == "1")
}

fn load(name: &str) -> Value {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "test vector file {} cannot be read ({e}); generate it with \
             `SEALPOST_WRITE_VECTORS=1 cargo test -p sealpost-session --test vectors`",
            path.display()
        )
    });
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

/// Writes `computed` (write mode) or compares it with the committed file, listing every
/// field that differs.
fn write_or_check(name: &str, computed: &Value) {
    let path = vectors_dir().join(name);
    if write_mode() {
        std::fs::create_dir_all(vectors_dir()).unwrap();
        let mut text = serde_json::to_string_pretty(computed).unwrap();
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        return;
    }
    let recorded = load(name);
    let mut diffs = Vec::new();
    diff("$", &recorded, computed, &mut diffs);
    assert!(
        diffs.is_empty(),
        "{} does not match what the implementation computes ({} differences):\n{}",
        path.display(),
        diffs.len(),
        diffs
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!("{}..({} chars)", &s[..80], s.len())
    } else {
        s
    }
}

fn diff(path: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, x) in a {
                match b.get(k) {
                    Some(y) => diff(&format!("{path}.{k}"), x, y, out),
                    None => out.push(format!("{path}.{k}: in the file but not computed")),
                }
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{path}.{k}: computed but missing from the file"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                out.push(format!(
                    "{path}: file has {} entries, computed {}",
                    a.len(),
                    b.len()
                ));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{i}]"), x, y, out);
            }
        }
        _ if want == got => {}
        (Value::String(a), Value::String(b)) => {
            let at = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
            let window = |s: &str| {
                s.get(at.saturating_sub(8)..(at + 24).min(s.len()))
                    .unwrap_or("")
                    .to_string()
            };
            out.push(format!(
                "{path}: strings differ from character {at} (lengths {} and {}): file has ..{}.., computed ..{}..",
                a.len(),
                b.len(),
                window(a),
                window(b)
            ));
        }
        _ => out.push(format!(
            "{path}: file has {}, computed {}",
            short(want),
            short(got)
        )),
    }
}

fn hx(b: &[u8]) -> Value {
    Value::String(hex::encode(b))
}

fn opt_hx(b: Option<&[u8; 32]>) -> Value {
    b.map_or(Value::Null, |b| hx(b))
}

fn field<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for part in path.split('.') {
        cur = match cur {
            Value::Object(m) => m
                .get(part)
                .unwrap_or_else(|| panic!("vector field `{path}` is missing (at `{part}`)")),
            Value::Array(a) => {
                let i: usize = part.parse().unwrap();
                a.get(i)
                    .unwrap_or_else(|| panic!("vector field `{path}`: no entry {i}"))
            }
            _ => panic!("vector field `{path}`: `{part}` is not inside an object or array"),
        };
    }
    cur
}

fn bytes_of(v: &Value) -> Vec<u8> {
    hex::decode(
        v.as_str()
            .unwrap_or_else(|| panic!("{v} is not a hex string")),
    )
    .unwrap_or_else(|e| panic!("{v} is not hex: {e}"))
}

fn bytes_at(v: &Value, path: &str) -> Vec<u8> {
    bytes_of(field(v, path))
}

fn arr<const N: usize>(v: &Value, path: &str) -> [u8; N] {
    let b = bytes_at(v, path);
    b.as_slice()
        .try_into()
        .unwrap_or_else(|_| panic!("vector field `{path}` must be {N} bytes, is {}", b.len()))
}

fn u64_at(v: &Value, path: &str) -> u64 {
    field(v, path)
        .as_u64()
        .unwrap_or_else(|| panic!("vector field `{path}` is not an unsigned integer"))
}

fn u32_at(v: &Value, path: &str) -> u32 {
    u32::try_from(u64_at(v, path)).unwrap()
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    field(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("vector field `{path}` is not a string"))
}

// ---------------------------------------------------------------------------------------
// Deterministic secrets and the FIFO RNG.
// ---------------------------------------------------------------------------------------

fn seed32(label: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(SEED_PREFIX.as_bytes());
    h.update(label.as_bytes());
    let d = h.finalize();
    let mut out = [0u8; 32];
    out.copy_from_slice(&d);
    out
}

fn seed64(label: &str) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&seed32(&format!("{label}.d")));
    out[32..].copy_from_slice(&seed32(&format!("{label}.z")));
    out
}

fn seed_of_len(label: &str, len: usize) -> Vec<u8> {
    match len {
        32 => seed32(label).to_vec(),
        64 => seed64(label).to_vec(),
        _ => panic!("unexpected RNG draw of {len} bytes for `{label}`"),
    }
}

/// Hands out byte strings in order: first from a recorded queue, then (only when built with
/// [`TestRng::deriving`]) fresh labelled secrets. Every draw must have exactly the length of
/// the queued string, and everything drawn is recorded.
struct TestRng {
    queue: VecDeque<Vec<u8>>,
    derive_prefix: Option<String>,
    drawn: Vec<Vec<u8>>,
}

impl TestRng {
    fn fifo(items: Vec<Vec<u8>>) -> Self {
        Self {
            queue: items.into(),
            derive_prefix: None,
            drawn: Vec::new(),
        }
    }

    fn deriving(prefix: String) -> Self {
        Self {
            queue: VecDeque::new(),
            derive_prefix: Some(prefix),
            drawn: Vec::new(),
        }
    }

    fn assert_used_up(&self, what: &str) {
        assert!(
            self.queue.is_empty(),
            "{what}: {} recorded RNG draws were not consumed",
            self.queue.len()
        );
    }
}

impl TryRng for TestRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        let item = match (self.queue.pop_front(), &self.derive_prefix) {
            (Some(item), _) => item,
            (None, Some(prefix)) => {
                seed_of_len(&format!("{prefix}/{}", self.drawn.len()), dst.len())
            }
            (None, None) => panic!(
                "the API drew {} random bytes but no recorded draw is left",
                dst.len()
            ),
        };
        assert_eq!(
            item.len(),
            dst.len(),
            "the API drew {} bytes where the vector records {}",
            dst.len(),
            item.len()
        );
        dst.copy_from_slice(&item);
        self.drawn.push(item);
        Ok(())
    }
}

impl TryCryptoRng for TestRng {}

// ---------------------------------------------------------------------------------------
// Reference primitives, straight from the definitions.
// ---------------------------------------------------------------------------------------

fn x_pub(secret: &[u8; 32]) -> [u8; 32] {
    X25519Secret::from_bytes(*secret).public_key().to_bytes()
}

fn x_dh(secret: &[u8; 32], public: &[u8; 32]) -> [u8; 32] {
    *X25519Secret::from_bytes(*secret)
        .diffie_hellman(&X25519Public::from_bytes(*public))
        .unwrap()
        .as_bytes()
}

fn ed_pub(seed: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_seed(seed).verifying_key().to_bytes()
}

fn ed_sign(seed: &[u8; 32], msg: &[u8]) -> [u8; 64] {
    SigningKey::from_seed(seed).sign(msg).to_bytes()
}

fn identity_bytes(signing_seed: &[u8; 32], dh_secret: &[u8; 32]) -> [u8; 64] {
    let mut id = [0u8; 64];
    id[..32].copy_from_slice(&ed_pub(signing_seed));
    id[32..].copy_from_slice(&x_pub(dh_secret));
    id
}

/// KDF_RK(rk, dh) = HKDF-SHA256(salt = rk, IKM = dh, info, L = 64) -> (rk', ck).
fn kdf_rk(rk: &[u8; 32], dh: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    let mut okm = [0u8; 64];
    kdf::hkdf_sha256(rk, dh, SPEC_RATCHET_INFO, &mut okm).unwrap();
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    a.copy_from_slice(&okm[..32]);
    b.copy_from_slice(&okm[32..]);
    (a, b)
}

/// KDF_CK(ck) -> (mk = HMAC(ck, 0x01), ck' = HMAC(ck, 0x02), nk = HMAC(ck, 0x03)).
fn kdf_ck(ck: &[u8; 32]) -> ([u8; 32], [u8; 32], [u8; 32]) {
    (
        kdf::hmac_sha256(ck, &[0x01]),
        kdf::hmac_sha256(ck, &[0x02]),
        kdf::hmac_sha256(ck, &[0x03]),
    )
}

/// The 40 header fields the synthetic nonce covers: ratchet key || PN || N.
fn header_fields(ratchet_key: &[u8; 32], pn: u32, n: u32) -> [u8; 40] {
    let mut h = [0u8; 40];
    h[..32].copy_from_slice(ratchet_key);
    h[32..36].copy_from_slice(&pn.to_be_bytes());
    h[36..40].copy_from_slice(&n.to_be_bytes());
    h
}

/// nonce = HMAC-SHA256(nk, fields || plaintext)[0..12].
fn siv(nk: &[u8; 32], fields: &[u8; 40], plaintext: &[u8]) -> [u8; 12] {
    let mut input = fields.to_vec();
    input.extend_from_slice(plaintext);
    kdf::hmac_sha256(nk, &input)[..12].try_into().unwrap()
}

/// The 54-byte header: 0x02 || 0x01 || fields(40) || nonce(12).
fn encode_header(fields: &[u8; 40], nonce: &[u8; 12]) -> [u8; 54] {
    let mut h = [0u8; 54];
    h[0] = SPEC_SESSION_VERSION;
    h[1] = 0x01;
    h[2..42].copy_from_slice(fields);
    h[42..].copy_from_slice(nonce);
    h
}

/// DeviceAddress wire encoding: len(u8) || account UTF-8 || device(u32).
fn encode_address(account: &str, device: u32) -> Vec<u8> {
    let mut v = vec![u8::try_from(account.len()).unwrap()];
    v.extend_from_slice(account.as_bytes());
    v.extend_from_slice(&device.to_be_bytes());
    v
}

fn api_address(account: &str, device: u32) -> DeviceAddress {
    DeviceAddress::new(AccountId::new(account).unwrap(), DeviceId(device))
}

/// The handshake fields an initiator repeats until it gets a reply.
#[derive(Clone, Debug, PartialEq)]
struct RefPending {
    signed_prekey_id: u32,
    one_time_prekey_id: Option<u32>,
    kem_prekey_id: u32,
    kem_ciphertext: Vec<u8>,
}

fn encode_prekey_message(
    identity: &[u8; 64],
    base_key: &[u8; 32],
    p: &RefPending,
    ratchet_message: &[u8],
) -> Vec<u8> {
    let mut out = vec![SPEC_SESSION_VERSION, 0x02];
    out.extend_from_slice(identity);
    out.extend_from_slice(base_key);
    out.extend_from_slice(&p.signed_prekey_id.to_be_bytes());
    out.push(u8::from(p.one_time_prekey_id.is_some()));
    out.extend_from_slice(&p.one_time_prekey_id.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&p.kem_prekey_id.to_be_bytes());
    out.extend_from_slice(&p.kem_ciphertext);
    out.extend_from_slice(&u32::try_from(ratchet_message.len()).unwrap().to_be_bytes());
    out.extend_from_slice(ratchet_message);
    out
}

/// A skipped entry: (ratchet key, N, message key, nonce key).
type RefSkipped = ([u8; 32], u32, [u8; 32], [u8; 32]);

/// One side of a session in the reference model: the Double Ratchet state of Signal's
/// specification, section 3, plus what the state encoding records.
#[derive(Clone, Debug)]
struct RefParty {
    local_id: [u8; 64],
    remote_id: [u8; 64],
    local_address: Vec<u8>,
    remote_address: Vec<u8>,
    role: u8,
    base_key: [u8; 32],
    pending: Option<RefPending>,
    ad: Vec<u8>,
    dhs: [u8; 32],
    dhr: Option<[u8; 32]>,
    rk: [u8; 32],
    cks: Option<[u8; 32]>,
    ckr: Option<[u8; 32]>,
    ns: u32,
    nr: u32,
    pn: u32,
    previous_dhr: Vec<[u8; 32]>,
    skipped: Vec<RefSkipped>,
}

impl RefParty {
    /// A JSON summary of the ratchet state.
    fn summary(&self) -> Value {
        json!({
            "ratchet_key_public": hx(&x_pub(&self.dhs)),
            "remote_ratchet_key": opt_hx(self.dhr.as_ref()),
            "root_key": hx(&self.rk),
            "sending_chain_key": opt_hx(self.cks.as_ref()),
            "receiving_chain_key": opt_hx(self.ckr.as_ref()),
            "ns": self.ns,
            "nr": self.nr,
            "pn": self.pn,
            "skipped_message_keys": self.skipped.iter().map(|(k, n, mk, nk)| json!({
                "ratchet_key": hx(k),
                "message_number": n,
                "message_key": hx(mk),
                "nonce_key": hx(nk),
            })).collect::<Vec<_>>(),
        })
    }

    /// RatchetEncrypt. Returns the message record, the ratchet message and the bytes on
    /// the wire (a prekey message while the initiator awaits a reply).
    fn encrypt(&mut self, plaintext: &[u8]) -> (Value, Vec<u8>, Vec<u8>) {
        let ck_before = self.cks.expect("reference: no sending chain");
        let (mk, ck_after, nk) = kdf_ck(&ck_before);
        let ratchet_key = x_pub(&self.dhs);
        let fields = header_fields(&ratchet_key, self.pn, self.ns);
        let nonce = siv(&nk, &fields, plaintext);
        let header = encode_header(&fields, &nonce);
        let mut ad = self.ad.clone();
        ad.extend_from_slice(&header);
        let ciphertext = aead::seal(&mk, &nonce, &ad, plaintext);
        let mut ratchet_message = header.to_vec();
        ratchet_message.extend_from_slice(&ciphertext);
        let (kind, wire) = match &self.pending {
            None => ("ratchet", ratchet_message.clone()),
            Some(p) => (
                "prekey",
                encode_prekey_message(&self.local_id, &self.base_key, p, &ratchet_message),
            ),
        };
        let record = json!({
            "kind": kind,
            "header": {
                "ratchet_key": hx(&ratchet_key),
                "previous_chain_length": self.pn,
                "message_number": self.ns,
                "nonce": hx(&nonce),
            },
            "header_fields": hx(&fields),
            "encoded_header": hx(&header),
            "sender_chain_key_before": hx(&ck_before),
            "sender_chain_key_after": hx(&ck_after),
            "sender_chain_key_after_kdf": "HMAC-SHA256(sender_chain_key_before, 0x02)",
            "message_key": hx(&mk),
            "message_key_kdf": "HMAC-SHA256(sender_chain_key_before, 0x01)",
            "nonce_key": hx(&nk),
            "nonce_key_kdf": "HMAC-SHA256(sender_chain_key_before, 0x03)",
            "nonce": hx(&nonce),
            "nonce_kdf": "HMAC-SHA256(nonce_key, header_fields || plaintext)[0..12]",
            "aead_ad": hx(&ad),
            "aead_ad_layout": "session_ad || encoded_header",
            "ciphertext": hx(&ciphertext),
            "ratchet_message": hx(&ratchet_message),
            "encoded_message": hx(&wire),
        });
        self.cks = Some(ck_after);
        self.ns += 1;
        (record, ratchet_message, wire)
    }

    /// Stores the keys of messages `nr..until` of the current receiving chain.
    fn skip_until(&mut self, until: u32, stored: &mut Vec<Value>) {
        let Some(key) = self.dhr else { return };
        let Some(mut ck) = self.ckr else { return };
        while self.nr < until {
            let (mk, next, nk) = kdf_ck(&ck);
            self.skipped.push((key, self.nr, mk, nk));
            stored.push(json!({
                "ratchet_key": hx(&key),
                "message_number": self.nr,
                "message_key": hx(&mk),
                "nonce_key": hx(&nk),
            }));
            ck = next;
            self.nr += 1;
        }
        self.ckr = Some(ck);
    }

    /// RatchetDecrypt of a valid message. `draws` are the ratchet private keys the real
    /// session drew from its RNG; a DH ratchet step takes exactly one.
    fn decrypt(&mut self, ratchet_message: &[u8], draws: &[Vec<u8>]) -> (Vec<u8>, Value) {
        assert_eq!(&ratchet_message[..2], &[SPEC_SESSION_VERSION, 0x01]);
        let key: [u8; 32] = ratchet_message[2..34].try_into().unwrap();
        let pn = u32::from_be_bytes(ratchet_message[34..38].try_into().unwrap());
        let n = u32::from_be_bytes(ratchet_message[38..42].try_into().unwrap());
        let fields: [u8; 40] = ratchet_message[2..42].try_into().unwrap();
        let nonce: [u8; 12] = ratchet_message[42..54].try_into().unwrap();
        let mut ad = self.ad.clone();
        ad.extend_from_slice(&ratchet_message[..54]);
        let mut draws: VecDeque<[u8; 32]> = draws
            .iter()
            .map(|d| <[u8; 32]>::try_from(d.as_slice()).unwrap())
            .collect();
        let mut stored = Vec::new();
        let mut dh_ratchet = Value::Null;
        let mut used_skipped = false;
        let ckr_before = self.ckr;

        let (mk, nk) = if let Some(pos) = self
            .skipped
            .iter()
            .position(|(k, i, _, _)| *k == key && *i == n)
        {
            used_skipped = true;
            let (_, _, mk, nk) = self.skipped.remove(pos);
            (mk, nk)
        } else {
            if self.dhr != Some(key) {
                // DHRatchet: finish the old receiving chain up to PN, then two KDF_RK steps.
                self.skip_until(pn, &mut stored);
                if let Some(old) = self.dhr {
                    self.previous_dhr.push(old);
                    if self.previous_dhr.len() > SPEC_MAX_PREVIOUS_RATCHET_KEYS {
                        self.previous_dhr.remove(0);
                    }
                }
                let root_key_before = self.rk;
                let dh_receive = x_dh(&self.dhs, &key);
                let (rk1, ckr) = kdf_rk(&self.rk, &dh_receive);
                let new_dhs = draws
                    .pop_front()
                    .expect("reference needs a new ratchet key but the API drew none");
                let dh_send = x_dh(&new_dhs, &key);
                let (rk2, cks) = kdf_rk(&rk1, &dh_send);
                dh_ratchet = json!({
                    "previous_chain_length": pn,
                    "remote_ratchet_key": hx(&key),
                    "root_key_before": hx(&root_key_before),
                    "dh_receive": hx(&dh_receive),
                    "root_key_intermediate": hx(&rk1),
                    "receiving_chain_key": hx(&ckr),
                    "new_ratchet_key_secret": hx(&new_dhs),
                    "new_ratchet_key_public": hx(&x_pub(&new_dhs)),
                    "dh_send": hx(&dh_send),
                    "root_key_after": hx(&rk2),
                    "sending_chain_key": hx(&cks),
                    "kdf": "(root_key_intermediate, receiving_chain_key) = KDF_RK(root_key_before, \
                        dh_receive); (root_key_after, sending_chain_key) = KDF_RK(\
                        root_key_intermediate, dh_send); KDF_RK = HKDF-SHA256(salt = root key, \
                        IKM = dh, info = \"Sealpost_Ratchet_v1\", L = 64)",
                });
                self.pn = self.ns;
                self.ns = 0;
                self.nr = 0;
                self.dhr = Some(key);
                self.rk = rk2;
                self.ckr = Some(ckr);
                self.cks = Some(cks);
                self.dhs = new_dhs;
            }
            self.skip_until(n, &mut stored);
            let ck = self.ckr.unwrap();
            let (mk, next, nk) = kdf_ck(&ck);
            self.ckr = Some(next);
            self.nr = n + 1;
            (mk, nk)
        };
        assert!(
            draws.is_empty(),
            "the API drew a ratchet key the reference did not need"
        );
        let plaintext = aead::open(&mk, &nonce, &ad, &ratchet_message[54..])
            .expect("reference: AEAD open failed");
        assert_eq!(
            siv(&nk, &fields, &plaintext),
            nonce,
            "reference: nonce is not the SIV"
        );
        self.pending = None;
        let record = json!({
            "used_skipped_message_key": used_skipped,
            "dh_ratchet": dh_ratchet,
            "stored_skipped_message_keys": stored,
            "receiving_chain_key_before": opt_hx(ckr_before.as_ref()),
            "message_key": hx(&mk),
            "nonce_key": hx(&nk),
        });
        (plaintext, record)
    }

    /// The session state encoding (`Session::to_state_bytes`).
    fn encode_state(&self) -> Vec<u8> {
        fn opt(w: &mut Vec<u8>, k: Option<&[u8; 32]>) {
            w.push(u8::from(k.is_some()));
            w.extend_from_slice(k.unwrap_or(&[0u8; 32]));
        }
        let mut w = vec![SPEC_SESSION_VERSION];
        w.extend_from_slice(&SPEC_MAX_SKIP.to_be_bytes());
        w.extend_from_slice(&SPEC_MAX_SKIPPED_KEYS.to_be_bytes());
        w.extend_from_slice(&self.local_id);
        w.extend_from_slice(&self.remote_id);
        w.extend_from_slice(&self.local_address);
        w.extend_from_slice(&self.remote_address);
        w.push(self.role);
        w.extend_from_slice(&self.base_key);
        match &self.pending {
            None => w.push(0),
            Some(p) => {
                w.push(1);
                w.extend_from_slice(&p.signed_prekey_id.to_be_bytes());
                w.push(u8::from(p.one_time_prekey_id.is_some()));
                w.extend_from_slice(&p.one_time_prekey_id.unwrap_or(0).to_be_bytes());
                w.extend_from_slice(&p.kem_prekey_id.to_be_bytes());
                w.extend_from_slice(&p.kem_ciphertext);
            }
        }
        w.extend_from_slice(&self.dhs);
        w.extend_from_slice(&x_pub(&self.dhs));
        opt(&mut w, self.dhr.as_ref());
        w.extend_from_slice(&self.rk);
        opt(&mut w, self.cks.as_ref());
        opt(&mut w, self.ckr.as_ref());
        w.extend_from_slice(&self.ns.to_be_bytes());
        w.extend_from_slice(&self.nr.to_be_bytes());
        w.extend_from_slice(&self.pn.to_be_bytes());
        w.push(u8::try_from(self.previous_dhr.len()).unwrap());
        for k in &self.previous_dhr {
            w.extend_from_slice(k);
        }
        w.extend_from_slice(&u32::try_from(self.skipped.len()).unwrap().to_be_bytes());
        for (k, n, mk, nk) in &self.skipped {
            w.extend_from_slice(k);
            w.extend_from_slice(&n.to_be_bytes());
            w.extend_from_slice(mk);
            w.extend_from_slice(nk);
        }
        w
    }
}

fn assert_same_state(session: &Session, reference: &RefParty, what: &str) {
    let api = hazmat::to_state_bytes(session);
    let model = reference.encode_state();
    assert!(
        api.as_slice() == model.as_slice(),
        "{what}: Session::to_state_bytes differs from the reference state encoding\n api: {}\n ref: {}",
        hex::encode(api.as_slice()),
        hex::encode(&model)
    );
}

// ---------------------------------------------------------------------------------------
// Handshake.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
struct HsInputs {
    name: String,
    description: String,
    alice_signing_seed: [u8; 32],
    alice_dh_secret: [u8; 32],
    bob_signing_seed: [u8; 32],
    bob_dh_secret: [u8; 32],
    bob_device_id: u32,
    spk_created_at: u64,
    spk_secret: [u8; 32],
    opk_secret: Option<[u8; 32]>,
    kem_kind: KemPreKeyKind,
    kem_created_at: u64,
    kem_seed: [u8; 64],
    base_key: [u8; 32],
    ratchet_key: [u8; 32],
    kem_randomness: [u8; 32],
    responder_ratchet_key: [u8; 32],
    plaintext: Vec<u8>,
}

fn kind_name(kind: KemPreKeyKind) -> &'static str {
    match kind {
        KemPreKeyKind::LastResort => "last_resort",
        KemPreKeyKind::OneTime => "one_time",
    }
}

fn derive_hs(case: usize) -> HsInputs {
    let p = format!("hs{case}");
    let (name, description, with_opk, kem_kind, device, plaintext) = if case == 1 {
        (
            "with_one_time_prekey",
            "Full handshake: DH1..DH4 (the bundle carries a one-time X25519 prekey) and a \
             one-time ML-KEM-1024 prekey. Both one-time keys are consumed by respond().",
            true,
            KemPreKeyKind::OneTime,
            1,
            MESSAGES[0].to_vec(),
        )
    } else {
        (
            "without_one_time_prekey",
            "Handshake without a one-time X25519 prekey (IKM has no DH4), with the last-resort \
             ML-KEM-1024 prekey, which respond() keeps.",
            false,
            KemPreKeyKind::LastResort,
            2,
            b"Hello from a bundle with no one-time prekey left.".to_vec(),
        )
    };
    HsInputs {
        name: name.into(),
        description: description.into(),
        alice_signing_seed: seed32("alice/identity-signing"),
        alice_dh_secret: seed32("alice/identity-dh"),
        bob_signing_seed: seed32("bob/identity-signing"),
        bob_dh_secret: seed32("bob/identity-dh"),
        bob_device_id: device,
        spk_created_at: 1_700_000_000,
        spk_secret: seed32(&format!("{p}/bob/signed-prekey")),
        opk_secret: with_opk.then(|| seed32(&format!("{p}/bob/one-time-prekey"))),
        kem_kind,
        kem_created_at: 1_700_000_060,
        kem_seed: seed64(&format!("{p}/bob/kem-prekey")),
        base_key: seed32(&format!("{p}/alice/base-key")),
        ratchet_key: seed32(&format!("{p}/alice/ratchet-key")),
        kem_randomness: seed32(&format!("{p}/alice/kem-randomness")),
        responder_ratchet_key: seed32(&format!("{p}/bob/ratchet-key")),
        plaintext,
    }
}

fn parse_hs(v: &Value) -> HsInputs {
    let kem_kind = match str_at(v, "kem_prekey.kind") {
        "one_time" => KemPreKeyKind::OneTime,
        "last_resort" => KemPreKeyKind::LastResort,
        other => panic!("unknown KEM prekey kind {other}"),
    };
    let opk = field(v, "one_time_prekey");
    HsInputs {
        name: str_at(v, "name").into(),
        description: str_at(v, "description").into(),
        alice_signing_seed: arr(v, "alice.identity_signing_seed"),
        alice_dh_secret: arr(v, "alice.identity_dh_secret"),
        bob_signing_seed: arr(v, "bob.identity_signing_seed"),
        bob_dh_secret: arr(v, "bob.identity_dh_secret"),
        bob_device_id: u32_at(v, "bob.device_id"),
        spk_created_at: u64_at(v, "signed_prekey.created_at"),
        spk_secret: arr(v, "signed_prekey.secret"),
        opk_secret: (!opk.is_null()).then(|| arr(opk, "secret")),
        kem_kind,
        kem_created_at: u64_at(v, "kem_prekey.created_at"),
        kem_seed: arr(v, "kem_prekey.seed"),
        base_key: arr(v, "initiator.base_key_secret"),
        ratchet_key: arr(v, "initiator.ratchet_key_secret"),
        kem_randomness: arr(v, "initiator.kem_randomness"),
        responder_ratchet_key: arr(v, "responder.ratchet_key_secret"),
        plaintext: bytes_at(v, "first_message.plaintext"),
    }
}

fn hs_inputs() -> Vec<HsInputs> {
    if write_mode() {
        vec![derive_hs(1), derive_hs(2)]
    } else {
        let file = load("handshake.json");
        field(&file, "cases")
            .as_array()
            .expect("handshake.json: `cases` must be an array")
            .iter()
            .map(parse_hs)
            .collect()
    }
}

/// Reference values of one handshake, from the inputs alone.
struct RefHs {
    alice_id: [u8; 64],
    bob_id: [u8; 64],
    spk_public: [u8; 32],
    spk_signed_message: Vec<u8>,
    spk_signature: [u8; 64],
    opk_public: Option<[u8; 32]>,
    kem_public: Vec<u8>,
    kem_signed_message: Vec<u8>,
    kem_signature: [u8; 64],
    bundle: Vec<u8>,
    base_public: [u8; 32],
    kem_ciphertext: Vec<u8>,
    kem_shared_secret: [u8; 32],
    dhs: Vec<[u8; 32]>,
    ikm: Vec<u8>,
    sk_info: Vec<u8>,
    sk: [u8; 32],
    alice_address: Vec<u8>,
    bob_address: Vec<u8>,
    ad: Vec<u8>,
    init_dh: [u8; 32],
    root_key: [u8; 32],
    sending_chain_key: [u8; 32],
}

/// Prekey ids: a fresh `PreKeyStore` numbers each kind from 1.
const SPK_ID: u32 = 1;
const OPK_ID: u32 = 1;
const KEM_ID: u32 = 1;

fn ref_handshake(inp: &HsInputs) -> RefHs {
    let alice_id = identity_bytes(&inp.alice_signing_seed, &inp.alice_dh_secret);
    let bob_id = identity_bytes(&inp.bob_signing_seed, &inp.bob_dh_secret);
    let bob_dh_public = x_pub(&inp.bob_dh_secret);

    let spk_public = x_pub(&inp.spk_secret);
    let mut spk_signed_message = SPEC_SIGNED_PREKEY_LABEL.to_vec();
    spk_signed_message.extend_from_slice(&bob_dh_public);
    spk_signed_message.extend_from_slice(&SPK_ID.to_be_bytes());
    spk_signed_message.extend_from_slice(&inp.spk_created_at.to_be_bytes());
    spk_signed_message.extend_from_slice(&spk_public);
    let spk_signature = ed_sign(&inp.bob_signing_seed, &spk_signed_message);

    let opk_public = inp.opk_secret.as_ref().map(x_pub);

    let kem = KemKeyPair::from_seed(&inp.kem_seed);
    let kem_public = kem.public_key().as_bytes().to_vec();
    let kind_byte = match inp.kem_kind {
        KemPreKeyKind::LastResort => 0u8,
        KemPreKeyKind::OneTime => 1u8,
    };
    let mut kem_signed_message = SPEC_KEM_PREKEY_LABEL.to_vec();
    kem_signed_message.extend_from_slice(&bob_dh_public);
    kem_signed_message.extend_from_slice(&KEM_ID.to_be_bytes());
    kem_signed_message.push(kind_byte);
    kem_signed_message.extend_from_slice(&inp.kem_created_at.to_be_bytes());
    kem_signed_message.extend_from_slice(&kem_public);
    let kem_signature = ed_sign(&inp.bob_signing_seed, &kem_signed_message);

    let mut bundle = vec![0x01, 0x03];
    bundle.extend_from_slice(&inp.bob_device_id.to_be_bytes());
    bundle.extend_from_slice(&bob_id);
    bundle.extend_from_slice(&SPK_ID.to_be_bytes());
    bundle.extend_from_slice(&inp.spk_created_at.to_be_bytes());
    bundle.extend_from_slice(&spk_public);
    bundle.extend_from_slice(&spk_signature);
    match &opk_public {
        Some(k) => {
            bundle.push(1);
            bundle.extend_from_slice(&OPK_ID.to_be_bytes());
            bundle.extend_from_slice(k);
        }
        None => bundle.push(0),
    }
    bundle.extend_from_slice(&KEM_ID.to_be_bytes());
    bundle.push(kind_byte);
    bundle.extend_from_slice(&inp.kem_created_at.to_be_bytes());
    bundle.extend_from_slice(&kem_public);
    bundle.extend_from_slice(&kem_signature);

    // Initiator side.
    let base_public = x_pub(&inp.base_key);
    let mut dhs = vec![
        x_dh(&inp.alice_dh_secret, &spk_public),
        x_dh(&inp.base_key, &bob_dh_public),
        x_dh(&inp.base_key, &spk_public),
    ];
    if let Some(opk) = &opk_public {
        dhs.push(x_dh(&inp.base_key, opk));
    }
    let kem_pk = KemPublic::from_slice(&kem_public).unwrap();
    let (ct, ss) = kem_pk.encapsulate_derand(inp.kem_randomness);
    let kem_ciphertext = ct.as_bytes().to_vec();
    let kem_shared_secret = *ss.as_bytes();

    // Responder side: the same values from Bob's secrets.
    let alice_dh_public = x_pub(&inp.alice_dh_secret);
    let mut bob_dhs = vec![
        x_dh(&inp.spk_secret, &alice_dh_public),
        x_dh(&inp.bob_dh_secret, &base_public),
        x_dh(&inp.spk_secret, &base_public),
    ];
    if let Some(opk) = &inp.opk_secret {
        bob_dhs.push(x_dh(opk, &base_public));
    }
    assert_eq!(
        dhs, bob_dhs,
        "reference: DH outputs differ between the sides"
    );
    let decapsulated = kem.decapsulate(&KemCiphertext::from_slice(&kem_ciphertext).unwrap());
    assert_eq!(decapsulated.as_bytes(), &kem_shared_secret);

    let mut ikm = vec![0xFF; 32];
    for d in &dhs {
        ikm.extend_from_slice(d);
    }
    ikm.extend_from_slice(&kem_shared_secret);
    let mut sk_info = SPEC_HANDSHAKE_INFO.to_vec();
    sk_info.extend_from_slice(&base_public);
    let mut sk = [0u8; 32];
    kdf::hkdf_sha256(&[0u8; 32], &ikm, &sk_info, &mut sk).unwrap();

    let alice_address = encode_address(ALICE_ACCOUNT, ALICE_DEVICE);
    let bob_address = encode_address(BOB_ACCOUNT, inp.bob_device_id);
    let mut ad = alice_id.to_vec();
    ad.extend_from_slice(&bob_id);
    ad.extend_from_slice(&alice_address);
    ad.extend_from_slice(&bob_address);

    let init_dh = x_dh(&inp.ratchet_key, &spk_public);
    let (root_key, sending_chain_key) = kdf_rk(&sk, &init_dh);

    RefHs {
        alice_id,
        bob_id,
        spk_public,
        spk_signed_message,
        spk_signature,
        opk_public,
        kem_public,
        kem_signed_message,
        kem_signature,
        bundle,
        base_public,
        kem_ciphertext,
        kem_shared_secret,
        dhs,
        ikm,
        sk_info,
        sk,
        alice_address,
        bob_address,
        ad,
        init_dh,
        root_key,
        sending_chain_key,
    }
}

impl RefHs {
    fn initiator(&self, inp: &HsInputs) -> RefParty {
        RefParty {
            local_id: self.alice_id,
            remote_id: self.bob_id,
            local_address: self.alice_address.clone(),
            remote_address: self.bob_address.clone(),
            role: 0,
            base_key: self.base_public,
            pending: Some(RefPending {
                signed_prekey_id: SPK_ID,
                one_time_prekey_id: inp.opk_secret.map(|_| OPK_ID),
                kem_prekey_id: KEM_ID,
                kem_ciphertext: self.kem_ciphertext.clone(),
            }),
            ad: self.ad.clone(),
            dhs: inp.ratchet_key,
            dhr: Some(self.spk_public),
            rk: self.root_key,
            cks: Some(self.sending_chain_key),
            ckr: None,
            ns: 0,
            nr: 0,
            pn: 0,
            previous_dhr: Vec::new(),
            skipped: Vec::new(),
        }
    }

    fn responder(&self, inp: &HsInputs) -> RefParty {
        RefParty {
            local_id: self.bob_id,
            remote_id: self.alice_id,
            local_address: self.bob_address.clone(),
            remote_address: self.alice_address.clone(),
            role: 1,
            base_key: self.base_public,
            pending: None,
            ad: self.ad.clone(),
            dhs: inp.spk_secret,
            dhr: None,
            rk: self.sk,
            cks: None,
            ckr: None,
            ns: 0,
            nr: 0,
            pn: 0,
            previous_dhr: Vec::new(),
            skipped: Vec::new(),
        }
    }
}

/// The real API objects of one handshake, up to (not including) the first message.
struct Setup {
    bob: IdentityKeyPair,
    store: PreKeyStore,
    store_draws: Vec<Vec<u8>>,
    alice_session: Session,
    r: RefHs,
}

fn setup(inp: &HsInputs) -> Setup {
    let r = ref_handshake(inp);
    let alice = IdentityKeyPair::from_secret_bytes(&inp.alice_signing_seed, inp.alice_dh_secret);
    let bob = IdentityKeyPair::from_secret_bytes(&inp.bob_signing_seed, inp.bob_dh_secret);
    assert_eq!(alice.public().to_bytes(), r.alice_id);
    assert_eq!(bob.public().to_bytes(), r.bob_id);

    // Bob's store draws: signed prekey (32), [one-time prekey (32)], KEM seed (64).
    let mut draws = vec![inp.spk_secret.to_vec()];
    if let Some(opk) = &inp.opk_secret {
        draws.push(opk.to_vec());
    }
    draws.push(inp.kem_seed.to_vec());
    let mut rng = TestRng::fifo(draws);
    let mut store = PreKeyStore::new();
    let spk = store.generate_signed_prekey(&mut rng, &bob, inp.spk_created_at);
    assert_eq!(spk.id, SPK_ID);
    assert_eq!(spk.created_at, inp.spk_created_at);
    assert_eq!(spk.public, r.spk_public);
    assert_eq!(spk.signature, r.spk_signature);
    if inp.opk_secret.is_some() {
        let opks = store.generate_one_time_prekeys(&mut rng, 1);
        assert_eq!(opks.len(), 1);
        assert_eq!(Some(opks[0]), r.opk_public.map(|k| (OPK_ID, k)));
    }
    let kems = store.generate_kem_prekeys(&mut rng, &bob, inp.kem_kind, 1, inp.kem_created_at);
    assert_eq!(kems.len(), 1);
    assert_eq!(kems[0].id, KEM_ID);
    assert_eq!(kems[0].kind, inp.kem_kind);
    assert_eq!(kems[0].public.as_slice(), r.kem_public.as_slice());
    assert_eq!(kems[0].signature, r.kem_signature);
    rng.assert_used_up("Bob's prekey store");
    let store_draws = rng.drawn;

    let bundle = store
        .bundle(&bob, inp.bob_device_id, inp.opk_secret.is_some())
        .unwrap();
    assert_eq!(bundle.encode(), r.bundle, "PreKeyBundle encoding");
    let verified = VerifiedBundle::verify(&bundle).unwrap();

    let secrets = InitiatorSecrets {
        base_key: X25519Secret::from_bytes(inp.base_key),
        ratchet_key: X25519Secret::from_bytes(inp.ratchet_key),
        kem_randomness: Zeroizing::new(inp.kem_randomness),
    };
    let to_bob = SessionAddresses::new(
        api_address(ALICE_ACCOUNT, ALICE_DEVICE),
        api_address(BOB_ACCOUNT, inp.bob_device_id),
    );
    let alice_session = initiate_with_secrets(
        &alice,
        &to_bob,
        &verified,
        secrets,
        SessionConfig::default(),
    )
    .unwrap();
    assert!(alice_session.awaiting_reply());
    assert_eq!(alice_session.base_key().to_bytes(), r.base_public);
    assert_same_state(
        &alice_session,
        &r.initiator(inp),
        "initiator after initiate",
    );

    // initiate() draws the same secrets from its RNG: base key, ratchet key, KEM `m`.
    let mut rng = TestRng::fifo(vec![
        inp.base_key.to_vec(),
        inp.ratchet_key.to_vec(),
        inp.kem_randomness.to_vec(),
    ]);
    let via_rng = initiate(
        &mut rng,
        &alice,
        &to_bob,
        &verified,
        SessionConfig::default(),
    )
    .unwrap();
    rng.assert_used_up("initiate()");
    assert_eq!(
        hazmat::to_state_bytes(&via_rng).as_slice(),
        hazmat::to_state_bytes(&alice_session).as_slice(),
        "initiate() with an RNG and initiate_with_secrets() disagree"
    );

    Setup {
        bob,
        store,
        store_draws,
        alice_session,
        r,
    }
}

/// Bob's addresses for `respond`: himself, and Alice as the expected sender.
fn bob_addresses(inp: &HsInputs) -> SessionAddresses {
    SessionAddresses::new(
        api_address(BOB_ACCOUNT, inp.bob_device_id),
        api_address(ALICE_ACCOUNT, ALICE_DEVICE),
    )
}

fn identity_json(signing_seed: &[u8; 32], dh_secret: &[u8; 32]) -> Value {
    json!({
        "identity_signing_seed": hx(signing_seed),
        "identity_signing_public": hx(&ed_pub(signing_seed)),
        "identity_dh_secret": hx(dh_secret),
        "identity_dh_public": hx(&x_pub(dh_secret)),
        "identity": hx(&identity_bytes(signing_seed, dh_secret)),
    })
}

fn build_handshake(inp: &HsInputs) -> Value {
    let Setup {
        bob,
        mut store,
        store_draws,
        mut alice_session,
        r,
    } = setup(inp);

    // First message, API and reference.
    let mut ref_alice = r.initiator(inp);
    let wire = alice_session.encrypt(&inp.plaintext).unwrap().encode();
    let (mut first, ratchet_message, ref_wire) = ref_alice.encrypt(&inp.plaintext);
    assert_eq!(hex::encode(&wire), hex::encode(&ref_wire), "first message");
    assert_same_state(&alice_session, &ref_alice, "initiator after first message");
    first["plaintext"] = hx(&inp.plaintext);
    first["plaintext_utf8"] = Value::String(String::from_utf8_lossy(&inp.plaintext).into());

    // Responder.
    let SessionMessage::PreKey(pkm) = SessionMessage::decode(&wire).unwrap() else {
        panic!("the first message is not a PreKeyMessage");
    };
    let mut rng = TestRng::fifo(vec![inp.responder_ratchet_key.to_vec()]);
    let from_alice = bob_addresses(inp);
    let (bob_session, plaintext) = respond(
        &mut rng,
        &bob,
        &from_alice,
        &mut store,
        &pkm,
        SessionConfig::default(),
    )
    .unwrap();
    rng.assert_used_up("respond()");
    assert_eq!(plaintext, inp.plaintext);
    let mut ref_bob = r.responder(inp);
    let state_before = ref_bob.summary();
    let (ref_plaintext, receive) = ref_bob.decrypt(&ratchet_message, &rng.drawn);
    assert_eq!(ref_plaintext, inp.plaintext);
    assert_same_state(&bob_session, &ref_bob, "responder after respond");
    assert_eq!(store.one_time_count(), 0);
    let expected_kem_left = match inp.kem_kind {
        KemPreKeyKind::OneTime => 0,
        KemPreKeyKind::LastResort => 1,
    };
    assert_eq!(store.kem_count(), expected_kem_left);
    if inp.opk_secret.is_some() {
        // The one-time prekey is gone: the same message cannot be accepted twice.
        let mut rng = TestRng::fifo(vec![inp.responder_ratchet_key.to_vec()]);
        assert!(
            respond(
                &mut rng,
                &bob,
                &from_alice,
                &mut store,
                &pkm,
                SessionConfig::default()
            )
            .is_err()
        );
    }

    let dh = |i: usize| r.dhs.get(i).map_or(Value::Null, |d| hx(d));
    json!({
        "name": inp.name,
        "description": inp.description,
        "alice": identity_json(&inp.alice_signing_seed, &inp.alice_dh_secret),
        "bob": {
            "device_id": inp.bob_device_id,
            "identity_signing_seed": hx(&inp.bob_signing_seed),
            "identity_signing_public": hx(&ed_pub(&inp.bob_signing_seed)),
            "identity_dh_secret": hx(&inp.bob_dh_secret),
            "identity_dh_public": hx(&x_pub(&inp.bob_dh_secret)),
            "identity": hx(&r.bob_id),
        },
        "signed_prekey": {
            "id": SPK_ID,
            "created_at": inp.spk_created_at,
            "secret": hx(&inp.spk_secret),
            "public": hx(&r.spk_public),
            "signed_message": hx(&r.spk_signed_message),
            "signature": hx(&r.spk_signature),
        },
        "one_time_prekey": match (&inp.opk_secret, &r.opk_public) {
            (Some(s), Some(p)) => json!({ "id": OPK_ID, "secret": hx(s), "public": hx(p) }),
            _ => Value::Null,
        },
        "kem_prekey": {
            "id": KEM_ID,
            "kind": kind_name(inp.kem_kind),
            "kind_byte": inp.kem_kind.to_u8(),
            "created_at": inp.kem_created_at,
            "seed": hx(&inp.kem_seed),
            "public": hx(&r.kem_public),
            "signed_message": hx(&r.kem_signed_message),
            "signature": hx(&r.kem_signature),
        },
        "bob_store_rng_draws": store_draws.iter().map(|d| hx(d)).collect::<Vec<_>>(),
        "bundle": hx(&r.bundle),
        "initiator": {
            "base_key_secret": hx(&inp.base_key),
            "base_key_public": hx(&r.base_public),
            "ratchet_key_secret": hx(&inp.ratchet_key),
            "ratchet_key_public": hx(&x_pub(&inp.ratchet_key)),
            "kem_randomness": hx(&inp.kem_randomness),
        },
        "kem_ciphertext": hx(&r.kem_ciphertext),
        "kem_shared_secret": hx(&r.kem_shared_secret),
        "dh1": dh(0),
        "dh2": dh(1),
        "dh3": dh(2),
        "dh4": dh(3),
        "ikm": hx(&r.ikm),
        "sk_kdf": {
            "algorithm": "HKDF-SHA256",
            "salt": hx(&[0u8; 32]),
            "ikm": "ikm",
            "info": hx(&r.sk_info),
            "info_layout": "\"Sealpost_PQXDH_X25519_SHA-256_ML-KEM-1024_v2\" || base_key_public (as sent)",
            "length": 32,
        },
        "sk": hx(&r.sk),
        "alice_address": { "account": ALICE_ACCOUNT, "device": ALICE_DEVICE, "encoded": hx(&r.alice_address) },
        "bob_address": { "account": BOB_ACCOUNT, "device": inp.bob_device_id, "encoded": hx(&r.bob_address) },
        "ad": hx(&r.ad),
        "ad_layout": "alice.identity || bob.identity || alice_address.encoded || bob_address.encoded",
        "initiator_ratchet_init": {
            "dh": hx(&r.init_dh),
            "dh_inputs": "DH(initiator.ratchet_key_secret, signed_prekey.public)",
            "kdf": "KDF_RK(sk, dh) = HKDF-SHA256(salt = sk, IKM = dh, info = \"Sealpost_Ratchet_v1\", L = 64)",
            "root_key": hx(&r.root_key),
            "sending_chain_key": hx(&r.sending_chain_key),
        },
        "first_message": first,
        "responder": {
            "rng_draws": rng.drawn.iter().map(|d| hx(d)).collect::<Vec<_>>(),
            "ratchet_key_secret": hx(&inp.responder_ratchet_key),
            "ratchet_key_public": hx(&x_pub(&inp.responder_ratchet_key)),
            "state_before": state_before,
            "receive": receive,
            "state_after": ref_bob.summary(),
        },
    })
}

#[test]
fn handshake_vectors() {
    let inputs = hs_inputs();
    assert_eq!(inputs.len(), 2, "handshake.json must hold two cases");
    assert!(inputs[0].opk_secret.is_some() && inputs[1].opk_secret.is_none());
    if !write_mode() {
        // The committed secrets are the documented label derivations.
        assert_eq!(inputs, vec![derive_hs(1), derive_hs(2)]);
    }
    let cases: Vec<Value> = inputs.iter().map(build_handshake).collect();
    let file = json!({
        "description": "Sealpost handshake (X3DH/PQXDH style with ML-KEM-1024). \
            Session protocol version 2. Identity = Ed25519 public (32) || X25519 public (32); \
            AD = initiator identity || responder identity || initiator address || responder \
            address, an address encoded as len(u8) || account UTF-8 || device u32 BE. DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B), DH3 = DH(EK_A, \
            SPK_B), DH4 = DH(EK_A, OPK_B) if a one-time prekey was used; SS = ML-KEM-1024 shared \
            secret. IKM = 0xFF*32 || DH1 || DH2 || DH3 [|| DH4] || SS; SK = HKDF-SHA256(salt = \
            32 zero bytes, IKM, info = \"Sealpost_PQXDH_X25519_SHA-256_ML-KEM-1024_v2\" || base key \
            public (the 32 bytes as sent), L = 32). Each derived value `x` has an `x_kdf` entry \
            naming the function, key and label that derive it. \
            Initiator: (RK, CKs) = KDF_RK(SK, DH(ratchet_key_A, SPK_B)); responder: DHs = SPK_B, \
            RK = SK, and its first received message performs a DH ratchet step with a ratchet key \
            drawn from the RNG. Prekey ids start at 1. bob_store_rng_draws are the RNG outputs \
            PreKeyStore consumed, in order (signed prekey 32, one-time prekey 32, KEM seed d||z 64); \
            initiate() draws base key, ratchet key and KEM randomness m (32 each) in that order. \
            Every secret is SHA-256(\"sealpost-vector-\" || label) (64-byte seeds: label.d || label.z). \
            Bytes are hex.",
        "cases": cases,
    });
    write_or_check("handshake.json", &file);
}

// ---------------------------------------------------------------------------------------
// Ratchet transcript.
// ---------------------------------------------------------------------------------------

const MESSAGES: [&[u8]; 15] = [
    b"Hi, where is my order #1234?",
    b"It was supposed to arrive on Monday.",
    b"The tracking page only says 'label created'.",
    b"Hello! Let me check that for you.",
    b"Could you confirm the shipping address?",
    b"42 Elm Street, Springfield.",
    b"(this message is lost in transit and never delivered)",
    b"Apartment 3B.",
    b"Thanks. The parcel left the warehouse this morning.",
    b"Great, thank you!",
    b"Do you have a tracking number?",
    b"You will get an update by email too.",
    b"Tracking number: SP-000-1234-5678.",
    b"",
    b"Is there anything else I can help you with today? Our support desk is open from 8am to \
      8pm on weekdays and from 10am to 4pm on weekends; you can also reply to this chat at any \
      time and we will get back to you as soon as possible.",
];

/// (party, action, message index). Alice sends three prekey messages before Bob answers;
/// messages 2, 4, 7 and 10 overtake earlier ones; message 6 is never delivered.
const SCHEDULE: [(&str, &str, usize); 29] = [
    ("alice", "send", 0),
    ("alice", "send", 1),
    ("alice", "send", 2),
    ("bob", "deliver", 0),
    ("bob", "deliver", 2),
    ("bob", "send", 3),
    ("bob", "send", 4),
    ("alice", "deliver", 4),
    ("alice", "deliver", 3),
    ("bob", "deliver", 1),
    ("alice", "send", 5),
    ("alice", "send", 6),
    ("alice", "send", 7),
    ("bob", "deliver", 7),
    ("bob", "deliver", 5),
    ("bob", "send", 8),
    ("alice", "send", 9),
    ("alice", "deliver", 8),
    ("alice", "send", 10),
    ("bob", "send", 11),
    ("bob", "deliver", 10),
    ("bob", "deliver", 9),
    ("alice", "deliver", 11),
    ("bob", "send", 12),
    ("alice", "deliver", 12),
    ("alice", "send", 13),
    ("bob", "deliver", 13),
    ("bob", "send", 14),
    ("alice", "deliver", 14),
];

#[derive(Clone, Debug)]
struct Event {
    party: String,
    action: String,
    message: usize,
}

struct RatchetInputs {
    events: Vec<Event>,
    plaintexts: Vec<Vec<u8>>,
    /// Recorded RNG draws per event (check mode); `None` derives fresh labelled ones.
    draws: Option<Vec<Vec<Vec<u8>>>>,
}

fn ratchet_inputs() -> RatchetInputs {
    if write_mode() {
        return RatchetInputs {
            events: SCHEDULE
                .iter()
                .map(|(p, a, m)| Event {
                    party: (*p).into(),
                    action: (*a).into(),
                    message: *m,
                })
                .collect(),
            plaintexts: MESSAGES.iter().map(|m| m.to_vec()).collect(),
            draws: None,
        };
    }
    let file = load("ratchet.json");
    let events: Vec<&Value> = field(&file, "events").as_array().unwrap().iter().collect();
    let messages = field(&file, "messages").as_array().unwrap();
    RatchetInputs {
        events: events
            .iter()
            .map(|e| Event {
                party: str_at(e, "party").into(),
                action: str_at(e, "action").into(),
                message: usize::try_from(u64_at(e, "message")).unwrap(),
            })
            .collect(),
        plaintexts: messages.iter().map(|m| bytes_at(m, "plaintext")).collect(),
        draws: Some(
            events
                .iter()
                .map(|e| match e.get("rng_draws") {
                    Some(Value::Array(d)) => d.iter().map(bytes_of).collect(),
                    _ => Vec::new(),
                })
                .collect(),
        ),
    }
}

/// Both sessions (API state bytes, since sessions are not `Clone`, and reference) after
/// one event.
struct Snapshot {
    alice: Vec<u8>,
    bob: Option<Vec<u8>>,
    ref_alice: RefParty,
    ref_bob: Option<RefParty>,
}

fn state_of(s: &Session) -> Vec<u8> {
    hazmat::to_state_bytes(s).to_vec()
}

fn restore(state: &[u8]) -> Session {
    hazmat::from_state_bytes(state).unwrap()
}

struct Transcript {
    json: Value,
    snapshots: Vec<Snapshot>,
    wire: Vec<Vec<u8>>,
    draws: Vec<Vec<Vec<u8>>>,
}

fn build_ratchet(hs: &HsInputs, ri: &RatchetInputs) -> Transcript {
    assert_eq!(
        ri.plaintexts.first(),
        Some(&hs.plaintext),
        "message 0 of ratchet.json is the first message of handshake.json case 0"
    );
    let Setup {
        bob: bob_identity,
        mut store,
        alice_session,
        r,
        ..
    } = setup(hs);
    let mut alice = alice_session;
    let mut bob: Option<Session> = None;
    let mut ref_alice = r.initiator(hs);
    let mut ref_bob: Option<RefParty> = None;

    let count = ri.plaintexts.len();
    let mut messages: Vec<Value> = vec![Value::Null; count];
    let mut wire: Vec<Option<Vec<u8>>> = vec![None; count];
    let mut ratchet_messages: Vec<Option<Vec<u8>>> = vec![None; count];
    let mut delivered: Vec<Option<usize>> = vec![None; count];
    let mut events = Vec::new();
    let mut snapshots = Vec::new();
    let mut all_draws = Vec::new();

    let initial = json!({
        "alice": ref_alice.summary(),
        "bob": r.responder(hs).summary(),
    });

    for (step, ev) in ri.events.iter().enumerate() {
        let idx = ev.message;
        assert!(idx < count, "event {step}: no message {idx}");
        let is_alice = match ev.party.as_str() {
            "alice" => true,
            "bob" => false,
            other => panic!("event {step}: unknown party {other}"),
        };
        let plaintext = &ri.plaintexts[idx];
        let mut record =
            json!({ "step": step, "party": ev.party, "action": ev.action, "message": idx });
        let mut draws_used = Vec::new();
        match ev.action.as_str() {
            "send" => {
                assert!(wire[idx].is_none(), "message {idx} is sent twice");
                let (session, model) = if is_alice {
                    (&mut alice, &mut ref_alice)
                } else {
                    (
                        bob.as_mut().expect("Bob sends before he has a session"),
                        ref_bob.as_mut().unwrap(),
                    )
                };
                let before = model.summary();
                let bytes = session.encrypt(plaintext).unwrap().encode();
                let (mut m, rm, ref_bytes) = model.encrypt(plaintext);
                assert_eq!(
                    hex::encode(&bytes),
                    hex::encode(&ref_bytes),
                    "message {idx}: Session::encrypt differs from the reference"
                );
                assert_same_state(session, model, &format!("step {step}"));
                m["index"] = json!(idx);
                m["sender"] = json!(ev.party);
                m["recipient"] = json!(if is_alice { "bob" } else { "alice" });
                m["plaintext"] = hx(plaintext);
                m["plaintext_utf8"] = Value::String(String::from_utf8_lossy(plaintext).into());
                m["sent_at_step"] = json!(step);
                messages[idx] = m;
                wire[idx] = Some(bytes);
                ratchet_messages[idx] = Some(rm);
                record["state_before"] = before;
                record["state_after"] = model.summary();
            }
            "deliver" => {
                let bytes = wire[idx]
                    .clone()
                    .unwrap_or_else(|| panic!("event {step}: message {idx} was not sent yet"));
                assert!(delivered[idx].is_none(), "message {idx} is delivered twice");
                assert_ne!(
                    messages[idx]["sender"], ev.party,
                    "event {step}: message {idx} delivered to its sender"
                );
                let respond_now = !is_alice && bob.is_none();
                let mut rng = if respond_now {
                    TestRng::fifo(vec![hs.responder_ratchet_key.to_vec()])
                } else {
                    match &ri.draws {
                        Some(d) => TestRng::fifo(d[step].clone()),
                        None => TestRng::deriving(format!("ratchet/step{step}/{}", ev.party)),
                    }
                };
                let (api_plaintext, session): (Vec<u8>, &Session) = if respond_now {
                    let SessionMessage::PreKey(pkm) = SessionMessage::decode(&bytes).unwrap()
                    else {
                        panic!("event {step}: Bob's first message must be a PreKeyMessage");
                    };
                    let (s, pt) = respond(
                        &mut rng,
                        &bob_identity,
                        &bob_addresses(hs),
                        &mut store,
                        &pkm,
                        SessionConfig::default(),
                    )
                    .unwrap();
                    ref_bob = Some(r.responder(hs));
                    (pt, bob.insert(s))
                } else {
                    let s = if is_alice {
                        &mut alice
                    } else {
                        bob.as_mut().unwrap()
                    };
                    let pt = s
                        .decrypt_bytes(&mut rng, &bytes)
                        .unwrap_or_else(|e| panic!("event {step}: message {idx}: {e}"));
                    (pt, &*s)
                };
                rng.assert_used_up(&format!("event {step}"));
                draws_used = rng.drawn;
                assert_eq!(
                    &api_plaintext, plaintext,
                    "message {idx}: decrypted plaintext"
                );
                let model = if is_alice {
                    &mut ref_alice
                } else {
                    ref_bob.as_mut().unwrap()
                };
                let before = model.summary();
                let (ref_plaintext, receive) =
                    model.decrypt(ratchet_messages[idx].as_ref().unwrap(), &draws_used);
                assert_eq!(&ref_plaintext, plaintext);
                assert_same_state(session, model, &format!("step {step}"));
                delivered[idx] = Some(step);
                record["rng_draws"] = json!(draws_used.iter().map(|d| hx(d)).collect::<Vec<_>>());
                record["receive"] = receive;
                record["plaintext"] = hx(plaintext);
                record["state_before"] = before;
                record["state_after"] = model.summary();
            }
            other => panic!("event {step}: unknown action {other}"),
        }
        events.push(record);
        all_draws.push(draws_used);
        snapshots.push(Snapshot {
            alice: state_of(&alice),
            bob: bob.as_ref().map(state_of),
            ref_alice: ref_alice.clone(),
            ref_bob: ref_bob.clone(),
        });
    }

    for (idx, m) in messages.iter_mut().enumerate() {
        assert!(!m.is_null(), "message {idx} is never sent");
        m["delivered_at_step"] = delivered[idx].map_or(Value::Null, |s| json!(s));
    }
    let wire: Vec<Vec<u8>> = wire.into_iter().map(Option::unwrap).collect();

    // Every delivered message is rejected when replayed, and the session does not change.
    let mut alice_final = restore(&state_of(&alice));
    let mut bob_final = restore(&state_of(bob.as_ref().unwrap()));
    for (idx, step) in delivered.iter().enumerate() {
        if step.is_none() {
            continue;
        }
        let to_alice = messages[idx]["recipient"] == "alice";
        let s = if to_alice {
            &mut alice_final
        } else {
            &mut bob_final
        };
        let before = state_of(s);
        let mut rng = TestRng::fifo(Vec::new());
        assert!(
            s.decrypt_bytes(&mut rng, &wire[idx]).is_err(),
            "replayed message {idx} was accepted"
        );
        assert_eq!(before, state_of(s));
    }
    // Undelivered messages still decrypt late with their stored skipped keys.
    for (idx, step) in delivered.iter().enumerate() {
        if step.is_some() {
            continue;
        }
        let mut s = if messages[idx]["recipient"] == "alice" {
            restore(&state_of(&alice))
        } else {
            restore(&state_of(bob.as_ref().unwrap()))
        };
        let before = s.skipped_key_count();
        let mut rng = TestRng::fifo(Vec::new());
        assert_eq!(
            s.decrypt_bytes(&mut rng, &wire[idx]).unwrap(),
            ri.plaintexts[idx]
        );
        assert_eq!(s.skipped_key_count() + 1, before);
    }

    let json = json!({
        "description": "Double Ratchet transcript continuing handshake.json case \
            `with_one_time_prekey` (message 0 is that case's first message). KDF_RK(rk, dh) = \
            HKDF-SHA256(salt = rk, IKM = dh, info = \"Sealpost_Ratchet_v1\", L = 64) -> (rk', ck); \
            KDF_CK(ck): mk = HMAC-SHA256(ck, 0x01), ck' = HMAC-SHA256(ck, 0x02), nk = \
            HMAC-SHA256(ck, 0x03). Each message is \
            ChaCha20-Poly1305 with key mk, nonce = HMAC-SHA256(nk, header_fields || \
            plaintext)[0..12] where nk = HMAC-SHA256(ck, 0x03) and header_fields = ratchet public \
            key || PN u32 BE || N u32 BE, AD = session AD || 54-byte header (0x02, 0x01, \
            header_fields, nonce); a ratchet message is header || ciphertext || tag. Each derived \
            value `x` has an `x_kdf` entry naming its derivation. Alice's messages are sent as PreKeyMessages until she has decrypted \
            a reply. `events` is the order in which messages are sent and delivered; delivery is \
            out of order (messages 2, 4, 7 and 10 overtake earlier ones; 1, 3, 5 and 9 are then \
            decrypted with stored skipped message keys, 9 from a receiving chain the recipient had \
            already left) and message 6 is never delivered. rng_draws are the ratchet private keys \
            the receiving session drew from its RNG (one per DH ratchet step). state_before / \
            state_after summarize the acting party's ratchet state. Bytes are hex.",
        "handshake_case": hs.name,
        "session_ad": hx(&r.ad),
        "config": { "max_skip": SPEC_MAX_SKIP, "max_skipped_keys": SPEC_MAX_SKIPPED_KEYS },
        "initial_state": initial,
        "messages": messages,
        "events": events,
        "never_delivered": delivered
            .iter()
            .enumerate()
            .filter(|(_, d)| d.is_none())
            .map(|(i, _)| i)
            .collect::<Vec<_>>(),
    });
    Transcript {
        json,
        snapshots,
        wire,
        draws: all_draws,
    }
}

fn transcript() -> (Vec<HsInputs>, RatchetInputs, Transcript) {
    let hs = hs_inputs();
    let ri = ratchet_inputs();
    let t = build_ratchet(&hs[0], &ri);
    (hs, ri, t)
}

#[test]
fn ratchet_vectors() {
    let (_, ri, t) = transcript();
    assert!(ri.plaintexts.len() >= 12);
    write_or_check("ratchet.json", &t.json);
}

// ---------------------------------------------------------------------------------------
// Pickles.
// ---------------------------------------------------------------------------------------

struct PickleCase {
    name: String,
    party: String,
    after_step: usize,
    key: [u8; 32],
    salt: [u8; 32],
}

fn pickle_cases() -> Vec<PickleCase> {
    if write_mode() {
        return [
            ("alice_awaiting_reply", "alice", 2),
            ("bob_with_skipped_keys", "bob", 25),
        ]
        .iter()
        .map(|(name, party, after_step)| PickleCase {
            name: (*name).into(),
            party: (*party).into(),
            after_step: *after_step,
            key: seed32(&format!("pickle/{name}/key")),
            salt: seed32(&format!("pickle/{name}/salt")),
        })
        .collect();
    }
    let file = load("pickle.json");
    field(&file, "cases")
        .as_array()
        .unwrap()
        .iter()
        .map(|c| PickleCase {
            name: str_at(c, "name").into(),
            party: str_at(c, "party").into(),
            after_step: usize::try_from(u64_at(c, "after_step")).unwrap(),
            key: arr(c, "pickle_key"),
            salt: arr(c, "salt"),
        })
        .collect()
}

fn build_pickle(case: &PickleCase, ri: &RatchetInputs, t: &Transcript) -> Value {
    let snap = &t.snapshots[case.after_step];
    let (session, model) = match case.party.as_str() {
        "alice" => (restore(&snap.alice), &snap.ref_alice),
        "bob" => (
            restore(snap.bob.as_ref().expect("Bob has no session yet")),
            snap.ref_bob.as_ref().unwrap(),
        ),
        other => panic!("unknown party {other}"),
    };
    let state = state_of(&session);
    assert_eq!(state, model.encode_state(), "{}: state encoding", case.name);

    // Reference pickle.
    let mut okm = [0u8; 44];
    kdf::hkdf_sha256(&case.salt, &case.key, SPEC_PICKLE_INFO, &mut okm).unwrap();
    let aead_key: [u8; 32] = okm[..32].try_into().unwrap();
    let aead_nonce: [u8; 12] = okm[32..].try_into().unwrap();
    let mut aead_ad = SPEC_PICKLE_INFO.to_vec();
    aead_ad.push(0x01);
    let mut ref_pickle = vec![0x01];
    ref_pickle.extend_from_slice(&case.salt);
    ref_pickle.extend_from_slice(&aead::seal(&aead_key, &aead_nonce, &aead_ad, &state));

    let key = PickleKey::new(case.key);
    let pickle = hazmat::pickle_with_salt(&session, &key, &case.salt);
    assert_eq!(
        hex::encode(&pickle),
        hex::encode(&ref_pickle),
        "{}: pickle",
        case.name
    );
    let mut rng = TestRng::fifo(vec![case.salt.to_vec()]);
    assert_eq!(
        session.pickle(&mut rng, &key),
        pickle,
        "pickle() draws the salt"
    );
    rng.assert_used_up("Session::pickle");

    // Wrong key and tampering are rejected.
    assert!(Session::unpickle(&pickle, &PickleKey::new([0x55; 32])).is_err());
    for pos in [0, 1, 40, pickle.len() - 1] {
        let mut bad = pickle.clone();
        bad[pos] ^= 0x01;
        assert!(
            Session::unpickle(&bad, &key).is_err(),
            "tampered byte {pos}"
        );
    }

    let mut restored = Session::unpickle(&pickle, &key).unwrap();
    assert_eq!(state_of(&restored), state);

    // The restored session decrypts the party's next message of the transcript.
    let (next_step, next) = ri
        .events
        .iter()
        .enumerate()
        .skip(case.after_step + 1)
        .find(|(_, e)| e.party == case.party)
        .expect("no later event for this party");
    assert_eq!(
        next.action, "deliver",
        "{}: the next event must be a delivery",
        case.name
    );
    let draws = t.draws[next_step].clone();
    let mut rng = TestRng::fifo(draws.clone());
    let plaintext = restored
        .decrypt_bytes(&mut rng, &t.wire[next.message])
        .unwrap();
    rng.assert_used_up("decrypt after unpickle");
    assert_eq!(plaintext, ri.plaintexts[next.message]);
    let later = &t.snapshots[next_step];
    let live = if case.party == "alice" {
        &later.alice
    } else {
        later.bob.as_ref().unwrap()
    };
    assert_eq!(
        &state_of(&restored),
        live,
        "{}: the restored session diverged from the live one",
        case.name
    );

    json!({
        "name": case.name,
        "party": case.party,
        "after_step": case.after_step,
        "pickle_key": hx(&case.key),
        "salt": hx(&case.salt),
        "aead_key": hx(&aead_key),
        "aead_nonce": hx(&aead_nonce),
        "aead_ad": hx(&aead_ad),
        "state": hx(&state),
        "pickle": hx(&pickle),
        "next_message": {
            "step": next_step,
            "message": next.message,
            "encoded_message": hx(&t.wire[next.message]),
            "rng_draws": draws.iter().map(|d| hx(d)).collect::<Vec<_>>(),
            "plaintext": hx(&plaintext),
        },
    })
}

#[test]
fn pickle_vectors() {
    let (_, ri, t) = transcript();
    let cases: Vec<Value> = pickle_cases()
        .iter()
        .map(|c| build_pickle(c, &ri, &t))
        .collect();
    let file = json!({
        "description": "Encrypted session pickles of sessions from ratchet.json, taken after event \
            `after_step` of its transcript. pickle = 0x01 || salt(32) || ChaCha20-Poly1305(k, n, \
            AD = \"Sealpost_Pickle_v1\" || 0x01, state) with k(32) || n(12) = HKDF-SHA256(salt, \
            IKM = pickle_key, info = \"Sealpost_Pickle_v1\", L = 44); `state` is \
            Session::to_state_bytes. Unpickling must give back exactly `state`, and the restored \
            session must decrypt next_message (the party's next event in the transcript), drawing \
            next_message.rng_draws, to next_message.plaintext. `state` is the version-2 state \
            encoding (spec/session.md, \"Session state encoding\"). pickle_v1.json holds \
            version-1 pickles that must keep loading (as legacy sessions). Bytes are hex.",
        "cases": cases,
    });
    write_or_check("pickle.json", &file);
}

/// Version-1 pickles (written before session protocol version 2) keep loading, as legacy
/// sessions: their state re-encodes to exactly the recorded version-1 bytes, they refuse to
/// encrypt with a typed error, and the version-1 message recorded with them no longer
/// decodes. This file is never rewritten.
#[test]
fn pickle_v1_vectors_still_load_as_legacy_sessions() {
    let file = load("pickle_v1.json");
    let cases = field(&file, "cases").as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for c in cases {
        let name = str_at(c, "name");
        let key = PickleKey::new(arr(c, "pickle_key"));
        let state = bytes_at(c, "state");
        assert_eq!(state[0], 0x01, "{name}: a version-1 state");
        let mut session = Session::unpickle(&bytes_at(c, "pickle"), &key)
            .unwrap_or_else(|e| panic!("{name}: version-1 pickle does not load: {e}"));
        assert!(session.is_legacy(), "{name}");
        assert_eq!(session.remote_address(), None);
        assert_eq!(state_of(&session), state, "{name}: legacy state re-encodes");
        assert_eq!(
            hazmat::from_state_bytes(&state).map(|s| s.is_legacy()),
            Ok(true)
        );
        let before = state_of(&session);
        assert_eq!(session.encrypt(b"x"), Err(EncryptError::LegacySession));
        let mut rng = TestRng::fifo(Vec::new());
        assert_eq!(
            session.decrypt_bytes(&mut rng, &bytes_at(c, "next_message.encoded_message")),
            Err(DecryptError::Decode(DecodeError::UnsupportedVersion(1)))
        );
        assert_eq!(
            state_of(&session),
            before,
            "{name}: a legacy session changed"
        );
        // The identities of the version-1 session are still there for the client.
        assert_ne!(session.local_identity(), session.remote_identity());
    }
}

// ---------------------------------------------------------------------------------------
// Safety numbers.
// ---------------------------------------------------------------------------------------

fn ref_fingerprint_half(identity: &[u8; 64], account: &str) -> [u8; 32] {
    ref_half(0, identity, account)
}

/// The fingerprint half of spec/session.md 10.1 with any version and key (version 1: an
/// account key, 10.6).
fn ref_half(version: u16, identity: &[u8], account: &str) -> [u8; 32] {
    let mut h = Sha512::new();
    h.update(version.to_be_bytes());
    h.update(identity);
    h.update([u8::try_from(account.len()).unwrap()]);
    h.update(account.as_bytes());
    let mut digest = h.finalize();
    for _ in 0..5200 {
        let mut h = Sha512::new();
        h.update(digest);
        h.update(identity);
        digest = h.finalize();
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest[..32]);
    out
}

fn ref_digits(half: &[u8; 32]) -> String {
    (0..6)
        .map(|i| {
            let v = half[i * 5..i * 5 + 5]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", v % 100_000)
        })
        .collect()
}

#[test]
fn safety_number_vectors() {
    let (a_seed, a_dh, a_acct, b_seed, b_dh, b_acct) = if write_mode() {
        (
            seed32("alice/identity-signing"),
            seed32("alice/identity-dh"),
            "+15551230001".to_string(),
            seed32("bob/identity-signing"),
            seed32("bob/identity-dh"),
            "+15551230002".to_string(),
        )
    } else {
        let f = load("safety_number.json");
        (
            arr(&f, "alice.identity_signing_seed"),
            arr(&f, "alice.identity_dh_secret"),
            str_at(&f, "alice.account").to_string(),
            arr(&f, "bob.identity_signing_seed"),
            arr(&f, "bob.identity_dh_secret"),
            str_at(&f, "bob.account").to_string(),
        )
    };
    let a_id = identity_bytes(&a_seed, &a_dh);
    let b_id = identity_bytes(&b_seed, &b_dh);
    let a_half = ref_fingerprint_half(&a_id, &a_acct);
    let b_half = ref_fingerprint_half(&b_id, &b_acct);
    let (a_digits, b_digits) = (ref_digits(&a_half), ref_digits(&b_half));
    let number = if a_digits <= b_digits {
        format!("{a_digits}{b_digits}")
    } else {
        format!("{b_digits}{a_digits}")
    };
    let groups: Vec<String> = (0..12)
        .map(|i| number[i * 5..i * 5 + 5].to_string())
        .collect();
    let qr = |local: &[u8; 32], remote: &[u8; 32]| {
        let mut q = vec![0x01];
        q.extend_from_slice(local);
        q.extend_from_slice(remote);
        q
    };
    let a_qr = qr(&a_half, &b_half);
    let b_qr = qr(&b_half, &a_half);

    // The API.
    let alice = IdentityKeyPair::from_secret_bytes(&a_seed, a_dh).public();
    let bob = IdentityKeyPair::from_secret_bytes(&b_seed, b_dh).public();
    assert_eq!(alice.to_bytes(), a_id);
    assert_eq!(bob.to_bytes(), b_id);
    let a_account = AccountId::new(a_acct.clone()).unwrap();
    let b_account = AccountId::new(b_acct.clone()).unwrap();
    assert_eq!(fingerprint::fingerprint_half(&alice, &a_account), a_half);
    assert_eq!(fingerprint::fingerprint_half(&bob, &b_account), b_half);
    assert_eq!(fingerprint::digits(&a_half), a_digits);
    assert_eq!(fingerprint::digits(&b_half), b_digits);
    let at_alice = SafetyNumber::new(&alice, &a_account, &bob, &b_account);
    let at_bob = SafetyNumber::new(&bob, &b_account, &alice, &a_account);
    assert_eq!(at_alice.digits(), number);
    assert_eq!(at_bob.digits(), number);
    assert_eq!(at_alice.display_groups(), groups);
    assert_eq!(at_alice.qr_payload().to_vec(), a_qr);
    assert_eq!(at_bob.qr_payload().to_vec(), b_qr);
    at_alice.verify_scanned(&b_qr).unwrap();
    at_bob.verify_scanned(&a_qr).unwrap();
    assert!(
        at_alice.verify_scanned(&a_qr).is_err(),
        "own payload accepted"
    );
    let other = SafetyNumber::new(
        &alice,
        &a_account,
        &bob,
        &AccountId::new("+15551230003").unwrap(),
    );
    assert_ne!(
        other.digits(),
        number,
        "the account id must change the number"
    );

    // Version 1: over account keys (spec/session.md 10.6, spec/devices.md 8.4).
    let (a_ak_seed, b_ak_seed) = if write_mode() {
        (seed32("alice/account-key"), seed32("bob/account-key"))
    } else {
        let f = load("safety_number.json");
        (
            arr(&f, "account_keys.alice.account_key_seed"),
            arr(&f, "account_keys.bob.account_key_seed"),
        )
    };
    let a_ak = SigningKey::from_seed(&a_ak_seed).verifying_key().to_bytes();
    let b_ak = SigningKey::from_seed(&b_ak_seed).verifying_key().to_bytes();
    let a_ak_half = ref_half(1, &a_ak, &a_acct);
    let b_ak_half = ref_half(1, &b_ak, &b_acct);
    let (a_ak_digits, b_ak_digits) = (ref_digits(&a_ak_half), ref_digits(&b_ak_half));
    let ak_number = if a_ak_digits <= b_ak_digits {
        format!("{a_ak_digits}{b_ak_digits}")
    } else {
        format!("{b_ak_digits}{a_ak_digits}")
    };
    assert_eq!(
        fingerprint::account_key_fingerprint_half(&a_ak, &a_account),
        a_ak_half
    );
    let ak_at_alice = SafetyNumber::for_account_keys(&a_ak, &a_account, &b_ak, &b_account);
    let ak_at_bob = SafetyNumber::for_account_keys(&b_ak, &b_account, &a_ak, &a_account);
    assert_eq!(ak_at_alice.digits(), ak_number);
    assert_eq!(ak_at_bob.digits(), ak_number);
    assert_ne!(ak_number, number, "the versions must give different numbers");
    ak_at_alice
        .verify_scanned(&ak_at_bob.qr_payload())
        .unwrap();
    let ak_party = |seed: &[u8; 32], ak: &[u8; 32], acct: &str, half: &[u8; 32], digits: &str| {
        json!({
            "account": acct,
            "account_key_seed": hx(seed),
            "account_key": hx(ak),
            "fingerprint_half": hx(half),
            "digits": digits,
        })
    };

    let party = |seed: &[u8; 32], dh: &[u8; 32], acct: &str, half: &[u8; 32], digits: &str| {
        let mut v = identity_json(seed, dh);
        v["account"] = json!(acct);
        v["fingerprint_half"] = hx(half);
        v["digits"] = json!(digits);
        v
    };
    let file = json!({
        "description": "Safety numbers. Per side: H_0 = SHA-512(version u16 BE = 0 || identity(64) \
            || len(account) u8 || account UTF-8), H_i = SHA-512(H_(i-1) || identity) for i = \
            1..5200, half = first 32 bytes of H_5200; its 30 digits are six 5-byte big-endian \
            chunks, each mod 100000, zero-padded to 5 digits. The 60-digit number is the two \
            30-digit halves with the numerically smaller first (the same on both sides). The QR \
            payload a device shows is 0x01 || own half || peer half. Bytes are hex.",
        "iterations": 5200,
        "version": 0,
        "alice": party(&a_seed, &a_dh, &a_acct, &a_half, &a_digits),
        "bob": party(&b_seed, &b_dh, &b_acct, &b_half, &b_digits),
        "safety_number": number,
        "display_groups": groups,
        "qr_payload_alice": hx(&a_qr),
        "qr_payload_bob": hx(&b_qr),
        "account_keys": {
            "description": "Fingerprint version 1 (spec/session.md 10.6): the same derivation \
                with version u16 BE = 1 and the 32-byte Ed25519 account key in place of the \
                identity, for accounts with signed device lists.",
            "version": 1,
            "alice": ak_party(&a_ak_seed, &a_ak, &a_acct, &a_ak_half, &a_ak_digits),
            "bob": ak_party(&b_ak_seed, &b_ak, &b_acct, &b_ak_half, &b_ak_digits),
            "safety_number": ak_number,
            "qr_payload_alice": hx(&ak_at_alice.qr_payload()),
        },
    });
    write_or_check("safety_number.json", &file);
}

/// The worked examples in spec/session.md sections 3.1, 6.3 and 6.4, recomputed with the
/// reference model's functions.
#[test]
fn spec_examples_hold() {
    let mut ikm = vec![0xFF; 32];
    for b in 1u8..=5 {
        ikm.extend_from_slice(&[b; 32]);
    }
    let sk = |ikm: &[u8], ek: &[u8; 32]| {
        let mut info = SPEC_HANDSHAKE_INFO.to_vec();
        info.extend_from_slice(ek);
        let mut out = [0u8; 32];
        kdf::hkdf_sha256(&[0u8; 32], ikm, &info, &mut out).unwrap();
        hex::encode(out)
    };
    assert_eq!(
        sk(&ikm, &[6; 32]),
        "1b72a74fd3b19d6adc0c53e6721bd7e7670b5627d4cd4dab30fa30dc6dcefe6a"
    );
    let mut high = [6u8; 32];
    high[31] = 0x86;
    assert_eq!(
        sk(&ikm, &high),
        "c686820ebf0a82a0991055c64c97ee5760f79fe7cb71280fdecade1cd9a94884"
    );
    let mut no_dh4 = ikm[..128].to_vec();
    no_dh4.extend_from_slice(&[5; 32]);
    assert_eq!(
        sk(&no_dh4, &[6; 32]),
        "143f18df38d4eb34b33cab0fc784b082f71a770a928e289006830a8da669bb05"
    );
    let ck: [u8; 32] = core::array::from_fn(|i| i as u8);
    let (mk, next, nk) = kdf_ck(&ck);
    assert_eq!(
        hex::encode(mk),
        "9b4c8120a4823a95f47cde17a244f4507244ee6e3957d1fab9fa29b44d3829b7"
    );
    assert_eq!(
        hex::encode(next),
        "4304c22c84a53755ab08ead8d97a8d429be5efa480682d7ad1da27f73e1fbe1d"
    );
    assert_eq!(
        hex::encode(nk),
        "2a24d008789d3c74daf5e02636c675df8f09ec5e740c1bdf6305f9261f7b1c32"
    );
    let mut ad = hex::decode(
        "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c\
         ce8d3ad1ccb633ec7b70c17814a5c76ecd029685050d344745ba05870e587d59\
         ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1\
         ac01b2209e86354fb853237b5de0f4fab13c7fcbf433a61c019369617fecf10b",
    )
    .unwrap();
    ad.extend_from_slice(&encode_address("+15551230001", 1));
    ad.extend_from_slice(&encode_address("+15551230002", 1));
    assert_eq!(ad.len(), 162);
    let fields = header_fields(&ck, 0, 0);
    let nonce = siv(&nk, &fields, b"hi");
    assert_eq!(hex::encode(nonce), "d0ca873cd24ed2b04a17ac96");
    let header = encode_header(&fields, &nonce);
    ad.extend_from_slice(&header);
    let ct = aead::seal(&mk, &nonce, &ad, b"hi");
    let mut msg = header.to_vec();
    msg.extend_from_slice(&ct);
    assert_eq!(
        hex::encode(msg),
        "0201000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f0000000000000000\
         d0ca873cd24ed2b04a17ac96\
         95e3ce128d5437a503450c065e25d226a67e"
    );
}
