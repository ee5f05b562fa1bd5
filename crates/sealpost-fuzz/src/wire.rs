//! Decoder targets: every decoder is total and canonical.

use crate::fixture::{config, fixture, safety};
use crate::input::rng_from;
use sealpost_session::fingerprint::FingerprintError;
use sealpost_session::{HandshakeError, SessionMessage, VerifiedBundle, initiate};
use sealpost_wire::{
    AccountId, DecodeError, DeviceAddress, MAX_ACCOUNT_ID_LEN, PreKeyBundle, PreKeyMessage,
    RATCHET_HEADER_LEN, RatchetMessage, Reader, Writer,
};

/// `SessionMessage::decode` on arbitrary bytes.
///
/// - never panics, and `Debug` of the result never panics;
/// - an `Ok` value re-encodes to exactly the input (the encoding is canonical);
/// - the type-specific decoders agree with the dispatching one.
pub fn decode_session_message(data: &[u8]) {
    let decoded = SessionMessage::decode(data);
    let ratchet = RatchetMessage::decode(data);
    let prekey = PreKeyMessage::decode(data);
    let _ = format!("{decoded:?}");
    match &decoded {
        Ok(msg) => {
            assert_eq!(
                msg.encode(),
                data,
                "Ok value does not re-encode to its input"
            );
            match msg {
                SessionMessage::Ratchet(m) => {
                    assert_eq!(ratchet.as_ref(), Ok(m));
                    assert!(prekey.is_err());
                    assert_eq!(&m.header()[..], &data[..RATCHET_HEADER_LEN]);
                    assert_eq!(&m.ciphertext[..], &data[RATCHET_HEADER_LEN..]);
                }
                SessionMessage::PreKey(m) => {
                    assert_eq!(prekey.as_ref(), Ok(m));
                    assert!(ratchet.is_err());
                    // The embedded message is itself a canonical ratchet message.
                    let inner = m.message.encode();
                    assert!(data.ends_with(&inner));
                    assert_eq!(RatchetMessage::decode(&inner).as_ref(), Ok(&m.message));
                }
            }
        }
        Err(_) => {
            assert!(
                ratchet.is_err() && prekey.is_err(),
                "a type-specific decoder accepted what SessionMessage::decode rejected"
            );
        }
    }
}

/// `PreKeyBundle::decode`, then `VerifiedBundle::verify`, then `initiate` with a fixed
/// identity: no panic anywhere, `Ok` values round-trip, and a session started from an
/// accepted bundle produces a prekey message naming that bundle's keys.
pub fn decode_bundle(data: &[u8]) {
    let Ok(bundle) = PreKeyBundle::decode(data) else {
        return;
    };
    assert_eq!(
        bundle.encode(),
        data,
        "bundle does not re-encode to its input"
    );
    let Ok(verified) = VerifiedBundle::verify(&bundle) else {
        return;
    };
    assert_eq!(verified.device_id(), bundle.device_id);
    assert_eq!(verified.identity().to_wire(), bundle.identity);

    // Only the device id and the one-time prekey are unsigned, so mutated seeds do reach
    // this point (e.g. with a small-order one-time prekey).
    let f = fixture();
    let mut rng = rng_from(b"decode_bundle", data);
    let addresses = crate::fixture::to_bob(bundle.device_id);
    match initiate(&mut rng, &f.alice, &addresses, &verified, config()) {
        Ok(mut session) => {
            assert!(session.awaiting_reply());
            let msg = session.encrypt(b"hello").expect("a fresh session encrypts");
            let SessionMessage::PreKey(p) = msg else {
                panic!("a fresh initiator must send a prekey message");
            };
            assert_eq!(p.identity, f.alice.public().to_wire());
            assert_eq!(p.signed_prekey_id, bundle.signed_prekey.id);
            assert_eq!(
                p.one_time_prekey_id,
                bundle.one_time_prekey.map(|(id, _)| id)
            );
            assert_eq!(p.kem_prekey_id, bundle.kem_prekey.id);
            assert_eq!(session.remote_identity().to_wire(), bundle.identity);
        }
        Err(HandshakeError::OwnIdentity) => {
            assert_eq!(bundle.identity, f.alice.public().to_wire());
        }
        Err(HandshakeError::NonContributory) => {}
        Err(e) => panic!("initiate failed on a verified bundle: {e:?}"),
    }
}

/// `DeviceAddress::decode_from` through a `Reader`, repeatedly, as a list of addresses is
/// read from a buffer. Each decoded address re-encodes to the bytes it was read from; the
/// reader never reports a position past the end. Also `AccountId::new` on the input as text.
pub fn decode_address(data: &[u8]) {
    let mut r = Reader::new(data);
    for _ in 0..64 {
        let start = r.position();
        let before = r.remaining();
        match DeviceAddress::decode_from(&mut r) {
            Ok(addr) => {
                let end = r.position();
                assert!(end > start && end <= data.len());
                assert_eq!(r.remaining(), before - (end - start));
                let mut w = Writer::new();
                addr.encode_into(&mut w);
                assert_eq!(
                    w.as_slice(),
                    &data[start..end],
                    "address does not round-trip"
                );
                let acct = addr.account.as_str();
                assert!(!acct.is_empty() && acct.len() <= MAX_ACCOUNT_ID_LEN);
                assert!(!acct.chars().any(char::is_control));
                assert_eq!(AccountId::new(acct).as_ref(), Ok(&addr.account));
                let _ = format!("{addr:?}");
            }
            Err(e) => {
                let _ = format!("{e}");
                break;
            }
        }
    }
    assert!(r.position() <= data.len());

    let text = String::from_utf8_lossy(data).into_owned();
    match AccountId::new(text.clone()) {
        Ok(acct) => {
            assert_eq!(acct.as_str(), text);
            let mut w = Writer::new();
            acct.encode_into(&mut w);
            let bytes = w.into_bytes();
            let mut r = Reader::new(&bytes);
            assert_eq!(AccountId::decode_from(&mut r).as_ref(), Ok(&acct));
            assert_eq!(r.finish(), Ok(()));
            let _ = format!("{acct:?}");
        }
        Err(DecodeError::TooShort { .. }) => assert!(text.is_empty()),
        Err(DecodeError::TooLong { len, .. }) => assert!(len > MAX_ACCOUNT_ID_LEN),
        Err(DecodeError::InvalidValue(_)) => assert!(text.chars().any(char::is_control)),
        Err(e) => panic!("unexpected AccountId::new error {e:?}"),
    }
}

/// `SafetyNumber::verify_scanned` on arbitrary bytes: accepts exactly the payload the other
/// side shows, reports `Malformed` exactly for a wrong length or version, else `Mismatch`.
pub fn verify_scanned(data: &[u8]) {
    let s = safety();
    for (mine, theirs) in [(&s.alice_side, &s.bob_side), (&s.bob_side, &s.alice_side)] {
        let expected = theirs.qr_payload();
        let well_formed = data.len() == expected.len() && data.first() == Some(&expected[0]);
        match mine.verify_scanned(data) {
            Ok(()) => assert_eq!(data, expected, "accepted a payload that is not the peer's"),
            Err(FingerprintError::Malformed { len, version }) => {
                assert!(!well_formed);
                assert_eq!(len, data.len());
                assert_eq!(version, data.first().copied().unwrap_or(0));
            }
            Err(FingerprintError::Mismatch) => {
                assert!(well_formed);
                assert_ne!(data, expected, "rejected the peer's own payload");
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(s.alice_side.digits(), s.bob_side.digits());
}

/// `Content::decode` (spec/client-store.md section 6) on arbitrary bytes.
///
/// - never panics, and `Debug` of the result never panics;
/// - an `Ok` value re-encodes, field by field, to exactly the input (canonical);
/// - a sent copy's inner content decodes on its own to the same message, and is a message
///   (text or bytes), never another copy or a history part;
/// - a sync content holds 1 ..= `MAX_SYNC_ITEMS` items, each deletion 1 ..=
///   `MAX_SYNC_DELETE_IDS` ids (spec/client-store.md section 6.3);
/// - a route content's route names a customer, and its basis is of the same business; a
///   desk content's handoff entries are messages; a transcript confirmation's chains are
///   strictly increasing (spec/business.md 8.2, 9.2).
pub fn content(data: &[u8]) {
    use sealpost_wire::business::DeskRef;
    use sealpost_wire::content::{
        CONTENT_DESK, CONTENT_HISTORY_PART, CONTENT_ROUTE, CONTENT_SENT_COPY, CONTENT_SYNC,
        CONTENT_TRANSCRIPT, Content, ContentBody, MAX_SYNC_DELETE_IDS, MAX_SYNC_ITEMS, SyncItemRef,
    };
    let Ok(c) = Content::decode(data) else {
        return;
    };
    let _ = format!("{c:?}");
    let mut w = Writer::new();
    w.u8(data[0]);
    match &c.body {
        ContentBody::Message(m) => {
            w.u8(m.kind()).bytes(&c.message_id).bytes(m.as_bytes());
        }
        ContentBody::SentCopy(copy) => {
            w.u8(CONTENT_SENT_COPY).bytes(&c.message_id);
            copy.recipient.encode_into(&mut w);
            w.u64(copy.queued_at)
                .u64(copy.delivered_at)
                .bytes(copy.inner);
            let inner = Content::decode(copy.inner).unwrap();
            assert_eq!(inner.message_id, copy.message_id);
            assert_eq!(inner.body, ContentBody::Message(copy.message));
        }
        ContentBody::HistoryPart(part) => {
            w.u8(CONTENT_HISTORY_PART)
                .bytes(&c.message_id)
                .bytes(&part.encode().unwrap());
        }
        ContentBody::HistoryPlaceholder => {
            w.u8(CONTENT_HISTORY_PART).bytes(&c.message_id);
        }
        ContentBody::Sync(items) => {
            assert!((1..=MAX_SYNC_ITEMS).contains(&items.len()));
            w.u8(CONTENT_SYNC)
                .bytes(&c.message_id)
                .u8(u8::try_from(items.len()).unwrap());
            for item in items {
                w.u8(item.tag());
                item.peer().encode_into(&mut w);
                match item {
                    SyncItemRef::ReadUpTo { up_to, .. } => {
                        w.bytes(up_to);
                    }
                    SyncItemRef::DeleteMessages { ids, .. } => {
                        assert!((1..=MAX_SYNC_DELETE_IDS).contains(&ids.len()));
                        assert_eq!(ids.iter().count(), ids.len());
                        w.u16(u16::try_from(ids.len()).unwrap())
                            .bytes(ids.as_bytes());
                    }
                    SyncItemRef::DeleteConversation { .. } => {}
                }
            }
        }
        ContentBody::Route(m) => {
            assert!(m.route.body.customer.is_some());
            if let Some(b) = &m.basis {
                assert_eq!(b.body.account, m.route.body.account);
            }
            w.u8(CONTENT_ROUTE)
                .bytes(&c.message_id)
                .bytes(&m.encode().unwrap());
        }
        ContentBody::Desk(d) => {
            if let DeskRef::Handoff { entries, .. } = d {
                for e in entries {
                    let inner = Content::decode(e.content).unwrap();
                    assert!(matches!(inner.body, ContentBody::Message(_)));
                }
            }
            w.u8(CONTENT_DESK)
                .bytes(&c.message_id)
                .bytes(&d.encode().unwrap());
        }
        ContentBody::Transcript(t) => {
            assert!(t.chains.windows(2).all(|p| p[0].key() < p[1].key()));
            w.u8(CONTENT_TRANSCRIPT)
                .bytes(&c.message_id)
                .bytes(&t.encode().unwrap());
        }
    }
    assert_eq!(w.into_bytes(), data, "content is not canonical");
}
