//! Certificates of peers (RFC 6125 / XEP-0178): which authorities we trust, whether a chain
//! is valid for a domain, and the TLS configurations for both directions.
//!
//! The TLS handshake itself accepts any certificate (it still checks that the peer owns the
//! key it presents): whether the certificate is good enough is decided afterwards, against
//! the domain the stream is for and the policy for that domain, so that an untrusted peer
//! can still authenticate with dialback where policy allows and the log can say exactly what
//! was wrong with its certificate.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};
use rustls_pki_types::pem::PemObject;
use tracing::{info, warn};

/// Finds our certificate and key for one of our domains (for client authentication).
pub type KeyLookup = dyn Fn(&str) -> Option<Arc<CertifiedKey>> + Send + Sync;

/// Our TLS material, as the server crate loaded it for the c2s listener.
#[derive(Clone)]
pub struct LocalCerts {
    /// Picks the certificate by SNI when we accept connections.
    pub resolver: Arc<dyn ResolvesServerCert>,
    /// Our certificate for a local domain, presented when we connect out.
    pub lookup: Arc<KeyLookup>,
}

/// The authorities we trust for peers' certificates.
pub struct Trust {
    provider: Arc<CryptoProvider>,
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

/// Could not load the configured trust anchors.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A CA file could not be read or parsed.
    #[error("s2s.ca_files: {path}: {error}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: String,
    },
}

impl Trust {
    /// System roots (if `system_roots`) plus every certificate in `ca_files`.
    pub fn new(system_roots: bool, ca_files: &[PathBuf]) -> Result<Trust, TrustError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        if system_roots {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if !found.errors.is_empty() {
                warn!(
                    "some system certificates could not be loaded: {:?}",
                    found.errors.first()
                );
            }
            info!(
                count = added,
                "s2s trusts the system's certificate authorities"
            );
        }
        for path in ca_files {
            let err = |e: String| TrustError::CaFile {
                path: path.clone(),
                error: e,
            };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| err(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| err(e.to_string()))?;
            if certs.is_empty() {
                return Err(err("no certificate in the file".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| err(e.to_string()))?;
            }
        }
        let verifier = if roots.is_empty() {
            warn!("s2s trusts no certificate authority: peers can only use dialback");
            None
        } else {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .ok()
        };
        Ok(Trust { provider, verifier })
    }

    /// Checks a peer's chain against our roots and `domain` (RFC 6125 §6: DNS-ID, with a
    /// wildcard only as the whole leftmost label); the error says what is wrong, for logs.
    pub fn verify(&self, chain: &[CertificateDer<'_>], domain: &str) -> Result<(), String> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err("the peer presented no certificate".into());
        };
        let Some(verifier) = &self.verifier else {
            return Err("no trusted certificate authorities are configured".into());
        };
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|_| format!("{domain:?} is not a DNS name"))?;
        verifier
            .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| describe(&e, domain))
    }

    /// TLS settings for connecting out, presenting `key` as our client certificate.
    pub fn client_config(
        &self,
        key: Option<Arc<CertifiedKey>>,
        direct_tls: bool,
    ) -> Arc<rustls::ClientConfig> {
        let builder = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(self.provider.clone())));
        let mut config = match key {
            Some(k) => builder.with_client_cert_resolver(Arc::new(OneKey(k))),
            None => builder.with_no_client_auth(),
        };
        if direct_tls {
            // XEP-0368 §3: the ALPN protocol of direct-TLS server streams.
            config.alpn_protocols = vec![b"xmpp-server".to_vec()];
        }
        Arc::new(config)
    }

    /// TLS settings for accepting: our certificates by SNI, and a request for the peer's.
    pub fn server_config(
        &self,
        resolver: Arc<dyn ResolvesServerCert>,
    ) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default versions")
            .with_client_cert_verifier(Arc::new(AcceptAny(self.provider.clone())))
            .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"xmpp-server".to_vec()];
        Arc::new(config)
    }
}

/// Operator-facing wording of a certificate verification failure.
fn describe(e: &rustls::Error, domain: &str) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                "issued by an unknown authority (not signed by a trusted CA)".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("not valid for {domain} (name mismatch)")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired".into(),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not valid yet".into()
            }
            CertificateError::Revoked => "revoked".into(),
            CertificateError::BadEncoding => "malformed".into(),
            CertificateError::BadSignature => {
                "badly signed (not issued by the authority it names)".into()
            }
            other => format!("{other:?}"),
        },
        other => other.to_string(),
    }
}

/// Accepts any certificate at the TLS level, but checks the handshake signatures, so the peer
/// proves it holds the key of the certificate that is judged afterwards.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for AcceptAny {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(self)
    }
}

/// Presents one certificate as our client certificate.
#[derive(Debug)]
struct OneKey(Arc<CertifiedKey>);

impl ResolvesClientCert for OneKey {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        p.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("CA {}", rand::random::<u32>()),
        );
        let cert = p.self_signed(&key).unwrap();
        let pem = cert.pem();
        (rcgen::Issuer::new(p, key), pem)
    }

    fn leaf(
        issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
        names: &[&str],
    ) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.signed_by(&key, issuer).unwrap().der().clone()
    }

    fn trust_for(pem: &str) -> Trust {
        let dir = std::env::temp_dir().join(format!("tern-s2s-ca-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.crt");
        std::fs::write(&path, pem).unwrap();
        let t = Trust::new(false, &[path]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        t
    }

    /// RFC 6125 §6.4: exact DNS-IDs, case-insensitively; a wildcard covers exactly one
    /// leftmost label; nothing else matches.
    #[test]
    fn rfc6125_name_matching() {
        let (issuer, pem) = ca();
        let t = trust_for(&pem);
        let exact = leaf(&issuer, &["example.net"]);
        assert!(t
            .verify(std::slice::from_ref(&exact), "example.net")
            .is_ok());
        assert!(t
            .verify(std::slice::from_ref(&exact), "EXAMPLE.net")
            .is_ok());
        let e = t.verify(&[exact], "other.example.net").unwrap_err();
        assert!(e.contains("name mismatch"), "{e}");

        let wild = leaf(&issuer, &["*.example.net"]);
        assert!(t
            .verify(std::slice::from_ref(&wild), "chat.example.net")
            .is_ok());
        assert!(t
            .verify(std::slice::from_ref(&wild), "example.net")
            .is_err());
        assert!(t.verify(&[wild], "a.b.example.net").is_err());
    }

    #[test]
    fn unknown_issuer_and_missing_certificate_are_named() {
        let (issuer, _) = ca();
        let (_, other_pem) = ca();
        let t = trust_for(&other_pem);
        let e = t
            .verify(&[leaf(&issuer, &["example.net"])], "example.net")
            .unwrap_err();
        assert!(e.contains("unknown authority"), "{e}");
        assert!(t
            .verify(&[], "example.net")
            .unwrap_err()
            .contains("no certificate"));
        let none = Trust::new(false, &[]).unwrap();
        let e = none
            .verify(&[leaf(&issuer, &["example.net"])], "example.net")
            .unwrap_err();
        assert!(e.contains("no trusted"), "{e}");
    }
}
