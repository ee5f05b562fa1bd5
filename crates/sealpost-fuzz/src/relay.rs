//! Relay targets: the frame codec and the request handler (over `MemoryStore`).

use crate::fixture::NOW;
use crate::input::{ByteSource, rng_from};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sealpost_relay::handler::decode_error_response;
use sealpost_relay::limits::CODE_TTL_SECS;
use sealpost_relay::{
    AnyStore, CodeSender, ConnectionState, Effect, Handler, Limits, MemoryStore, Store,
    VerificationCode,
};
use sealpost_session::{IdentityKeyPair, KemPreKeyKind, PreKeyStore};
use sealpost_wire::relay::{
    DAY_SECS, DeviceInfo, DeviceLastSeen, ErrorCode, OutgoingEnvelope, PreKeyUpload, Push, Request,
    Response, auth_signed_bytes, frame_len, register_signed_bytes,
};
use sealpost_wire::{AccountId, DeviceAddress, DeviceId, KemPreKeyPublic, SignedPreKeyPublic};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// `Request`/`Response`/`Push::decode` on arbitrary bytes (as a frame body), and
/// `frame_len` on its first four bytes:
///
/// - nothing panics;
/// - an `Ok` value re-encodes to exactly the input, with a length prefix `frame_len`
///   accepts (the encodings are canonical);
/// - every request decode error maps to an `Error` response that itself round-trips.
pub fn relay_frames(data: &[u8]) {
    if let Some(prefix) = data.get(..4) {
        let prefix: [u8; 4] = prefix.try_into().expect("4 bytes");
        if let Ok(len) = frame_len(prefix) {
            assert!((2..=sealpost_wire::relay::MAX_FRAME_LEN).contains(&len));
        }
    }
    fn check(encoded: Vec<u8>, data: &[u8]) {
        assert_eq!(
            &encoded[4..],
            data,
            "decoded value does not re-encode to its input"
        );
        let len = frame_len(encoded[..4].try_into().expect("4 bytes")).expect("valid prefix");
        assert_eq!(len, data.len());
    }
    match Request::decode(data) {
        Ok(r) => {
            let _ = format!("{r:?}");
            check(r.encode(), data);
        }
        Err(e) => {
            let resp = decode_error_response(&e);
            let enc = resp.encode();
            assert_eq!(Response::decode(&enc[4..]).as_ref(), Ok(&resp));
            assert!(matches!(resp, Response::Error { .. }));
        }
    }
    if let Ok(r) = Response::decode(data) {
        let _ = format!("{r:?}");
        check(r.encode(), data);
    }
    if let Ok(p) = Push::decode(data) {
        let _ = format!("{p:?}");
        check(p.encode(), data);
    }
    // The same bytes as a push stream (frames back to back).
    if let Ok(pushes) = Push::decode_stream(data) {
        assert!(!pushes.is_empty());
        assert_eq!(Push::encode_stream(&pushes), data, "push stream re-encodes");
    }
}

/// The output of a handler or store future over the memory store, which is ready at once
/// (its methods never wait): one poll, no runtime. Panics if the future is pending.
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a memory-store future was pending"),
    }
}

/// Accounts the handler program uses: three valid E.164 numbers and one invalid id.
const ACCOUNTS: [&str; 4] = ["+15550000001", "+15550000002", "+15550000003", "alice"];
/// Connections (and identities) in a program.
const PARTIES: usize = 3;
/// One-time X25519 and KEM prekeys each identity can upload.
const ONE_TIME: usize = 8;
const KEM: usize = 4;

/// Key material for one identity, generated once per process.
struct Keys {
    id: IdentityKeyPair,
    signed: SignedPreKeyPublic,
    one_time: Vec<(u32, [u8; 32])>,
    kem: Vec<KemPreKeyPublic>,
    last_resort: KemPreKeyPublic,
}

fn keys() -> &'static [Keys] {
    static K: OnceLock<Vec<Keys>> = OnceLock::new();
    K.get_or_init(|| {
        (0..PARTIES)
            .map(|i| {
                let mut rng = rng_from(b"relay/keys", &[i as u8]);
                let id = crate::fixture::identity(&format!("relay-{i}"));
                let mut store = PreKeyStore::new();
                let signed = store.generate_signed_prekey(&mut rng, &id, NOW);
                let one_time = store.generate_one_time_prekeys(&mut rng, ONE_TIME);
                let kem =
                    store.generate_kem_prekeys(&mut rng, &id, KemPreKeyKind::OneTime, KEM, NOW);
                let last_resort = store
                    .generate_kem_prekeys(&mut rng, &id, KemPreKeyKind::LastResort, 1, NOW)
                    .remove(0);
                Keys {
                    id,
                    signed,
                    one_time,
                    kem,
                    last_resort,
                }
            })
            .collect()
    })
}

#[derive(Default)]
struct Capture(Mutex<HashMap<AccountId, [u8; 6]>>);

impl CodeSender for Capture {
    fn send_code(&self, account: &AccountId, code: &VerificationCode) {
        self.0
            .lock()
            .expect("lock")
            .insert(account.clone(), *code.as_bytes());
    }
}

/// One step of a handler program. Indices are reduced modulo the number of choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayOp {
    /// `RequestCode` on connection `conn` for account `account`.
    RequestCode { conn: u8, account: u8 },
    /// `Register` with identity `conn`; the right code unless `wrong_code`; a valid signature
    /// unless `bad_sig`.
    Register {
        conn: u8,
        account: u8,
        wrong_code: bool,
        bad_sig: bool,
    },
    /// `Challenge`.
    Challenge { conn: u8 },
    /// `Authenticate` as `(account, device)` with identity `conn`'s key.
    Authenticate {
        conn: u8,
        account: u8,
        device: u8,
        bad_sig: bool,
    },
    /// `UploadPreKeys` of identity `conn`'s keys selected by the masks.
    Upload {
        conn: u8,
        one_time_mask: u8,
        kem_mask: u8,
        flags: u8,
    },
    /// `FetchBundles`.
    Fetch { conn: u8, account: u8 },
    /// `ListDevices`.
    List { conn: u8, account: u8 },
    /// `Send` to the devices in `device_mask` (bit i: device i+1).
    Send {
        conn: u8,
        account: u8,
        device_mask: u8,
        len: u8,
    },
    /// `Ack` of the `count` most recently queued server ids.
    Ack { conn: u8, count: u8 },
    /// Advance the clock by `seconds * 16` seconds.
    Wait { seconds: u8 },
    /// Arbitrary bytes as a frame body.
    Raw { conn: u8, len: u8 },
    /// The periodic sweep.
    Sweep,
    /// `DeviceActivity` on connection `conn`.
    Activity { conn: u8 },
}

const OPCODES: u8 = 13;

impl RelayOp {
    /// The bytes [`RelayOp::read`] parses back into this op (`Raw` is followed by its bytes).
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Self::RequestCode { conn, account } => vec![0, conn, account],
            Self::Register {
                conn,
                account,
                wrong_code,
                bad_sig,
            } => vec![
                1,
                conn,
                account,
                u8::from(wrong_code) | u8::from(bad_sig) << 1,
            ],
            Self::Challenge { conn } => vec![2, conn],
            Self::Authenticate {
                conn,
                account,
                device,
                bad_sig,
            } => vec![3, conn, account, device, u8::from(bad_sig)],
            Self::Upload {
                conn,
                one_time_mask,
                kem_mask,
                flags,
            } => vec![4, conn, one_time_mask, kem_mask, flags],
            Self::Fetch { conn, account } => vec![5, conn, account],
            Self::List { conn, account } => vec![6, conn, account],
            Self::Send {
                conn,
                account,
                device_mask,
                len,
            } => vec![7, conn, account, device_mask, len],
            Self::Ack { conn, count } => vec![8, conn, count],
            Self::Wait { seconds } => vec![9, seconds],
            Self::Raw { conn, len } => vec![10, conn, len],
            Self::Sweep => vec![11],
            Self::Activity { conn } => vec![12, conn],
        }
    }

    /// Parses one op; any byte string is a program.
    pub fn read(src: &mut ByteSource<'_>) -> Self {
        match src.u8() % OPCODES {
            0 => Self::RequestCode {
                conn: src.u8(),
                account: src.u8(),
            },
            1 => {
                let (conn, account, f) = (src.u8(), src.u8(), src.u8());
                Self::Register {
                    conn,
                    account,
                    wrong_code: f & 1 != 0,
                    bad_sig: f & 2 != 0,
                }
            }
            2 => Self::Challenge { conn: src.u8() },
            3 => Self::Authenticate {
                conn: src.u8(),
                account: src.u8(),
                device: src.u8(),
                bad_sig: src.u8() & 1 != 0,
            },
            4 => Self::Upload {
                conn: src.u8(),
                one_time_mask: src.u8(),
                kem_mask: src.u8(),
                flags: src.u8(),
            },
            5 => Self::Fetch {
                conn: src.u8(),
                account: src.u8(),
            },
            6 => Self::List {
                conn: src.u8(),
                account: src.u8(),
            },
            7 => Self::Send {
                conn: src.u8(),
                account: src.u8(),
                device_mask: src.u8(),
                len: src.u8(),
            },
            8 => Self::Ack {
                conn: src.u8(),
                count: src.u8(),
            },
            9 => Self::Wait { seconds: src.u8() },
            10 => Self::Raw {
                conn: src.u8(),
                len: src.u8(),
            },
            11 => Self::Sweep,
            _ => Self::Activity { conn: src.u8() },
        }
    }

    /// A program from ops (for seeds).
    pub fn program(ops: &[RelayOp]) -> Vec<u8> {
        ops.iter().flat_map(RelayOp::encode).collect()
    }
}

/// Outcomes a handler program reached (to check that the seeds exercise the handler).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub registered: usize,
    pub authenticated: usize,
    pub stored: usize,
    pub bundles_with_one_time: usize,
    pub accepted: usize,
    pub acked: usize,
    /// `Activity` answers, each checked against the model.
    pub activity: usize,
    pub errors: HashMap<u16, usize>,
}

/// [`relay_handler_stats`] without the statistics.
pub fn relay_handler(data: &[u8]) {
    let _ = relay_handler_stats(data);
}

fn err_code(r: &Response) -> Option<ErrorCode> {
    match r {
        Response::Error { code, .. } => Some(*code),
        _ => None,
    }
}

/// Drives a `Handler` over a `MemoryStore` through a program of requests on three
/// connections (clock and RNG deterministic). Checks:
///
/// - nothing panics, and every response encodes and decodes back to itself;
/// - each response is the request's success kind or `Error`;
/// - `Registered` only with the right code and a valid signature, with device ids increasing
///   per account; `Authenticated` only with a valid signature over the current nonce;
/// - every one-time prekey (X25519 and KEM) is served by `FetchBundles` at most as many times
///   as it was stored by a successful upload;
/// - `Accepted` only on authenticated connections, and the store's queue depths agree with
///   the number of envelopes queued minus acknowledged and expired;
/// - `DeviceActivity` is `Unauthenticated` before authentication, and otherwise lists exactly
///   the caller's account's devices in increasing order, each with the day (rounded down) of
///   its registration or latest authentication, as a model of spec/relay.md 3.12 computes.
pub fn relay_handler_stats(data: &[u8]) -> RelayStats {
    let keys = keys();
    let store = Arc::new(AnyStore::from(MemoryStore::new()));
    let codes = Arc::new(Capture::default());
    let limits = Limits {
        max_queued_per_device: 6,
        max_stored_one_time: 12,
        max_stored_kem: 6,
        ..Limits::default()
    };
    let handler = Handler::new(
        Arc::clone(&store),
        Arc::clone(&codes) as Arc<dyn CodeSender>,
        [0x42; 32],
        limits,
        StdRng::from_rng(&mut rng_from(b"relay/handler", data)),
    );
    let mut now = NOW * 1000;
    let mut conns: Vec<ConnectionState> = (0..PARTIES)
        .map(|i| handler.new_connection(i as u64, now))
        .collect();
    let exporters: Vec<[u8; 32]> = (0..PARTIES).map(|i| [i as u8 + 1; 32]).collect();
    let accounts: Vec<AccountId> = ACCOUNTS
        .iter()
        .map(|a| AccountId::new(*a).expect("account"))
        .collect();
    // Last nonce issued per connection, and (account, device) -> identity index.
    let mut nonces: Vec<Option<[u8; 32]>> = vec![None; PARTIES];
    let mut last_device: HashMap<AccountId, u32> = HashMap::new();
    // Copies of one-time prekeys stored, and served, by (account, device, id, key bytes).
    let mut stored_keys: HashMap<(AccountId, u32, u32, Vec<u8>), usize> = HashMap::new();
    let mut served_keys: HashMap<(AccountId, u32, u32, Vec<u8>), usize> = HashMap::new();
    let mut queued_ids: Vec<u64> = Vec::new();
    // Model of per-device last seen (ms): registration, then every authentication.
    let mut seen: HashMap<(AccountId, u32), u64> = HashMap::new();
    let mut stats = RelayStats::default();

    let mut src = ByteSource::new(data);
    let mut steps = 0;
    while !src.is_empty() && steps < 200 {
        steps += 1;
        let op = RelayOp::read(&mut src);
        let c = |i: u8| usize::from(i) % PARTIES;
        let (ci, request, expect_ok): (usize, Request, Option<bool>) = match op {
            RelayOp::RequestCode { conn, account } => {
                let a = &accounts[usize::from(account) % accounts.len()];
                (c(conn), Request::RequestCode { account: a.clone() }, None)
            }
            RelayOp::Register {
                conn,
                account,
                wrong_code,
                bad_sig,
            } => {
                let ci = c(conn);
                let a = accounts[usize::from(account) % accounts.len()].clone();
                let mut code = codes
                    .0
                    .lock()
                    .expect("lock")
                    .get(&a)
                    .copied()
                    .unwrap_or(*b"000000");
                if wrong_code {
                    code[0] = if code[0] == b'9' { b'0' } else { code[0] + 1 };
                }
                let identity = keys[ci].id.public().to_wire();
                let mut signature = keys[ci]
                    .id
                    .sign(&register_signed_bytes(&exporters[ci], &a, &identity))
                    .to_bytes();
                if bad_sig {
                    signature[7] ^= 0x10;
                }
                let can_succeed = !wrong_code && !bad_sig;
                (
                    ci,
                    Request::Register {
                        account: a,
                        code,
                        identity,
                        signature,
                        reglock: None,
                    },
                    (!can_succeed).then_some(false),
                )
            }
            RelayOp::Challenge { conn } => (c(conn), Request::Challenge, Some(true)),
            RelayOp::Authenticate {
                conn,
                account,
                device,
                bad_sig,
            } => {
                let ci = c(conn);
                let a = accounts[usize::from(account) % accounts.len()].clone();
                let address = DeviceAddress::new(a, DeviceId(u32::from(device % 4)));
                let nonce = nonces[ci].take().unwrap_or([0; 32]);
                let mut signature = keys[ci]
                    .id
                    .sign(&auth_signed_bytes(&exporters[ci], &nonce, &address))
                    .to_bytes();
                if bad_sig {
                    signature[3] ^= 1;
                }
                (
                    ci,
                    Request::Authenticate { address, signature },
                    bad_sig.then_some(false),
                )
            }
            RelayOp::Upload {
                conn,
                one_time_mask,
                kem_mask,
                flags,
            } => {
                let ci = c(conn);
                // Keys of the identity this connection uses, or (flag bit 2) another's.
                let k = if flags & 4 != 0 {
                    &keys[(ci + 1) % PARTIES]
                } else {
                    &keys[ci]
                };
                let mut upload = PreKeyUpload {
                    signed_prekey: (flags & 1 != 0).then(|| k.signed.clone()),
                    one_time: (0..ONE_TIME)
                        .filter(|i| one_time_mask & (1 << i) != 0)
                        .map(|i| k.one_time[i])
                        .collect(),
                    kem: (0..KEM)
                        .filter(|i| kem_mask & (1 << i) != 0)
                        .map(|i| k.kem[i].clone())
                        .collect(),
                };
                if flags & 2 != 0 {
                    upload.kem.push(k.last_resort.clone());
                }
                if flags & 8 != 0
                    && let Some(s) = upload.signed_prekey.as_mut()
                {
                    s.signature[0] ^= 1;
                }
                (ci, Request::UploadPreKeys(upload), None)
            }
            RelayOp::Fetch { conn, account } => (
                c(conn),
                Request::FetchBundles {
                    account: accounts[usize::from(account) % accounts.len()].clone(),
                },
                None,
            ),
            RelayOp::List { conn, account } => (
                c(conn),
                Request::ListDevices {
                    account: accounts[usize::from(account) % accounts.len()].clone(),
                },
                None,
            ),
            RelayOp::Send {
                conn,
                account,
                device_mask,
                len,
            } => {
                let envelopes: Vec<OutgoingEnvelope> = (0..4u32)
                    .filter(|i| device_mask & (1 << i) != 0)
                    .map(|i| OutgoingEnvelope {
                        device_id: i + 1,
                        envelope: vec![len; usize::from(len) + 1],
                    })
                    .collect();
                if envelopes.is_empty() {
                    continue;
                }
                (
                    c(conn),
                    Request::Send {
                        message_id: [len; 16],
                        sender_seq: u64::from(len),
                        recipient: accounts[usize::from(account) % accounts.len()].clone(),
                        envelopes,
                    },
                    None,
                )
            }
            RelayOp::Ack { conn, count } => {
                let n = usize::from(count) % 8;
                let ids = queued_ids.iter().rev().take(n).copied().collect();
                (c(conn), Request::Ack { server_ids: ids }, None)
            }
            RelayOp::Wait { seconds } => {
                now += u64::from(seconds) * 16_000;
                continue;
            }
            RelayOp::Raw { conn, len } => {
                let body = src.take(usize::from(len));
                let ci = c(conn);
                let (resp, _) =
                    ready(handler.handle_frame(&mut conns[ci], exporters[ci], body, now));
                check_roundtrip(&resp);
                if let Some(code) = err_code(&resp) {
                    *stats.errors.entry(code.to_u16()).or_default() += 1;
                }
                continue;
            }
            RelayOp::Sweep => {
                ready(handler.sweep(now)).expect("memory store does not fail");
                continue;
            }
            RelayOp::Activity { conn } => (c(conn), Request::DeviceActivity, None),
        };
        let authenticated_before = conns[ci].authenticated().cloned();
        let (resp, effects) =
            ready(handler.handle(&mut conns[ci], exporters[ci], request.clone(), now));
        check_roundtrip(&resp);
        if let Some(code) = err_code(&resp) {
            *stats.errors.entry(code.to_u16()).or_default() += 1;
        }
        if expect_ok == Some(false) {
            assert!(
                err_code(&resp).is_some(),
                "{op:?} must fail but gave {resp:?}"
            );
        }
        for e in &effects {
            let _ = format!("{e:?}");
        }
        match (&request, &resp) {
            (Request::DeviceActivity, Response::Error { code, .. }) => {
                assert!(authenticated_before.is_none(), "{code:?}");
                assert_eq!(*code, ErrorCode::Unauthenticated);
            }
            (_, Response::Error { .. }) => {}
            (Request::RequestCode { .. }, Response::CodeSent { expires_in }) => {
                assert_eq!(*expires_in, CODE_TTL_SECS);
            }
            (Request::Register { account, .. }, Response::Registered { device_id }) => {
                stats.registered += 1;
                seen.retain(|k, _| &k.0 != account);
                seen.insert((account.clone(), *device_id), now);
                let prev = last_device.insert(account.clone(), *device_id);
                assert!(prev.is_none_or(|p| p < *device_id), "device ids increase");
                // Old devices and their prekeys are gone.
                stored_keys.retain(|k, _| &k.0 != account);
                served_keys.retain(|k, _| &k.0 != account);
            }
            (Request::Challenge, Response::ChallengeIssued { nonce }) => {
                nonces[ci] = Some(*nonce);
            }
            (Request::Authenticate { address, .. }, Response::Authenticated { queued, .. }) => {
                stats.authenticated += 1;
                let t = seen
                    .get_mut(&(address.account.clone(), address.device.0))
                    .expect("an authenticated device is registered");
                *t = (*t).max(now);
                assert!(authenticated_before.is_none());
                assert_eq!(conns[ci].authenticated(), Some(address));
                assert_eq!(*queued, ready(store.queue_depth(address)).expect("depth"));
            }
            (Request::UploadPreKeys(u), Response::PreKeysStored { .. }) => {
                stats.stored += 1;
                let me = authenticated_before.clone().expect("upload needs auth");
                for (id, k) in &u.one_time {
                    *stored_keys
                        .entry((me.account.clone(), me.device.0, *id, k.to_vec()))
                        .or_default() += 1;
                }
                for k in u.kem.iter().filter(|k| k.kind == KemPreKeyKind::OneTime) {
                    *stored_keys
                        .entry((me.account.clone(), me.device.0, k.id, k.public.to_vec()))
                        .or_default() += 1;
                }
            }
            (Request::FetchBundles { account }, Response::Bundles(bundles)) => {
                assert!(authenticated_before.is_some());
                let devices: Vec<u32> = bundles.iter().map(|b| b.device_id).collect();
                assert!(
                    devices.windows(2).all(|w| w[0] < w[1]),
                    "ordered by device id"
                );
                for b in bundles {
                    let mut served = Vec::new();
                    if let Some((id, k)) = b.one_time_prekey {
                        stats.bundles_with_one_time += 1;
                        served.push((id, k.to_vec()));
                    }
                    if b.kem_prekey.kind == KemPreKeyKind::OneTime {
                        served.push((b.kem_prekey.id, b.kem_prekey.public.to_vec()));
                    }
                    for (id, k) in served {
                        let key = (account.clone(), b.device_id, id, k);
                        let n = served_keys.entry(key.clone()).or_default();
                        *n += 1;
                        let up = stored_keys.get(&key).copied().unwrap_or(0);
                        assert!(
                            *n <= up,
                            "one-time prekey {id} served {n} times, stored {up}"
                        );
                    }
                }
            }
            (Request::ListDevices { account }, Response::Devices(d)) => {
                let listed: Vec<DeviceInfo> = ready(store.list_devices(account)).expect("list");
                assert_eq!(&listed, d);
            }
            (Request::Send { .. }, Response::Accepted { timestamp }) => {
                stats.accepted += 1;
                assert!(authenticated_before.is_some());
                assert_eq!(*timestamp, now);
                for e in &effects {
                    if let Effect::MailArrived { device, up_to } = e {
                        let mb = ready(store.mailbox(device, 0, 100)).expect("mailbox");
                        let last = mb.last().expect("just queued");
                        assert_eq!(last.server_id, *up_to, "MailArrived names the new id");
                        queued_ids.push(last.server_id);
                    }
                }
            }
            (Request::DeviceActivity, Response::Activity(d)) => {
                stats.activity += 1;
                let me = authenticated_before.clone().expect("activity needs auth");
                let mut expected: Vec<DeviceLastSeen> = seen
                    .iter()
                    .filter(|(k, _)| k.0 == me.account)
                    .map(|(k, t)| DeviceLastSeen::from_unix_ms(k.1, *t))
                    .collect();
                expected.sort_by_key(|e| e.device_id);
                assert_eq!(d, &expected);
                assert!(d.iter().all(|e| e.last_seen_day % DAY_SECS == 0
                    && e.last_seen_day <= now / 1000
                    && now / 1000 - e.last_seen_day >= now / 1000 % DAY_SECS));
            }
            (Request::Ack { .. }, Response::Acked { removed }) => {
                stats.acked += usize::from(*removed);
            }
            (req, resp) => panic!("{req:?} answered with {resp:?}"),
        }
    }
    stats
}

fn check_roundtrip(resp: &Response) {
    let enc = resp.encode();
    let len = frame_len(enc[..4].try_into().expect("4 bytes")).expect("valid frame length");
    assert_eq!(len, enc.len() - 4);
    assert_eq!(Response::decode(&enc[4..]).as_ref(), Ok(resp));
}
