//! `handshake_respond`: Bob's side of the handshake on arbitrary prekey messages.

use crate::fixture::{bob_store, config, fixture, from_alice};
use crate::input::rng_from;
use sealpost_session::{
    HandshakeError, IdentityKey, PreKeyMessage, PreKeyStore, Role, SessionMessage, respond,
};
use std::sync::Mutex;

/// Bob's store, rebuilt (deterministically) whenever a handshake consumed keys from it, so
/// every input meets the same store.
static STORE: Mutex<Option<PreKeyStore>> = Mutex::new(None);

/// What `respond` must report for a message that cannot succeed against the fresh store,
/// checked in the documented order; `None` if it may succeed (or fail in the handshake's
/// cryptography: small-order keys or a first message that does not authenticate).
fn expected_lookup_error(msg: &PreKeyMessage) -> Option<HandshakeError> {
    let f = fixture();
    let Ok(remote) = IdentityKey::from_wire(&msg.identity) else {
        return Some(HandshakeError::InvalidIdentityKey);
    };
    if remote == f.bob.public() {
        return Some(HandshakeError::OwnIdentity);
    }
    if msg.signed_prekey_id != f.published.signed.id {
        return Some(HandshakeError::UnknownSignedPreKey(msg.signed_prekey_id));
    }
    if let Some(id) = msg.one_time_prekey_id
        && !f.published.one_time.iter().any(|(k, _)| *k == id)
    {
        return Some(HandshakeError::UnknownOneTimePreKey(id));
    }
    if !f.published.kem.iter().any(|k| k.id == msg.kem_prekey_id) {
        return Some(HandshakeError::UnknownKemPreKey(msg.kem_prekey_id));
    }
    None
}

/// Decodes the input as a `PreKeyMessage` (canonically) and hands it to `respond` with
/// Bob's fixed store:
///
/// - no panic; errors are the documented ones (unknown ids, own identity, …);
/// - on error the store's one-time and KEM prekey counts are unchanged;
/// - on success the session belongs to that message, exactly the one-time keys named are
///   consumed, and replaying the message fails with `OneTimePreKeyReused` /
///   `KemPreKeyReused` when it used one-time keys (and succeeds again otherwise, as with
///   X3DH without a one-time prekey).
pub fn handshake_respond(data: &[u8]) {
    let Ok(msg) = PreKeyMessage::decode(data) else {
        return;
    };
    assert_eq!(
        msg.encode(),
        data,
        "prekey message does not re-encode to its input"
    );
    let f = fixture();
    let mut guard = STORE.lock().unwrap_or_else(|poisoned| {
        let mut g = poisoned.into_inner();
        *g = None;
        g
    });
    let store = guard.get_or_insert_with(|| bob_store(&f.bob).0);
    let counts = |s: &PreKeyStore| (s.one_time_count(), s.kem_count());
    let before = counts(store);
    let mut rng = rng_from(b"handshake_respond", data);

    let expected = expected_lookup_error(&msg);
    // The relay claims Alice's address as the sender (seeds are built that way).
    match respond(&mut rng, &f.bob, &from_alice(), store, &msg, config()) {
        Err(e) => {
            assert_eq!(
                counts(store),
                before,
                "failed handshake ({e:?}) changed the store"
            );
            match (&expected, &e) {
                (Some(x), e) => assert_eq!(x, e),
                (None, HandshakeError::NonContributory | HandshakeError::FirstMessage(_)) => {}
                (None, e) => panic!("unexpected handshake error {e:?}"),
            }
        }
        Ok((mut session, plaintext)) => {
            assert_eq!(expected, None, "respond succeeded where it had to fail");
            assert_eq!(session.role(), Role::Responder);
            assert!(session.matches(&msg));
            assert!(!session.awaiting_reply());
            assert_eq!(session.remote_identity().to_wire(), msg.identity);
            assert_eq!(*session.local_identity(), f.bob.public());
            let used_opk = msg.one_time_prekey_id.is_some();
            let used_kem = f.published.kem_is_one_time(msg.kem_prekey_id);
            let after = (
                before.0 - usize::from(used_opk),
                before.1 - usize::from(used_kem),
            );
            assert_eq!(counts(store), after, "wrong keys consumed");
            let reply = session.encrypt(b"reply").expect("responder encrypts");
            assert!(matches!(reply, SessionMessage::Ratchet(_)));

            let replay = respond(&mut rng, &f.bob, &from_alice(), store, &msg, config());
            assert_eq!(counts(store), after, "replayed handshake changed the store");
            match (used_opk, used_kem, replay) {
                (true, _, Err(HandshakeError::OneTimePreKeyReused(id))) => {
                    assert_eq!(Some(id), msg.one_time_prekey_id);
                }
                (false, true, Err(HandshakeError::KemPreKeyReused(id))) => {
                    assert_eq!(id, msg.kem_prekey_id);
                }
                (false, false, Ok((_, again))) => assert_eq!(again, plaintext),
                (o, k, r) => panic!("replay (one-time {o}, one-time KEM {k}) gave {r:?}"),
            }
            // Keys were consumed: the next input gets a fresh store.
            *guard = None;
        }
    }
}
