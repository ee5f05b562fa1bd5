//! The handler's tests without a network: a `Handler` over the memory store, driven
//! request by request (`Env`), one module per domain.

use super::*;
use crate::store::{AnyStore, MemoryStore};
use rand::SeedableRng;
use sealpost_session::{IdentityKeyPair, PreKeyStore, VerifiedBundle};
use sealpost_wire::KEM_PUBLIC_LEN;

const T0: u64 = 1_700_000_000_000;

/// The output of a handler or store future over the memory store, which is ready at once
/// (its methods never wait): one poll. Panics if the future is pending.
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a memory-store future was pending"),
    }
}
const X1: [u8; 32] = [0x11; 32];
const X2: [u8; 32] = [0x22; 32];

#[derive(Default)]
struct Capture(Mutex<Vec<(AccountId, String)>>);

impl CodeSender for Capture {
    fn send_code(&self, account: &AccountId, code: &VerificationCode) {
        self.0
            .lock()
            .unwrap()
            .push((account.clone(), code.as_str().to_owned()));
    }
}

impl Capture {
    fn last(&self, account: &AccountId) -> [u8; 6] {
        let v = self.0.lock().unwrap();
        let (_, c) = v.iter().rev().find(|(a, _)| a == account).unwrap();
        c.as_bytes().try_into().unwrap()
    }
}

struct Env {
    h: Handler,
    codes: Arc<Capture>,
    store: Arc<AnyStore>,
}

fn env_with(limits: Limits) -> Env {
    let store = Arc::new(AnyStore::from(MemoryStore::new()));
    let codes = Arc::new(Capture::default());
    let h = Handler::new(
        Arc::clone(&store),
        Arc::clone(&codes) as Arc<dyn CodeSender>,
        [5; 32],
        limits,
        StdRng::seed_from_u64(7),
    );
    Env { h, codes, store }
}

fn env() -> Env {
    env_with(Limits::default())
}

fn acct(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

fn err(r: &Response) -> ErrorCode {
    match r {
        Response::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

struct Dev {
    id: IdentityKeyPair,
    keys: PreKeyStore,
    address: DeviceAddress,
    conn: ConnectionState,
    exporter: [u8; 32],
}

impl Env {
    fn req(&self, c: &mut ConnectionState, x: [u8; 32], r: Request, now: u64) -> Response {
        ready(self.h.handle(c, x, r, now)).0
    }

    fn request_code(&self, c: &mut ConnectionState, a: &AccountId, now: u64) -> Response {
        self.req(c, X1, Request::RequestCode { account: a.clone() }, now)
    }

    fn register_req(
        &self,
        c: &mut ConnectionState,
        x: [u8; 32],
        a: &AccountId,
        code: [u8; 6],
        id: &IdentityKeyPair,
        now: u64,
    ) -> (Response, Vec<Effect>) {
        let identity = id.public().to_wire();
        let signature = id.sign(&register_signed_bytes(&x, a, &identity)).to_bytes();
        ready(self.h.handle(
            c,
            x,
            Request::Register {
                account: a.clone(),
                code,
                identity,
                signature,
                reglock: None,
            },
            now,
        ))
    }

    fn authenticate(&self, d: &mut Dev, now: u64) -> Response {
        let Response::ChallengeIssued { nonce } =
            self.req(&mut d.conn, d.exporter, Request::Challenge, now)
        else {
            panic!("no challenge");
        };
        let signature =
            d.id.sign(&auth_signed_bytes(&d.exporter, &nonce, &d.address))
                .to_bytes();
        self.req(
            &mut d.conn,
            d.exporter,
            Request::Authenticate {
                address: d.address.clone(),
                signature,
            },
            now,
        )
    }

    /// Registers and authenticates a fresh device of `account`.
    fn device(&self, account: &str, conn_id: u64, now: u64) -> Dev {
        let a = acct(account);
        let mut rng = rand::rng();
        let id = IdentityKeyPair::generate(&mut rng);
        let exporter = [conn_id as u8; 32];
        let mut conn = self.h.new_connection(conn_id, now);
        assert_eq!(
            self.request_code(&mut conn, &a, now),
            Response::CodeSent { expires_in: 600 }
        );
        let code = self.codes.last(&a);
        let (r, _) = self.register_req(&mut conn, exporter, &a, code, &id, now);
        let Response::Registered { device_id } = r else {
            panic!("{r:?}")
        };
        let mut d = Dev {
            id,
            keys: PreKeyStore::new(),
            address: DeviceAddress::new(a, DeviceId(device_id)),
            conn,
            exporter,
        };
        assert!(matches!(
            self.authenticate(&mut d, now),
            Response::Authenticated { .. }
        ));
        d
    }

    fn upload(&self, d: &mut Dev, one_time: usize, kem_one_time: usize, now: u64) -> Response {
        let mut rng = rand::rng();
        let upload = PreKeyUpload {
            signed_prekey: Some(d.keys.generate_signed_prekey(&mut rng, &d.id, 1)),
            one_time: d.keys.generate_one_time_prekeys(&mut rng, one_time),
            kem: {
                let mut k = d.keys.generate_kem_prekeys(
                    &mut rng,
                    &d.id,
                    KemPreKeyKind::OneTime,
                    kem_one_time,
                    1,
                );
                k.extend(d.keys.generate_kem_prekeys(
                    &mut rng,
                    &d.id,
                    KemPreKeyKind::LastResort,
                    1,
                    1,
                ));
                k
            },
        };
        self.req(&mut d.conn, d.exporter, Request::UploadPreKeys(upload), now)
    }

    fn send(
        &self,
        d: &mut Dev,
        to: &AccountId,
        devices: &[u32],
        now: u64,
    ) -> (Response, Vec<Effect>) {
        let envelopes = devices
            .iter()
            .map(|id| OutgoingEnvelope {
                device_id: *id,
                envelope: vec![0xee; 32],
            })
            .collect();
        ready(self.h.handle(
            &mut d.conn,
            d.exporter,
            Request::Send {
                message_id: [1; 16],
                sender_seq: 0,
                recipient: to.clone(),
                envelopes,
            },
            now,
        ))
    }
}

// Shared by the registration-lock and guardian tests (pin.rs) and the others.

use sealpost_crypto::ed25519::SigningKey;
use sealpost_pin::normalize::normalize;
use sealpost_pin::stretch::Argon2Params;
use sealpost_pin::threshold::GuardianResponse;
use sealpost_pin::vault::{Enrollment, MasterSecret, Recovery, enroll};
use sealpost_wire::relay::{CredentialScope, GuardianCredential, credential_signed_bytes};

const DAY_MS: u64 = 24 * 3600 * 1000;
const ALICE: &str = "+15550001111";

fn env_guardian(limits: Limits, guardian: GuardianConfig) -> Env {
    let mut e = env_with(limits);
    let store = Arc::clone(&e.store);
    e.h = Handler::new(
        store,
        Arc::clone(&e.codes) as Arc<dyn CodeSender>,
        [5; 32],
        e.h.limits().clone(),
        StdRng::seed_from_u64(8),
    )
    .with_guardian(guardian)
    .unwrap();
    e
}

fn loose_limits() -> Limits {
    Limits {
        code_requests_per_account: 1000,
        code_requests_per_connection: 1000,
        code_requests_per_source_per_hour: 1_000_000,
        code_requests_per_country_per_hour: 1_000_000,
        code_requests_per_hour: 1_000_000,
        bundle_fetches_per_pair_burst: 1_000_000,
        bundle_fetches_per_target_per_day: 1_000_000,
        ..Limits::default()
    }
}

impl Env {
    fn register_with(
        &self,
        c: &mut ConnectionState,
        a: &AccountId,
        code: [u8; 6],
        id: &IdentityKeyPair,
        reglock: Option<[u8; 32]>,
        now: u64,
    ) -> Response {
        let identity = id.public().to_wire();
        let signature = id
            .sign(&register_signed_bytes(&X2, a, &identity))
            .to_bytes();
        self.req(
            c,
            X2,
            Request::Register {
                account: a.clone(),
                code,
                identity,
                signature,
                reglock,
            },
            now,
        )
    }

    fn new_code(&self, c: &mut ConnectionState, a: &AccountId, now: u64) -> [u8; 6] {
        assert!(matches!(
            self.request_code(c, a, now),
            Response::CodeSent { .. }
        ));
        self.codes.last(a)
    }

    fn owner_credential(&self, d: &mut Dev, now: u64) -> GuardianCredential {
        match self.req(&mut d.conn, d.exporter, Request::GetGuardianCredential, now) {
            Response::Credential(c) => c,
            other => panic!("{other:?}"),
        }
    }
}

fn verify_credential(c: &GuardianCredential, issuer: [u8; 32]) {
    assert_eq!(c.issuer, issuer);
    VerifyingKey::from_bytes(&issuer)
        .unwrap()
        .verify(&c.signed_bytes(), &Signature::from_bytes(c.signature))
        .unwrap();
}

fn limited_by(r: &Response) -> (u32, &str) {
    match r {
        Response::Error {
            code: ErrorCode::RateLimited,
            retry_after,
            detail,
        } => (*retry_after, detail.as_str()),
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

mod auth;
mod business;
mod devices;
mod mail;
mod pin;
mod prekeys;
mod registration;
