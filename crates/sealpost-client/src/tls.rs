//! TLS for relay connections: TLS 1.3 only, ALPN `sealpost/1`, and a server certificate
//! verifier that **pins** the relay's public key: the SHA-256 of the end-entity
//! certificate's `SubjectPublicKeyInfo`, against a list of accepted pins (spec/relay.md
//! section 1.1).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, PeerIncompatible, SignatureScheme};
use sealpost_crypto::spki::{SpkiPin, SpkiPins};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The pin of a certificate: SHA-256 of its DER `SubjectPublicKeyInfo`. Fails (with rustls'
/// typed error) if `cert` is not an X.509 v3 certificate rustls can parse.
pub fn spki_pin_of_certificate(cert: &CertificateDer<'_>) -> Result<SpkiPin, Error> {
    let parsed = ParsedCertificate::try_from(cert)?;
    Ok(SpkiPin::of_spki_der(
        parsed.subject_public_key_info().as_ref(),
    ))
}

/// Accepts a server iff the SHA-256 digest of its end-entity certificate's
/// `SubjectPublicKeyInfo` equals one of the pins (each compared in constant time). Names,
/// validity periods, issuers and intermediates are not checked: the pin is the whole trust
/// decision, so a renewed certificate for the same key keeps working. The TLS 1.3
/// `CertificateVerify` signature is still verified by rustls against that certificate's
/// key with the ring provider's algorithms, so the server must hold the pinned key. TLS 1.2
/// is refused.
#[derive(Debug)]
pub struct PinnedSpkiVerifier {
    pins: SpkiPins,
    algorithms: WebPkiSupportedAlgorithms,
    mismatches: AtomicU64,
}

impl PinnedSpkiVerifier {
    /// A verifier accepting any key in `pins`.
    pub fn new(pins: SpkiPins) -> Self {
        Self {
            pins,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
            mismatches: AtomicU64::new(0),
        }
    }

    /// The accepted pins.
    pub fn pins(&self) -> &SpkiPins {
        &self.pins
    }

    /// How many certificates this verifier has refused because their key matched no pin.
    /// The transport reads it to turn a failed handshake into
    /// [`ClientError::PinMismatch`](crate::ClientError::PinMismatch).
    pub fn mismatches(&self) -> u64 {
        self.mismatches.load(Ordering::Relaxed)
    }
}

impl ServerCertVerifier for PinnedSpkiVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let actual = spki_pin_of_certificate(end_entity)?;
        if self.pins.accepts(&actual) {
            Ok(ServerCertVerified::assertion())
        } else {
            self.mismatches.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                presented = %actual,
                pinned = self.pins.as_slice().len(),
                "the relay's public key matches none of the pins"
            );
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
/// `verifier` as the server certificate verifier, ALPN `sealpost/1`, no client certificate.
pub fn client_tls_config(verifier: Arc<PinnedSpkiVerifier>) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![sealpost_wire::relay::ALPN.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData, SerialNumber, SigningKey,
    };

    fn cert_for(key: &KeyPair, serial: u64) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        params.self_signed(key).unwrap().der().clone()
    }

    fn key() -> KeyPair {
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
    }

    fn pin_of_key(key: &KeyPair) -> SpkiPin {
        SpkiPin::of_spki_der(&key.subject_public_key_info())
    }

    #[test]
    fn pin_is_of_the_key_not_the_certificate() {
        let (k1, k2) = (key(), key());
        let (a, b) = (cert_for(&k1, 1), cert_for(&k1, 2));
        assert_ne!(a, b, "two certificates");
        // The pin is the SPKI hash: the same for both certificates of K1, equal to what
        // rcgen computes from the key alone.
        assert_eq!(spki_pin_of_certificate(&a).unwrap(), pin_of_key(&k1));
        assert_eq!(spki_pin_of_certificate(&b).unwrap(), pin_of_key(&k1));
        assert_ne!(
            spki_pin_of_certificate(&cert_for(&k2, 1)).unwrap(),
            pin_of_key(&k1)
        );
        assert!(spki_pin_of_certificate(&CertificateDer::from(vec![0x30, 0x00])).is_err());
    }

    #[test]
    fn pins_decide() {
        let (k1, k2, k3) = (key(), key(), key());
        let name = ServerName::try_from("localhost").unwrap();
        let now = UnixTime::now();
        let both =
            PinnedSpkiVerifier::new(SpkiPins::new([pin_of_key(&k1), pin_of_key(&k2)]).unwrap());
        for cert in [cert_for(&k1, 1), cert_for(&k1, 7), cert_for(&k2, 1)] {
            assert!(both.verify_server_cert(&cert, &[], &name, &[], now).is_ok());
        }
        // Any other name is fine too: the pin is the trust decision.
        let other = ServerName::try_from("relay.example").unwrap();
        assert!(
            both.verify_server_cert(&cert_for(&k1, 3), &[], &other, &[], now)
                .is_ok()
        );
        assert_eq!(both.mismatches(), 0);

        let only_k1 = PinnedSpkiVerifier::new(pin_of_key(&k1).into());
        for cert in [cert_for(&k2, 1), cert_for(&k3, 1)] {
            assert_eq!(
                only_k1
                    .verify_server_cert(&cert, &[], &name, &[], now)
                    .err(),
                Some(Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure
                ))
            );
        }
        assert_eq!(only_k1.mismatches(), 2);
        // An unparsable certificate is refused with rustls' encoding error, not a mismatch.
        assert!(
            only_k1
                .verify_server_cert(&CertificateDer::from(vec![1, 2, 3]), &[], &name, &[], now)
                .is_err()
        );
        assert_eq!(only_k1.mismatches(), 2);
        assert!(!only_k1.supported_verify_schemes().is_empty());
    }

    #[test]
    fn handshake_signatures_are_checked_against_the_certificate_key() {
        use rustls::internal::msgs::codec::{Codec, Reader};
        let (k1, k2) = (key(), key());
        let cert = cert_for(&k1, 1);
        let v = PinnedSpkiVerifier::new(pin_of_key(&k1).into());
        // A TLS 1.3 CertificateVerify content signed by K1 verifies; the same signed by K2
        // (a server presenting K1's certificate without holding K1) does not.
        let message = b"TLS 1.3, server CertificateVerify test content";
        let dss_of = |kp: &KeyPair| {
            let sig = kp.sign(message).unwrap();
            let mut enc = vec![0x04, 0x03];
            enc.extend_from_slice(&u16::try_from(sig.len()).unwrap().to_be_bytes());
            enc.extend_from_slice(&sig);
            DigitallySignedStruct::read(&mut Reader::init(&enc)).unwrap()
        };
        assert!(
            v.verify_tls13_signature(message, &cert, &dss_of(&k1))
                .is_ok()
        );
        assert!(
            v.verify_tls13_signature(message, &cert, &dss_of(&k2))
                .is_err()
        );
        assert!(
            v.verify_tls13_signature(b"other", &cert, &dss_of(&k1))
                .is_err()
        );
        // TLS 1.2 is refused whatever the signature.
        assert_eq!(
            v.verify_tls12_signature(message, &cert, &dss_of(&k1)).err(),
            Some(Error::PeerIncompatible(
                PeerIncompatible::Tls13RequiredForQuic
            ))
        );
    }

    #[test]
    fn config_is_tls13_only_with_alpn() {
        let v = Arc::new(PinnedSpkiVerifier::new(SpkiPin::from_bytes([0; 32]).into()));
        let c = client_tls_config(v).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"sealpost/1".to_vec()]);
        assert!(quinn::crypto::rustls::QuicClientConfig::try_from(c).is_ok());
    }
}
