//! TLS for relay connections: TLS 1.3 only, ALPN `sealpost/1`, and a server certificate
//! verifier that **pins** the SHA-256 digest of the relay's end-entity certificate
//! (spec/relay.md section 1).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, PeerIncompatible, SignatureScheme};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// SHA-256 of a certificate's DER encoding: the value a client pins.
pub fn cert_fingerprint(cert_der: &[u8]) -> [u8; 32] {
    let digest = Sha256::digest(cert_der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_slice());
    out
}

/// Accepts a server iff the SHA-256 digest of its end-entity certificate's DER encoding
/// equals the pinned 32 bytes (compared in constant time). Names, validity periods and
/// issuers are not checked: the pin is the whole trust decision. The TLS 1.3
/// `CertificateVerify` signature is still verified against the pinned certificate's key
/// with the ring provider's algorithms, so the server must hold that key. TLS 1.2 is
/// refused.
#[derive(Debug)]
pub struct PinnedCertVerifier {
    pin: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCertVerifier {
    /// A verifier pinning `fingerprint` (SHA-256 of the certificate DER).
    pub fn new(fingerprint: [u8; 32]) -> Self {
        Self {
            pin: fingerprint,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let actual = cert_fingerprint(end_entity.as_ref());
        if sealpost_crypto::ct_eq(&actual, &self.pin) {
            Ok(ServerCertVerified::assertion())
        } else {
            tracing::warn!("relay certificate does not match the pinned fingerprint");
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(
            PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls client configuration for relay connections: ring provider, TLS 1.3 only,
/// pinned certificate, ALPN `sealpost/1`, no client certificate.
pub fn client_tls_config(fingerprint: [u8; 32]) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCertVerifier::new(fingerprint)))
        .with_no_client_auth();
    config.alpn_protocols = vec![sealpost_wire::relay::ALPN.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> CertificateDer<'static> {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        c.cert.der().clone()
    }

    #[test]
    fn pin_decides() {
        let der = cert();
        let name = ServerName::try_from("localhost").unwrap();
        let now = UnixTime::now();
        let good = PinnedCertVerifier::new(cert_fingerprint(&der));
        assert!(good.verify_server_cert(&der, &[], &name, &[], now).is_ok());
        // Any other name is fine too: the pin is the trust decision.
        let other = ServerName::try_from("relay.example").unwrap();
        assert!(good.verify_server_cert(&der, &[], &other, &[], now).is_ok());

        let mut wrong = cert_fingerprint(&der);
        wrong[31] ^= 1;
        let bad = PinnedCertVerifier::new(wrong);
        assert_eq!(
            bad.verify_server_cert(&der, &[], &name, &[], now).err(),
            Some(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure
            ))
        );
        // A different certificate (even a valid one for the name) is refused.
        let another = cert();
        assert!(
            good.verify_server_cert(&another, &[], &name, &[], now)
                .is_err()
        );
        assert!(!good.supported_verify_schemes().is_empty());
    }

    #[test]
    fn tls12_signatures_are_refused() {
        use rustls::internal::msgs::codec::{Codec, Reader};
        let der = cert();
        let v = PinnedCertVerifier::new(cert_fingerprint(&der));
        // scheme ecdsa_secp256r1_sha256, a 1-byte (bogus) signature.
        let enc = [0x04, 0x03, 0x00, 0x01, 0x00];
        let dss = DigitallySignedStruct::read(&mut Reader::init(&enc)).unwrap();
        assert_eq!(
            v.verify_tls12_signature(b"m", &der, &dss).err(),
            Some(Error::PeerIncompatible(
                PeerIncompatible::Tls13RequiredForQuic
            ))
        );
        // TLS 1.3 signatures are really checked.
        assert!(v.verify_tls13_signature(b"m", &der, &dss).is_err());
    }

    #[test]
    fn config_is_tls13_only_with_alpn() {
        let c = client_tls_config([0; 32]).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"sealpost/1".to_vec()]);
        assert!(quinn::crypto::rustls::QuicClientConfig::try_from(c).is_ok());
    }
}
