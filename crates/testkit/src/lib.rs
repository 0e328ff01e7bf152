//! Dev-only helpers: start a real Tern server in-process on 127.0.0.1 with ephemeral ports, a
//! memory store and a certificate signed by a throwaway CA, and drive it over real TCP and TLS
//! with a small raw XMPP client ([`RawClient`]) whose every step can be asserted on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use minidom::Element;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use tern_server::{Config, Running};
use tern_stream::{StreamEvent, StreamReader, NS_CLIENT};

/// The defined condition of a stanza error (RFC 6120 §8.3), e.g. `"item-not-found"`.
pub fn error_condition(e: &Element) -> Option<String> {
    let err = e.get_child("error", NS_CLIENT)?;
    err.children()
        .find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.name() != "text")
        .map(|c| c.name().to_owned())
}

/// A running in-process server and the files it uses.
pub struct TestServer {
    /// The server.
    pub running: Option<Running>,
    /// Its temporary directory (certificates, CA).
    pub dir: PathBuf,
    /// The served domain.
    pub domain: String,
    /// The STARTTLS port address.
    pub c2s: SocketAddr,
    /// The direct-TLS port address.
    pub tls: SocketAddr,
    /// The plain-HTTP port address (WebSocket, BOSH, host-meta).
    pub http: SocketAddr,
    /// The HTTPS port address.
    pub https: SocketAddr,
    config: Config,
}

impl TestServer {
    /// Starts a server for `localhost` with open in-band registration; `tweak` may change the
    /// configuration first.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Result<TestServer> {
        Self::start_for("localhost", tweak).await
    }

    /// Starts a server for `domain`, with a certificate for it signed by its own test CA.
    pub async fn start_for(domain: &str, tweak: impl FnOnce(&mut Config)) -> Result<TestServer> {
        let dir = Self::prepare(domain)?;
        Self::start_in(dir, domain, tweak).await
    }

    /// A fresh directory holding a CA and a certificate for `domain` signed by it.
    pub fn prepare(domain: &str) -> Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!("tern-test-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir)?;
        tern_server::tls::write_ca_signed(domain, &dir)?;
        Ok(dir)
    }

    /// Starts a server for `domain` in a directory made by [`TestServer::prepare`].
    pub async fn start_in(
        dir: PathBuf,
        domain: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> Result<TestServer> {
        let domain = domain.to_string();
        // Federation listens on an ephemeral loopback port and trusts only what a test adds.
        let mut config = Config::parse(&format!(
            "[server]\ndata_dir = {dir:?}\nregistration = \"open\"\nregistration_per_ip_per_hour = 0\n[storage]\nbackend = \"memory\"\n\
             [c2s]\nlisten = [\"127.0.0.1:0\"]\nlisten_tls = [\"127.0.0.1:0\"]\n\
             [proxy65]\nlisten = \"127.0.0.1:0\"\nadvertised_host = \"127.0.0.1\"\n\
             [http]\nlisten = [\"127.0.0.1:0\"]\nlisten_tls = [\"127.0.0.1:0\"]\n\
             [s2s]\nlisten = [\"127.0.0.1:0\"]\nsystem_roots = false\n\
             [[host]]\ndomain = {domain:?}\ncertificate = {:?}\nkey = {:?}\n",
            dir.join(format!("{domain}.crt")),
            dir.join(format!("{domain}.key")),
        ))?;
        tweak(&mut config);
        let running = tern_server::start(&config).await?;
        let c2s = running.c2s_addrs[0];
        let tls = running.tls_addrs[0];
        let http = running.http.plain[0];
        let https = running.http.tls[0];
        Ok(TestServer {
            running: Some(running),
            dir,
            domain,
            c2s,
            tls,
            http,
            https,
            config,
        })
    }

    /// The router of the running server.
    pub fn router(&self) -> Arc<tern_router::Router> {
        self.running.as_ref().expect("running").router.clone()
    }

    /// Starts a server with the test defaults.
    pub async fn start() -> Result<TestServer> {
        Self::start_with(|_| {}).await
    }

    /// Creates an account directly in the store.
    pub async fn add_user(&self, user: &str, password: &str) -> Result<()> {
        let router = &self.running.as_ref().expect("running").router;
        let record =
            tern_sasl::new_account_record(password, 4096, 0).map_err(|e| anyhow!("{e}"))?;
        router
            .storage()
            .accounts
            .create(&self.domain, user, &record)
            .await?;
        Ok(())
    }

    /// Path of the CA certificate that signed the server's certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Stops the server and starts it again on the same configuration and data (new ports).
    pub async fn restart(&mut self) -> Result<()> {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        let running = tern_server::start(&self.config).await?;
        self.c2s = running.c2s_addrs[0];
        self.tls = running.tls_addrs[0];
        self.http = running.http.plain[0];
        self.https = running.http.tls[0];
        self.running = Some(running);
        Ok(())
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port that was free a moment ago (for servers that must know each other's
/// addresses before either starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Two servers for `a` and `b` federating over loopback through static routes. With `trust`,
/// each trusts the other's CA (SASL EXTERNAL); without, neither does. `tweak` sees each
/// server's domain and configuration before it starts.
pub async fn start_federated(
    a: &str,
    b: &str,
    trust: bool,
    tweak: impl Fn(&str, &mut Config),
) -> Result<(TestServer, TestServer)> {
    let (dir_a, dir_b) = (TestServer::prepare(a)?, TestServer::prepare(b)?);
    let (port_a, port_b) = (free_port(), free_port());
    let ca_b = trust.then(|| dir_b.join("ca.crt"));
    let ca_a = trust.then(|| dir_a.join("ca.crt"));
    let sa = TestServer::start_in(dir_a, a, |c| {
        federate(c, port_a, b, port_b, ca_b);
        tweak(a, c);
    })
    .await?;
    let sb = TestServer::start_in(dir_b, b, |c| {
        federate(c, port_b, a, port_a, ca_a);
        tweak(b, c);
    })
    .await?;
    Ok((sa, sb))
}

fn federate(c: &mut Config, my_port: u16, peer: &str, peer_port: u16, peer_ca: Option<PathBuf>) {
    c.s2s.listen = vec![format!("127.0.0.1:{my_port}")];
    c.s2s
        .routes
        .insert(peer.to_owned(), format!("127.0.0.1:{peer_port}"));
    c.s2s.connect_retries = 0;
    c.s2s.ca_files = peer_ca.into_iter().collect();
}

/// A TLS client configuration trusting only the given CA.
pub fn client_tls(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

pub mod scram;

/// Object-safe byte stream (plain or TLS).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A deliberately small XMPP client that speaks raw protocol, for tests that must see every
/// element (and for sending bad input).
pub struct RawClient {
    io: Box<dyn Io>,
    reader: StreamReader,
    /// The domain it connects to.
    pub domain: String,
    /// The bound full JID, after [`RawClient::bind`].
    pub jid: Option<String>,
    /// Channel-binding data of the TLS connection: (tls-exporter, tls-server-end-point).
    pub bindings: (Option<Vec<u8>>, Option<Vec<u8>>),
    buf: Vec<u8>,
}

fn tls_bindings(
    s: &tokio_rustls::client::TlsStream<impl AsyncRead + AsyncWrite + Unpin>,
) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    use sha2::Digest;
    let (_, conn) = s.get_ref();
    let exporter = (conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3))
        .then(|| {
            conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
                .ok()
                .map(|x| x.to_vec())
        })
        .flatten();
    let end_point = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| sha2::Sha256::digest(c.as_ref()).to_vec());
    (exporter, end_point)
}

/// How long a test waits for an expected element.
pub const WAIT: Duration = Duration::from_secs(10);

impl RawClient {
    /// Opens a plain TCP connection (STARTTLS port) without sending anything.
    pub async fn connect(addr: SocketAddr, domain: &str) -> Result<RawClient> {
        let tcp = TcpStream::connect(addr).await?;
        Ok(Self::over(Box::new(tcp), domain))
    }

    fn over(io: Box<dyn Io>, domain: &str) -> RawClient {
        RawClient {
            io,
            reader: StreamReader::new(Default::default(), NS_CLIENT),
            domain: domain.into(),
            jid: None,
            bindings: (None, None),
            buf: vec![0; 8192],
        }
    }

    /// Opens a direct-TLS connection (XEP-0368).
    pub async fn connect_tls(addr: SocketAddr, domain: &str, ca: &Path) -> Result<RawClient> {
        let tcp = TcpStream::connect(addr).await?;
        let connector = tokio_rustls::TlsConnector::from(client_tls(ca)?);
        let tls = connector
            .connect(ServerName::try_from(domain.to_string())?, tcp)
            .await?;
        let bindings = tls_bindings(&tls);
        let mut c = Self::over(Box::new(tls), domain);
        c.bindings = bindings;
        Ok(c)
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Sends an element.
    pub async fn send(&mut self, el: &Element) -> Result<()> {
        let bytes = tern_stream::to_bytes(el, NS_CLIENT);
        self.send_raw(&bytes).await
    }

    /// Sends an element written as XML text (the default namespace is jabber:client).
    pub async fn send_str(&mut self, xml: &str) -> Result<()> {
        self.send_raw(xml.as_bytes()).await
    }

    /// Opens a stream to the domain and returns the server's features.
    pub async fn open(&mut self) -> Result<Element> {
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
            self.domain
        );
        self.send_raw(header.as_bytes()).await?;
        match self.next_event().await? {
            StreamEvent::Header(_) => {}
            other => bail!("expected a stream header, got {other:?}"),
        }
        self.next().await
    }

    /// The next stream event (header, element, close), waiting at most [`WAIT`].
    pub async fn next_event(&mut self) -> Result<StreamEvent> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(ev) = self
                    .reader
                    .next_event()
                    .map_err(|e| anyhow!("client parse: {e}"))?
                {
                    return Ok(ev);
                }
                let n = self.io.read(&mut self.buf).await?;
                if n == 0 {
                    bail!("connection closed by server");
                }
                self.reader
                    .feed(&self.buf[..n])
                    .map_err(|e| anyhow!("client parse: {e}"))?;
            }
        })
        .await
        .context("timed out waiting for the server")?
    }

    /// The next element; a stream close is an error.
    pub async fn next(&mut self) -> Result<Element> {
        match self.next_event().await? {
            StreamEvent::Element(e) => Ok(e),
            other => bail!("expected an element, got {other:?}"),
        }
    }

    /// Reads elements until one matches, skipping others (e.g. presence noise); fails after [`WAIT`].
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Element) -> bool) -> Result<Element> {
        loop {
            let e = self
                .next()
                .await
                .with_context(|| format!("waiting for {what}"))?;
            if pred(&e) {
                return Ok(e);
            }
        }
    }

    /// Sends an IQ (whose `id` attribute must be `id`) and returns the response to it.
    pub async fn iq(&mut self, id: &str, xml: &str) -> Result<Element> {
        self.send_str(xml).await?;
        self.expect(&format!("response to iq {id}"), |e| {
            e.name() == "iq"
                && e.attr("id") == Some(id)
                && matches!(e.attr("type"), Some("result" | "error"))
        })
        .await
    }

    /// Makes `self` (account `me`) and `other` (account `them`) subscribed to each other's
    /// presence (RFC 6121 §3). Both clients must be logged in and have sent initial presence,
    /// since subscription requests go to available resources.
    pub async fn befriend(&mut self, me: &str, other: &mut RawClient, them: &str) -> Result<()> {
        let is_sub = |e: &Element| e.name() == "presence" && e.attr("type") == Some("subscribe");
        self.send_str(&format!("<presence to='{them}' type='subscribe'/>"))
            .await?;
        other.expect("subscribe request at other", is_sub).await?;
        other
            .send_str(&format!(
                "<presence to='{me}' type='subscribed'/><presence to='{me}' type='subscribe'/>"
            ))
            .await?;
        self.expect("subscribe request", is_sub).await?;
        self.send_str(&format!("<presence to='{them}' type='subscribed'/>"))
            .await?;
        // Read both rosters back, so the state is settled before the caller goes on.
        for (c, peer) in [(&mut *self, them), (&mut *other, me)] {
            let r = c
                .iq(
                    "befriend-roster",
                    "<iq type='get' id='befriend-roster'><query xmlns='jabber:iq:roster'/></iq>",
                )
                .await?;
            let both = r
                .get_child("query", "jabber:iq:roster")
                .into_iter()
                .flat_map(|q| q.children())
                .any(|i| i.attr("jid") == Some(peer) && i.attr("subscription") == Some("both"));
            if !both {
                bail!("subscription with {peer} not mutual: {r:?}");
            }
        }
        Ok(())
    }

    /// Whether the server says nothing matching within `d`.
    pub async fn silent_for(
        &mut self,
        d: Duration,
        pred: impl Fn(&Element) -> bool,
    ) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(true);
            }
            let r = tokio::time::timeout(left, async {
                loop {
                    if let Some(ev) = self.reader.next_event().map_err(|e| anyhow!("{e}"))? {
                        return Ok::<_, anyhow::Error>(ev);
                    }
                    let n = self.io.read(&mut self.buf).await?;
                    if n == 0 {
                        bail!("closed");
                    }
                    self.reader
                        .feed(&self.buf[..n])
                        .map_err(|e| anyhow!("{e}"))?;
                }
            })
            .await;
            match r {
                Err(_) => return Ok(true),
                Ok(Ok(StreamEvent::Element(e))) if pred(&e) => return Ok(false),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Performs STARTTLS on a plain connection, trusting `ca`, and returns the new features.
    pub async fn starttls(mut self, ca: &Path) -> Result<(RawClient, Element)> {
        self.send_str("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await?;
        let p = self.next().await?;
        if p.name() != "proceed" {
            bail!("expected <proceed/>, got {p:?}");
        }
        let connector = tokio_rustls::TlsConnector::from(client_tls(ca)?);
        let name = ServerName::try_from(self.domain.clone())?;
        let tls = connector.connect(name, StartTlsIo(self.io)).await?;
        let bindings = tls_bindings(&tls);
        let mut c = Self::over(Box::new(tls), &self.domain);
        c.bindings = bindings;
        let f = c.open().await?;
        Ok((c, f))
    }

    /// SASL PLAIN; returns the server's `<success/>` or `<failure/>` element.
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> Result<Element> {
        let payload =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send_str(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>"
        ))
        .await?;
        self.next().await
    }

    /// Binds a resource (None: server-generated); returns the iq reply.
    pub async fn bind(&mut self, resource: Option<&str>) -> Result<Element> {
        let res = resource
            .map(|r| format!("<resource>{r}</resource>"))
            .unwrap_or_default();
        self.send_str(&format!(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{res}</bind></iq>"
        ))
        .await?;
        let reply = self.next().await?;
        if let Some(j) = reply
            .get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
            .and_then(|b| b.get_child("jid", "urn:ietf:params:xml:ns:xmpp-bind"))
        {
            self.jid = Some(j.text());
        }
        Ok(reply)
    }

    /// Connects over STARTTLS and authenticates with PLAIN; returns the client and the
    /// features of the authenticated stream (binding not done yet).
    pub async fn authenticate(
        server: &TestServer,
        user: &str,
        password: &str,
    ) -> Result<(RawClient, Element)> {
        let mut c = RawClient::connect(server.c2s, &server.domain).await?;
        c.open().await?;
        let (mut c, _) = c.starttls(&server.ca_path()).await?;
        let r = c.auth_plain(user, password).await?;
        if r.name() != "success" {
            bail!("authentication failed: {r:?}");
        }
        c.reader.restart();
        let f = c.open().await?;
        Ok((c, f))
    }

    /// Connects over STARTTLS, authenticates with PLAIN and binds `resource`.
    pub async fn login(
        server: &TestServer,
        user: &str,
        password: &str,
        resource: &str,
    ) -> Result<RawClient> {
        let mut c = RawClient::connect(server.c2s, &server.domain).await?;
        c.open().await?;
        let (mut c, _) = c.starttls(&server.ca_path()).await?;
        let r = c.auth_plain(user, password).await?;
        if r.name() != "success" {
            bail!("authentication failed: {r:?}");
        }
        c.reader.restart();
        c.open().await?;
        let b = c.bind(Some(resource)).await?;
        if b.attr("type") != Some("result") {
            bail!("bind failed: {b:?}");
        }
        Ok(c)
    }

    /// Must be called after `<success/>` before opening the new stream.
    pub fn restart(&mut self) {
        self.reader.restart();
    }
}

/// Adapter so a boxed stream can go under TLS.
struct StartTlsIo(Box<dyn Io>);

impl AsyncRead for StartTlsIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for StartTlsIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut *self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}
