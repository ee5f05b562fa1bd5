//! The Double Ratchet, exactly as in Signal's specification, section 3 (no header
//! encryption), with the KDFs of spec/session.md. Decryption computes every new value
//! first and commits only after the AEAD has verified, so any failure leaves the state
//! exactly as it was.

use crate::{DecryptError, EncryptError, SessionConfig};
use sealpost_crypto::aead::{self, AEAD_NONCE_LEN};
use sealpost_crypto::kdf::{hkdf_sha256, hmac_sha256_pair};
use sealpost_crypto::x25519::{X25519Public, X25519Secret};
use sealpost_crypto::{CryptoError, CryptoRng};
use sealpost_wire::{DecodeError, RATCHET_HEADER_LEN, RatchetMessage, Reader, Writer};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// HKDF info string of KDF_RK.
pub const KDF_RK_INFO: &[u8] = b"Sealpost_Ratchet_v1";
/// Input byte of KDF_CK for the message key.
pub const MESSAGE_KEY_CONSTANT: u8 = 0x01;
/// Input byte of KDF_CK for the next chain key.
pub const CHAIN_KEY_CONSTANT: u8 = 0x02;
/// The ChaCha20-Poly1305 nonce used with every message key (each key encrypts exactly one
/// message; see spec/session.md, "Message encryption").
pub const MESSAGE_NONCE: [u8; AEAD_NONCE_LEN] = [0u8; AEAD_NONCE_LEN];
/// How many previous remote ratchet keys are remembered to classify late duplicates.
pub const MAX_PREVIOUS_RATCHET_KEYS: usize = 8;

/// A 32-byte secret (root, chain or message key). Zeroized on drop; Debug prints nothing.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub(crate) struct Key32(pub(crate) [u8; 32]);

impl fmt::Debug for Key32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key32(..)")
    }
}

/// KDF_RK(rk, dh_out) = HKDF-SHA256(salt = rk, IKM = dh_out, info = "Sealpost_Ratchet_v1",
/// L = 64) split into (new root key, chain key).
pub(crate) fn kdf_rk(rk: &Key32, dh_out: &[u8; 32]) -> (Key32, Key32) {
    let mut okm = zeroize::Zeroizing::new([0u8; 64]);
    // 64 bytes is far below HKDF's 8160-byte limit, so this cannot fail.
    let _ = hkdf_sha256(&rk.0, dh_out, KDF_RK_INFO, okm.as_mut_slice());
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    let (x, y) = okm.split_at(32);
    a.copy_from_slice(x);
    b.copy_from_slice(y);
    (Key32(a), Key32(b))
}

/// KDF_CK(ck) = (HMAC-SHA256(ck, 0x02) as next chain key, HMAC-SHA256(ck, 0x01) as message key).
pub(crate) fn kdf_ck(ck: &Key32) -> (Key32, Key32) {
    let (mk, next) = hmac_sha256_pair(&ck.0, MESSAGE_KEY_CONSTANT, CHAIN_KEY_CONSTANT);
    (Key32(*next), Key32(*mk))
}

/// Associated data of one message: the session AD followed by the encoded header.
fn message_ad(ad: &[u8], header: &[u8; RATCHET_HEADER_LEN]) -> Vec<u8> {
    let mut v = Vec::with_capacity(ad.len() + RATCHET_HEADER_LEN);
    v.extend_from_slice(ad);
    v.extend_from_slice(header);
    v
}

fn dh(
    secret: &X25519Secret,
    public: &X25519Public,
) -> Result<sealpost_crypto::x25519::SharedSecret, DecryptError> {
    secret.diffie_hellman(public).map_err(|e| match e {
        CryptoError::NonContributory => DecryptError::NonContributory,
        _ => DecryptError::Authentication,
    })
}

/// Skipped message keys, bounded in total; the oldest is evicted first.
#[derive(Clone, Default)]
pub(crate) struct SkippedKeys {
    by_order: BTreeMap<u64, ([u8; 32], u32, Key32)>,
    index: HashMap<([u8; 32], u32), u64>,
    next_seq: u64,
}

impl SkippedKeys {
    pub(crate) fn len(&self) -> usize {
        self.by_order.len()
    }

    fn get(&self, ratchet_key: &[u8; 32], n: u32) -> Option<(u64, &Key32)> {
        let seq = *self.index.get(&(*ratchet_key, n))?;
        self.by_order.get(&seq).map(|(_, _, k)| (seq, k))
    }

    fn remove(&mut self, seq: u64) {
        if let Some((rk, n, _)) = self.by_order.remove(&seq) {
            self.index.remove(&(rk, n));
        }
    }

    fn push(&mut self, ratchet_key: [u8; 32], n: u32, mk: Key32, cap: usize) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.index.insert((ratchet_key, n), seq);
        self.by_order.insert(seq, (ratchet_key, n, mk));
        while self.by_order.len() > cap {
            if let Some((_, (rk, n, _))) = self.by_order.pop_first() {
                self.index.remove(&(rk, n));
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &([u8; 32], u32, Key32)> {
        self.by_order.values()
    }
}

/// The Double Ratchet state of one side (Signal spec, section 3.2).
#[derive(Clone)]
pub(crate) struct RatchetState {
    pub(crate) dhs: X25519Secret,
    pub(crate) dhr: Option<X25519Public>,
    pub(crate) rk: Key32,
    pub(crate) cks: Option<Key32>,
    pub(crate) ckr: Option<Key32>,
    pub(crate) ns: u32,
    pub(crate) nr: u32,
    pub(crate) pn: u32,
    pub(crate) previous_dhr: Vec<X25519Public>,
    pub(crate) skipped: SkippedKeys,
}

impl fmt::Debug for RatchetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatchetState")
            .field("dhs", &self.dhs.public_key())
            .field("dhr", &self.dhr)
            .field("ns", &self.ns)
            .field("nr", &self.nr)
            .field("pn", &self.pn)
            .field("skipped", &self.skipped.len())
            .finish_non_exhaustive()
    }
}

/// Output of one encryption.
pub(crate) struct Encrypted {
    pub(crate) message: RatchetMessage,
}

/// What a successful decryption changes, applied only after the AEAD verified.
enum Commit {
    Skipped(u64),
    SameChain {
        new_skipped: Vec<(u32, Key32)>,
        ckr: Key32,
        nr: u32,
    },
    NewChain {
        old_chain_skipped: Vec<(u32, Key32)>,
        new_skipped: Vec<(u32, Key32)>,
        dhr: X25519Public,
        rk: Key32,
        ckr: Key32,
        nr: u32,
        dhs: X25519Secret,
        cks: Key32,
    },
}

impl RatchetState {
    /// RatchetInitAlice: the initiator knows the responder's signed prekey.
    pub(crate) fn init_initiator(
        sk: Key32,
        responder_ratchet_key: X25519Public,
        our_ratchet_key: X25519Secret,
    ) -> Result<Self, CryptoError> {
        let out = our_ratchet_key.diffie_hellman(&responder_ratchet_key)?;
        let (rk, cks) = kdf_rk(&sk, out.as_bytes());
        Ok(Self {
            dhs: our_ratchet_key,
            dhr: Some(responder_ratchet_key),
            rk,
            cks: Some(cks),
            ckr: None,
            ns: 0,
            nr: 0,
            pn: 0,
            previous_dhr: Vec::new(),
            skipped: SkippedKeys::default(),
        })
    }

    /// RatchetInitBob: the responder's first ratchet key pair is its signed prekey.
    pub(crate) fn init_responder(sk: Key32, signed_prekey: X25519Secret) -> Self {
        Self {
            dhs: signed_prekey,
            dhr: None,
            rk: sk,
            cks: None,
            ckr: None,
            ns: 0,
            nr: 0,
            pn: 0,
            previous_dhr: Vec::new(),
            skipped: SkippedKeys::default(),
        }
    }

    /// RatchetEncrypt.
    pub(crate) fn encrypt(
        &mut self,
        ad: &[u8],
        plaintext: &[u8],
    ) -> Result<Encrypted, EncryptError> {
        let ck = self.cks.as_ref().ok_or(EncryptError::NoSendingChain)?;
        if self.ns == u32::MAX {
            return Err(EncryptError::CounterExhausted);
        }
        let (next_ck, mk) = kdf_ck(ck);
        let ratchet_key = self.dhs.public_key().to_bytes();
        let header = RatchetMessage::encode_header(&ratchet_key, self.pn, self.ns);
        let ciphertext = aead::seal(&mk.0, &MESSAGE_NONCE, &message_ad(ad, &header), plaintext);
        let message = RatchetMessage {
            ratchet_key,
            previous_chain_length: self.pn,
            message_number: self.ns,
            ciphertext,
        };
        self.cks = Some(next_ck);
        self.ns += 1;
        Ok(Encrypted { message })
    }

    /// Derives the keys for messages `from..until` of a chain, returning them and the chain
    /// key that follows.
    fn skip(ck: &Key32, from: u32, until: u32) -> (Vec<(u32, Key32)>, Key32) {
        let mut ck = ck.clone();
        let mut keys = Vec::with_capacity(until.saturating_sub(from) as usize);
        for n in from..until {
            let (next, mk) = kdf_ck(&ck);
            keys.push((n, mk));
            ck = next;
        }
        (keys, ck)
    }

    fn check_skip(from: u32, until: u32, max_skip: u32) -> Result<(), DecryptError> {
        let skipped = u64::from(until).saturating_sub(u64::from(from));
        if skipped > u64::from(max_skip) {
            return Err(DecryptError::TooManySkipped { skipped, max_skip });
        }
        Ok(())
    }

    /// RatchetDecrypt, transactional.
    pub(crate) fn decrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        config: &SessionConfig,
        ad: &[u8],
        msg: &RatchetMessage,
    ) -> Result<Vec<u8>, DecryptError> {
        let header = msg.header();
        let full_ad = message_ad(ad, &header);
        let n = msg.message_number;
        let open = |mk: &Key32| {
            aead::open(&mk.0, &MESSAGE_NONCE, &full_ad, &msg.ciphertext)
                .map_err(|_| DecryptError::Authentication)
        };

        // TrySkippedMessageKeys.
        if let Some((seq, mk)) = self.skipped.get(&msg.ratchet_key, n) {
            let pt = open(mk)?;
            self.apply(Commit::Skipped(seq), config);
            return Ok(pt);
        }

        let their_key = X25519Public::from_bytes(msg.ratchet_key);
        if their_key == self.dhs.public_key() {
            return Err(DecryptError::Reflected);
        }

        let (commit, mk) = if Some(their_key) == self.dhr {
            // Current receiving chain.
            let ckr = self.ckr.as_ref().ok_or(DecryptError::Authentication)?;
            if n < self.nr {
                return Err(DecryptError::Duplicate { message_number: n });
            }
            Self::check_skip(self.nr, n, config.max_skip)?;
            let (new_skipped, ck) = Self::skip(ckr, self.nr, n);
            let (next, mk) = kdf_ck(&ck);
            let nr = n.checked_add(1).ok_or(DecryptError::CounterExhausted)?;
            (
                Commit::SameChain {
                    new_skipped,
                    ckr: next,
                    nr,
                },
                mk,
            )
        } else if self.previous_dhr.contains(&their_key) {
            // An old chain whose key is neither skipped nor current: already used or evicted.
            return Err(DecryptError::Duplicate { message_number: n });
        } else {
            // DHRatchet: first finish the current receiving chain up to PN.
            let old_chain_skipped = match (&self.dhr, &self.ckr) {
                (Some(_), Some(ckr)) => {
                    Self::check_skip(self.nr, msg.previous_chain_length, config.max_skip)?;
                    Self::skip(ckr, self.nr, msg.previous_chain_length).0
                }
                _ => Vec::new(),
            };
            Self::check_skip(0, n, config.max_skip)?;
            let (rk1, ckr_new) = kdf_rk(&self.rk, dh(&self.dhs, &their_key)?.as_bytes());
            let new_dhs = X25519Secret::generate(rng);
            let (rk2, cks_new) = kdf_rk(&rk1, dh(&new_dhs, &their_key)?.as_bytes());
            let (new_skipped, ck) = Self::skip(&ckr_new, 0, n);
            let (next, mk) = kdf_ck(&ck);
            let nr = n.checked_add(1).ok_or(DecryptError::CounterExhausted)?;
            (
                Commit::NewChain {
                    old_chain_skipped,
                    new_skipped,
                    dhr: their_key,
                    rk: rk2,
                    ckr: next,
                    nr,
                    dhs: new_dhs,
                    cks: cks_new,
                },
                mk,
            )
        };
        let pt = open(&mk)?;
        self.apply(commit, config);
        Ok(pt)
    }

    fn apply(&mut self, commit: Commit, config: &SessionConfig) {
        let cap = config.max_skipped_keys as usize;
        match commit {
            Commit::Skipped(seq) => self.skipped.remove(seq),
            Commit::SameChain {
                new_skipped,
                ckr,
                nr,
            } => {
                if let Some(dhr) = self.dhr {
                    for (i, mk) in new_skipped {
                        self.skipped.push(dhr.to_bytes(), i, mk, cap);
                    }
                }
                self.ckr = Some(ckr);
                self.nr = nr;
            }
            Commit::NewChain {
                old_chain_skipped,
                new_skipped,
                dhr,
                rk,
                ckr,
                nr,
                dhs,
                cks,
            } => {
                if let Some(old) = self.dhr {
                    for (i, mk) in old_chain_skipped {
                        self.skipped.push(old.to_bytes(), i, mk, cap);
                    }
                    self.previous_dhr.push(old);
                    if self.previous_dhr.len() > MAX_PREVIOUS_RATCHET_KEYS {
                        self.previous_dhr.remove(0);
                    }
                }
                for (i, mk) in new_skipped {
                    self.skipped.push(dhr.to_bytes(), i, mk, cap);
                }
                self.pn = self.ns;
                self.ns = 0;
                self.nr = nr;
                self.dhr = Some(dhr);
                self.rk = rk;
                self.ckr = Some(ckr);
                self.dhs = dhs;
                self.cks = Some(cks);
            }
        }
    }

    /// Serializes the state (spec/session.md, "Session state encoding").
    pub(crate) fn encode_into(&self, w: &mut Writer) {
        fn opt_key(w: &mut Writer, k: Option<&[u8; 32]>) {
            w.flag(k.is_some());
            w.bytes(k.unwrap_or(&[0u8; 32]));
        }
        w.bytes(self.dhs.to_bytes().as_slice());
        opt_key(w, self.dhr.as_ref().map(|k| k.as_bytes()));
        w.bytes(&self.rk.0);
        opt_key(w, self.cks.as_ref().map(|k| &k.0));
        opt_key(w, self.ckr.as_ref().map(|k| &k.0));
        w.u32(self.ns).u32(self.nr).u32(self.pn);
        w.u8(self.previous_dhr.len() as u8);
        for k in &self.previous_dhr {
            w.bytes(k.as_bytes());
        }
        w.u32(self.skipped.len() as u32);
        for (rk, n, mk) in self.skipped.iter() {
            w.bytes(rk).u32(*n).bytes(&mk.0);
        }
    }

    pub(crate) fn decode_from(
        r: &mut Reader<'_>,
        config: &SessionConfig,
    ) -> Result<Self, DecodeError> {
        fn opt_key(
            r: &mut Reader<'_>,
            what: &'static str,
        ) -> Result<Option<[u8; 32]>, DecodeError> {
            let present = r.flag(what)?;
            let k = r.array::<32>()?;
            match (present, k == [0u8; 32]) {
                (true, _) => Ok(Some(k)),
                (false, true) => Ok(None),
                (false, false) => Err(DecodeError::InvalidValue(what)),
            }
        }
        let dhs = X25519Secret::from_bytes(r.array()?);
        let dhr = opt_key(r, "dhr")?.map(X25519Public::from_bytes);
        let rk = Key32(r.array()?);
        let cks = opt_key(r, "cks")?.map(Key32);
        let ckr = opt_key(r, "ckr")?.map(Key32);
        let ns = r.u32()?;
        let nr = r.u32()?;
        let pn = r.u32()?;
        let prev = usize::from(r.u8()?);
        if prev > MAX_PREVIOUS_RATCHET_KEYS {
            return Err(DecodeError::TooLong {
                what: "previous ratchet keys",
                len: prev,
                max: MAX_PREVIOUS_RATCHET_KEYS,
            });
        }
        let mut previous_dhr = Vec::with_capacity(prev);
        for _ in 0..prev {
            previous_dhr.push(X25519Public::from_bytes(r.array()?));
        }
        let count = r.u32()? as usize;
        if count > config.max_skipped_keys as usize {
            return Err(DecodeError::TooLong {
                what: "skipped keys",
                len: count,
                max: config.max_skipped_keys as usize,
            });
        }
        let mut skipped = SkippedKeys::default();
        for _ in 0..count {
            let key: [u8; 32] = r.array()?;
            let n = r.u32()?;
            let mk = Key32(r.array()?);
            if skipped.get(&key, n).is_some() {
                return Err(DecodeError::InvalidValue("duplicate skipped key"));
            }
            skipped.push(key, n, mk, usize::MAX);
        }
        if ckr.is_some() && dhr.is_none() {
            return Err(DecodeError::InvalidValue("receiving chain"));
        }
        Ok(Self {
            dhs,
            dhr,
            rk,
            cks,
            ckr,
            ns,
            nr,
            pn,
            previous_dhr,
            skipped,
        })
    }
}
