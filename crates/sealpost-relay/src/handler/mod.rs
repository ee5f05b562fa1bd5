//! Request handling: plain functions over a [`Store`], with time passed in and no sockets.
//!
//! [`Handler::handle`] takes one decoded request of one connection and returns the response
//! and the [`Effect`]s the driver must carry out (wake a device's delivery, push
//! `PreKeysLow`, close connections of removed devices). Every entry point is `async`: it
//! awaits the store (an [`AnyStore`]) and nothing else. The QUIC driver (`server`) calls
//! [`Handler::handle_frame`] under the connection's state, except for `Send` and `Ack`, which
//! it runs from a snapshot of it with [`Handler::handle_send_or_ack`] so that one
//! connection's pipelined sends share the store's group commit; tests and the fuzz target
//! call it directly (over a [`crate::MemoryStore`], whose futures are ready at once).
//!
//! This file holds the [`Handler`], its dispatch and the per-connection state; each
//! domain's requests live in their own file: `registration.rs` (`RequestCode`, `Register`,
//! the registration lock), `auth.rs` (`Authenticate`), `prekeys.rs` (`UploadPreKeys`,
//! `FetchBundles`), `mail.rs` (`Send`, `Ack`), `vault.rs` (guardian credentials and vaults),
//! `devices.rs` (`PublishDeviceList`, `FetchDeviceList`, `LinkDevice`, the account-key
//! backup), `business.rs` (`PublishBusinessProfile`, `FetchBusinessProfile`).

mod auth;
mod business;
mod devices;
mod mail;
mod prekeys;
mod provisioning;
mod registration;
mod vault;

pub use prekeys::{DRAIN_NOTICE_INTERVAL_MS, verify_upload};
pub use provisioning::{MAX_OPEN_PROVISIONINGS, OpenProvisionings, PROVISIONING_TTL_MS};
pub use registration::{calling_code, is_e164};

use crate::StoreError;
use crate::codes::{CodeSender, VerificationCode};
use crate::guardian::GuardianConfig;
use crate::limits::{
    CODE_MAX_ATTEMPTS, CODE_TTL_SECS, LOW_WATERMARK_KEM, LOW_WATERMARK_ONE_TIME, Limits,
};
use crate::metrics;
use crate::ratelimit::{KeyedLimiter, TokenBucket};
use crate::store::{
    Addressing, AnyStore, CODE_MAC_LEN, CodeAttempt, ConfirmOutcome, EnqueueOutcome, NewMessage,
    NewPreKeys, PreKeyLimits, PutVaultOutcome, QuotaCheck, QuotaKind, QuotaOutcome, RegLockPolicy,
    RegisterOutcome, Store, SweepCounts, UploadOutcome, VaultAttempt, VaultRow,
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

/// Something the driver must do after a request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effect {
    /// New envelopes are committed to `device`'s mailbox: wake its delivery (a commit
    /// notice; see the `store` module documentation).
    MailArrived {
        /// The recipient device.
        device: DeviceAddress,
        /// The highest server id committed for `device` by this request.
        up_to: u64,
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
    /// This connection opened provisioning id `id`: push the envelope left for it, once,
    /// while the connection lives and until `expires_at` (spec/relay.md 3.11).
    WatchProvisioning {
        /// The id.
        id: [u8; sealpost_wire::relay::PROVISIONING_ID_LEN],
        /// When it expires (Unix ms).
        expires_at: u64,
    },
    /// An envelope was left for provisioning id `id`: wake its watch on this node.
    Provisioned {
        /// The id.
        id: [u8; sealpost_wire::relay::PROVISIONING_ID_LEN],
    },
    /// A new device list (`PublishDeviceList`, `LinkDevice`) no longer names these devices
    /// of `account`, which were removed: close their connections (application code 5).
    DevicesUnlisted {
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
    provisioning_opens: TokenBucket,
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

    /// What [`Handler::handle_send_or_ack`] needs of this connection: its authenticated device.
    pub fn snapshot(&self) -> ConnectionSnapshot {
        ConnectionSnapshot {
            device: self.device.clone(),
        }
    }
}

/// The read-only part of a connection's state that `Send` and `Ack` use (see
/// [`Handler::handle_send_or_ack`]).
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
    store: Arc<AnyStore>,
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
    open_provisionings: OpenProvisionings,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("limits", &self.limits)
            .field("guardian", &self.guardian)
            .finish_non_exhaustive()
    }
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

/// The answer to a request whose store call failed: `Unavailable` when the storage was out
/// of reach or the store is closing (nothing changed; the client retries later,
/// spec/relay.md section 6), `Internal` for every other failure.
fn internal(e: &StoreError) -> Response {
    match e {
        StoreError::Unavailable(_) | StoreError::Closed => {
            tracing::warn!(error = %e, "storage unavailable");
            Response::error(ErrorCode::Unavailable, "storage unavailable; retry later")
        }
        _ => {
            tracing::error!(error = %e, "storage failure");
            Response::error(ErrorCode::Internal, "storage failure")
        }
    }
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
        Request::DeviceActivity => "device_activity",
        Request::Send { .. } => "send",
        Request::Ack { .. } => "ack",
        Request::SetRegistrationLock { .. } => "set_registration_lock",
        Request::ClearRegistrationLock => "clear_registration_lock",
        Request::StoreAccountKeyBackup { .. } => "store_account_key_backup",
        Request::FetchAccountKeyBackup => "fetch_account_key_backup",
        Request::PublishBusinessProfile(_) => "publish_business_profile",
        Request::FetchBusinessProfile { .. } => "fetch_business_profile",
        Request::GetGuardianCredential => "get_guardian_credential",
        Request::VaultStore { .. } => "vault_store",
        Request::VaultFetch { .. } => "vault_fetch",
        Request::VaultEvaluate { .. } => "vault_evaluate",
        Request::VaultConfirm { .. } => "vault_confirm",
        Request::VaultDelete { .. } => "vault_delete",
        Request::LinkDevice { .. } => "link_device",
        Request::OpenProvisioning => "open_provisioning",
        Request::PublishDeviceList { .. } => "publish_device_list",
        Request::FetchDeviceList { .. } => "fetch_device_list",
        Request::Provision { .. } => "provision",
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
        store: Arc<AnyStore>,
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
            open_provisionings: OpenProvisionings::default(),
        }
    }

    /// Uses `issuer` to sign guardian credentials (the relay's `issuer.key`).
    #[must_use]
    pub fn with_issuer(mut self, issuer: SigningKey) -> Self {
        self.issuer_public = issuer.verifying_key().to_bytes();
        self.issuer = issuer;
        self
    }

    /// Configures the guardian role (spec/pin.md section 9); fails with the error of
    /// [`GuardianConfig::validate`].
    pub fn with_guardian(mut self, guardian: GuardianConfig) -> Result<Self, crate::ConfigError> {
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
    /// counts as its device and account being seen (`last_seen`, spec/pin.md section 10,
    /// spec/relay.md 3.12).
    pub async fn connection_closed(
        &self,
        conn: &ConnectionState,
        now: u64,
    ) -> Result<(), StoreError> {
        match &conn.device {
            Some(d) => self.store.touch_device(&d.address, now).await,
            None => Ok(()),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<AnyStore> {
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
            provisioning_opens: TokenBucket::new(self.limits.provisioning_open_rate(), now),
        }
    }

    /// Deletes expired codes and envelopes, forgets idle rate-limit buckets and updates the
    /// queue metrics. Called periodically by the driver.
    pub async fn sweep(&self, now: u64) -> Result<SweepCounts, StoreError> {
        self.send_limiter.evict_idle(now);
        self.drain_notices.evict_idle(now);
        self.vault_limiter.evict_idle(now);
        let swept = self.store.sweep(now, self.limits.mailbox_ttl_ms()).await?;
        if swept.envelopes > 0 {
            metrics::expired(swept.envelopes);
            tracing::info!(
                envelopes = swept.envelopes,
                "expired envelopes deleted unread"
            );
        }
        metrics::queue_depth(self.store.total_queued().await?);
        Ok(swept)
    }

    /// Charges `quotas` (all or none); a used-up quota gives `RateLimited` with the seconds
    /// until it has room again.
    async fn take_quotas(&self, quotas: &[QuotaCheck], now: u64) -> Result<(), Box<Response>> {
        match self.store.take_quotas(quotas, now).await {
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

    /// Decodes a frame body and handles it; undecodable bodies get the matching `Error`.
    pub async fn handle_frame(
        &self,
        conn: &mut ConnectionState,
        exporter: [u8; 32],
        body: &[u8],
        now: u64,
    ) -> (Response, Vec<Effect>) {
        match Request::decode(body) {
            Ok(req) => self.handle(conn, exporter, req, now).await,
            Err(e) => {
                metrics::frame("malformed");
                tracing::debug!(conn = conn.id, error = %e, "undecodable request");
                (decode_error_response(&e), Vec::new())
            }
        }
    }

    /// Handles one request of connection `conn`, whose TLS exporter is `exporter`, at
    /// Unix time `now` (ms).
    pub async fn handle(
        &self,
        conn: &mut ConnectionState,
        exporter: [u8; 32],
        request: Request,
        now: u64,
    ) -> (Response, Vec<Effect>) {
        let started = std::time::Instant::now();
        let kind = request_kind(&request);
        metrics::frame(kind);
        let mut effects = Vec::new();
        let response = match request {
            Request::RequestCode { account } => self.request_code(conn, &account, now).await,
            Request::Register {
                account,
                code,
                identity,
                signature,
                reglock,
            } => {
                // Only the verifier of the token is used; the token is wiped here.
                let presented = reglock.map(|t| RegLockToken::from_bytes(t).verifier());
                let r = self
                    .register(
                        &exporter,
                        &account,
                        &code,
                        &identity,
                        &signature,
                        presented,
                        now,
                        &mut effects,
                    )
                    .await;
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
                    .await
            }
            Request::VaultStore {
                credential,
                share,
                success_verifier,
                record,
            } => {
                let share = Zeroizing::new(share);
                self.vault_store(&credential, &share, &success_verifier, record, now)
                    .await
            }
            Request::VaultFetch { credential } => self.vault_fetch(&credential, now).await,
            Request::VaultEvaluate {
                credential,
                vault_id,
                blinded,
            } => {
                self.vault_evaluate(&credential, &vault_id, &blinded, now)
                    .await
            }
            Request::VaultConfirm {
                credential,
                vault_id,
                token,
            } => {
                self.vault_confirm(&credential, &vault_id, SuccessToken::from_bytes(token), now)
                    .await
            }
            Request::VaultDelete { credential } => self.vault_delete(&credential, now).await,
            Request::OpenProvisioning => self.open_provisioning(conn, now, &mut effects).await,
            Request::LinkDevice {
                list,
                device_id,
                signature,
            } => {
                self.link_device(&exporter, &list, device_id, &signature, now, &mut effects)
                    .await
            }
            other => match conn.device.clone() {
                None => Response::error(
                    ErrorCode::Unauthenticated,
                    "authenticate the connection first",
                ),
                Some(me) => {
                    self.authenticated(conn, &me, other, now, &mut effects)
                        .await
                }
            },
        };
        if let Response::Error { code, .. } = &response {
            tracing::debug!(conn = conn.id, request = kind, ?code, "request refused");
        }
        metrics::request_duration(kind, started.elapsed());
        (response, effects)
    }

    /// Handles a well-formed `Send` or `Ack` frame body without the connection's mutable
    /// state: these two requests read only the authenticated device and change nothing else
    /// of the connection, so a driver may run several of one connection's concurrently, each
    /// joining the store's group commit (spec/relay.md section 1 allows concurrent
    /// processing of requests on different streams). Returns `None` for any other body,
    /// which the driver handles with [`Handler::handle_frame`] under the connection's state.
    pub async fn handle_send_or_ack(
        &self,
        conn: &ConnectionSnapshot,
        body: &[u8],
        now: u64,
    ) -> Option<(Response, Vec<Effect>)> {
        let request = match Request::decode(body) {
            Ok(r @ (Request::Send { .. } | Request::Ack { .. })) => r,
            _ => return None,
        };
        let started = std::time::Instant::now();
        let kind = request_kind(&request);
        metrics::frame(kind);
        let mut effects = Vec::new();
        let response = match &conn.device {
            None => Response::error(
                ErrorCode::Unauthenticated,
                "authenticate the connection first",
            ),
            Some(me) => self.send_or_ack(me, request, now, &mut effects).await,
        };
        if let Response::Error { code, .. } = &response {
            tracing::debug!(request = kind, ?code, "request refused");
        }
        metrics::request_duration(kind, started.elapsed());
        Some((response, effects))
    }

    async fn authenticated(
        &self,
        conn: &mut ConnectionState,
        me: &AuthenticatedDevice,
        request: Request,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Response {
        match request {
            Request::UploadPreKeys(upload) => self.upload(me, &upload).await,
            Request::FetchBundles { account } => {
                if let Err(s) = conn.bundle_fetches.try_take(self.limits.bundle_rate(), now) {
                    return rate_limited("bundles", s);
                }
                if let Err(r) = self.take_fetch_quotas(me, &account, now, effects).await {
                    return *r;
                }
                self.fetch_bundles(&account, effects).await
            }
            Request::ListDevices { account } => match self.store.list_devices(&account).await {
                Ok(d) if d.is_empty() => Response::error(ErrorCode::UnknownAccount, "no devices"),
                Ok(d) => Response::Devices(d),
                Err(e) => internal(&e),
            },
            Request::DeviceActivity => self.device_activity(me).await,
            request @ (Request::Send { .. } | Request::Ack { .. }) => {
                self.send_or_ack(me, request, now, effects).await
            }
            Request::SetRegistrationLock { token } => {
                let verifier = RegLockToken::from_bytes(token).verifier();
                self.set_registration_lock(me, Some(&verifier), now).await
            }
            Request::ClearRegistrationLock => self.set_registration_lock(me, None, now).await,
            Request::StoreAccountKeyBackup { backup } => {
                self.store_account_key_backup(me, &backup, now).await
            }
            Request::FetchAccountKeyBackup => {
                match self.store.account_key_backup(&me.address.account).await {
                    Ok(b) => Response::AccountKeyBackup(b),
                    Err(e) => internal(&e),
                }
            }
            Request::PublishBusinessProfile(published) => {
                self.publish_business_profile(me, &published, now).await
            }
            Request::FetchBusinessProfile { account } => {
                self.fetch_business_profile(conn, &account, now).await
            }
            Request::Provision {
                provisioning_id,
                envelope,
            } => {
                self.provision(&provisioning_id, &envelope, now, effects)
                    .await
            }
            Request::PublishDeviceList { list } => {
                self.publish_device_list(me, &list, now, effects).await
            }
            Request::FetchDeviceList { account } => {
                self.fetch_device_list(conn, &account, now).await
            }
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
            | Request::VaultDelete { .. }
            | Request::LinkDevice { .. }
            | Request::OpenProvisioning => {
                // Dispatched before; kept total so a new variant cannot fall through silently.
                Response::error(ErrorCode::Internal, "request dispatched twice")
            }
        }
    }
}

#[cfg(test)]
mod tests;
