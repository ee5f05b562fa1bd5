//! Request handling: plain functions over a [`Store`], with time passed in and no sockets.
//!
//! [`Handler::handle`] takes one decoded request of one connection and returns the response
//! and the [`Effect`]s the driver must carry out (wake a device's delivery, push
//! `PreKeysLow`, close connections of removed devices). The QUIC driver (`server`) calls it
//! on a blocking thread, except for `Send` and `Ack`, which it runs through
//! [`Handler::handle_concurrent_then`] (the store calls back once the commit is durable);
//! tests and the fuzz target call it directly.

use crate::StoreError;
use crate::codes::{CodeSender, VerificationCode};
use crate::guardian::GuardianConfig;
use crate::limits::{
    CODE_MAX_ATTEMPTS, CODE_TTL_SECS, LOW_WATERMARK_KEM, LOW_WATERMARK_ONE_TIME, Limits,
};
use crate::metrics;
use crate::ratelimit::{KeyedLimiter, TokenBucket};
use crate::store::{
    CODE_MAC_LEN, CodeAttempt, ConfirmOutcome, EnqueueOutcome, NewMessage, NewPreKeys,
    PreKeyLimits, PutVaultOutcome, QuotaCheck, QuotaKind, QuotaOutcome, RegLockPolicy,
    RegisterOutcome, Staged, Store, StoredEnvelope, SweepCounts, UploadOutcome, VaultAttempt,
    VaultRow,
};
use rand::Rng as _;
use rand::rngs::StdRng;
use sealpost_crypto::ct_eq;
use sealpost_crypto::ed25519::{Signature, SigningKey, VerifyingKey};
use sealpost_crypto::kdf::hmac_sha256;
use sealpost_crypto::kem::KemPublic;
use sealpost_pin::oprf::BlindedElement;
use sealpost_pin::threshold::KeyShare;
use sealpost_pin::vault::{RegLockToken, SuccessToken, VaultRecord, check_share};
use sealpost_wire::relay::{
    CODE_LEN, CREDENTIAL_MAX_SKEW, CREDENTIAL_TTL, CredentialScope, ErrorCode, GuardianCredential,
    OutgoingEnvelope, PreKeyUpload, REGLOCK_LAPSE, REGLOCK_MAX_ATTEMPTS, Request, Response,
    VAULT_ID_LEN, VAULT_SHARE_LEN, auth_signed_bytes, credential_signed_bytes,
    register_signed_bytes,
};
use sealpost_wire::{
    AccountId, DecodeError, DeviceAddress, DeviceId, IdentityBytes, KemPreKeyKind, KemPreKeyPublic,
    SignedPreKeyPublic, Writer,
};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use zeroize::Zeroizing;

/// Receives the response and effects of [`Handler::handle_concurrent_then`].
pub type Done = Box<dyn FnOnce(Response, Vec<Effect>) + Send>;

/// Receives the effects [`Handler::handle_concurrent_then`] produces before the outcome is
/// durable ([`Effect::MailStaged`]).
pub type Early = Box<dyn FnOnce(Vec<Effect>) + Send>;

/// Something the driver must do after a request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effect {
    /// New envelopes are committed to `device`'s mailbox: wake its delivery.
    MailArrived {
        /// The recipient device.
        device: DeviceAddress,
        /// The highest server id committed for `device` by this request.
        up_to: u64,
    },
    /// An envelope is written to `device`'s mailbox but its commit is still being flushed:
    /// a delivery that is up to date may push it now (spec/relay.md section 4). If the
    /// commit fails the envelope is not stored (the sender gets an error and retries); its
    /// server id is never used again.
    MailStaged {
        /// The recipient device.
        device: DeviceAddress,
        /// The envelope as stored.
        envelope: StoredEnvelope,
    },
    /// Push `PreKeysLow` to `device` if it is connected.
    PreKeysLow {
        /// The device.
        device: DeviceAddress,
        /// One-time X25519 prekeys left.
        one_time_prekeys: u32,
        /// One-time ML-KEM prekeys left.
        kem_prekeys: u32,
    },
    /// `device` acknowledged these envelopes: free its delivery window.
    Acked {
        /// The device.
        device: DeviceAddress,
        /// The acknowledged server ids.
        server_ids: Vec<u64>,
    },
    /// A registration removed these devices of `account`: close their connections.
    DevicesRemoved {
        /// The account.
        account: AccountId,
        /// The removed device ids.
        devices: Vec<u32>,
    },
}

#[derive(Clone, Debug)]
struct AuthenticatedDevice {
    address: DeviceAddress,
    identity: IdentityBytes,
}

/// Per-connection state: the pending challenge, the authenticated device and the
/// per-connection rate limits. Dropped with the connection.
#[derive(Debug)]
pub struct ConnectionState {
    id: u64,
    source: Option<IpAddr>,
    nonce: Option<[u8; 32]>,
    device: Option<AuthenticatedDevice>,
    code_requests: TokenBucket,
    auth_failures: TokenBucket,
    bundle_fetches: TokenBucket,
}

impl ConnectionState {
    /// The connection id given to [`Handler::new_connection`].
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The device this connection authenticated as, if any.
    pub fn authenticated(&self) -> Option<&DeviceAddress> {
        self.device.as_ref().map(|d| &d.address)
    }

    /// Sets the connection's source address, as validated by the transport (the driver
    /// calls this for every connection; spec/relay.md 7.1). Connections without one share a
    /// single source quota.
    #[must_use]
    pub fn with_source(mut self, ip: IpAddr) -> Self {
        self.source = Some(ip.to_canonical());
        self
    }

    /// The subject of the per-source quota: the IPv4 address, or the /64 of an IPv6 address
    /// (one subscriber usually holds a whole /64); `unknown` without a source.
    fn source_subject(&self) -> String {
        match self.source {
            None => "unknown".into(),
            Some(IpAddr::V4(a)) => a.to_string(),
            Some(IpAddr::V6(a)) => {
                let s = a.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        }
    }

    /// What [`Handler::handle_concurrent`] needs of this connection: its authenticated device.
    pub fn snapshot(&self) -> ConnectionSnapshot {
        ConnectionSnapshot {
            device: self.device.clone(),
        }
    }
}

/// The read-only part of a connection's state that `Send` and `Ack` use (see
/// [`Handler::handle_concurrent`]).
#[derive(Clone, Debug)]
pub struct ConnectionSnapshot {
    device: Option<AuthenticatedDevice>,
}

impl ConnectionSnapshot {
    /// The device the connection had authenticated as when the snapshot was taken.
    pub fn authenticated(&self) -> Option<&DeviceAddress> {
        self.device.as_ref().map(|d| &d.address)
    }
}

/// The request handler. Cheap to share (`Arc<Handler>`); all methods take `&self`.
pub struct Handler {
    store: Arc<dyn Store>,
    code_sender: Arc<dyn CodeSender>,
    code_key: Zeroizing<[u8; 32]>,
    limits: Limits,
    rng: Mutex<StdRng>,
    send_limiter: KeyedLimiter<DeviceAddress>,
    /// At most one drain notice per target account per `DRAIN_NOTICE_INTERVAL_MS`.
    drain_notices: KeyedLimiter<AccountId>,
    vault_limiter: KeyedLimiter<AccountId>,
    issuer: SigningKey,
    issuer_public: [u8; 32],
    guardian: GuardianConfig,
    trusted_issuers: Vec<[u8; 32]>,
}

/// Which vault request a credential is presented for (spec/pin.md section 7 scopes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VaultOp {
    Store,
    Fetch,
    Evaluate,
    Confirm,
    Delete,
}

impl VaultOp {
    fn permitted_by(self, scope: CredentialScope) -> bool {
        match scope {
            CredentialScope::Owner => true,
            CredentialScope::Recovery => {
                matches!(self, Self::Fetch | Self::Evaluate | Self::Confirm)
            }
        }
    }
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("limits", &self.limits)
            .field("guardian", &self.guardian)
            .finish_non_exhaustive()
    }
}

/// Shortest interval between two drain notices (`PreKeysLow` pushed because an account's
/// bundle fetch budget is used up) to one account: one hour.
pub const DRAIN_NOTICE_INTERVAL_MS: u64 = 60 * 60 * 1000;

/// Whether `account` is an E.164 number: `+` then 8 to 15 ASCII digits, the first not `0`.
pub fn is_e164(account: &AccountId) -> bool {
    let s = account.as_str().as_bytes();
    match s.split_first() {
        Some((b'+', digits)) => {
            (8..=15).contains(&digits.len())
                && digits.iter().all(u8::is_ascii_digit)
                && digits.first() != Some(&b'0')
        }
        _ => false,
    }
}

/// Two-digit country calling codes (ITU-T E.164 assignments; zones 1 and 7 are one digit,
/// every other code not listed here has three digits).
const TWO_DIGIT_CALLING_CODES: [&[u8; 2]; 44] = [
    b"20", b"27", b"30", b"31", b"32", b"33", b"34", b"36", b"39", b"40", b"41", b"43", b"44",
    b"45", b"46", b"47", b"48", b"49", b"51", b"52", b"53", b"54", b"55", b"56", b"57", b"58",
    b"60", b"61", b"62", b"63", b"64", b"65", b"66", b"81", b"82", b"84", b"86", b"90", b"91",
    b"92", b"93", b"94", b"95", b"98",
];

/// The country calling code of an E.164 number, with its `+` (spec/relay.md 7.1): `+1`
/// (the whole North American zone) and `+7` are one digit, the 44 two-digit codes of
/// ITU-T E.164 are two, every other code is the first three digits. Codes with the same
/// leading digits share one prefix, so the split needs no table of the three-digit codes.
/// `account` must pass [`is_e164`] (8+ digits); anything shorter gives its whole string.
pub fn calling_code(account: &AccountId) -> &str {
    let s = account.as_str();
    let digits = s.as_bytes().get(1..).unwrap_or_default();
    let len = match digits {
        [b'1' | b'7', ..] => 1,
        [a, b, ..] if TWO_DIGIT_CALLING_CODES.contains(&&[*a, *b]) => 2,
        _ => 3,
    };
    s.get(..1 + len).unwrap_or(s)
}

/// The `Error` response for a request that did not decode.
pub fn decode_error_response(e: &DecodeError) -> Response {
    let code = match e {
        DecodeError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
        DecodeError::UnknownType {
            what: "request", ..
        } => ErrorCode::UnknownRequest,
        // An upload over the per-request prekey limits (spec/relay.md section 3.5).
        DecodeError::TooMany {
            what: "one-time prekeys" | "KEM prekeys",
            ..
        } => ErrorCode::TooManyPreKeys,
        DecodeError::TooLong { .. } | DecodeError::TooMany { .. } => ErrorCode::TooLarge,
        _ => ErrorCode::Malformed,
    };
    Response::error(code, e.to_string())
}

fn rate_limited(what: &'static str, retry_after: u32) -> Response {
    metrics::rate_limited(what);
    Response::Error {
        code: ErrorCode::RateLimited,
        retry_after,
        detail: format!("rate limited ({what})"),
    }
}

fn internal(e: &StoreError) -> Response {
    tracing::error!(error = %e, "storage failure");
    Response::error(ErrorCode::Internal, "storage failure")
}

fn request_kind(r: &Request) -> &'static str {
    match r {
        Request::RequestCode { .. } => "request_code",
        Request::Register { .. } => "register",
        Request::Challenge => "challenge",
        Request::Authenticate { .. } => "authenticate",
        Request::UploadPreKeys(_) => "upload_prekeys",
        Request::FetchBundles { .. } => "fetch_bundles",
        Request::ListDevices { .. } => "list_devices",
        Request::Send { .. } => "send",
        Request::Ack { .. } => "ack",
        Request::SetRegistrationLock { .. } => "set_registration_lock",
        Request::ClearRegistrationLock => "clear_registration_lock",
        Request::GetGuardianCredential => "get_guardian_credential",
        Request::VaultStore { .. } => "vault_store",
        Request::VaultFetch { .. } => "vault_fetch",
        Request::VaultEvaluate { .. } => "vault_evaluate",
        Request::VaultConfirm { .. } => "vault_confirm",
        Request::VaultDelete { .. } => "vault_delete",
    }
}

/// Milliseconds to whole seconds, rounded up, saturating at `u32::MAX`.
fn secs_ceil(ms: u64) -> u32 {
    u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
}

fn sat_u16(n: u32) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

impl Handler {
    /// A handler over `store`. `code_key` is the relay-local secret under which code MACs
    /// are computed (keep it across restarts, or pending codes stop verifying); `rng` draws
    /// codes, nonces and OPRF proof nonces. The credential issuer key is drawn from `rng`
    /// (replace it with [`Handler::with_issuer`]) and the guardian role is off (switch it on
    /// with [`Handler::with_guardian`]).
    pub fn new(
        store: Arc<dyn Store>,
        code_sender: Arc<dyn CodeSender>,
        code_key: [u8; 32],
        limits: Limits,
        mut rng: StdRng,
    ) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut_slice());
        let issuer = SigningKey::from_seed(&seed);
        Self {
            vault_limiter: KeyedLimiter::new(limits.vault_rate(), limits.rate_limiter_max_keys),
            issuer_public: issuer.verifying_key().to_bytes(),
            issuer,
            guardian: GuardianConfig::disabled(),
            trusted_issuers: Vec::new(),
            send_limiter: KeyedLimiter::new(limits.send_rate(), limits.rate_limiter_max_keys),
            drain_notices: KeyedLimiter::new(
                crate::ratelimit::Rate::per(1, DRAIN_NOTICE_INTERVAL_MS),
                limits.rate_limiter_max_keys,
            ),
            store,
            code_sender,
            code_key: Zeroizing::new(code_key),
            limits,
            rng: Mutex::new(rng),
        }
    }

    /// Uses `issuer` to sign guardian credentials (the relay's `issuer.key`).
    #[must_use]
    pub fn with_issuer(mut self, issuer: SigningKey) -> Self {
        self.issuer_public = issuer.verifying_key().to_bytes();
        self.issuer = issuer;
        self
    }

    /// Configures the guardian role (spec/pin.md section 9); fails with the message of
    /// [`GuardianConfig::validate`].
    pub fn with_guardian(mut self, guardian: GuardianConfig) -> Result<Self, String> {
        guardian.validate()?;
        self.trusted_issuers = guardian.trusted_issuer_keys()?;
        self.guardian = guardian;
        Ok(self)
    }

    /// The public key of the credential issuer key.
    pub fn issuer_public(&self) -> [u8; 32] {
        self.issuer_public
    }

    /// The guardian configuration.
    pub fn guardian(&self) -> &GuardianConfig {
        &self.guardian
    }

    /// Called by the driver when a connection ends: a connection that was authenticated
    /// counts as its account being seen (`last_seen`, spec/pin.md section 10).
    pub fn connection_closed(&self, conn: &ConnectionState, now: u64) -> Result<(), StoreError> {
        match &conn.device {
            Some(d) => self.store.touch_account(&d.address.account, now),
            None => Ok(()),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// State for a new connection (`id` is the driver's, for logs).
    pub fn new_connection(&self, id: u64, now: u64) -> ConnectionState {
        ConnectionState {
            id,
            source: None,
            nonce: None,
            device: None,
            code_requests: TokenBucket::new(self.limits.code_connection_rate(), now),
            auth_failures: TokenBucket::new(self.limits.auth_failure_rate(), now),
            bundle_fetches: TokenBucket::new(self.limits.bundle_rate(), now),
        }
    }

    /// Deletes expired codes and envelopes, forgets idle rate-limit buckets and updates the
    /// queue metrics. Called periodically by the driver.
    pub fn sweep(&self, now: u64) -> Result<SweepCounts, StoreError> {
        self.send_limiter.evict_idle(now);
        self.drain_notices.evict_idle(now);
        self.vault_limiter.evict_idle(now);
        let swept = self.store.sweep(now, self.limits.mailbox_ttl_ms())?;
        if swept.envelopes > 0 {
            metrics::expired(swept.envelopes);
            tracing::info!(
                envelopes = swept.envelopes,
                "expired envelopes deleted unread"
            );
        }
        metrics::queue_depth(self.store.total_queued()?);
        Ok(swept)
    }

    /// Charges `quotas` (all or none); a used-up quota gives `RateLimited` with the seconds
    /// until it has room again.
    fn take_quotas(&self, quotas: &[QuotaCheck], now: u64) -> Result<(), Box<Response>> {
        match self.store.take_quotas(quotas, now) {
            Ok(QuotaOutcome::Taken) => Ok(()),
            Ok(QuotaOutcome::Exceeded {
                index,
                retry_after_ms,
            }) => {
                let what = quotas.get(index).map_or("quota", |q| q.kind.as_str());
                Err(Box::new(rate_limited(
                    what,
                    secs_ceil(retry_after_ms).max(1),
                )))
            }
            Err(e) => Err(Box::new(internal(&e))),
        }
    }

    fn random<const N: usize>(&self) -> [u8; N] {
        let mut out = [0u8; N];
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fill_bytes(&mut out);
        out
    }

    fn random_code(&self) -> VerificationCode {
        // Uniform in 0..=999999: reject the top 967295 values of u32 (4294 * 10^6 fits).
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let x = rng.next_u32();
            if x < 4_294_000_000 {
                let mut n = x % 1_000_000;
                let mut digits = [b'0'; CODE_LEN];
                for d in digits.iter_mut().rev() {
                    *d = b'0' + (n % 10) as u8;
                    n /= 10;
                }
                if let Some(code) = VerificationCode::new(digits) {
                    return code;
                }
            }
        }
    }

    fn code_mac(&self, account: &AccountId, code: &[u8; CODE_LEN]) -> [u8; CODE_MAC_LEN] {
        let mut w = Writer::new();
        account.encode_into(&mut w);
        w.bytes(code);
        let input = Zeroizing::new(w.into_bytes());
        hmac_sha256(self.code_key.as_slice(), &input)
    }

    /// Decodes a frame body and handles it; undecodable bodies get the matching `Error`.
    pub fn handle_frame(
        &self,
        conn: &mut ConnectionState,
        exporter: [u8; 32],
        body: &[u8],
        now: u64,
    ) -> (Response, Vec<Effect>) {
        match Request::decode(body) {
            Ok(req) => self.handle(conn, exporter, req, now),
            Err(e) => {
                metrics::frame("malformed");
                tracing::debug!(conn = conn.id, error = %e, "undecodable request");
                (decode_error_response(&e), Vec::new())
            }
        }
    }

    /// Handles one request of connection `conn`, whose TLS exporter is `exporter`, at
    /// Unix time `now` (ms).
    pub fn handle(
        &self,
        conn: &mut ConnectionState,
        exporter: [u8; 32],
        request: Request,
        now: u64,
    ) -> (Response, Vec<Effect>) {
        let kind = request_kind(&request);
        metrics::frame(kind);
        let mut effects = Vec::new();
        let response = match request {
            Request::RequestCode { account } => self.request_code(conn, &account, now),
            Request::Register {
                account,
                code,
                identity,
                signature,
                reglock,
            } => {
                // Only the verifier of the token is used; the token is wiped here.
                let presented = reglock.map(|t| RegLockToken::from_bytes(t).verifier());
                let r = self.register(
                    &exporter,
                    &account,
                    &code,
                    &identity,
                    &signature,
                    presented,
                    now,
                    &mut effects,
                );
                // A connection authenticated as a device of this account is no longer
                // authenticated: that device has just been removed.
                if matches!(r, Response::Registered { .. })
                    && conn
                        .device
                        .as_ref()
                        .is_some_and(|d| d.address.account == account)
                {
                    conn.device = None;
                }
                r
            }
            Request::Challenge => {
                let nonce = self.random::<32>();
                conn.nonce = Some(nonce);
                Response::ChallengeIssued { nonce }
            }
            Request::Authenticate { address, signature } => {
                self.authenticate(conn, &exporter, address, &signature, now)
            }
            Request::VaultStore {
                credential,
                share,
                success_verifier,
                record,
            } => {
                let share = Zeroizing::new(share);
                self.vault_store(&credential, &share, &success_verifier, record, now)
            }
            Request::VaultFetch { credential } => self.vault_fetch(&credential, now),
            Request::VaultEvaluate {
                credential,
                vault_id,
                blinded,
            } => self.vault_evaluate(&credential, &vault_id, &blinded, now),
            Request::VaultConfirm {
                credential,
                vault_id,
                token,
            } => self.vault_confirm(&credential, &vault_id, SuccessToken::from_bytes(token), now),
            Request::VaultDelete { credential } => self.vault_delete(&credential, now),
            other => match conn.device.clone() {
                None => Response::error(
                    ErrorCode::Unauthenticated,
                    "authenticate the connection first",
                ),
                Some(me) => self.authenticated(conn, &me, other, now, &mut effects),
            },
        };
        if let Response::Error { code, .. } = &response {
            tracing::debug!(conn = conn.id, request = kind, ?code, "request refused");
        }
        (response, effects)
    }

    /// Handles a well-formed `Send` or `Ack` frame body without the connection's mutable
    /// state: these two requests read only the authenticated device and change nothing else
    /// of the connection, so a driver may run several of one connection's concurrently, each
    /// joining the store's group commit (spec/relay.md section 1 allows concurrent
    /// processing of requests on different streams). Returns `None` for any other body,
    /// which the driver handles with [`Handler::handle_frame`] under the connection's state.
    pub fn handle_concurrent(
        &self,
        conn: &ConnectionSnapshot,
        body: &[u8],
        now: u64,
    ) -> Option<(Response, Vec<Effect>)> {
        let request = match Request::decode(body) {
            Ok(r @ (Request::Send { .. } | Request::Ack { .. })) => r,
            _ => return None,
        };
        let kind = request_kind(&request);
        metrics::frame(kind);
        let mut effects = Vec::new();
        let response = match &conn.device {
            None => Response::error(
                ErrorCode::Unauthenticated,
                "authenticate the connection first",
            ),
            Some(me) => self.send_or_ack(me, request, now, &mut effects),
        };
        if let Response::Error { code, .. } = &response {
            tracing::debug!(request = kind, ?code, "request refused");
        }
        Some((response, effects))
    }

    /// [`Handler::handle_concurrent`] for callers that must not hold a thread while the
    /// store commits (the async driver): the request is decoded and checked on the calling
    /// thread, the store work is queued with [`Store::enqueue_then`] / [`Store::ack_then`],
    /// and `done` gets the response and effects once the outcome is durable (possibly on the
    /// store's writer thread, so `done` must be quick and must not block). Before that, a
    /// `Send` may hand [`Effect::MailStaged`] effects to `early` (at most once, from the same
    /// thread, under the same rules) as soon as its envelopes are written. Returns `done`
    /// unused when `body` is not a well-formed `Send` or `Ack` (use [`Handler::handle_frame`]).
    pub fn handle_concurrent_then(
        &self,
        conn: &ConnectionSnapshot,
        body: &[u8],
        now: u64,
        early: Early,
        done: Done,
    ) -> Option<Done> {
        let request = match Request::decode(body) {
            Ok(r @ (Request::Send { .. } | Request::Ack { .. })) => r,
            _ => return Some(done),
        };
        let kind = request_kind(&request);
        metrics::frame(kind);
        let finish = move |response: Response, effects: Vec<Effect>| {
            if let Response::Error { code, .. } = &response {
                tracing::debug!(request = kind, ?code, "request refused");
            }
            done(response, effects);
        };
        let Some(me) = &conn.device else {
            finish(
                Response::error(
                    ErrorCode::Unauthenticated,
                    "authenticate the connection first",
                ),
                Vec::new(),
            );
            return None;
        };
        match request {
            Request::Send {
                message_id,
                sender_seq,
                recipient,
                envelopes,
            } => {
                if let Err(s) = self.send_limiter.try_take(&me.address, now) {
                    finish(rate_limited("sends", s), Vec::new());
                    return None;
                }
                let message =
                    self.new_message(me, &message_id, sender_seq, &recipient, &envelopes, now);
                let account = recipient.clone();
                let staged: Staged = Box::new(move |written| {
                    early(
                        written
                            .into_iter()
                            .map(|(device_id, envelope)| Effect::MailStaged {
                                device: DeviceAddress::new(account.clone(), DeviceId(device_id)),
                                envelope,
                            })
                            .collect(),
                    );
                });
                let recipient = recipient.clone();
                self.store.enqueue_then(
                    &message,
                    staged,
                    Box::new(move |outcome| {
                        let mut effects = Vec::new();
                        let response = send_response(&recipient, now, outcome, &mut effects);
                        finish(response, effects);
                    }),
                );
            }
            Request::Ack { server_ids } => {
                let device = me.address.clone();
                let ids = server_ids.clone();
                self.store.ack_then(
                    &me.address,
                    &ids,
                    Box::new(move |outcome| {
                        let mut effects = Vec::new();
                        let response = ack_response(device, server_ids, outcome, &mut effects);
                        finish(response, effects);
                    }),
                );
            }
            _ => finish(
                Response::error(ErrorCode::Internal, "not a send or ack"),
                Vec::new(),
            ),
        }
        None
    }

    fn send_or_ack(
        &self,
        me: &AuthenticatedDevice,
        request: Request,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Response {
        match request {
            Request::Send {
                message_id,
                sender_seq,
                recipient,
                envelopes,
            } => {
                if let Err(s) = self.send_limiter.try_take(&me.address, now) {
                    return rate_limited("sends", s);
                }
                let message =
                    self.new_message(me, &message_id, sender_seq, &recipient, &envelopes, now);
                send_response(&recipient, now, self.store.enqueue(&message), effects)
            }
            Request::Ack { server_ids } => {
                let outcome = self.store.ack(&me.address, &server_ids);
                ack_response(me.address.clone(), server_ids, outcome, effects)
            }
            _ => Response::error(ErrorCode::Internal, "not a send or ack"),
        }
    }

    fn authenticated(
        &self,
        conn: &mut ConnectionState,
        me: &AuthenticatedDevice,
        request: Request,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Response {
        match request {
            Request::UploadPreKeys(upload) => self.upload(me, &upload),
            Request::FetchBundles { account } => {
                if let Err(s) = conn.bundle_fetches.try_take(self.limits.bundle_rate(), now) {
                    return rate_limited("bundles", s);
                }
                if let Err(r) = self.take_fetch_quotas(me, &account, now, effects) {
                    return *r;
                }
                self.fetch_bundles(&account, effects)
            }
            Request::ListDevices { account } => match self.store.list_devices(&account) {
                Ok(d) if d.is_empty() => Response::error(ErrorCode::UnknownAccount, "no devices"),
                Ok(d) => Response::Devices(d),
                Err(e) => internal(&e),
            },
            request @ (Request::Send { .. } | Request::Ack { .. }) => {
                self.send_or_ack(me, request, now, effects)
            }
            Request::SetRegistrationLock { token } => {
                let verifier = RegLockToken::from_bytes(token).verifier();
                self.set_registration_lock(me, Some(&verifier), now)
            }
            Request::ClearRegistrationLock => self.set_registration_lock(me, None, now),
            Request::GetGuardianCredential => Response::Credential(self.issue_credential(
                &me.address.account,
                CredentialScope::Owner,
                now,
            )),
            Request::RequestCode { .. }
            | Request::Register { .. }
            | Request::Challenge
            | Request::Authenticate { .. }
            | Request::VaultStore { .. }
            | Request::VaultFetch { .. }
            | Request::VaultEvaluate { .. }
            | Request::VaultConfirm { .. }
            | Request::VaultDelete { .. } => {
                // Dispatched before; kept total so a new variant cannot fall through silently.
                Response::error(ErrorCode::Internal, "request dispatched twice")
            }
        }
    }

    fn request_code(&self, conn: &mut ConnectionState, account: &AccountId, now: u64) -> Response {
        if !is_e164(account) {
            return Response::error(ErrorCode::InvalidAccount, "account is not an E.164 number");
        }
        if let Err(s) = conn
            .code_requests
            .try_take(self.limits.code_connection_rate(), now)
        {
            return rate_limited("code_connection", s);
        }
        let quotas = [
            QuotaCheck {
                kind: QuotaKind::CodeNumber,
                subject: account.as_str().to_owned(),
                rate: self.limits.code_account_rate(),
            },
            QuotaCheck {
                kind: QuotaKind::CodeSource,
                subject: conn.source_subject(),
                rate: self.limits.code_source_rate(),
            },
            QuotaCheck {
                kind: QuotaKind::CodeCountry,
                subject: calling_code(account).to_owned(),
                rate: self.limits.code_country_rate(),
            },
            QuotaCheck {
                kind: QuotaKind::CodeGlobal,
                subject: String::new(),
                rate: self.limits.code_global_rate(),
            },
        ];
        if let Err(r) = self.take_quotas(&quotas, now) {
            return *r;
        }
        let code = self.random_code();
        let mac = self.code_mac(account, code.as_bytes());
        let expires_at = now.saturating_add(u64::from(CODE_TTL_SECS) * 1000);
        if let Err(e) = self.store.put_code(account, &mac, expires_at) {
            return internal(&e);
        }
        self.code_sender.send_code(account, &code);
        tracing::info!(conn = conn.id, account = ?account, "verification code issued");
        Response::CodeSent {
            expires_in: CODE_TTL_SECS,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        &self,
        exporter: &[u8; 32],
        account: &AccountId,
        code: &[u8; CODE_LEN],
        identity: &IdentityBytes,
        signature: &[u8; 64],
        reglock_verifier: Option<[u8; 32]>,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Response {
        if !is_e164(account) {
            return Response::error(ErrorCode::InvalidAccount, "account is not an E.164 number");
        }
        let stored = match self
            .store
            .begin_code_attempt(account, now, CODE_MAX_ATTEMPTS)
        {
            Ok(CodeAttempt::Missing | CodeAttempt::Expired) => {
                return Response::error(ErrorCode::CodeInvalid, "no valid code");
            }
            Ok(CodeAttempt::Exhausted) => {
                return Response::error(
                    ErrorCode::CodeAttemptsExceeded,
                    "too many wrong codes; request a new one",
                );
            }
            Ok(CodeAttempt::Check { mac, .. }) => mac,
            Err(e) => return internal(&e),
        };
        let presented = self.code_mac(account, code);
        if !ct_eq(&presented, &stored) {
            tracing::info!(account = ?account, "wrong verification code");
            return Response::error(ErrorCode::CodeInvalid, "wrong code");
        }
        let signed = register_signed_bytes(exporter, account, identity);
        let valid = VerifyingKey::from_bytes(&identity.signing)
            .and_then(|k| k.verify(&signed, &Signature::from_bytes(*signature)))
            .is_ok();
        if !valid {
            return Response::error(
                ErrorCode::InvalidSignature,
                "registration signature does not verify",
            );
        }
        let policy = RegLockPolicy {
            presented: reglock_verifier,
            max_failures: u32::from(REGLOCK_MAX_ATTEMPTS),
            lapse: REGLOCK_LAPSE.saturating_mul(1000),
        };
        match self
            .store
            .register_device(account, identity, &stored, &policy, now)
        {
            Ok(RegisterOutcome::Locked {
                lapses_at,
                attempts_remaining,
            }) => {
                tracing::info!(
                    account = ?account,
                    attempts_remaining,
                    token = reglock_verifier.is_some(),
                    "registration refused: registration lock"
                );
                Response::RegistrationLocked {
                    lapses_in: secs_ceil(lapses_at.saturating_sub(now)),
                    attempts_remaining: sat_u16(attempts_remaining),
                    credential: self.issue_credential(account, CredentialScope::Recovery, now),
                }
            }
            Ok(RegisterOutcome::Registered { device_id, removed }) => {
                tracing::info!(
                    account = ?account,
                    device_id,
                    removed = removed.len(),
                    "device registered"
                );
                if !removed.is_empty() {
                    effects.push(Effect::DevicesRemoved {
                        account: account.clone(),
                        devices: removed,
                    });
                }
                Response::Registered { device_id }
            }
            Ok(RegisterOutcome::CodeGone) => {
                Response::error(ErrorCode::CodeInvalid, "code already used")
            }
            Ok(RegisterOutcome::DeviceIdsExhausted) => {
                Response::error(ErrorCode::Internal, "device ids exhausted")
            }
            Err(e) => internal(&e),
        }
    }

    fn set_registration_lock(
        &self,
        me: &AuthenticatedDevice,
        verifier: Option<&[u8; 32]>,
        now: u64,
    ) -> Response {
        let account = &me.address.account;
        match self.store.set_registration_lock(account, verifier, now) {
            Ok(true) => {
                tracing::info!(account = ?account, set = verifier.is_some(), "registration lock changed");
                if verifier.is_some() {
                    Response::RegistrationLockSet
                } else {
                    Response::RegistrationLockCleared
                }
            }
            Ok(false) => Response::error(ErrorCode::UnknownAccount, "account is not registered"),
            Err(e) => internal(&e),
        }
    }

    /// Signs a credential for `account` valid for `CREDENTIAL_TTL` from `now` (ms).
    fn issue_credential(
        &self,
        account: &AccountId,
        scope: CredentialScope,
        now: u64,
    ) -> GuardianCredential {
        let expires_at = (now / 1000).saturating_add(CREDENTIAL_TTL);
        let signed = credential_signed_bytes(account, scope, expires_at, &self.issuer_public);
        GuardianCredential {
            account: account.clone(),
            scope,
            expires_at,
            issuer: self.issuer_public,
            signature: self.issuer.sign(&signed).to_bytes(),
        }
    }

    /// The checks of spec/pin.md section 7, in order, then the per-account rate limit.
    /// `Err` carries the refusal (boxed: a `Response` is large).
    fn check_credential(
        &self,
        c: &GuardianCredential,
        op: VaultOp,
        now: u64,
    ) -> Result<(), Box<Response>> {
        if !self.guardian.enabled {
            return Err(Box::new(Response::error(
                ErrorCode::NotGuardian,
                "this relay is not a guardian",
            )));
        }
        let invalid = |why: &str| Response::error(ErrorCode::CredentialInvalid, why);
        if c.issuer != self.issuer_public && !self.trusted_issuers.contains(&c.issuer) {
            return Err(Box::new(invalid("credential issuer is not trusted")));
        }
        let valid = VerifyingKey::from_bytes(&c.issuer)
            .and_then(|k| k.verify(&c.signed_bytes(), &Signature::from_bytes(c.signature)))
            .is_ok();
        if !valid {
            return Err(Box::new(invalid("credential signature does not verify")));
        }
        let now_s = now / 1000;
        if c.expires_at <= now_s {
            return Err(Box::new(invalid("credential expired")));
        }
        if c.expires_at > now_s + CREDENTIAL_TTL + CREDENTIAL_MAX_SKEW {
            return Err(Box::new(invalid("credential expiry too far in the future")));
        }
        if !op.permitted_by(c.scope) {
            return Err(Box::new(invalid(
                "credential scope does not permit this request",
            )));
        }
        if !self.guardian.covers(&c.account) {
            return Err(Box::new(Response::error(
                ErrorCode::NotGuardian,
                "this relay is not a guardian for this account",
            )));
        }
        if let Err(s) = self.vault_limiter.try_take(&c.account, now) {
            return Err(Box::new(rate_limited("vault", s)));
        }
        Ok(())
    }

    fn max_attempts(&self) -> u32 {
        u32::from(self.guardian.max_attempts)
    }

    fn remaining(&self, used: u32) -> u16 {
        sat_u16(self.max_attempts().saturating_sub(used))
    }

    fn vault_store(
        &self,
        c: &GuardianCredential,
        share: &[u8; VAULT_SHARE_LEN],
        success_verifier: &[u8; 32],
        record: Vec<u8>,
        now: u64,
    ) -> Response {
        if let Err(r) = self.check_credential(c, VaultOp::Store, now) {
            return *r;
        }
        let invalid = |why: String| Response::error(ErrorCode::InvalidVault, why);
        let decoded = match VaultRecord::decode(&record) {
            Ok(r) => r,
            Err(e) => return invalid(format!("vault record: {e}")),
        };
        let key = match KeyShare::from_bytes(share) {
            Ok(k) => k,
            Err(_) => return invalid("the share does not decode".into()),
        };
        if check_share(&decoded, &key).is_err() {
            return invalid("the share does not match its commitment in the record".into());
        }
        let row = VaultRow {
            vault_id: *decoded.vault_id(),
            share: Zeroizing::new(*share),
            success_verifier: *success_verifier,
            record,
            attempts_used: 0,
        };
        match self
            .store
            .put_vault(&c.account, &row, self.guardian.max_vaults, now)
        {
            Ok(PutVaultOutcome::Stored) => {
                tracing::info!(account = ?c.account, index = key.index(), "vault stored");
                Response::VaultStored
            }
            Ok(PutVaultOutcome::Full) => {
                tracing::warn!("guardian holds max_vaults vaults; VaultStore refused");
                Response::error(ErrorCode::NotGuardian, "this guardian is full")
            }
            Err(e) => internal(&e),
        }
    }

    fn vault_fetch(&self, c: &GuardianCredential, now: u64) -> Response {
        if let Err(r) = self.check_credential(c, VaultOp::Fetch, now) {
            return *r;
        }
        match self.store.vault(&c.account) {
            Ok(Some(v)) => Response::Vault {
                index: v.index(),
                attempts_remaining: self.remaining(v.attempts_used),
                record: v.record.clone(),
            },
            Ok(None) => Response::error(ErrorCode::VaultNotFound, "no vault"),
            Err(e) => internal(&e),
        }
    }

    fn vault_evaluate(
        &self,
        c: &GuardianCredential,
        vault_id: &[u8; VAULT_ID_LEN],
        blinded: &[u8; 32],
        now: u64,
    ) -> Response {
        if let Err(r) = self.check_credential(c, VaultOp::Evaluate, now) {
            return *r;
        }
        // An invalid element is no PIN guess: refused before anything is counted.
        let Ok(blinded) = BlindedElement::from_slice(blinded) else {
            return Response::error(
                ErrorCode::Malformed,
                "blinded element is not a canonical non-identity ristretto255 element",
            );
        };
        // Count (and at the limit delete) durably first; evaluate only after the commit.
        let (share, used, deleted) =
            match self
                .store
                .begin_vault_evaluation(&c.account, vault_id, self.max_attempts(), now)
            {
                Ok(VaultAttempt::Counted {
                    share,
                    attempts_used,
                    deleted,
                }) => (share, attempts_used, deleted),
                Ok(VaultAttempt::NotFound) => {
                    return Response::error(ErrorCode::VaultNotFound, "no vault with this id");
                }
                Err(e) => return internal(&e),
            };
        let Ok(key) = KeyShare::from_bytes(share.as_slice()) else {
            tracing::error!(account = ?c.account, "stored vault share does not decode");
            return Response::error(ErrorCode::Internal, "stored share is corrupt");
        };
        let (evaluated, proof) = {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            key.key().evaluate(&blinded, &mut *rng)
        };
        if deleted {
            tracing::info!(account = ?c.account, "vault deleted at the attempt limit");
        }
        Response::VaultEvaluated {
            index: key.index(),
            evaluated: evaluated.to_bytes(),
            proof: proof.to_bytes(),
            attempts_remaining: self.remaining(used),
        }
    }

    fn vault_confirm(
        &self,
        c: &GuardianCredential,
        vault_id: &[u8; VAULT_ID_LEN],
        token: SuccessToken,
        now: u64,
    ) -> Response {
        if let Err(r) = self.check_credential(c, VaultOp::Confirm, now) {
            return *r;
        }
        let verifier = token.verifier();
        drop(token);
        match self
            .store
            .confirm_vault(&c.account, vault_id, &verifier, now)
        {
            Ok(ConfirmOutcome::Confirmed) => {
                tracing::info!(account = ?c.account, "vault confirmed; attempts reset");
                Response::VaultConfirmed {
                    attempts_remaining: self.remaining(0),
                }
            }
            Ok(ConfirmOutcome::Mismatch) => {
                Response::error(ErrorCode::CredentialInvalid, "wrong success token")
            }
            Ok(ConfirmOutcome::NotFound) => {
                Response::error(ErrorCode::VaultNotFound, "no vault with this id")
            }
            Err(e) => internal(&e),
        }
    }

    fn vault_delete(&self, c: &GuardianCredential, now: u64) -> Response {
        if let Err(r) = self.check_credential(c, VaultOp::Delete, now) {
            return *r;
        }
        match self.store.delete_vault(&c.account) {
            Ok(existed) => {
                tracing::info!(account = ?c.account, existed, "vault deleted");
                Response::VaultDeleted
            }
            Err(e) => internal(&e),
        }
    }

    fn authenticate(
        &self,
        conn: &mut ConnectionState,
        exporter: &[u8; 32],
        address: DeviceAddress,
        signature: &[u8; 64],
        now: u64,
    ) -> Response {
        if conn.device.is_some() {
            return Response::error(ErrorCode::AlreadyAuthenticated, "already authenticated");
        }
        let rate = self.limits.auth_failure_rate();
        if let Err(s) = conn.auth_failures.check(rate, now) {
            return rate_limited("auth", s);
        }
        let nonce = conn.nonce.take();
        let identity = match (&nonce, self.store.device_identity(&address)) {
            (_, Err(e)) => return internal(&e),
            (Some(nonce), Ok(Some(identity))) => {
                let signed = auth_signed_bytes(exporter, nonce, &address);
                VerifyingKey::from_bytes(&identity.signing)
                    .and_then(|k| k.verify(&signed, &Signature::from_bytes(*signature)))
                    .is_ok()
                    .then_some(identity)
            }
            _ => None,
        };
        let Some(identity) = identity else {
            metrics::auth_failure();
            // The failure is counted; the check above refuses once the bucket is empty.
            let _ = conn.auth_failures.try_take(rate, now);
            tracing::info!(conn = conn.id, device = ?address, "authentication failed");
            return Response::error(ErrorCode::AuthFailed, "authentication failed");
        };
        let counts = match self.store.prekey_counts(&address) {
            Ok(c) => c,
            Err(e) => return internal(&e),
        };
        let queued = match self.store.queue_depth(&address) {
            Ok(q) => q,
            Err(e) => return internal(&e),
        };
        let sender_seq = match self.store.sender_seq(&address) {
            Ok(s) => s,
            Err(e) => return internal(&e),
        };
        if let Err(e) = self.store.touch_account(&address.account, now) {
            return internal(&e);
        }
        tracing::info!(conn = conn.id, device = ?address, queued, "device authenticated");
        conn.device = Some(AuthenticatedDevice { address, identity });
        Response::Authenticated {
            one_time_prekeys: counts.one_time_prekeys,
            kem_prekeys: counts.kem_prekeys,
            queued,
            sender_seq,
        }
    }

    fn upload(&self, me: &AuthenticatedDevice, upload: &PreKeyUpload) -> Response {
        let keys = match verify_upload(&me.identity, upload) {
            Ok(k) => k,
            Err(detail) => return Response::error(ErrorCode::InvalidPreKey, detail),
        };
        let limits = PreKeyLimits {
            max_one_time: self.limits.max_stored_one_time,
            max_kem_one_time: self.limits.max_stored_kem,
        };
        match self.store.store_prekeys(&me.address, &keys, &limits) {
            Ok(UploadOutcome::Stored(c)) => Response::PreKeysStored {
                one_time_prekeys: c.one_time_prekeys,
                kem_prekeys: c.kem_prekeys,
            },
            Ok(UploadOutcome::UnknownDevice) => {
                Response::error(ErrorCode::Unauthenticated, "device is no longer registered")
            }
            Ok(UploadOutcome::IdConflict) => {
                Response::error(ErrorCode::InvalidPreKey, "prekey id already stored")
            }
            Ok(UploadOutcome::TooMany) => Response::error(
                ErrorCode::TooManyPreKeys,
                "upload would exceed the stored prekey limit",
            ),
            Err(e) => internal(&e),
        }
    }

    /// Charges a `FetchBundles` of `target` by `me` to the per-pair and per-target quotas
    /// (spec/relay.md 3.6). When the target's daily budget is used up, its devices are told
    /// with a `PreKeysLow` push (at most one per `DRAIN_NOTICE_INTERVAL_MS`): their bundles
    /// are being fetched abnormally often.
    fn take_fetch_quotas(
        &self,
        me: &AuthenticatedDevice,
        target: &AccountId,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<(), Box<Response>> {
        let quotas = [
            QuotaCheck {
                kind: QuotaKind::FetchPair,
                subject: format!("{} {}", me.address.account.as_str(), target.as_str()),
                rate: self.limits.bundle_pair_rate(),
            },
            QuotaCheck {
                kind: QuotaKind::FetchTarget,
                subject: target.as_str().to_owned(),
                rate: self.limits.bundle_target_rate(),
            },
        ];
        match self.store.take_quotas(&quotas, now) {
            Ok(QuotaOutcome::Taken) => Ok(()),
            Ok(QuotaOutcome::Exceeded {
                index,
                retry_after_ms,
            }) => {
                let kind = quotas.get(index).map_or(QuotaKind::FetchPair, |q| q.kind);
                if kind == QuotaKind::FetchTarget
                    && self.drain_notices.try_take(target, now).is_ok()
                {
                    tracing::warn!(account = ?target, "bundle fetch budget of an account used up");
                    self.drain_notice(target, effects);
                }
                Err(Box::new(rate_limited(
                    kind.as_str(),
                    secs_ceil(retry_after_ms).max(1),
                )))
            }
            Err(e) => Err(Box::new(internal(&e))),
        }
    }

    /// `PreKeysLow` with the current counts for every device of `target`.
    fn drain_notice(&self, target: &AccountId, effects: &mut Vec<Effect>) {
        let Ok(devices) = self.store.list_devices(target) else {
            return;
        };
        for d in devices {
            let device = DeviceAddress::new(target.clone(), DeviceId(d.device_id));
            if let Ok(c) = self.store.prekey_counts(&device) {
                effects.push(Effect::PreKeysLow {
                    device,
                    one_time_prekeys: c.one_time_prekeys,
                    kem_prekeys: c.kem_prekeys,
                });
            }
        }
    }

    fn fetch_bundles(&self, account: &AccountId, effects: &mut Vec<Effect>) -> Response {
        match self.store.take_bundles(account) {
            Ok(None) => Response::error(ErrorCode::UnknownAccount, "no devices"),
            Ok(Some(taken)) => {
                let mut bundles = Vec::with_capacity(taken.len());
                for t in taken {
                    if t.remaining.one_time_prekeys < LOW_WATERMARK_ONE_TIME
                        || t.remaining.kem_prekeys < LOW_WATERMARK_KEM
                    {
                        effects.push(Effect::PreKeysLow {
                            device: DeviceAddress::new(
                                account.clone(),
                                DeviceId(t.bundle.device_id),
                            ),
                            one_time_prekeys: t.remaining.one_time_prekeys,
                            kem_prekeys: t.remaining.kem_prekeys,
                        });
                    }
                    bundles.push(t.bundle);
                }
                Response::Bundles(bundles)
            }
            Err(e) => internal(&e),
        }
    }

    fn new_message<'a>(
        &self,
        me: &'a AuthenticatedDevice,
        message_id: &'a [u8; 16],
        sender_seq: u64,
        recipient: &'a AccountId,
        envelopes: &'a [OutgoingEnvelope],
        now: u64,
    ) -> NewMessage<'a> {
        let exclude_device = (recipient == &me.address.account).then_some(me.address.device.0);
        NewMessage {
            sender: &me.address,
            recipient,
            exclude_device,
            message_id,
            sender_seq,
            timestamp: now,
            envelopes,
            max_queued: self.limits.max_queued_per_device,
        }
    }
}

/// The response to a `Send` that the store answered with `outcome`.
fn send_response(
    recipient: &AccountId,
    now: u64,
    outcome: Result<EnqueueOutcome, StoreError>,
    effects: &mut Vec<Effect>,
) -> Response {
    match outcome {
        Ok(EnqueueOutcome::Queued(ids)) => {
            metrics::queued(ids.len() as u64);
            for &(device_id, server_id) in &ids {
                effects.push(Effect::MailArrived {
                    device: DeviceAddress::new(recipient.clone(), DeviceId(device_id)),
                    up_to: server_id,
                });
            }
            Response::Accepted { timestamp: now }
        }
        Ok(EnqueueOutcome::UnknownAccount) => {
            Response::error(ErrorCode::UnknownAccount, "recipient has no devices")
        }
        Ok(EnqueueOutcome::MismatchedDevices) => Response::error(
            ErrorCode::MismatchedDevices,
            "envelopes do not address exactly the recipient's devices",
        ),
        Ok(EnqueueOutcome::QueueFull { device_id }) => Response::error(
            ErrorCode::QueueFull,
            format!("mailbox of device {device_id} is full"),
        ),
        Err(e) => internal(&e),
    }
}

/// The response to an `Ack` of `server_ids` by `device` that the store answered with `outcome`.
fn ack_response(
    device: DeviceAddress,
    server_ids: Vec<u64>,
    outcome: Result<u32, StoreError>,
    effects: &mut Vec<Effect>,
) -> Response {
    match outcome {
        Ok(removed) => {
            metrics::delivered(u64::from(removed));
            effects.push(Effect::Acked { device, server_ids });
            Response::Acked {
                removed: sat_u16(removed),
            }
        }
        Err(e) => internal(&e),
    }
}

/// Verifies an upload against the uploading device's identity: every signature (with
/// `verify_strict`), every ML-KEM key (FIPS 203 modulus check), no duplicate ids within the
/// upload, at most one last-resort key. Returns the keys to store or a detail for
/// `InvalidPreKey`.
pub fn verify_upload(
    identity: &IdentityBytes,
    upload: &PreKeyUpload,
) -> Result<NewPreKeys, &'static str> {
    let key = VerifyingKey::from_bytes(&identity.signing).map_err(|_| "invalid identity key")?;
    if let Some(s) = &upload.signed_prekey {
        let msg = SignedPreKeyPublic::signed_bytes(&identity.dh, s.id, s.created_at, &s.public);
        key.verify(&msg, &Signature::from_bytes(s.signature))
            .map_err(|_| "signed prekey signature does not verify")?;
    }
    let mut one_time_ids = BTreeSet::new();
    if !upload
        .one_time
        .iter()
        .all(|(id, _)| one_time_ids.insert(*id))
    {
        return Err("duplicate one-time prekey id");
    }
    let mut kem_ids = BTreeSet::new();
    let mut kem_one_time = Vec::new();
    let mut kem_last_resort: Option<KemPreKeyPublic> = None;
    for k in &upload.kem {
        if !kem_ids.insert(k.id) {
            return Err("duplicate KEM prekey id");
        }
        let msg =
            KemPreKeyPublic::signed_bytes(&identity.dh, k.id, k.kind, k.created_at, &k.public);
        key.verify(&msg, &Signature::from_bytes(k.signature))
            .map_err(|_| "KEM prekey signature does not verify")?;
        KemPublic::from_slice(k.public.as_slice()).map_err(|_| "invalid ML-KEM public key")?;
        match k.kind {
            KemPreKeyKind::OneTime => kem_one_time.push(k.clone()),
            KemPreKeyKind::LastResort => {
                if kem_last_resort.replace(k.clone()).is_some() {
                    return Err("more than one last-resort KEM prekey");
                }
            }
        }
    }
    Ok(NewPreKeys {
        signed: upload.signed_prekey.clone(),
        one_time: upload.one_time.clone(),
        kem_one_time,
        kem_last_resort,
    })
}

#[cfg(test)]
mod tests;
