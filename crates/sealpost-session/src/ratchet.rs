//! The Double Ratchet, exactly as in Signal's specification, section 3 (no header
//! encryption), with the KDFs of spec/session.md. Decryption computes every new value
//! first and commits only after the AEAD has verified, so any failure leaves the state
//! exactly as it was.

use crate::{DecryptError, EncryptError, SessionConfig};
use sealpost_crypto::aead::{self, AEAD_NONCE_LEN};
use sealpost_crypto::kdf::{hkdf_sha256, hmac_sha256_concat_into, hmac_sha256_triple_into};
use sealpost_crypto::x25519::{X25519Public, X25519Secret};
use sealpost_crypto::{CryptoError, CryptoRng};
use sealpost_wire::{
    DecodeError, RATCHET_HEADER_FIELDS_LEN, RATCHET_HEADER_LEN, RatchetMessage, Reader, Writer,
};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// HKDF info string of KDF_RK.
pub const KDF_RK_INFO: &[u8] = b"Sealpost_Ratchet_v1";
/// Input byte of KDF_CK for the message key.
pub const MESSAGE_KEY_CONSTANT: u8 = 0x01;
/// Input byte of KDF_CK for the next chain key.
pub const CHAIN_KEY_CONSTANT: u8 = 0x02;
/// Input byte of KDF_CK for the nonce key (session protocol version 2).
pub const NONCE_KEY_CONSTANT: u8 = 0x03;
/// How many previous remote ratchet keys are remembered to classify late duplicates.
pub(crate) const MAX_PREVIOUS_RATCHET_KEYS: usize = 8;

/// A 32-byte secret (root, chain or message key). Zeroized on drop; Debug prints nothing.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Key32(pub(crate) [u8; 32]);

impl Zeroize for Key32 {
    /// A whole-array store followed by the zeroize crate's `optimization_barrier`, the
    /// pattern zeroize documents for erasing flat data: the barrier makes the zeros
    /// observable, so the store cannot be elided. The derived impl writes the 32 bytes one
    /// volatile byte store at a time, and a message drops about a dozen keys on each side
    /// (KDF_CK's outputs and the used chain key), a measurable share of a 100-byte message.
    fn zeroize(&mut self) {
        self.0 = [0u8; 32];
        zeroize::optimization_barrier(&self.0);
    }
}

impl Drop for Key32 {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for Key32 {}

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

/// The two keys one message uses: the AEAD key and the key of its synthetic nonce.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub(crate) struct MessageKeys {
    pub(crate) mk: Key32,
    pub(crate) nk: Key32,
}

impl fmt::Debug for MessageKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MessageKeys(..)")
    }
}

/// KDF_CK(ck) v2: `mk = HMAC-SHA256(ck, 0x01)`, `ck' = HMAC-SHA256(ck, 0x02)`,
/// `nk = HMAC-SHA256(ck, 0x03)`; returns `(ck', keys)`.
pub(crate) fn kdf_ck(ck: &Key32) -> (Key32, MessageKeys) {
    let mut next = Key32([0u8; 32]);
    let mut keys = MessageKeys {
        mk: Key32([0u8; 32]),
        nk: Key32([0u8; 32]),
    };
    hmac_sha256_triple_into(
        &ck.0,
        [MESSAGE_KEY_CONSTANT, CHAIN_KEY_CONSTANT, NONCE_KEY_CONSTANT],
        [&mut keys.mk.0, &mut next.0, &mut keys.nk.0],
    );
    (next, keys)
}

/// The synthetic nonce: `HMAC-SHA256(nk, header_fields || plaintext)[0..12]`.
pub(crate) fn synthetic_nonce(
    nk: &Key32,
    fields: &[u8; RATCHET_HEADER_FIELDS_LEN],
    plaintext: &[u8],
) -> [u8; AEAD_NONCE_LEN] {
    // The tag's first 12 bytes become the (public) nonce; the rest is erased like a key.
    let mut tag = Key32([0u8; 32]);
    hmac_sha256_concat_into(&nk.0, fields, plaintext, &mut tag.0);
    let mut nonce = [0u8; AEAD_NONCE_LEN];
    nonce.copy_from_slice(
        tag.0
            .get(..AEAD_NONCE_LEN)
            .unwrap_or(&[0u8; AEAD_NONCE_LEN]),
    );
    nonce
}

/// The associated data of a session's messages: the session AD (spec/session.md,
/// "Associated data") followed by the encoded header of the message at hand. The session
/// part is encoded once per session; each message only writes its 54-byte header in place,
/// so encrypting and decrypting allocate no AD.
pub(crate) struct MessageAd {
    buf: Vec<u8>,
    session_len: usize,
}

impl MessageAd {
    /// Wraps the session AD, with room for one header.
    pub(crate) fn new(mut session_ad: Vec<u8>) -> Self {
        let session_len = session_ad.len();
        session_ad.shrink_to_fit();
        session_ad.reserve_exact(RATCHET_HEADER_LEN);
        Self {
            buf: session_ad,
            session_len,
        }
    }

    /// `session AD || header`, the AEAD associated data of the message with this header.
    pub(crate) fn with_header(&mut self, header: &[u8; RATCHET_HEADER_LEN]) -> &[u8] {
        self.buf.truncate(self.session_len);
        self.buf.extend_from_slice(header);
        &self.buf
    }
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
    by_order: BTreeMap<u64, ([u8; 32], u32, MessageKeys)>,
    index: HashMap<([u8; 32], u32), u64>,
    next_seq: u64,
}

impl SkippedKeys {
    pub(crate) fn len(&self) -> usize {
        self.by_order.len()
    }

    fn get(&self, ratchet_key: &[u8; 32], n: u32) -> Option<(u64, &MessageKeys)> {
        let seq = *self.index.get(&(*ratchet_key, n))?;
        self.by_order.get(&seq).map(|(_, _, k)| (seq, k))
    }

    fn remove(&mut self, seq: u64) {
        if let Some((rk, n, _)) = self.by_order.remove(&seq) {
            self.index.remove(&(rk, n));
        }
    }

    fn push(&mut self, ratchet_key: [u8; 32], n: u32, mk: MessageKeys, cap: usize) {
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

    fn iter(&self) -> impl Iterator<Item = &([u8; 32], u32, MessageKeys)> {
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
        new_skipped: Vec<(u32, MessageKeys)>,
        ckr: Key32,
        nr: u32,
    },
    NewChain {
        old_chain_skipped: Vec<(u32, MessageKeys)>,
        new_skipped: Vec<(u32, MessageKeys)>,
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
        ad: &mut MessageAd,
        plaintext: &[u8],
    ) -> Result<Encrypted, EncryptError> {
        let ck = self.cks.as_ref().ok_or(EncryptError::NoSendingChain)?;
        if self.ns == u32::MAX {
            return Err(EncryptError::CounterExhausted);
        }
        let (next_ck, keys) = kdf_ck(ck);
        let ratchet_key = self.dhs.public_key().to_bytes();
        let fields = RatchetMessage::encode_header_fields(&ratchet_key, self.pn, self.ns);
        let nonce = synthetic_nonce(&keys.nk, &fields, plaintext);
        let header = RatchetMessage::encode_header(&fields, &nonce);
        let ciphertext = aead::seal(&keys.mk.0, &nonce, ad.with_header(&header), plaintext);
        let message = RatchetMessage {
            ratchet_key,
            previous_chain_length: self.pn,
            message_number: self.ns,
            nonce,
            ciphertext,
        };
        self.cks = Some(next_ck);
        self.ns += 1;
        Ok(Encrypted { message })
    }

    /// Derives the keys for the skipped messages `from..until` of a chain (finishing a
    /// receiving chain before a DH ratchet step).
    fn skip(ck: &Key32, from: u32, until: u32) -> Vec<(u32, MessageKeys)> {
        if from >= until {
            return Vec::new();
        }
        let (skipped, last, _) = Self::advance(ck, from, until - 1);
        let mut keys = skipped;
        keys.push((until - 1, last));
        keys
    }

    /// Advances a chain whose next message is `from` to message `n >= from`: returns the
    /// keys of the skipped messages `from..n`, the keys of message `n` and the chain key
    /// that follows it. The chain key is read in place (the usual in-order message skips
    /// nothing and copies no key).
    fn advance(ck: &Key32, from: u32, n: u32) -> (Vec<(u32, MessageKeys)>, MessageKeys, Key32) {
        let mut skipped = Vec::with_capacity(n.saturating_sub(from) as usize);
        let (mut ck, mut keys) = kdf_ck(ck);
        for i in from..n {
            let (next, following) = kdf_ck(&ck);
            skipped.push((i, std::mem::replace(&mut keys, following)));
            ck = next;
        }
        (skipped, keys, ck)
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
        ad: &mut MessageAd,
        msg: &RatchetMessage,
    ) -> Result<Vec<u8>, DecryptError> {
        let header = msg.header();
        let full_ad = ad.with_header(&header);
        let n = msg.message_number;
        let fields = msg.header_fields();
        // Open under the nonce as sent, then check that it is the synthetic nonce of what
        // was opened (constant time). Either failure is an authentication failure.
        let open = |keys: &MessageKeys| -> Result<Vec<u8>, DecryptError> {
            let mut pt = aead::open(&keys.mk.0, &msg.nonce, full_ad, &msg.ciphertext)
                .map_err(|_| DecryptError::Authentication)?;
            let expected = synthetic_nonce(&keys.nk, &fields, &pt);
            if bool::from(expected.ct_eq(&msg.nonce)) {
                Ok(pt)
            } else {
                pt.zeroize();
                Err(DecryptError::Authentication)
            }
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
            let (new_skipped, mk, next) = Self::advance(ckr, self.nr, n);
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
                    Self::skip(ckr, self.nr, msg.previous_chain_length)
                }
                _ => Vec::new(),
            };
            Self::check_skip(0, n, config.max_skip)?;
            let (rk1, ckr_new) = kdf_rk(&self.rk, dh(&self.dhs, &their_key)?.as_bytes());
            let new_dhs = X25519Secret::generate(rng);
            let (rk2, cks_new) = kdf_rk(&rk1, dh(&new_dhs, &their_key)?.as_bytes());
            let (new_skipped, mk, next) = Self::advance(&ckr_new, 0, n);
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
        w.bytes(self.dhs.to_bytes().as_slice())
            .bytes(self.dhs.public_key().as_bytes());
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
            w.bytes(rk).u32(*n).bytes(&mk.mk.0).bytes(&mk.nk.0);
        }
    }

    /// Parses the ratchet part of a state encoding of `version` 1 (spec/session.md, "Version
    /// 1 state": no stored public ratchet key, skipped entries without a nonce key) or 2.
    pub(crate) fn decode_from(
        r: &mut Reader<'_>,
        config: &SessionConfig,
        version: u8,
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
        let dhs_secret = zeroize::Zeroizing::new(r.array::<32>()?);
        let dhs = if version >= 2 {
            // The stored public key saves a scalar multiplication per load; the state is
            // authenticated by the pickle's AEAD.
            X25519Secret::from_bytes_with_public(*dhs_secret, X25519Public::from_bytes(r.array()?))
        } else {
            X25519Secret::from_bytes(*dhs_secret)
        };
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
            // A version-1 entry has no nonce key; such a (legacy) session never decrypts.
            let nk = Key32(if version >= 2 { r.array()? } else { [0u8; 32] });
            let mk = MessageKeys { mk, nk };
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

#[cfg(test)]
mod tests {
    use super::*;
    use sealpost_crypto::kdf::hmac_sha256;

    fn pair() -> (RatchetState, RatchetState) {
        let mut rng = rand::rng();
        let spk = X25519Secret::generate(&mut rng);
        let alice = RatchetState::init_initiator(
            Key32([7; 32]),
            spk.public_key(),
            X25519Secret::generate(&mut rng),
        )
        .unwrap();
        let bob = RatchetState::init_responder(Key32([7; 32]), spk);
        (alice, bob)
    }

    fn state(s: &RatchetState) -> Vec<u8> {
        let mut w = Writer::new();
        s.encode_into(&mut w);
        w.into_bytes()
    }

    /// A message that passes the AEAD (right key, AD and header) but whose nonce is not the
    /// synthetic nonce of its plaintext is refused, and the state is unchanged. Without the
    /// receiver's check it would be accepted.
    #[test]
    fn a_valid_aead_under_a_non_synthetic_nonce_is_rejected() {
        let mut rng = rand::rng();
        let (alice, mut bob) = pair();
        let mut ad = MessageAd::new(b"session ad".to_vec());
        let Some(ck) = alice.cks.as_ref() else {
            panic!("initiator has a sending chain")
        };
        let (_, keys) = kdf_ck(ck);
        let ratchet_key = alice.dhs.public_key().to_bytes();
        let fields = RatchetMessage::encode_header_fields(&ratchet_key, 0, 0);
        let plaintext = b"chosen nonce";
        let good = synthetic_nonce(&keys.nk, &fields, plaintext);
        let mut nonce = good;
        nonce[0] ^= 1;
        let header = RatchetMessage::encode_header(&fields, &nonce);
        let msg = RatchetMessage {
            ratchet_key,
            previous_chain_length: 0,
            message_number: 0,
            nonce,
            ciphertext: aead::seal(&keys.mk.0, &nonce, ad.with_header(&header), plaintext),
        };
        let before = state(&bob);
        let config = SessionConfig::default();
        assert_eq!(
            bob.decrypt(&mut rng, &config, &mut ad, &msg),
            Err(DecryptError::Authentication)
        );
        assert_eq!(state(&bob), before);
        // The same plaintext under its synthetic nonce is accepted.
        let header = RatchetMessage::encode_header(&fields, &good);
        let msg = RatchetMessage {
            nonce: good,
            ciphertext: aead::seal(&keys.mk.0, &good, ad.with_header(&header), plaintext),
            ..msg
        };
        assert_eq!(
            bob.decrypt(&mut rng, &config, &mut ad, &msg).unwrap(),
            plaintext
        );
    }

    /// The AD buffer gives `session AD || header` for each header in turn, whatever the
    /// previous message wrote into it.
    #[test]
    fn message_ad_is_the_session_ad_then_this_header() {
        let session_ad = b"identities and addresses".to_vec();
        let mut ad = MessageAd::new(session_ad.clone());
        for fill in [0x11u8, 0x22, 0x33] {
            let header = [fill; RATCHET_HEADER_LEN];
            let expected = [session_ad.as_slice(), &header].concat();
            assert_eq!(ad.with_header(&header), expected.as_slice());
        }
    }

    /// `advance` and `skip` give exactly the keys of KDF_CK applied step by step.
    #[test]
    fn advance_and_skip_follow_the_chain() {
        let start = Key32([5; 32]);
        let mut chain = vec![];
        let mut ck = start.clone();
        for _ in 0..6 {
            let (next, keys) = kdf_ck(&ck);
            chain.push((keys, next.clone()));
            ck = next;
        }
        for from in 0..3u32 {
            // `start` is the chain key of message `from` here.
            for n in from..5 {
                let (skipped, keys, next) = RatchetState::advance(&start, from, n);
                let at = |i: u32| &chain[(i - from) as usize];
                assert_eq!(keys, at(n).0);
                assert_eq!(next, at(n).1);
                assert_eq!(skipped.len(), (n - from) as usize);
                for (i, k) in &skipped {
                    assert_eq!(k, &at(*i).0);
                }
                let keys_only = RatchetState::skip(&start, from, n);
                assert_eq!(keys_only, skipped);
            }
        }
    }

    #[test]
    fn key32_zeroize_clears_every_byte() {
        let mut k = Key32([0xA5; 32]);
        k.zeroize();
        assert_eq!(k.0, [0u8; 32]);
    }

    #[test]
    fn kdf_ck_v2_uses_the_three_constants() {
        let ck = Key32([3; 32]);
        let (next, keys) = kdf_ck(&ck);
        assert_eq!(keys.mk.0, hmac_sha256(&ck.0, &[0x01]));
        assert_eq!(next.0, hmac_sha256(&ck.0, &[0x02]));
        assert_eq!(keys.nk.0, hmac_sha256(&ck.0, &[0x03]));
    }
}
