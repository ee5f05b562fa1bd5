//! The relay connection: QUIC with pinned TLS 1.3, one bidirectional stream per request,
//! pushes on server-initiated unidirectional streams (spec/relay.md sections 1 and 2).

use crate::config::{CONNECT_STAGGER, ClientConfig, DEAD_AFTER_TIMEOUTS, RelayAddr};
use crate::error::{
    ClientError, EndpointError, EndpointErrorKind, ProtocolViolation, StreamError, StreamErrorKind,
    read_error, write_error,
};
use crate::tls::{PinnedSpkiVerifier, client_tls_config};
use sealpost_crypto::Zeroizing;
use sealpost_crypto::spki::SpkiPins;
use sealpost_session::IdentityKeyPair;
use sealpost_wire::relay::{
    DeviceInfo, EXPORTER_LABEL, MAX_PUSH_STREAM_LEN, OutgoingEnvelope, PreKeyUpload, Push, Request,
    Response, auth_signed_bytes, frame_len,
};
use sealpost_wire::{AccountId, DeviceAddress, PreKeyBundle};
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

/// A push frame must arrive within this time once its stream is open.
const PUSH_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Push streams the relay may have open at once (its delivery window is 64).
const MAX_PUSH_STREAMS: u32 = 256;
/// Application close code the client uses for a connection it gives up on because
/// [`DEAD_AFTER_TIMEOUTS`] requests in a row timed out.
const CLOSE_UNRESPONSIVE: u32 = 0;

mod business;
mod devices;

/// Prekey counts the relay reports: `(one-time X25519, one-time KEM)`.
pub(crate) type PreKeyCounts = (u32, u32);

/// Which address the next connection attempt starts with.
#[derive(Debug, Default)]
struct Preference {
    /// The address of the last successful connection.
    last: Option<SocketAddr>,
    /// That connection died (timeouts): start with the address after it.
    skip: bool,
}

/// A QUIC endpoint configured for one relay (one or more nodes, spec/relay.md section 1).
#[derive(Debug)]
pub(crate) struct Transport {
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    verifier: Arc<PinnedSpkiVerifier>,
    relays: Vec<RelayAddr>,
    server_name: String,
    timeout: Duration,
    connect_timeout: Duration,
    keep_alive: Duration,
    preference: Mutex<Preference>,
}

impl Transport {
    /// An endpoint for `config`'s relay. Must run inside a tokio runtime.
    pub(crate) fn new(config: &ClientConfig) -> Result<Self, ClientError> {
        Self::build(
            config.relays.clone(),
            config.relay_pins.clone(),
            &config.server_name,
            config,
        )
    }

    /// An endpoint for another relay of the same protocol (a guardian), pinned to `pins`,
    /// with `config`'s timeouts.
    pub(crate) fn to_peer(
        addr: RelayAddr,
        pins: SpkiPins,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<Self, ClientError> {
        Self::build(vec![addr], pins, server_name, config)
    }

    fn build(
        relays: Vec<RelayAddr>,
        pins: SpkiPins,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<Self, ClientError> {
        let verifier = Arc::new(PinnedSpkiVerifier::new(pins));
        let tls = client_tls_config(Arc::clone(&verifier)).map_err(|e| {
            ClientError::Endpoint(EndpointError::with_source(EndpointErrorKind::Config, e))
        })?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| {
            ClientError::Endpoint(EndpointError::with_source(EndpointErrorKind::Config, e))
        })?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        transport
            .keep_alive_interval(Some(config.keep_alive))
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(config.idle_timeout).map_err(|e| {
                    ClientError::Endpoint(EndpointError::with_source(
                        EndpointErrorKind::IdleTimeoutTooLarge,
                        e,
                    ))
                })?,
            ))
            .max_concurrent_bidi_streams(0u32.into())
            .max_concurrent_uni_streams(MAX_PUSH_STREAMS.into());
        client_config.transport_config(Arc::new(transport));
        let endpoint = bind(&relays)?;
        Ok(Self {
            endpoint,
            client_config,
            verifier,
            relays,
            server_name: server_name.to_owned(),
            timeout: config.request_timeout,
            connect_timeout: config.connect_timeout.min(config.request_timeout),
            keep_alive: config.keep_alive,
            preference: Mutex::new(Preference::default()),
        })
    }

    /// The addresses to try, in order: every configured entry (names resolved now), each
    /// address once, rotated to start at the preferred one.
    async fn candidates(&self) -> (Vec<SocketAddr>, Option<ClientError>) {
        let mut out: Vec<SocketAddr> = Vec::new();
        let mut error = None;
        for relay in &self.relays {
            match relay {
                RelayAddr::Socket(a) => out.push(*a),
                RelayAddr::Host { name, port } => {
                    match tokio::net::lookup_host((name.as_str(), *port)).await {
                        Ok(addrs) => {
                            let before = out.len();
                            out.extend(addrs);
                            if out.len() == before {
                                error = Some(ClientError::Resolve(std::io::ErrorKind::NotFound));
                            }
                        }
                        Err(e) => error = Some(ClientError::Resolve(e.kind())),
                    }
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|a| seen.insert(*a));
        let (last, skip) = self
            .preference
            .lock()
            .map(|p| (p.last, p.skip))
            .unwrap_or_default();
        if let Some(i) = last.and_then(|l| out.iter().position(|a| *a == l)) {
            let start = if skip { i + 1 } else { i };
            let len = out.len();
            out.rotate_left(start % len);
        }
        (out, error)
    }

    /// Opens a connection (not yet authenticated) to the first relay address that answers,
    /// starting with the one last connected to (or the one after it, if that connection
    /// died). Attempts are staggered ("happy eyeballs", RFC 8305): the next address is tried
    /// when the previous attempt failed or after [`CONNECT_STAGGER`] without an answer, the
    /// earlier attempts going on meanwhile; the first handshake to complete wins and the
    /// others are dropped. Each attempt is bounded by the connect timeout. When none
    /// answers, the error is the pin mismatch if a server presented an unpinned key (not
    /// transient), else the last failure.
    pub(crate) async fn connect(&self) -> Result<Connection, ClientError> {
        type Attempt<'a> = Pin<
            Box<dyn Future<Output = (SocketAddr, Result<Connection, ClientError>)> + Send + 'a>,
        >;
        let (candidates, mut error) = self.candidates().await;
        let mut mismatch = None;
        let mut next = candidates.into_iter().peekable();
        let mut running: Vec<Attempt<'_>> = Vec::new();
        let stagger = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(stagger);
        loop {
            if running.is_empty() && next.peek().is_none() {
                return Err(mismatch.or(error).unwrap_or(ClientError::NoRelayAddress));
            }
            // `None`: time to start the next attempt; `Some`: an attempt ended.
            let event = std::future::poll_fn(|cx| {
                for (i, attempt) in running.iter_mut().enumerate() {
                    if let Poll::Ready(result) = attempt.as_mut().poll(cx) {
                        return Poll::Ready(Some((i, result)));
                    }
                }
                if next.peek().is_some() && stagger.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            match event {
                None => {
                    if let Some(addr) = next.next() {
                        running.push(Box::pin(async move { (addr, self.connect_to(addr).await) }));
                    }
                    stagger
                        .as_mut()
                        .reset(tokio::time::Instant::now() + CONNECT_STAGGER);
                }
                Some((i, (addr, Ok(conn)))) => {
                    drop(running.swap_remove(i));
                    if let Ok(mut p) = self.preference.lock() {
                        *p = Preference {
                            last: Some(addr),
                            skip: false,
                        };
                    }
                    return Ok(conn);
                }
                Some((i, (addr, Err(e)))) => {
                    drop(running.swap_remove(i));
                    if matches!(e, ClientError::PinMismatch { .. }) {
                        tracing::warn!(%addr, "relay node presented a key that matches no pin");
                        mismatch = Some(e);
                    } else {
                        tracing::debug!(%addr, error = %e, "relay node did not answer");
                        error = Some(e);
                    }
                    // Try the next address now.
                    stagger.as_mut().reset(tokio::time::Instant::now());
                }
            }
        }
    }

    async fn connect_to(&self, addr: SocketAddr) -> Result<Connection, ClientError> {
        let mismatches = self.verifier.mismatches();
        let connecting = self
            .endpoint
            .connect_with(self.client_config.clone(), addr, &self.server_name)
            .map_err(|e| ClientError::Endpoint(EndpointError::connect(e)))?;
        let conn = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Err(_) => return Err(ClientError::Timeout),
            // The verifier counted a refusal during this handshake: name it, rather than
            // pass on the TLS alert quinn reports.
            Ok(Err(_)) if self.verifier.mismatches() != mismatches => {
                return Err(ClientError::PinMismatch {
                    pinned: self.verifier.pins().as_slice().len(),
                });
            }
            Ok(r) => r.map_err(ClientError::quic)?,
        };
        let timeouts = Arc::new(AtomicU32::new(0));
        tokio::spawn(watch_silence(
            conn.clone(),
            self.keep_alive,
            Arc::clone(&timeouts),
        ));
        Ok(Connection {
            conn,
            timeout: self.timeout,
            timeouts,
        })
    }

    /// Records that `conn` died (the relay stopped answering): the next attempt starts with
    /// the next address.
    pub(crate) fn connection_died(&self, conn: &Connection) {
        if let Ok(mut p) = self.preference.lock()
            && p.last == Some(conn.remote())
        {
            p.skip = true;
        }
    }

    /// Waits (bounded) until the endpoint's connections have been closed cleanly.
    pub(crate) async fn close(&self) {
        self.endpoint.close(0u32.into(), b"client shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// Added to the keep-alive interval (and at least four round trips) before a silent relay
/// is taken for dead (spec/relay.md section 1).
const SILENCE_GRACE: Duration = Duration::from_secs(2);

/// How long `conn` may go without a single datagram from the relay before the client closes
/// it: a keep-alive goes out after `keep_alive` without sending and the relay acknowledges
/// it within a round trip, so a live relay is never silent much longer than `keep_alive`.
fn silence_limit(keep_alive: Duration, rtt: Duration) -> Duration {
    keep_alive + SILENCE_GRACE.max(rtt.saturating_mul(4))
}

/// Closes `conn` once no datagram arrived from the relay for [`silence_limit`] (a node that
/// vanished without a reset: killed and not restarted, or cut off), marking it given up
/// (`timeouts`) so that the next attempt starts with the next address. Without it such a
/// connection would last the whole QUIC idle timeout. Ends when the connection closes.
async fn watch_silence(conn: quinn::Connection, keep_alive: Duration, timeouts: Arc<AtomicU32>) {
    let tick = (keep_alive / 4).max(Duration::from_millis(100));
    let mut seen = conn.stats().udp_rx.datagrams;
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = conn.closed() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let now = conn.stats().udp_rx.datagrams;
        if now != seen {
            seen = now;
            heard = tokio::time::Instant::now();
        } else if heard.elapsed() >= silence_limit(keep_alive, conn.rtt()) {
            tracing::info!(
                silent_ms = u64::try_from(heard.elapsed().as_millis()).unwrap_or(u64::MAX),
                "relay connection silent; closing it to reconnect"
            );
            timeouts.store(DEAD_AFTER_TIMEOUTS, Ordering::Relaxed);
            conn.close(CLOSE_UNRESPONSIVE.into(), b"relay silent");
            return;
        }
    }
}

/// Binds a client endpoint on port 0 of the unspecified address of the relays' family: IPv4
/// or IPv6 when every configured address is of that family, else dual-stack IPv6 (falling
/// back to IPv4 where IPv6 is unavailable).
fn bind(relays: &[RelayAddr]) -> Result<quinn::Endpoint, ClientError> {
    let v4: SocketAddr = (Ipv4Addr::UNSPECIFIED, 0).into();
    let v6: SocketAddr = (Ipv6Addr::UNSPECIFIED, 0).into();
    let family = |want_v6: bool| {
        relays
            .iter()
            .all(|r| matches!(r, RelayAddr::Socket(a) if a.is_ipv6() == want_v6))
    };
    let first = if family(false) { v4 } else { v6 };
    let bind_error =
        |e| ClientError::Endpoint(EndpointError::with_source(EndpointErrorKind::Bind, e));
    match quinn::Endpoint::client(first) {
        Ok(e) => Ok(e),
        Err(_) if first == v6 && !family(true) => quinn::Endpoint::client(v4).map_err(bind_error),
        Err(e) => Err(bind_error(e)),
    }
}

/// One connection to the relay. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    conn: quinn::Connection,
    timeout: Duration,
    /// Consecutive request timeouts, shared by the clones.
    timeouts: Arc<AtomicU32>,
}

fn read_exact_error(e: quinn::ReadExactError) -> ClientError {
    match e {
        quinn::ReadExactError::ReadError(e) => read_error(e),
        e @ quinn::ReadExactError::FinishedEarly(_) => {
            ClientError::Stream(StreamError::with_source(StreamErrorKind::FinishedEarly, e))
        }
    }
}

fn read_to_end_error(e: quinn::ReadToEndError) -> ClientError {
    match e {
        quinn::ReadToEndError::Read(e) => read_error(e),
        e @ quinn::ReadToEndError::TooLong => {
            ClientError::Stream(StreamError::with_source(StreamErrorKind::TooLong, e))
        }
    }
}

/// Reads exactly one frame, checking the length prefix before reading the body and that
/// nothing follows it on the stream.
async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Vec<u8>, ClientError> {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix)
        .await
        .map_err(read_exact_error)?;
    let len = frame_len(prefix)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(read_exact_error)?;
    let mut extra = [0u8; 1];
    match recv.read(&mut extra).await.map_err(read_error)? {
        None => Ok(body),
        Some(_) => Err(ClientError::protocol(ProtocolViolation::TrailingBytes)),
    }
}

fn unexpected(what: &'static str, resp: &Response) -> ClientError {
    ClientError::protocol(ProtocolViolation::UnexpectedResponse {
        request: what,
        response: kind_name(resp),
    })
}

fn kind_name(resp: &Response) -> &'static str {
    match resp {
        Response::CodeSent { .. } => "CodeSent",
        Response::Registered { .. } => "Registered",
        Response::ChallengeIssued { .. } => "ChallengeIssued",
        Response::Authenticated { .. } => "Authenticated",
        Response::PreKeysStored { .. } => "PreKeysStored",
        Response::Bundles(_) => "Bundles",
        Response::Devices(_) => "Devices",
        Response::Accepted { .. } => "Accepted",
        Response::Acked { .. } => "Acked",
        Response::Error { .. } => "Error",
        Response::RegistrationLockSet => "RegistrationLockSet",
        Response::RegistrationLockCleared => "RegistrationLockCleared",
        Response::AccountKeyBackupStored => "AccountKeyBackupStored",
        Response::AccountKeyBackup(_) => "AccountKeyBackup",
        Response::Credential(_) => "Credential",
        Response::VaultStored => "VaultStored",
        Response::Vault { .. } => "Vault",
        Response::VaultEvaluated { .. } => "VaultEvaluated",
        Response::VaultConfirmed { .. } => "VaultConfirmed",
        Response::VaultDeleted => "VaultDeleted",
        Response::RegistrationLocked { .. } => "RegistrationLocked",
        Response::ProvisioningOpened { .. } => "ProvisioningOpened",
        Response::DeviceListStored { .. } => "DeviceListStored",
        Response::DeviceList(_) => "DeviceList",
        Response::Provisioned => "Provisioned",
        Response::Activity(_) => "Activity",
        Response::BusinessProfileStored { .. } => "BusinessProfileStored",
        Response::BusinessProfile(_) => "BusinessProfile",
    }
}

impl Connection {
    /// The TLS exporter of this connection (label `EXPORTER-Sealpost-Relay`, empty context,
    /// 32 bytes).
    pub(crate) fn exporter(&self) -> Result<Zeroizing<[u8; 32]>, ClientError> {
        let mut out = Zeroizing::new([0u8; 32]);
        self.conn
            .export_keying_material(out.as_mut_slice(), EXPORTER_LABEL, b"")
            .map_err(|_| ClientError::protocol(ProtocolViolation::ExporterUnavailable))?;
        Ok(out)
    }

    /// Sends one request and reads its response; an `Error` response becomes
    /// [`ClientError::Relay`].
    pub(crate) async fn request(&self, req: &Request) -> Result<Response, ClientError> {
        let exchange = async {
            let (mut send, mut recv) = self.conn.open_bi().await.map_err(ClientError::quic)?;
            send.write_all(&req.encode()).await.map_err(write_error)?;
            send.finish().map_err(|e| {
                ClientError::Stream(StreamError::with_source(StreamErrorKind::Closed, e))
            })?;
            let body = read_frame(&mut recv).await?;
            Ok::<_, ClientError>(Response::decode(&body)?)
        };
        let resp = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => {
                self.timeouts.store(0, Ordering::Relaxed);
                r?
            }
            Err(_) => {
                self.timed_out();
                return Err(ClientError::Timeout);
            }
        };
        match resp {
            Response::Error {
                code,
                retry_after,
                detail,
            } => Err(ClientError::Relay {
                code,
                retry_after,
                detail,
            }),
            other => Ok(other),
        }
    }

    /// Waits for the next push stream and returns its pushes, in order (one or more,
    /// spec/relay.md section 1). A connection failure is [`ClientError::Connection`]; a bad
    /// push stream is [`ClientError::Stream`] or [`ClientError::Protocol`] and affects only
    /// that stream.
    pub(crate) async fn accept_pushes(&self) -> Result<Vec<Push>, ClientError> {
        let mut recv = self.conn.accept_uni().await.map_err(ClientError::quic)?;
        let stream = tokio::time::timeout(PUSH_READ_TIMEOUT, recv.read_to_end(MAX_PUSH_STREAM_LEN))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(read_to_end_error)?;
        Ok(Push::decode_stream(&stream)?)
    }

    /// Counts a request timeout; the [`DEAD_AFTER_TIMEOUTS`]-th in a row closes the
    /// connection, which ends its push reader and sends the client back to reconnecting.
    fn timed_out(&self) {
        let n = self
            .timeouts
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if n >= DEAD_AFTER_TIMEOUTS && self.conn.close_reason().is_none() {
            tracing::info!(
                timeouts = n,
                "relay connection unresponsive; closing it to reconnect"
            );
            self.conn
                .close(CLOSE_UNRESPONSIVE.into(), b"requests timed out");
        }
    }

    /// Whether this client closed the connection because requests kept timing out.
    pub(crate) fn given_up(&self) -> bool {
        self.timeouts.load(Ordering::Relaxed) >= DEAD_AFTER_TIMEOUTS
    }

    /// The relay node's address.
    pub(crate) fn remote(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Closes the connection with an application error code.
    pub(crate) fn close(&self, code: u32, reason: &[u8]) {
        self.conn.close(code.into(), reason);
    }

    /// The reason the connection closed, if it has.
    pub(crate) fn close_reason(&self) -> Option<quinn::ConnectionError> {
        self.conn.close_reason()
    }

    pub(crate) async fn request_code(&self, account: &AccountId) -> Result<u32, ClientError> {
        match self
            .request(&Request::RequestCode {
                account: account.clone(),
            })
            .await?
        {
            Response::CodeSent { expires_in } => Ok(expires_in),
            other => Err(unexpected("RequestCode", &other)),
        }
    }

    /// `Register`, with the registration-lock token when the account may be locked; a
    /// refusal because of the lock is [`ClientError::RegistrationLocked`].
    pub(crate) async fn register(
        &self,
        account: &AccountId,
        code: [u8; 6],
        identity: &IdentityKeyPair,
        reglock: Option<[u8; 32]>,
    ) -> Result<u32, ClientError> {
        let exporter = self.exporter()?;
        let public = identity.public().to_wire();
        let msg = sealpost_wire::relay::register_signed_bytes(&exporter, account, &public);
        let signature = identity.sign(&msg).to_bytes();
        match self
            .request(&Request::Register {
                account: account.clone(),
                code,
                identity: public,
                signature,
                reglock,
            })
            .await?
        {
            Response::Registered { device_id } => Ok(device_id),
            Response::RegistrationLocked {
                lapses_in,
                attempts_remaining,
                credential,
            } => Err(ClientError::RegistrationLocked(Box::new(
                crate::pin::RegistrationLock {
                    lapses_in: Duration::from_secs(u64::from(lapses_in)),
                    attempts_remaining,
                    credential,
                },
            ))),
            other => Err(unexpected("Register", &other)),
        }
    }

    /// `Challenge` then `Authenticate`; returns the `(one-time, KEM)` prekey counts, the
    /// queued count and the relay's `sender_seq` for this device (spec/relay.md 3.4).
    pub(crate) async fn authenticate(
        &self,
        identity: &IdentityKeyPair,
        address: &DeviceAddress,
    ) -> Result<(PreKeyCounts, u32, u64), ClientError> {
        let nonce = match self.request(&Request::Challenge).await? {
            Response::ChallengeIssued { nonce } => nonce,
            other => return Err(unexpected("Challenge", &other)),
        };
        let exporter = self.exporter()?;
        let signature = identity
            .sign(&auth_signed_bytes(&exporter, &nonce, address))
            .to_bytes();
        match self
            .request(&Request::Authenticate {
                address: address.clone(),
                signature,
            })
            .await?
        {
            Response::Authenticated {
                one_time_prekeys,
                kem_prekeys,
                queued,
                sender_seq,
            } => Ok(((one_time_prekeys, kem_prekeys), queued, sender_seq)),
            other => Err(unexpected("Authenticate", &other)),
        }
    }

    pub(crate) async fn upload_prekeys(
        &self,
        upload: PreKeyUpload,
    ) -> Result<PreKeyCounts, ClientError> {
        match self.request(&Request::UploadPreKeys(upload)).await? {
            Response::PreKeysStored {
                one_time_prekeys,
                kem_prekeys,
            } => Ok((one_time_prekeys, kem_prekeys)),
            other => Err(unexpected("UploadPreKeys", &other)),
        }
    }

    pub(crate) async fn fetch_bundles(
        &self,
        account: &AccountId,
    ) -> Result<Vec<PreKeyBundle>, ClientError> {
        match self
            .request(&Request::FetchBundles {
                account: account.clone(),
            })
            .await?
        {
            Response::Bundles(b) => Ok(b),
            other => Err(unexpected("FetchBundles", &other)),
        }
    }

    pub(crate) async fn list_devices(
        &self,
        account: &AccountId,
    ) -> Result<Vec<DeviceInfo>, ClientError> {
        match self
            .request(&Request::ListDevices {
                account: account.clone(),
            })
            .await?
        {
            Response::Devices(d) => Ok(d),
            other => Err(unexpected("ListDevices", &other)),
        }
    }

    pub(crate) async fn send(
        &self,
        message_id: [u8; 16],
        sender_seq: u64,
        recipient: &AccountId,
        envelopes: Vec<OutgoingEnvelope>,
    ) -> Result<u64, ClientError> {
        match self
            .request(&Request::Send {
                message_id,
                sender_seq,
                recipient: recipient.clone(),
                envelopes,
            })
            .await?
        {
            Response::Accepted { timestamp } => Ok(timestamp),
            other => Err(unexpected("Send", &other)),
        }
    }

    pub(crate) async fn ack(&self, server_ids: Vec<u64>) -> Result<u16, ClientError> {
        match self.request(&Request::Ack { server_ids }).await? {
            Response::Acked { removed } => Ok(removed),
            other => Err(unexpected("Ack", &other)),
        }
    }
}

#[cfg(test)]
mod tests;
