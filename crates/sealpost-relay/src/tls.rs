//! TLS material: the operator's certificate and key (PEM), or a self-signed certificate
//! generated on first start and kept in the data directory (`tls/cert.pem`, `tls/key.pem`,
//! the key readable by the owner only). TLS 1.3 only, ALPN `sealpost/1`, ring provider.
//! Clients pin the certificate's public key ([`spki_pin`], spec/relay.md section 1.1), so a
//! renewed certificate for the same key needs no client change.

use crate::{Cause, RelayError, TlsError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sealpost_crypto::spki::SpkiPin;
use sha2::Digest;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A certificate chain, its key, the end-entity certificate's fingerprint and its public-key
/// pin.
pub struct TlsMaterial {
    /// End-entity certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the end-entity certificate's DER encoding (identifies this certificate;
    /// not what clients pin).
    pub fingerprint: [u8; 32],
    /// SHA-256 of the end-entity certificate's `SubjectPublicKeyInfo`: what clients pin.
    pub spki_pin: SpkiPin,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("chain_len", &self.chain.len())
            .field("fingerprint", &hex::encode(self.fingerprint))
            .field("spki_pin", &self.spki_pin)
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// The end-entity certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        self.chain.first().map_or(&[], |c| c.as_ref())
    }
}

/// SHA-256 of a certificate's DER encoding. It changes with every renewal: clients pin
/// [`spki_pin`] instead.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(der).into()
}

/// The public-key pin of a certificate: SHA-256 of its DER `SubjectPublicKeyInfo`, printed
/// `sha256/<base64>` (spec/relay.md section 1.1). Fails if rustls cannot parse `cert` as an
/// X.509 v3 certificate.
pub fn spki_pin(cert: &CertificateDer<'_>) -> Result<SpkiPin, RelayError> {
    let parsed = rustls::server::ParsedCertificate::try_from(cert)
        .map_err(|e| tls_err("parsing the certificate", e))?;
    Ok(SpkiPin::of_spki_der(
        parsed.subject_public_key_info().as_ref(),
    ))
}

/// The public-key pin of the first certificate in a PEM file (an operator's next
/// certificate, say, before it is deployed: `sealpost-relay --print-pin --cert FILE`).
pub fn spki_pin_of_pem_file(cert: &Path) -> Result<SpkiPin, RelayError> {
    let first = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err("reading", cert, e))?
        .next()
        .ok_or_else(|| TlsError::NoCertificate {
            path: cert.to_path_buf(),
        })?
        .map_err(|e| file_err("parsing", cert, e))?;
    spki_pin(&first)
}

/// The pin of the certificate a relay with `config` serves: the operator's certificate, or
/// the self-signed one in the data directory (generated now if there is none yet, as the
/// relay would at start).
pub fn configured_spki_pin(config: &crate::RelayConfig) -> Result<SpkiPin, RelayError> {
    match &config.cert_path {
        Some(cert) => spki_pin_of_pem_file(cert),
        None => Ok(load_or_generate(&config.data_dir, &config.cert_names)?.spki_pin),
    }
}

fn tls_err(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> RelayError {
    RelayError::Tls(TlsError::Material {
        what,
        source: Cause::new(e),
    })
}

fn file_err(
    action: &'static str,
    path: &Path,
    e: impl std::error::Error + Send + Sync + 'static,
) -> RelayError {
    RelayError::Tls(TlsError::File {
        action,
        path: path.to_path_buf(),
        source: Cause::new(e),
    })
}

/// Loads a certificate chain and a private key from PEM files.
pub fn load_pem(cert: &Path, key: &Path) -> Result<TlsMaterial, RelayError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err("reading", cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err("parsing", cert, e))?;
    let Some(first) = chain.first() else {
        return Err(RelayError::Tls(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        }));
    };
    let fingerprint = fingerprint(first.as_ref());
    let spki_pin = spki_pin(first)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err("reading the key", key, e))?;
    Ok(TlsMaterial {
        chain,
        key,
        fingerprint,
        spki_pin,
    })
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), RelayError> {
    let tmp = path.with_extension("tmp");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(&tmp).map_err(|e| {
        RelayError::io(
            "creating",
            crate::error::IoTarget::Path(tmp.to_path_buf()),
            e,
        )
    })?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| {
            RelayError::io(
                "writing",
                crate::error::IoTarget::Path(tmp.to_path_buf()),
                e,
            )
        })?;
    fs::rename(&tmp, path).map_err(|e| {
        RelayError::io(
            "renaming to",
            crate::error::IoTarget::Path(path.to_path_buf()),
            e,
        )
    })
}

/// Paths of the self-signed certificate and key in `data_dir`.
pub fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Loads the self-signed certificate kept in `data_dir`, generating it (for `names`) on
/// first use. The key file is created with mode 0600.
pub fn load_or_generate(data_dir: &Path, names: &[String]) -> Result<TlsMaterial, RelayError> {
    let (cert, key) = self_signed_paths(data_dir);
    if cert.exists() && key.exists() {
        return load_pem(&cert, &key);
    }
    if let Some(dir) = cert.parent() {
        fs::create_dir_all(dir).map_err(|e| {
            RelayError::io(
                "creating",
                crate::error::IoTarget::Path(dir.to_path_buf()),
                e,
            )
        })?;
    }
    let names = if names.is_empty() {
        vec!["localhost".to_owned()]
    } else {
        names.to_vec()
    };
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| tls_err("generating certificate", e))?;
    let key_pem = zeroize::Zeroizing::new(generated.signing_key.serialize_pem());
    // Key first: a crash in between leaves no certificate without its key.
    write_file(&key, key_pem.as_bytes(), 0o600)?;
    write_file(&cert, generated.cert.pem().as_bytes(), 0o644)?;
    tracing::info!(path = %cert.display(), "generated a self-signed certificate");
    load_pem(&cert, &key)
}

/// A rustls server configuration: TLS 1.3 only, ring, ALPN `sealpost/1`, no client auth,
/// no session resumption.
pub fn server_crypto(material: &TlsMaterial) -> Result<rustls::ServerConfig, RelayError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(material.chain.clone(), material.key.clone_key())
        .map_err(|e| tls_err("certificate and key", e))?;
    cfg.alpn_protocols = vec![sealpost_wire::relay::ALPN.to_vec()];
    cfg.max_early_data_size = 0;
    // No resumption (spec/relay.md section 1): no tickets to build, send and keep per
    // connection, and no session cache.
    cfg.send_tls13_tickets = 0;
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_generate(dir.path(), &[]).unwrap();
        let b = load_or_generate(dir.path(), &["other.example".into()]).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint, fingerprint(b.cert_der()));
        assert_eq!(a.spki_pin, b.spki_pin);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let (_, key) = self_signed_paths(dir.path());
            let mode = fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        server_crypto(&a).unwrap();
    }

    #[test]
    fn operator_pem_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let g = rcgen::generate_simple_self_signed(vec!["relay.example".into()]).unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        fs::write(&cert, g.cert.pem()).unwrap();
        fs::write(&key, g.signing_key.serialize_pem()).unwrap();
        let m = load_pem(&cert, &key).unwrap();
        assert_eq!(m.fingerprint, fingerprint(g.cert.der()));
        // The pin is of the key, as rcgen serialises its SubjectPublicKeyInfo.
        use rcgen::PublicKeyData as _;
        let key_pin = SpkiPin::of_spki_der(&g.signing_key.subject_public_key_info());
        assert_eq!(m.spki_pin, key_pin);
        assert_eq!(spki_pin_of_pem_file(&cert).unwrap(), key_pin);
        // A new certificate for the same key has another fingerprint and the same pin.
        let renewed = rcgen::CertificateParams::new(vec!["relay.example".into()])
            .unwrap()
            .self_signed(&g.signing_key)
            .unwrap();
        assert_ne!(fingerprint(renewed.der()), m.fingerprint);
        assert_eq!(spki_pin(renewed.der()).unwrap(), key_pin);
        assert!(spki_pin_of_pem_file(&key).is_err());
        assert!(load_pem(&key, &key).is_err());
    }
}
