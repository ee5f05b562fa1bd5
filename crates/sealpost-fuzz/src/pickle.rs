//! `unpickle`: session state and pickle decoding.

use crate::fixture::{fixture, pickle_key, wrong_pickle_key};
use crate::input::rng_from;
use rand::RngExt;
use sealpost_session::hazmat;
use sealpost_session::{EncryptError, PICKLE_SALT_LEN, Session, SessionMessage};

/// Uses a restored session: it encrypts (or reports an exhausted or missing sending chain)
/// and decrypting the fixture's genuine messages never panics and, on failure, changes
/// nothing. This reaches the ratchet with states no honest run produces.
fn exercise(session: &Session, data: &[u8]) {
    let mut rng = rng_from(b"unpickle/exercise", data);
    let mut s = crate::fixture::dup(session);
    match s.encrypt(b"probe") {
        Ok(msg) => {
            assert_eq!(
                matches!(msg, SessionMessage::PreKey(_)),
                session.awaiting_reply()
            );
            let bytes = msg.encode();
            assert_eq!(SessionMessage::decode(&bytes).as_ref(), Ok(&msg));
        }
        Err(EncryptError::CounterExhausted | EncryptError::NoSendingChain) => {}
        // Version-1 state loads as a legacy session, which never encrypts.
        Err(EncryptError::LegacySession) => assert!(session.is_legacy()),
        Err(e) => panic!("encrypt failed: {e:?}"),
    }
    let f = fixture();
    for g in f.to_a.iter().chain(&f.to_b).chain([&f.m0]) {
        let mut s = crate::fixture::dup(session);
        let before = hazmat::to_state_bytes(&s);
        if let Err(e) = s.decrypt_bytes(&mut rng, &g.bytes) {
            assert_eq!(
                hazmat::to_state_bytes(&s),
                before,
                "failed decrypt ({e:?}) changed state"
            );
        }
    }
}

/// `Session::unpickle` (under the fixture key) and `Session::from_state_bytes` on arbitrary
/// bytes: never panic; an accepted pickle does not open under another key and re-pickles
/// to the same state; an accepted state encoding is canonical (re-encodes to the input).
pub fn unpickle(data: &[u8]) {
    if let Ok(s) = Session::unpickle(data, &pickle_key()) {
        assert!(
            Session::unpickle(data, &wrong_pickle_key()).is_err(),
            "a pickle opened under two keys"
        );
        let state = hazmat::to_state_bytes(&s);
        let salt: [u8; PICKLE_SALT_LEN] = rng_from(b"unpickle/salt", data).random();
        let again = hazmat::pickle_with_salt(&s, &pickle_key(), &salt);
        let restored = Session::unpickle(&again, &pickle_key()).expect("re-pickled state opens");
        assert_eq!(
            hazmat::to_state_bytes(&restored),
            state,
            "pickle round trip"
        );
        exercise(&s, data);
    }
    if let Ok(s) = hazmat::from_state_bytes(data) {
        let state = hazmat::to_state_bytes(&s);
        assert_eq!(&state[..], data, "accepted state encoding is not canonical");
        exercise(&s, data);
    }
}
