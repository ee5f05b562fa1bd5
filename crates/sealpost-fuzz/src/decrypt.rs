//! `decrypt_arbitrary`: forged, mutated and garbage messages against live sessions.

use crate::fixture::{Genuine, fixture};
use crate::input::{ByteSource, rng_from};
use rand::rngs::StdRng;
use sealpost_session::hazmat;
use sealpost_session::{DecryptError, Session, SessionMessage};
use sealpost_wire::RatchetMessage;

/// The ratchet message a session message carries (the part the ratchet authenticates).
pub(crate) fn ratchet_part(msg: &SessionMessage) -> &RatchetMessage {
    match msg {
        SessionMessage::Ratchet(m) => m,
        SessionMessage::PreKey(m) => &m.message,
    }
}

/// Whether `receiver` decrypting `received` is, by design, the same as decrypting
/// `genuine`: the ratchet messages are identical and, if `received` is a prekey message,
/// it names `receiver`'s session (same initiator identity and base key).
///
/// The rest of a prekey message (prekey ids, ML-KEM ciphertext) only matters to `respond`;
/// an established session ignores it, so changing it does not make the message a forgery.
pub(crate) fn same_content(
    received: &SessionMessage,
    genuine: &SessionMessage,
    receiver: &Session,
) -> bool {
    ratchet_part(received) == ratchet_part(genuine)
        && match received {
            SessionMessage::Ratchet(_) => true,
            SessionMessage::PreKey(p) => receiver.matches(p),
        }
}

/// Feeds `bytes` to `session`. Success is allowed only for a message with the same content
/// as one of `genuine` (and must then yield its plaintext); on any error the session's
/// state must be byte-for-byte unchanged. Returns the index of the genuine message accepted.
fn attempt(
    session: &mut Session,
    rng: &mut StdRng,
    bytes: &[u8],
    genuine: &[Genuine],
) -> Option<usize> {
    let before = hazmat::to_state_bytes(session);
    let awaiting = session.awaiting_reply();
    let decoded = SessionMessage::decode(bytes);
    match session.decrypt_bytes(rng, bytes) {
        Ok(plaintext) => {
            let msg = decoded.expect("decrypt_bytes accepted bytes that do not decode");
            let reference = hazmat::from_state_bytes(&before).expect("state round-trips");
            let idx = genuine
                .iter()
                .position(|g| {
                    let g = SessionMessage::decode(&g.bytes).expect("genuine message decodes");
                    same_content(&msg, &g, &reference)
                })
                .unwrap_or_else(|| panic!("accepted a message that no one sent: {msg:?}"));
            assert_eq!(plaintext, genuine[idx].plaintext, "wrong plaintext");
            assert!(
                !session.awaiting_reply(),
                "still awaiting a reply after decrypting one"
            );
            Some(idx)
        }
        Err(e) => {
            assert_eq!(
                decoded.is_err(),
                matches!(e, DecryptError::Decode(_)),
                "Decode error iff the bytes do not decode (got {e:?})"
            );
            assert_eq!(
                hazmat::to_state_bytes(session),
                before,
                "failed decrypt changed the state ({e:?})"
            );
            assert_eq!(session.awaiting_reply(), awaiting);
            None
        }
    }
}

/// Applies one input-chosen mutation: bit flip, byte overwrite, truncation, extension,
/// insertion, deletion, or a bit flip aimed at the header or the tag.
pub(crate) fn mutate(bytes: &mut Vec<u8>, src: &mut ByteSource<'_>) {
    let op = src.u8() % 8;
    let len = bytes.len();
    let pos = if len == 0 {
        0
    } else {
        usize::from(src.u16()) % len
    };
    match op {
        0 if len > 0 => bytes[pos] ^= 1 << (src.u8() % 8),
        1 if len > 0 => bytes[pos] = src.u8(),
        2 => bytes.truncate(usize::from(src.u16()) % (len + 1)),
        3 => {
            let n = 1 + src.below(32);
            bytes.extend_from_slice(src.take(n));
        }
        4 => bytes.insert(pos.min(len), src.u8()),
        5 if len > 0 => {
            let n = 1 + src.below(16);
            bytes.drain(pos..(pos + n).min(len));
        }
        // The first 42 bytes are the ratchet header of a ratchet message.
        6 if len > 0 => bytes[pos % len.min(42)] ^= 1 << (src.u8() % 8),
        // The last 16 bytes are the AEAD tag.
        7 if len > 0 => bytes[len - 1 - pos % len.min(16)] ^= 1 << (src.u8() % 8),
        _ => {}
    }
}

/// Arbitrary bytes and mutated genuine messages against both sides of a live session.
///
/// 1. The input itself is decrypted by Alice and by Bob: it must fail (unless it is one of
///    the genuine in-flight messages, possibly with a different prekey wrapper) and leave
///    the state unchanged.
/// 2. The input, read as choices, picks a genuine undelivered message and 1..=4 mutations.
///    The mutated message must fail without a state change unless its content is unchanged,
///    in which case it decrypts to the right plaintext and the original becomes a duplicate.
/// 3. In every case the genuine message is then handled correctly.
pub fn decrypt_arbitrary(data: &[u8]) {
    decrypt_arbitrary_outcome(data);
}

/// What the mutation step of [`decrypt_arbitrary`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutated {
    /// The mutations cancelled out: the genuine message was delivered.
    Unchanged,
    /// The bytes changed but not the content (only a prekey wrapper's unauthenticated
    /// fields, or the wrapper removed): accepted as the genuine message.
    SameContent,
    /// Rejected, state unchanged.
    Rejected,
}

/// What [`decrypt_arbitrary`] observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecryptOutcome {
    /// The raw input was accepted by one side (it is a genuine message).
    pub raw_accepted: bool,
    pub mutated: Mutated,
}

/// [`decrypt_arbitrary`], returning what happened.
pub fn decrypt_arbitrary_outcome(data: &[u8]) -> DecryptOutcome {
    let f = fixture();
    let mut rng = rng_from(b"decrypt_arbitrary", data);

    let mut raw_accepted = false;
    for (session, genuine) in [(&f.a1, &f.to_a), (&f.b1, &f.to_b)] {
        let mut s = crate::fixture::dup(session);
        raw_accepted |= attempt(&mut s, &mut rng, data, genuine).is_some();
    }

    let mut src = ByteSource::new(data);
    let (session, genuine) = if src.u8() & 1 == 0 {
        (&f.a1, &f.to_a)
    } else {
        (&f.b1, &f.to_b)
    };
    let which = src.below(genuine.len());
    let g = &genuine[which];
    let mut bytes = g.bytes.clone();
    for _ in 0..1 + src.below(4) {
        mutate(&mut bytes, &mut src);
    }

    let mut s = crate::fixture::dup(session);
    let accepted = attempt(&mut s, &mut rng, &bytes, genuine);
    if bytes == g.bytes {
        assert_eq!(
            accepted,
            Some(which),
            "an unmodified genuine message was rejected"
        );
    }
    let before = hazmat::to_state_bytes(&s);
    match (accepted == Some(which), s.decrypt_bytes(&mut rng, &g.bytes)) {
        (false, Ok(pt)) => assert_eq!(pt, g.plaintext),
        (false, Err(e)) => panic!("genuine message {which} rejected: {e:?}"),
        (true, Ok(_)) => panic!("genuine message {which} accepted twice"),
        (true, Err(e)) => {
            assert!(
                matches!(e, DecryptError::Duplicate { .. }),
                "replay gave {e:?}"
            );
            assert_eq!(hazmat::to_state_bytes(&s), before);
        }
    }
    DecryptOutcome {
        raw_accepted,
        mutated: match accepted {
            Some(_) if bytes == g.bytes => Mutated::Unchanged,
            Some(_) => Mutated::SameContent,
            None => Mutated::Rejected,
        },
    }
}
