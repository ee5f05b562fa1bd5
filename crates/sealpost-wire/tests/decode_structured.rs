//! Property tests of the relay frame decoders (spec/relay.md section 2, spec/pin.md section 8)
//! on *structurally valid* input: each case builds a real request, response or push (random
//! fields, valid version byte, kind and lengths), encodes it, then mutates the body: flips,
//! overwrites, inserts or removes bytes, truncates or extends. Uniform random bytes almost
//! all die at the version byte; these reach every field decoder.
//!
//! Properties: a decoder never panics; an unmutated body decodes to the value it encodes;
//! every proper prefix and every extension of a valid body is refused; and whatever a decoder
//! accepts is the canonical encoding of what it returns (re-encoding gives back the very
//! bytes), so no two byte strings mean the same frame.
//!
//! Session messages (`RatchetMessage`, `PreKeyMessage`, spec/wire.md section 3) are built the
//! same way. A `RatchetMessage`'s ciphertext runs to the end of its input, so there a longer or
//! shorter input (down to the 16-byte tag) decodes to the same header with another ciphertext,
//! which the AEAD then refuses (spec/README.md section 2.2); every other property holds as
//! above.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;
use sealpost_wire::relay::{
    CredentialScope, DAY_SECS, Delivery, DeviceInfo, DeviceLastSeen, ErrorCode, GuardianCredential,
    OutgoingEnvelope, PreKeyUpload, Push, Request, Response,
};
use sealpost_wire::{
    AccountId, DeviceAddress, DeviceId, IdentityBytes, KEM_CIPHERTEXT_LEN, KEM_PUBLIC_LEN,
    KemPreKeyKind, KemPreKeyPublic, PROTOCOL_VERSION, PreKeyMessage, RatchetMessage,
    SessionMessage, SignedPreKeyPublic,
};

fn account() -> impl Strategy<Value = AccountId> {
    "\\+[0-9]{8,15}".prop_map(|s| AccountId::new(s).unwrap())
}

fn address() -> impl Strategy<Value = DeviceAddress> {
    (account(), any::<u32>()).prop_map(|(a, d)| DeviceAddress::new(a, DeviceId(d)))
}

fn identity() -> impl Strategy<Value = IdentityBytes> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(signing, dh)| IdentityBytes { signing, dh })
}

fn sig() -> impl Strategy<Value = [u8; 64]> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&a);
        s[32..].copy_from_slice(&b);
        s
    })
}

fn credential() -> impl Strategy<Value = GuardianCredential> {
    (
        account(),
        any::<bool>(),
        any::<u64>(),
        any::<[u8; 32]>(),
        sig(),
    )
        .prop_map(
            |(account, owner, expires_at, issuer, signature)| GuardianCredential {
                account,
                scope: if owner {
                    CredentialScope::Owner
                } else {
                    CredentialScope::Recovery
                },
                expires_at,
                issuer,
                signature,
            },
        )
}

fn signed_prekey() -> impl Strategy<Value = SignedPreKeyPublic> {
    (any::<u32>(), any::<u64>(), any::<[u8; 32]>(), sig()).prop_map(
        |(id, created_at, public, signature)| SignedPreKeyPublic {
            id,
            created_at,
            public,
            signature,
        },
    )
}

fn kem_prekey() -> impl Strategy<Value = KemPreKeyPublic> {
    (
        any::<u32>(),
        any::<bool>(),
        any::<u64>(),
        any::<u8>(),
        sig(),
    )
        .prop_map(
            |(id, one_time, created_at, fill, signature)| KemPreKeyPublic {
                id,
                kind: if one_time {
                    KemPreKeyKind::OneTime
                } else {
                    KemPreKeyKind::LastResort
                },
                created_at,
                public: Box::new([fill; KEM_PUBLIC_LEN]),
                signature,
            },
        )
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=max)
}

/// An envelope: 1 byte at least (spec/relay.md: an empty envelope is malformed).
fn envelope(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..=max)
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        account().prop_map(|account| Request::RequestCode { account }),
        (
            account(),
            any::<[u8; 6]>(),
            identity(),
            sig(),
            proptest::option::of(any::<[u8; 32]>())
        )
            .prop_map(|(account, code, identity, signature, reglock)| {
                Request::Register {
                    account,
                    code,
                    identity,
                    signature,
                    reglock,
                }
            }),
        Just(Request::Challenge),
        (address(), sig())
            .prop_map(|(address, signature)| Request::Authenticate { address, signature }),
        (
            proptest::option::of(signed_prekey()),
            proptest::collection::vec((any::<u32>(), any::<[u8; 32]>()), 0..4),
            proptest::collection::vec(kem_prekey(), 0..2)
        )
            .prop_map(|(signed_prekey, one_time, kem)| {
                Request::UploadPreKeys(PreKeyUpload {
                    signed_prekey,
                    one_time,
                    kem,
                })
            }),
        account().prop_map(|account| Request::FetchBundles { account }),
        account().prop_map(|account| Request::ListDevices { account }),
        Just(Request::DeviceActivity),
        (
            any::<[u8; 16]>(),
            any::<u64>(),
            account(),
            proptest::collection::vec(
                (any::<u32>(), envelope(48)).prop_map(|(device_id, envelope)| OutgoingEnvelope {
                    device_id,
                    envelope
                }),
                1..4
            )
        )
            .prop_map(
                |(message_id, sender_seq, recipient, envelopes)| Request::Send {
                    message_id,
                    sender_seq,
                    recipient,
                    envelopes
                }
            ),
        proptest::collection::vec(any::<u64>(), 1..8)
            .prop_map(|server_ids| Request::Ack { server_ids }),
        any::<[u8; 32]>().prop_map(|token| Request::SetRegistrationLock { token }),
        Just(Request::ClearRegistrationLock),
        Just(Request::GetGuardianCredential),
        (
            credential(),
            any::<[u8; 32]>(),
            any::<u8>(),
            any::<[u8; 32]>(),
            bytes(80)
        )
            .prop_map(|(credential, k, index, success_verifier, record)| {
                let mut share = [0u8; 33];
                share[0] = index;
                share[1..].copy_from_slice(&k);
                Request::VaultStore {
                    credential,
                    share,
                    success_verifier,
                    record,
                }
            }),
        credential().prop_map(|credential| Request::VaultFetch { credential }),
        (credential(), any::<[u8; 16]>(), any::<[u8; 32]>()).prop_map(
            |(credential, vault_id, blinded)| Request::VaultEvaluate {
                credential,
                vault_id,
                blinded
            }
        ),
        (credential(), any::<[u8; 16]>(), any::<[u8; 32]>()).prop_map(
            |(credential, vault_id, token)| Request::VaultConfirm {
                credential,
                vault_id,
                token
            }
        ),
        credential().prop_map(|credential| Request::VaultDelete { credential }),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        any::<u32>().prop_map(|expires_in| Response::CodeSent { expires_in }),
        any::<u32>().prop_map(|device_id| Response::Registered { device_id }),
        any::<[u8; 32]>().prop_map(|nonce| Response::ChallengeIssued { nonce }),
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(a, b, c, d)| {
            Response::Authenticated {
                one_time_prekeys: a,
                kem_prekeys: b,
                queued: c,
                sender_seq: d,
            }
        }),
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| Response::PreKeysStored {
            one_time_prekeys: a,
            kem_prekeys: b
        }),
        proptest::collection::vec(
            (any::<u32>(), identity()).prop_map(|(device_id, identity)| DeviceInfo {
                device_id,
                identity
            }),
            0..4
        )
        .prop_map(Response::Devices),
        proptest::collection::btree_map(any::<u32>(), 0..u64::MAX / DAY_SECS, 0..4).prop_map(|m| {
            Response::Activity(
                m.into_iter()
                    .map(|(device_id, day)| DeviceLastSeen {
                        device_id,
                        last_seen_day: day * DAY_SECS,
                    })
                    .collect(),
            )
        }),
        any::<u64>().prop_map(|timestamp| Response::Accepted { timestamp }),
        any::<u16>().prop_map(|removed| Response::Acked { removed }),
        Just(Response::RegistrationLockSet),
        Just(Response::RegistrationLockCleared),
        credential().prop_map(Response::Credential),
        Just(Response::VaultStored),
        (any::<u8>(), any::<u16>(), bytes(80)).prop_map(|(index, attempts_remaining, record)| {
            Response::Vault {
                index,
                attempts_remaining,
                record,
            }
        }),
        (any::<u8>(), any::<[u8; 32]>(), sig(), any::<u16>()).prop_map(
            |(index, evaluated, proof, attempts_remaining)| Response::VaultEvaluated {
                index,
                evaluated,
                proof,
                attempts_remaining
            }
        ),
        any::<u16>().prop_map(|attempts_remaining| Response::VaultConfirmed { attempts_remaining }),
        Just(Response::VaultDeleted),
        (any::<u32>(), any::<u16>(), credential()).prop_map(
            |(lapses_in, attempts_remaining, credential)| Response::RegistrationLocked {
                lapses_in,
                attempts_remaining,
                credential
            }
        ),
        (any::<u16>(), any::<u32>(), "[ -~]{0,40}").prop_map(|(code, retry_after, detail)| {
            Response::Error {
                code: ErrorCode::from_u16(code),
                retry_after,
                detail,
            }
        }),
    ]
}

fn push() -> impl Strategy<Value = Push> {
    prop_oneof![
        (
            any::<u64>(),
            address(),
            any::<[u8; 16]>(),
            any::<u64>(),
            envelope(64)
        )
            .prop_map(|(server_id, sender, message_id, timestamp, envelope)| {
                Push::Deliver(Delivery {
                    server_id,
                    sender,
                    message_id,
                    timestamp,
                    envelope,
                })
            }),
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| Push::PreKeysLow {
            one_time_prekeys: a,
            kem_prekeys: b
        }),
        Just(Push::QueueDrained),
    ]
}

/// A change to a valid body.
#[derive(Clone, Debug)]
enum Mutation {
    /// XOR one byte (position taken modulo the length) with a non-zero mask.
    Flip(usize, u8),
    /// Overwrite one byte.
    Set(usize, u8),
    /// Insert bytes at a position.
    Insert(usize, Vec<u8>),
    /// Remove up to `n` bytes at a position.
    Remove(usize, usize),
    /// Keep only a proper prefix (its length taken modulo the body length).
    Truncate(usize),
    /// Append bytes.
    Extend(Vec<u8>),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, m)| Mutation::Flip(i, m)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1..8usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        proptest::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::Extend),
    ];
    proptest::collection::vec(one, 0..4)
}

fn apply(body: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut b = body.to_vec();
    for m in muts {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match m {
            Mutation::Flip(i, mask) if !b.is_empty() => {
                let i = at(*i, b.len());
                b[i] ^= mask;
            }
            Mutation::Set(i, v) if !b.is_empty() => {
                let i = at(*i, b.len());
                b[i] = *v;
            }
            Mutation::Insert(i, extra) => {
                let i = at(*i, b.len() + 1);
                b.splice(i..i, extra.iter().copied());
            }
            Mutation::Remove(i, n) if !b.is_empty() => {
                let i = at(*i, b.len());
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Mutation::Truncate(n) if !b.is_empty() => b.truncate(n % b.len()),
            Mutation::Extend(extra) => b.extend_from_slice(extra),
            _ => {}
        }
    }
    b
}

/// The body of a frame (its 4-byte length prefix checked and removed).
fn body(frame: &[u8]) -> &[u8] {
    let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4, "length prefix");
    assert_eq!(frame[4], PROTOCOL_VERSION, "version byte first");
    &frame[4..]
}

/// The properties shared by the three decoders.
fn check<T: PartialEq + std::fmt::Debug>(
    value: &T,
    encode: impl Fn(&T) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> Result<T, sealpost_wire::DecodeError>,
    muts: &[Mutation],
    cut: usize,
    extra: &[u8],
) -> Result<(), TestCaseError> {
    let frame = encode(value);
    let valid = body(&frame);
    let decoded = decode(valid);
    prop_assert_eq!(decoded.as_ref(), Ok(value));
    // Every proper prefix and every extension is refused.
    prop_assert!(decode(&valid[..cut % valid.len()]).is_err());
    let mut longer = valid.to_vec();
    longer.extend_from_slice(extra);
    prop_assert!(decode(&longer).is_err());
    // Mutated: no panic; what is accepted is canonical.
    let mutated = apply(valid, muts);
    if let Ok(v) = decode(&mutated) {
        let again = encode(&v);
        prop_assert_eq!(
            body(&again),
            &mutated[..],
            "accepted a non-canonical encoding"
        );
    }
    Ok(())
}

fn ratchet_message() -> impl Strategy<Value = RatchetMessage> {
    (
        any::<[u8; 32]>(),
        any::<u32>(),
        any::<u32>(),
        any::<[u8; 12]>(),
        proptest::collection::vec(any::<u8>(), 16..80),
    )
        .prop_map(|(ratchet_key, pn, n, nonce, ciphertext)| RatchetMessage {
            ratchet_key,
            previous_chain_length: pn,
            message_number: n,
            nonce,
            ciphertext,
        })
}

fn session_message() -> impl Strategy<Value = SessionMessage> {
    prop_oneof![
        ratchet_message().prop_map(SessionMessage::Ratchet),
        (
            identity(),
            any::<[u8; 32]>(),
            any::<u32>(),
            proptest::option::of(any::<u32>()),
            any::<u32>(),
            any::<u8>(),
            ratchet_message(),
        )
            .prop_map(|(identity, base_key, spk, opk, kpk, fill, message)| {
                SessionMessage::PreKey(PreKeyMessage {
                    identity,
                    base_key,
                    signed_prekey_id: spk,
                    one_time_prekey_id: opk,
                    kem_prekey_id: kpk,
                    kem_ciphertext: Box::new([fill; KEM_CIPHERTEXT_LEN]),
                    message,
                })
            }),
    ]
}

/// The header fields of a session message: everything but the ciphertext that runs to the
/// end of a `RatchetMessage`.
fn without_trailing_ciphertext(m: &SessionMessage) -> Option<RatchetMessage> {
    match m {
        SessionMessage::Ratchet(r) => Some(RatchetMessage {
            ciphertext: Vec::new(),
            ..r.clone()
        }),
        SessionMessage::PreKey(_) => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn session_messages(value in session_message(), muts in mutations(), cut in any::<usize>(),
                        extra in proptest::collection::vec(any::<u8>(), 1..8)) {
        let valid = value.encode();
        let decoded = SessionMessage::decode(&valid);
        prop_assert_eq!(decoded.as_ref(), Ok(&value));
        // A prefix or an extension is refused, except where a RatchetMessage's ciphertext
        // (which runs to the end) only gets shorter or longer: same header, other ciphertext.
        let mut longer = valid.clone();
        longer.extend_from_slice(&extra);
        for input in [&valid[..cut % valid.len()], &longer[..]] {
            if let Ok(other) = SessionMessage::decode(input) {
                prop_assert!(without_trailing_ciphertext(&value).is_some());
                prop_assert_eq!(
                    without_trailing_ciphertext(&other),
                    without_trailing_ciphertext(&value)
                );
            }
        }
        // Mutated: no panic; what is accepted is canonical.
        let mutated = apply(&valid, &muts);
        if let Ok(v) = SessionMessage::decode(&mutated) {
            prop_assert_eq!(v.encode(), mutated, "accepted a non-canonical encoding");
        }
    }

    #[test]
    fn requests(value in request(), muts in mutations(), cut in any::<usize>(),
                extra in proptest::collection::vec(any::<u8>(), 1..8)) {
        check(&value, Request::encode, Request::decode, &muts, cut, &extra)?;
    }

    #[test]
    fn responses(value in response(), muts in mutations(), cut in any::<usize>(),
                 extra in proptest::collection::vec(any::<u8>(), 1..8)) {
        check(&value, Response::encode, Response::decode, &muts, cut, &extra)?;
    }

    #[test]
    fn pushes(value in push(), muts in mutations(), cut in any::<usize>(),
              extra in proptest::collection::vec(any::<u8>(), 1..8)) {
        check(&value, Push::encode, Push::decode, &muts, cut, &extra)?;
    }

    /// A push stream of valid frames decodes to them; mutated, it never panics and accepts
    /// only canonical streams.
    #[test]
    fn push_streams(values in proptest::collection::vec(push(), 1..4), muts in mutations()) {
        let stream = Push::encode_stream(&values);
        prop_assert_eq!(Push::decode_stream(&stream), Ok(values));
        let mutated = apply(&stream, &muts);
        if let Ok(v) = Push::decode_stream(&mutated) {
            prop_assert_eq!(Push::encode_stream(&v), mutated);
        }
    }

    /// The guardian credential carried in PIN requests and responses (spec/pin.md 7).
    #[test]
    fn guardian_credentials(value in credential(), muts in mutations(), cut in any::<usize>()) {
        let valid = value.encode();
        let decoded = GuardianCredential::decode(&valid);
        prop_assert_eq!(decoded.as_ref(), Ok(&value));
        prop_assert!(GuardianCredential::decode(&valid[..cut % valid.len()]).is_err());
        let mutated = apply(&valid, &muts);
        if let Ok(v) = GuardianCredential::decode(&mutated) {
            prop_assert_eq!(v.encode(), mutated);
        }
    }
}
