//! The relay connection: QUIC with pinned TLS 1.3, one bidirectional stream per request,
//! pushes on server-initiated unidirectional streams (spec/relay.md sections 1 and 2).

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::tls::{PinnedSpkiVerifier, client_tls_config};
use sealpost_crypto::Zeroizing;
use sealpost_crypto::spki::SpkiPins;
use sealpost_session::IdentityKeyPair;
use sealpost_wire::relay::{
    DeviceInfo, EXPORTER_LABEL, MAX_PUSH_STREAM_LEN, OutgoingEnvelope, PreKeyUpload, Push, Request,
    Response, auth_signed_bytes, frame_len,
};
use sealpost_wire::{AccountId, DeviceAddress, PreKeyBundle};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// A push frame must arrive within this time once its stream is open.
const PUSH_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle timeout (spec/relay.md section 1).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Push streams the relay may have open at once (its delivery window is 64).
const MAX_PUSH_STREAMS: u32 = 256;

/// Prekey counts the relay reports: `(one-time X25519, one-time KEM)`.
pub(crate) type PreKeyCounts = (u32, u32);

/// A QUIC endpoint configured for one relay.
#[derive(Debug)]
pub(crate) struct Transport {
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    verifier: Arc<PinnedSpkiVerifier>,
    relay_addr: SocketAddr,
    server_name: String,
    timeout: Duration,
}

impl Transport {
    /// Binds a client endpoint on the unspecified address of the relay's family, port 0.
    /// Must run inside a tokio runtime.
    pub(crate) fn new(config: &ClientConfig) -> Result<Self, ClientError> {
        Self::to_peer(
            config.relay_addr,
            config.relay_pins.clone(),
            &config.server_name,
            config,
        )
    }

    /// An endpoint for another relay of the same protocol (a guardian), pinned to `pins`,
    /// with `config`'s timeouts.
    pub(crate) fn to_peer(
        addr: SocketAddr,
        pins: SpkiPins,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<Self, ClientError> {
        let verifier = Arc::new(PinnedSpkiVerifier::new(pins));
        let tls = client_tls_config(Arc::clone(&verifier))
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        transport
            .keep_alive_interval(Some(config.keep_alive))
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(IDLE_TIMEOUT)
                    .map_err(|e| ClientError::Connect(e.to_string()))?,
            ))
            .max_concurrent_bidi_streams(0u32.into())
            .max_concurrent_uni_streams(MAX_PUSH_STREAMS.into());
        client_config.transport_config(Arc::new(transport));
        let bind: SocketAddr = if addr.is_ipv6() {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let endpoint =
            quinn::Endpoint::client(bind).map_err(|e| ClientError::Connect(e.to_string()))?;
        Ok(Self {
            endpoint,
            client_config,
            verifier,
            relay_addr: addr,
            server_name: server_name.to_owned(),
            timeout: config.request_timeout,
        })
    }

    /// Opens a connection (not yet authenticated). A server whose key matches no pin gives
    /// [`ClientError::PinMismatch`].
    pub(crate) async fn connect(&self) -> Result<Connection, ClientError> {
        let mismatches = self.verifier.mismatches();
        let connecting = self
            .endpoint
            .connect_with(
                self.client_config.clone(),
                self.relay_addr,
                &self.server_name,
            )
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let conn = match tokio::time::timeout(self.timeout, connecting).await {
            Err(_) => return Err(ClientError::Timeout),
            // The verifier counted a refusal during this handshake: name it, rather than
            // pass on the TLS alert quinn reports.
            Ok(Err(_)) if self.verifier.mismatches() != mismatches => {
                return Err(ClientError::PinMismatch {
                    pinned: self.verifier.pins().as_slice().len(),
                });
            }
            Ok(r) => r?,
        };
        Ok(Connection {
            conn,
            timeout: self.timeout,
        })
    }

    /// Waits (bounded) until the endpoint's connections have been closed cleanly.
    pub(crate) async fn close(&self) {
        self.endpoint.close(0u32.into(), b"client shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// One connection to the relay. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    conn: quinn::Connection,
    timeout: Duration,
}

fn stream_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Stream(e.to_string())
}

/// Reads exactly one frame, checking the length prefix before reading the body and that
/// nothing follows it on the stream.
async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Vec<u8>, ClientError> {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await.map_err(stream_err)?;
    let len = frame_len(prefix)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(stream_err)?;
    let mut extra = [0u8; 1];
    match recv.read(&mut extra).await.map_err(stream_err)? {
        None => Ok(body),
        Some(_) => Err(ClientError::protocol("bytes after a frame")),
    }
}

fn unexpected(what: &str, resp: &Response) -> ClientError {
    ClientError::Protocol(format!(
        "unexpected response to {what}: {}",
        kind_name(resp)
    ))
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
        Response::Credential(_) => "Credential",
        Response::VaultStored => "VaultStored",
        Response::Vault { .. } => "Vault",
        Response::VaultEvaluated { .. } => "VaultEvaluated",
        Response::VaultConfirmed { .. } => "VaultConfirmed",
        Response::VaultDeleted => "VaultDeleted",
        Response::RegistrationLocked { .. } => "RegistrationLocked",
    }
}

impl Connection {
    /// The TLS exporter of this connection (label `EXPORTER-Sealpost-Relay`, empty context,
    /// 32 bytes).
    pub(crate) fn exporter(&self) -> Result<Zeroizing<[u8; 32]>, ClientError> {
        let mut out = Zeroizing::new([0u8; 32]);
        self.conn
            .export_keying_material(out.as_mut_slice(), EXPORTER_LABEL, b"")
            .map_err(|_| ClientError::Protocol("TLS exporter unavailable".into()))?;
        Ok(out)
    }

    /// Sends one request and reads its response; an `Error` response becomes
    /// [`ClientError::Relay`].
    pub(crate) async fn request(&self, req: &Request) -> Result<Response, ClientError> {
        let exchange = async {
            let (mut send, mut recv) = self.conn.open_bi().await?;
            send.write_all(&req.encode()).await.map_err(stream_err)?;
            send.finish().map_err(stream_err)?;
            let body = read_frame(&mut recv).await?;
            Ok::<_, ClientError>(Response::decode(&body)?)
        };
        let resp = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout)??;
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
        let mut recv = self.conn.accept_uni().await?;
        let stream = tokio::time::timeout(PUSH_READ_TIMEOUT, recv.read_to_end(MAX_PUSH_STREAM_LEN))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(stream_err)?;
        Ok(Push::decode_stream(&stream)?)
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
