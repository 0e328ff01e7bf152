//! TLS material: PEM loading (rustls-pki-types), a self-signed ECDSA P-256 certificate made on
//! first start (rcgen), and per-host certificate selection by SNI.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tracing::warn;

use tern_c2s::TlsSettings;

use crate::config::HostSection;

/// One host's certificate and its tls-server-end-point hash.
struct HostCert {
    key: Arc<CertifiedKey>,
    end_point: Vec<u8>,
}

/// Picks the certificate of the host named in SNI; without SNI (or for an unknown name) the
/// first host's, so a client that omits SNI still gets a certificate it can check.
pub struct SniResolver {
    certs: HashMap<String, HostCert>,
    default: String,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("hosts", &self.certs.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SniResolver {
    fn pick(&self, sni: Option<&str>) -> Option<&HostCert> {
        let name = sni.map(str::to_ascii_lowercase);
        name.as_deref()
            .and_then(|n| self.certs.get(n))
            .or_else(|| self.certs.get(&self.default))
    }
}

impl SniResolver {
    /// The certificate and key for one of our domains (the first host's for any other name),
    /// presented as client certificate on outgoing server connections.
    pub fn key_for(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        let d = domain.to_ascii_lowercase();
        // A service or component domain uses its parent host's certificate.
        let parent = d.split_once('.').map(|(_, p)| p);
        self.certs
            .get(&d)
            .or_else(|| parent.and_then(|p| self.certs.get(p)))
            .or_else(|| self.certs.get(&self.default))
            .map(|c| c.key.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name()).map(|c| c.key.clone())
    }
}

/// Paths of a host's certificate and key: configured, or generated under the data dir.
pub fn cert_paths(host: &HostSection, data_dir: &Path) -> (PathBuf, PathBuf, bool) {
    match (&host.certificate, &host.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), false),
        _ => {
            let dir = data_dir.join("certs");
            (
                dir.join(format!("{}.crt", host.domain)),
                dir.join(format!("{}.key", host.domain)),
                true,
            )
        }
    }
}

/// Builds the listener TLS settings for all hosts, generating self-signed certificates where
/// none is configured.
pub fn load(hosts: &[HostSection], data_dir: &Path) -> Result<TlsSettings> {
    load_with_resolver(hosts, data_dir).map(|(s, _)| s)
}

/// [`load`], also returning the per-host certificate resolver (federation presents the same
/// certificates, as server and as client).
pub fn load_with_resolver(
    hosts: &[HostSection],
    data_dir: &Path,
) -> Result<(TlsSettings, Arc<SniResolver>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut certs = HashMap::new();
    for h in hosts {
        let (cert_path, key_path, generated) = cert_paths(h, data_dir);
        if generated && !cert_path.exists() {
            warn!(
                host = %h.domain,
                path = %cert_path.display(),
                "NO CERTIFICATE CONFIGURED: generating a SELF-SIGNED certificate; clients will not trust it. \
                 Set host.certificate and host.key for production."
            );
            write_self_signed(&h.domain, &cert_path, &key_path)?;
        } else if generated {
            warn!(host = %h.domain, path = %cert_path.display(), "using a self-signed development certificate");
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
            .with_context(|| {
                format!(
                    "host {}: reading certificate {}",
                    h.domain,
                    cert_path.display()
                )
            })?
            .collect::<Result<_, _>>()
            .with_context(|| {
                format!(
                    "host {}: parsing certificate {}",
                    h.domain,
                    cert_path.display()
                )
            })?;
        let leaf = chain.first().ok_or_else(|| {
            anyhow!(
                "host {}: {} holds no certificate",
                h.domain,
                cert_path.display()
            )
        })?;
        // RFC 5929 §4.1: SHA-256 for certificates signed with SHA-1 or SHA-256, which covers the
        // certificates we generate and almost all in use.
        let end_point = Sha256::digest(leaf.as_ref()).to_vec();
        let key = PrivateKeyDer::from_pem_file(&key_path).with_context(|| {
            format!(
                "host {}: reading private key {}",
                h.domain,
                key_path.display()
            )
        })?;
        let ck = CertifiedKey::from_der(chain, key, &provider).with_context(|| {
            format!(
                "host {}: certificate and key do not form a usable pair",
                h.domain
            )
        })?;
        certs.insert(
            h.domain.to_ascii_lowercase(),
            HostCert {
                key: Arc::new(ck),
                end_point,
            },
        );
    }
    let default = hosts
        .first()
        .map(|h| h.domain.to_ascii_lowercase())
        .unwrap_or_default();
    let resolver = Arc::new(SniResolver { certs, default });
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    let r = resolver.clone();
    let settings = TlsSettings {
        config: Arc::new(config),
        end_point_hash: Arc::new(move |sni| r.pick(sni).map(|c| c.end_point.clone())),
    };
    Ok((settings, resolver))
}

/// Writes a self-signed ECDSA P-256 certificate for `domain` (and its subdomains).
pub fn write_self_signed(domain: &str, cert_path: &Path, key_path: &Path) -> Result<()> {
    let names = vec![domain.to_owned(), format!("*.{domain}")];
    let ck = rcgen::generate_simple_self_signed(names).context("generating certificate")?;
    write_pair(
        &ck.cert.pem(),
        &ck.signing_key.serialize_pem(),
        cert_path,
        key_path,
    )
}

/// Writes a test CA and a certificate for `domain` signed by it (for test suites that verify
/// certificates properly instead of turning verification off).
pub fn write_ca_signed(domain: &str, out: &Path) -> Result<()> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("Tern test CA for {domain}"),
    );
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let params = rcgen::CertificateParams::new(vec![domain.to_owned(), format!("*.{domain}")])?;
    let cert = params.signed_by(&key, &ca)?;
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("ca.crt"), ca.pem())?;
    write_pair(
        &cert.pem(),
        &key.serialize_pem(),
        &out.join(format!("{domain}.crt")),
        &out.join(format!("{domain}.key")),
    )
}

fn write_pair(cert_pem: &str, key_pem: &str, cert_path: &Path, key_path: &Path) -> Result<()> {
    for p in [cert_path, key_path] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    std::fs::write(cert_path, cert_pem)
        .with_context(|| format!("writing {}", cert_path.display()))?;
    write_private(key_path, key_pem.as_bytes())
        .with_context(|| format!("writing {}", key_path.display()))
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}
