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

mod handshake;
mod pickle;
mod ratchet;
mod safety_number;

use handshake::{HsInputs, Setup, bob_addresses, hs_inputs, identity_json, setup};
use ratchet::{MESSAGES, RatchetInputs, Transcript, restore, state_of, transcript};
