//! A minimal relay test client: frames over quinn, the relay's certificate pinned by its
//! SHA-256 fingerprint (no WebPKI), pushes collected by a background task; test devices and
//! relay processes. Shared setup beside it: `servers` (PostgreSQL and NATS from the
//! environment, required or skipped loudly), `pg` (a fresh schema per test), `nodes` (the
//! files a deployment's nodes share), `checker` (the total-queue checker) and `failover`
//! (the kill -9 harness).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use quinn::crypto::rustls::QuicClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sealpost_relay::{CodeSender, RelayConfig, RelayHandle, VerificationCode};
use sealpost_session::{IdentityKeyPair, KemPreKeyKind, PreKeyStore};
use sealpost_wire::relay::{
    ALPN, EXPORTER_LABEL, MAX_FRAME_LEN, MAX_PUSH_STREAM_LEN, PreKeyUpload, Push, Request,
    Response, auth_signed_bytes, frame_len, register_signed_bytes,
};
use sealpost_wire::{AccountId, DeviceAddress, DeviceId};
use sha2::Digest;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

pub mod checker;
pub mod failover;
pub mod nodes;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod servers;

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `line` straight to the process's stderr: the harness hides `eprintln!` of passing
/// tests, and what these lines say (a skipped test, a run's numbers) must be seen.
pub fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Accepts exactly the certificate whose DER hashes to the pinned fingerprint.
#[derive(Debug)]
struct Pinned {
    fingerprint: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
        if got == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "certificate fingerprint mismatch".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Connects with the given ALPN list (normally `[ALPN]`).
pub async fn connect_with(
    addr: SocketAddr,
    fingerprint: [u8; 32],
    alpn: Vec<Vec<u8>>,
) -> Result<(quinn::Endpoint, quinn::Connection), String> {
    connect_windowed(addr, fingerprint, alpn, None).await
}

/// As [`connect_with`], optionally with a per-stream receive window of `stream_window`
/// bytes (quinn's default is far larger than any response).
pub async fn connect_windowed(
    addr: SocketAddr,
    fingerprint: [u8; 32],
    alpn: Vec<Vec<u8>>,
    stream_window: Option<u32>,
) -> Result<(quinn::Endpoint, quinn::Connection), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            fingerprint,
            provider,
        }))
        .with_no_client_auth();
    tls.alpn_protocols = alpn;
    let mut cfg = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_uni_streams(100u32.into());
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    if let Some(window) = stream_window {
        transport.stream_receive_window(window.into());
    }
    cfg.transport_config(Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(cfg);
    let conn = endpoint
        .connect(addr, "localhost")
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    Ok((endpoint, conn))
}

/// What a raw request stream got back.
#[derive(Debug)]
pub enum Raw {
    /// Boxed: a `Response` is much larger than the other variant.
    Response(Box<Response>),
    /// The relay reset or stopped the stream without a response.
    Reset,
}

/// Sends raw bytes on a new request stream of `conn` and reads what comes back.
pub async fn raw_on(conn: &quinn::Connection, bytes: &[u8]) -> Raw {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    // The relay may stop the stream before everything is written (oversized length).
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    match tokio::time::timeout(TIMEOUT, recv.read_to_end(MAX_FRAME_LEN + 4)).await {
        Ok(Ok(frame)) if frame.len() >= 4 => {
            let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
            assert_eq!(len, frame.len() - 4, "one frame, nothing after it");
            Raw::Response(Box::new(Response::decode(&frame[4..]).unwrap()))
        }
        Ok(_) => Raw::Reset,
        Err(_) => panic!("no answer within {TIMEOUT:?}"),
    }
}

/// One request on a new stream of `conn`.
pub async fn request_on(conn: &quinn::Connection, req: &Request) -> Response {
    match raw_on(conn, &req.encode()).await {
        Raw::Response(r) => *r,
        Raw::Reset => panic!("request stream reset"),
    }
}

pub struct Client {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub exporter: [u8; 32],
    pushes: mpsc::UnboundedReceiver<Push>,
}

impl Client {
    pub async fn connect(addr: SocketAddr, fingerprint: [u8; 32]) -> Self {
        Self::connect_windowed(addr, fingerprint, None).await
    }

    /// A client whose streams take at most `stream_window` bytes at a time from the relay.
    pub async fn connect_windowed(
        addr: SocketAddr,
        fingerprint: [u8; 32],
        stream_window: Option<u32>,
    ) -> Self {
        Self::try_connect_windowed(addr, fingerprint, stream_window)
            .await
            .expect("connect")
    }

    /// As [`Client::connect`], with the failure as a value (a dead relay node).
    pub async fn try_connect(addr: SocketAddr, fingerprint: [u8; 32]) -> Result<Self, String> {
        Self::try_connect_windowed(addr, fingerprint, None).await
    }

    async fn try_connect_windowed(
        addr: SocketAddr,
        fingerprint: [u8; 32],
        stream_window: Option<u32>,
    ) -> Result<Self, String> {
        let (endpoint, conn) =
            connect_windowed(addr, fingerprint, vec![ALPN.to_vec()], stream_window).await?;
        let mut exporter = [0u8; 32];
        conn.export_keying_material(&mut exporter, EXPORTER_LABEL, b"")
            .unwrap();
        let (tx, pushes) = mpsc::unbounded_channel();
        let c = conn.clone();
        tokio::spawn(async move {
            // Streams are accepted and read one after the other, so pushes stay in order.
            while let Ok(mut s) = c.accept_uni().await {
                let Ok(stream) = s.read_to_end(MAX_PUSH_STREAM_LEN).await else {
                    break;
                };
                for push in Push::decode_stream(&stream).unwrap() {
                    if tx.send(push).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Self {
            endpoint,
            conn,
            exporter,
            pushes,
        })
    }

    pub async fn for_relay(relay: &RelayHandle) -> Self {
        Self::connect(relay.local_addr(), relay.cert_fingerprint()).await
    }

    /// Sends raw bytes on a new request stream and reads what comes back.
    pub async fn raw(&self, bytes: &[u8]) -> Raw {
        raw_on(&self.conn, bytes).await
    }

    pub async fn request(&self, req: &Request) -> Response {
        request_on(&self.conn, req).await
    }

    /// One request, with a dead connection, a reset stream, an undecodable answer or no
    /// answer within `wait` as an error (a relay node killed under the client).
    pub async fn try_request(&self, req: &Request, wait: Duration) -> Result<Response, String> {
        let exchange = async {
            let (mut send, mut recv) = self.conn.open_bi().await.map_err(|e| e.to_string())?;
            send.write_all(&req.encode())
                .await
                .map_err(|e| e.to_string())?;
            let _ = send.finish();
            let frame = recv
                .read_to_end(MAX_FRAME_LEN + 4)
                .await
                .map_err(|e| e.to_string())?;
            if frame.len() < 4 {
                return Err("stream ended without a response".to_owned());
            }
            Response::decode(&frame[4..]).map_err(|e| e.to_string())
        };
        tokio::time::timeout(wait, exchange)
            .await
            .map_err(|_| format!("no answer within {wait:?}"))?
    }

    pub async fn next_push(&mut self) -> Push {
        tokio::time::timeout(TIMEOUT, self.pushes.recv())
            .await
            .expect("no push in time")
            .expect("push channel closed")
    }

    /// A push arriving within `wait`, if any.
    pub async fn try_push(&mut self, wait: Duration) -> Option<Push> {
        tokio::time::timeout(wait, self.pushes.recv())
            .await
            .ok()
            .flatten()
    }

    pub async fn close(self) {
        self.conn.close(0u32.into(), b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// Captures the codes the relay sends.
#[derive(Default)]
pub struct Codes(Mutex<Vec<(AccountId, String)>>);

impl CodeSender for Codes {
    fn send_code(&self, account: &AccountId, code: &VerificationCode) {
        self.0
            .lock()
            .unwrap()
            .push((account.clone(), code.as_str().to_owned()));
    }
}

impl Codes {
    /// Codes sent so far.
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn last(&self, account: &AccountId) -> [u8; 6] {
        let v = self.0.lock().unwrap();
        let (_, c) = v
            .iter()
            .rev()
            .find(|(a, _)| a == account)
            .expect("a code was sent");
        c.as_bytes().try_into().unwrap()
    }
}

pub fn config(dir: &std::path::Path, codes: &Arc<Codes>) -> RelayConfig {
    let mut c = RelayConfig::for_tests(dir);
    c.code_sender = Some(Arc::clone(codes) as Arc<dyn CodeSender>);
    // Every test device registers from 127.0.0.1 with a +1 number; tests of the quotas
    // against SMS pumping set them lower.
    c.limits.code_requests_per_source_per_hour = 100_000;
    c.limits.code_requests_per_country_per_hour = 100_000;
    c.limits.code_requests_per_hour = 100_000;
    c.limits.bundle_fetches_per_pair_burst = 100_000;
    c.limits.bundle_fetches_per_target_per_day = 100_000;
    c
}

/// A relay on a fresh temporary data directory, with the codes it sends captured: the set-up
/// most tests share.
pub struct TestRelay {
    /// The data directory, deleted when dropped: bind it (`dir: _dir`, never `dir: _`, which
    /// drops it at once) for as long as the relay runs.
    pub dir: tempfile::TempDir,
    /// The verification codes the relay sent.
    pub codes: Arc<Codes>,
    /// The running relay.
    pub relay: RelayHandle,
}

impl TestRelay {
    /// Starts a relay with the tests' [`config`].
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a relay with the tests' [`config`] as `adjust` changes it.
    pub async fn start_with(adjust: impl FnOnce(&mut RelayConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let codes = Arc::new(Codes::default());
        let mut cfg = config(dir.path(), &codes);
        adjust(&mut cfg);
        let relay = sealpost_relay::Relay::start(cfg).await.unwrap();
        Self { dir, codes, relay }
    }
}

pub fn acct(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

/// A test device: identity, prekeys, address and a connection.
pub struct Device {
    pub id: IdentityKeyPair,
    pub keys: PreKeyStore,
    pub address: DeviceAddress,
    pub client: Client,
}

impl Device {
    /// Requests a code, registers and authenticates on a fresh connection.
    pub async fn register(relay: &RelayHandle, codes: &Codes, account: &str) -> Self {
        Self::register_with(relay, codes, account, None).await
    }

    /// [`Self::register`] with the registration-lock token `reglock` (spec/pin.md 10).
    pub async fn register_with(
        relay: &RelayHandle,
        codes: &Codes,
        account: &str,
        reglock: Option<[u8; 32]>,
    ) -> Self {
        let a = acct(account);
        let client = Client::for_relay(relay).await;
        let r = client
            .request(&Request::RequestCode { account: a.clone() })
            .await;
        assert_eq!(r, Response::CodeSent { expires_in: 600 });
        let id = IdentityKeyPair::generate(&mut rand::rng());
        let identity = id.public().to_wire();
        let signature = id
            .sign(&register_signed_bytes(&client.exporter, &a, &identity))
            .to_bytes();
        let r = client
            .request(&Request::Register {
                account: a.clone(),
                code: codes.last(&a),
                identity,
                signature,
                reglock,
            })
            .await;
        let Response::Registered { device_id } = r else {
            panic!("{r:?}")
        };
        let mut d = Self {
            id,
            keys: PreKeyStore::new(),
            address: DeviceAddress::new(a, DeviceId(device_id)),
            client,
        };
        let r = d.authenticate().await;
        assert!(matches!(r, Response::Authenticated { .. }), "{r:?}");
        d
    }

    pub async fn authenticate(&mut self) -> Response {
        let Response::ChallengeIssued { nonce } = self.client.request(&Request::Challenge).await
        else {
            panic!("no challenge")
        };
        let signature = self
            .id
            .sign(&auth_signed_bytes(
                &self.client.exporter,
                &nonce,
                &self.address,
            ))
            .to_bytes();
        self.client
            .request(&Request::Authenticate {
                address: self.address.clone(),
                signature,
            })
            .await
    }

    /// Replaces the connection with a fresh, authenticated one.
    pub async fn reconnect(&mut self, relay_addr: SocketAddr, fingerprint: [u8; 32]) -> Response {
        let old = std::mem::replace(
            &mut self.client,
            Client::connect(relay_addr, fingerprint).await,
        );
        old.close().await;
        self.authenticate().await
    }

    pub async fn upload(&mut self, one_time: usize, kem: usize) -> Response {
        let mut rng = rand::rng();
        let now = 1_700_000_000;
        let mut kems =
            self.keys
                .generate_kem_prekeys(&mut rng, &self.id, KemPreKeyKind::OneTime, kem, now);
        kems.extend(self.keys.generate_kem_prekeys(
            &mut rng,
            &self.id,
            KemPreKeyKind::LastResort,
            1,
            now,
        ));
        let upload = PreKeyUpload {
            signed_prekey: Some(self.keys.generate_signed_prekey(&mut rng, &self.id, now)),
            one_time: self.keys.generate_one_time_prekeys(&mut rng, one_time),
            kem: kems,
        };
        self.client.request(&Request::UploadPreKeys(upload)).await
    }
}

pub fn fingerprint_hex(fp: &[u8; 32]) -> String {
    hex::encode(fp)
}

/// The `sealpost-relay` binary as a child process, killed (SIGKILL) on drop.
pub struct RelayProcess {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub fingerprint_hex: String,
}

impl RelayProcess {
    pub async fn start(data_dir: &std::path::Path) -> Self {
        Self::start_with(data_dir, "127.0.0.1:0", &[]).await
    }

    /// Starts the binary listening on `listen` (a fixed port to restart a killed node where
    /// its clients look for it), with `extra` flags (`--store postgres://...`).
    pub async fn start_with(data_dir: &std::path::Path, listen: &str, extra: &[&str]) -> Self {
        Self::try_start_with(data_dir, listen, extra)
            .await
            .expect("the relay process started")
    }

    /// As [`RelayProcess::start_with`]; `None` when the process exited before it listened
    /// (its port taken meanwhile, say).
    pub async fn try_start_with(
        data_dir: &std::path::Path,
        listen: &str,
        extra: &[&str],
    ) -> Option<Self> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sealpost-relay"))
            .args(["--dev-log-codes", "--listen", listen])
            .args(extra)
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let started = tokio::task::spawn_blocking(move || {
            let mut addr = None;
            let mut fp = None;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(a) = line.strip_prefix("sealpost-relay listening on ") {
                    addr = Some(a.parse::<SocketAddr>().unwrap());
                }
                if let Some(f) = line.strip_prefix("certificate SHA-256 fingerprint: ") {
                    fp = Some(f.to_owned());
                }
                // The pin line is the last start-up line: stop reading only after it (the
                // relay would fail writing to a closed pipe).
                if line.starts_with("public-key pin (clients pin this): ") {
                    break;
                }
            }
            addr.zip(fp)
        })
        .await
        .unwrap();
        let Some((addr, fingerprint_hex)) = started else {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        };
        Some(Self {
            child,
            addr,
            fingerprint_hex,
        })
    }

    pub fn fingerprint(&self) -> [u8; 32] {
        hex::decode(&self.fingerprint_hex)
            .unwrap()
            .try_into()
            .unwrap()
    }

    /// Resident memory of the process, KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
