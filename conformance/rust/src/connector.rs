//! A tokio-xmpp `ServerConnector` for the test server: a fixed 127.0.0.1 address (no SRV or A
//! lookups), STARTTLS or direct TLS (XEP-0368), and a rustls `ClientConfig` whose only root is
//! the test CA, so the server certificate is fully verified for `localhost`.
//!
//! tokio-xmpp 6 builds its own `ClientConfig` from the system roots in its stock connectors and
//! takes no config from the caller, but the `ServerConnector` trait is public: this is the
//! supported way to bring one's own transport. The STARTTLS exchange below is the same as
//! tokio-xmpp's `connect::starttls`, and the channel binding (tls-exporter on TLS 1.3, so
//! tokio-xmpp picks SCRAM-*-PLUS) is computed the same way.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use sasl::common::ChannelBinding;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_xmpp::connect::ServerConnector;
use tokio_xmpp::error::{Error, ProtocolError};
use tokio_xmpp::parsers::{jid::Jid, starttls};
use tokio_xmpp::xmlstream::{
    initiate_stream, FallibleStreamElement, PendingFeaturesRecv, ReadError, StreamHeader, Timeouts,
    XmppStreamElement,
};

/// How the client secures the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Plain TCP, `<starttls/>`, then TLS (RFC 6120 §5).
    StartTls,
    /// TLS from the first byte (XEP-0368).
    DirectTls,
}

/// Connects to a fixed address and trusts one CA.
#[derive(Clone)]
pub struct TernConnector {
    pub addr: SocketAddr,
    pub mode: Mode,
    pub tls: Arc<ClientConfig>,
    /// Offer tls-exporter channel binding to SASL (tokio-xmpp then uses SCRAM-*-PLUS when the
    /// server advertises it); false sends the "n" GS2 flag with plain SCRAM.
    pub channel_binding: bool,
}

impl std::fmt::Debug for TernConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TernConnector")
            .field("addr", &self.addr)
            .field("mode", &self.mode)
            .field("channel_binding", &self.channel_binding)
            .finish()
    }
}

/// A rustls client config trusting only the PEM CA certificate(s) in `ca_file`.
pub fn client_config(ca_file: &Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", ca_file.display()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("bad PEM in {}: {e}", ca_file.display()));
    assert!(!certs.is_empty(), "no certificate in {}", ca_file.display());
    for c in certs {
        roots.add(c).expect("CA certificate accepted by rustls");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

impl TernConnector {
    pub fn new(addr: SocketAddr, mode: Mode, ca_file: &Path) -> Self {
        TernConnector {
            addr,
            mode,
            tls: client_config(ca_file),
            channel_binding: true,
        }
    }

    /// TLS handshake for `domain` on `stream`; returns the stream and its channel binding.
    pub async fn tls(
        &self,
        stream: TcpStream,
        domain: &str,
    ) -> Result<(TlsStream<TcpStream>, ChannelBinding), Error> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, stream)
            .await?;
        let (_, conn) = tls.get_ref();
        let cb = match (self.channel_binding, conn.protocol_version()) {
            (true, Some(rustls::ProtocolVersion::TLSv1_3)) => {
                // RFC 9266: tls-exporter, 32 bytes, label "EXPORTER-Channel-Binding", no context.
                let data = conn
                    .export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                ChannelBinding::TlsExporter(data)
            }
            _ => ChannelBinding::None,
        };
        Ok((tls, cb))
    }
}

fn header(jid: &Jid) -> StreamHeader<'_> {
    StreamHeader {
        to: Some(Cow::Borrowed(jid.domain().as_str())),
        from: None,
        id: None,
    }
}

impl ServerConnector for TernConnector {
    type Stream = BufStream<TlsStream<TcpStream>>;

    async fn connect(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<(PendingFeaturesRecv<Self::Stream>, ChannelBinding), Error> {
        let domain = jid.domain().as_str();
        let tcp = TcpStream::connect(self.addr).await?;
        let tcp = match self.mode {
            Mode::DirectTls => tcp,
            Mode::StartTls => {
                let stream =
                    initiate_stream(BufStream::new(tcp), ns, header(jid), timeouts).await?;
                let (features, mut stream) =
                    stream.recv_features::<FallibleStreamElement>().await?;
                if !features.can_starttls() {
                    return Err(ProtocolError::NoTls.into());
                }
                stream
                    .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(
                        starttls::Request,
                    )))
                    .await?;
                loop {
                    match stream
                        .next()
                        .await
                        .map(|r| r.and_then(|e| e.into_read_error()))
                    {
                        Some(Ok(XmppStreamElement::Starttls(starttls::Nonza::Proceed(_)))) => break,
                        Some(Ok(_)) | Some(Err(ReadError::SoftTimeout)) => {}
                        Some(Err(ReadError::HardError(e))) => return Err(e.into()),
                        Some(Err(ReadError::ParseError(e))) => {
                            return Err(io::Error::new(io::ErrorKind::InvalidData, e).into())
                        }
                        None | Some(Err(ReadError::StreamFooterReceived)) => {
                            return Err(Error::Disconnected)
                        }
                    }
                }
                stream.into_inner().into_inner()
            }
        };
        let (tls, cb) = self.tls(tcp, domain).await?;
        let stream = initiate_stream(BufStream::new(tls), ns, header(jid), timeouts).await?;
        Ok((stream, cb))
    }
}
