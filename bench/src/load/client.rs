//! One XMPP client connection of the load generator: TCP from a chosen 127.0.0.x source
//! address, STARTTLS, SASL, bind, roster get and initial presence, then raw stanza I/O.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::scram::{self, Mech, Scram};
use super::xml::{self, Event, Framer};

const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// Read buffer per connection: enough for a burst of small stanzas, small for idle sessions.
const READ_BUF: usize = 8192;

/// Where and how the generator connects.
pub struct Target {
    /// The server's STARTTLS port.
    pub addr: SocketAddr,
    /// The XMPP domain (also the TLS server name).
    pub domain: String,
    /// The SASL mechanism.
    pub mech: Mech,
    /// Local addresses connections are spread over (bind before connect).
    pub sources: Vec<IpAddr>,
    tls: TlsConnector,
    next_source: AtomicUsize,
}

impl Target {
    /// A target whose certificate is verified against the CA in `ca_pem`.
    pub fn new(
        addr: SocketAddr,
        domain: String,
        mech: Mech,
        sources: Vec<IpAddr>,
        ca_pem: &std::path::Path,
    ) -> Result<Arc<Target>> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_pem)
            .with_context(|| format!("reading {}", ca_pem.display()))?
        {
            roots.add(cert?)?;
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        // Every login pays a full handshake, as a client's first connection of the day does;
        // session tickets would make the login figures depend on resumption support.
        cfg.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(Target {
            addr,
            domain,
            mech,
            sources,
            tls: TlsConnector::from(Arc::new(cfg)),
            next_source: AtomicUsize::new(0),
        }))
    }

    async fn tcp(&self) -> Result<TcpStream> {
        let sock = if self.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if !self.sources.is_empty() {
            let i = self.next_source.fetch_add(1, Ordering::Relaxed) % self.sources.len();
            sock.bind(SocketAddr::new(self.sources[i], 0))
                .with_context(|| format!("binding to {}", self.sources[i]))?;
        }
        let s = sock
            .connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    fn header(&self) -> String {
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
            self.domain
        )
    }
}

/// Reads until the next top-level element (skipping the stream header).
async fn next_element<R: AsyncRead + Unpin>(
    io: &mut R,
    framer: &mut Framer,
    buf: &mut [u8],
) -> Result<Vec<u8>> {
    loop {
        match framer.next_event()? {
            Some(Event::Open) => continue,
            Some(Event::Element(e)) => {
                if xml::name(e) == b"error" && xml::contains(e, b"xmpp-streams") {
                    bail!("stream error: {}", String::from_utf8_lossy(e));
                }
                return Ok(e.to_vec());
            }
            Some(Event::Close) => bail!("stream closed by the server"),
            None => {}
        }
        let n = io.read(buf).await?;
        if n == 0 {
            bail!("connection closed by the server");
        }
        framer.feed(&buf[..n]);
    }
}

/// What a login found.
pub struct LoginInfo {
    /// Bare JIDs of the roster items with subscription "both".
    pub both: Vec<String>,
}

/// The JIDs of a roster result's items with subscription "both".
fn roster_both(roster: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = roster;
    while let Some(p) = xml::find(rest, b"<item ") {
        rest = &rest[p..];
        let end = rest
            .iter()
            .position(|&b| b == b'>')
            .unwrap_or(rest.len() - 1);
        let tag = &rest[..=end];
        if xml::attr(tag, "subscription") == Some(b"both") {
            if let Some(j) = xml::attr(tag, "jid") {
                out.push(xml::unescape(j));
            }
        }
        rest = &rest[end..];
    }
    out
}

/// An authenticated, bound session.
pub struct Conn {
    io: TlsStream<TcpStream>,
    framer: Framer,
    buf: Box<[u8]>,
    /// The full JID the server bound.
    pub jid: String,
}

impl Conn {
    /// Connects and runs STARTTLS; returns the TLS stream before any stream on it.
    async fn secure(t: &Target) -> Result<TlsStream<TcpStream>> {
        let mut tcp = t.tcp().await?;
        tcp.write_all(t.header().as_bytes()).await?;
        let mut framer = Framer::default();
        let mut buf = [0u8; 2048];
        let features = next_element(&mut tcp, &mut framer, &mut buf).await?;
        if !xml::contains(&features, b"<starttls") {
            bail!("no STARTTLS offered");
        }
        tcp.write_all(format!("<starttls xmlns='{NS_TLS}'/>").as_bytes())
            .await?;
        let proceed = next_element(&mut tcp, &mut framer, &mut buf).await?;
        if xml::name(&proceed) != b"proceed" || framer.pending() != 0 {
            bail!("STARTTLS refused: {}", String::from_utf8_lossy(&proceed));
        }
        let name = ServerName::try_from(t.domain.clone())?;
        Ok(t.tls.connect(name, tcp).await?)
    }

    /// Opens a new stream on the TLS connection and returns its features.
    async fn restart(&mut self, t: &Target) -> Result<Vec<u8>> {
        self.framer = Framer::default();
        self.send(t.header().as_bytes()).await?;
        self.next().await
    }

    /// A full login: TCP, STARTTLS, SASL, bind `resource`, roster get, initial presence; with
    /// `wait_echo`, also waits for the server to reflect that presence (RFC 6121 §4.2.2).
    pub async fn login(
        t: &Target,
        user: &str,
        password: &str,
        resource: &str,
        wait_echo: bool,
    ) -> Result<(Conn, LoginInfo)> {
        let io = Self::secure(t).await?;
        let mut c = Conn {
            io,
            framer: Framer::default(),
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
            jid: String::new(),
        };
        let features = c.restart(t).await?;
        let mech = t.mech.name();
        if !xml::contains(&features, format!(">{mech}<").as_bytes()) {
            bail!("{mech} not offered: {}", String::from_utf8_lossy(&features));
        }
        c.authenticate(t.mech, user, password).await?;
        c.restart(t).await?;
        c.send(
            format!(
                "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                 <resource>{}</resource></bind></iq>",
                xml::escape(resource)
            )
            .as_bytes(),
        )
        .await?;
        let bound = c.until_id("bind").await?;
        c.jid = xml::text_of(&bound, "jid")
            .map(xml::unescape)
            .ok_or_else(|| anyhow!("bind failed: {}", String::from_utf8_lossy(&bound)))?;
        c.send(b"<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
            .await?;
        let roster = c.until_id("roster").await?;
        if xml::attr(&roster, "type") != Some(b"result") {
            bail!("roster get failed: {}", String::from_utf8_lossy(&roster));
        }
        let both = roster_both(&roster);
        c.send(b"<presence/>").await?;
        if wait_echo {
            loop {
                let e = c.next().await?;
                if xml::name(&e) == b"presence"
                    && xml::attr(&e, "from").map(xml::unescape).as_deref() == Some(&c.jid)
                {
                    break;
                }
            }
        }
        Ok((c, LoginInfo { both }))
    }

    async fn authenticate(&mut self, mech: Mech, user: &str, password: &str) -> Result<()> {
        let name = mech.name();
        if mech == Mech::Plain {
            let p = scram::plain(user, password);
            self.send(format!("<auth xmlns='{NS_SASL}' mechanism='{name}'>{p}</auth>").as_bytes())
                .await?;
            let r = self.next().await?;
            if xml::name(&r) != b"success" {
                bail!("{user}: PLAIN failed: {}", String::from_utf8_lossy(&r));
            }
            return Ok(());
        }
        let (mut s, first) = Scram::start(mech, user, password);
        self.send(format!("<auth xmlns='{NS_SASL}' mechanism='{name}'>{first}</auth>").as_bytes())
            .await?;
        let ch = self.next().await?;
        if xml::name(&ch) != b"challenge" {
            bail!("{user}: {name} failed: {}", String::from_utf8_lossy(&ch));
        }
        let fin = s.respond(xml::text_of(&ch, "challenge").unwrap_or_default())?;
        self.send(format!("<response xmlns='{NS_SASL}'>{fin}</response>").as_bytes())
            .await?;
        let r = self.next().await?;
        if xml::name(&r) != b"success" {
            bail!("{user}: {name} failed: {}", String::from_utf8_lossy(&r));
        }
        s.verify(xml::text_of(&r, "success").unwrap_or_default())
    }

    /// Connects and secures a stream for in-band registration (XEP-0077), no login.
    pub async fn anonymous(t: &Target) -> Result<Conn> {
        let io = Self::secure(t).await?;
        let mut c = Conn {
            io,
            framer: Framer::default(),
            buf: vec![0u8; 2048].into_boxed_slice(),
            jid: String::new(),
        };
        c.restart(t).await?;
        Ok(c)
    }

    /// Writes bytes and flushes them (one TLS record for what is written at once).
    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// The next top-level element.
    pub async fn next(&mut self) -> Result<Vec<u8>> {
        next_element(&mut self.io, &mut self.framer, &mut self.buf).await
    }

    /// Reads until the `<iq/>` with this id, answering roster pushes on the way.
    pub async fn until_id(&mut self, id: &str) -> Result<Vec<u8>> {
        loop {
            let e = self.next().await?;
            if xml::name(&e) == b"iq" && xml::attr(&e, "id") == Some(id.as_bytes()) {
                return Ok(e);
            }
            self.answer_push(&e).await?;
        }
    }

    /// Answers an `<iq type='set'/>` roster push with a result (RFC 6121 §2.1.6).
    pub async fn answer_push(&mut self, e: &[u8]) -> Result<()> {
        if xml::name(e) == b"iq" && xml::attr(e, "type") == Some(b"set") {
            let id = xml::attr(e, "id").unwrap_or_default();
            let reply = format!("<iq type='result' id='{}'/>", String::from_utf8_lossy(id));
            self.send(reply.as_bytes()).await?;
        }
        Ok(())
    }

    /// Reads once from the socket (waiting until bytes arrive) and hands every complete
    /// element to `f`; returns false when the stream or connection ended. Cancel-safe.
    pub async fn read_batch(&mut self, mut f: impl FnMut(&[u8])) -> Result<bool> {
        loop {
            match self.framer.next_event()? {
                Some(Event::Element(e)) => f(e),
                Some(Event::Open) => {}
                Some(Event::Close) => return Ok(false),
                None => break,
            }
        }
        let n = self.io.read(&mut self.buf).await?;
        if n == 0 {
            return Ok(false);
        }
        self.framer.feed(&self.buf[..n]);
        while let Some(ev) = self.framer.next_event()? {
            match ev {
                Event::Element(e) => f(e),
                Event::Open => {}
                Event::Close => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Ends the stream without waiting for the server's answer: sends `</stream:stream>` and
    /// closes the connection (the login loop's way out, so that a server slow to close its
    /// side does not lower the login rate measured).
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = self.send(b"</stream:stream>").await;
            let _ = self.io.shutdown().await;
        })
        .await;
    }

    /// Ends the stream (RFC 6120 §4.4): sends `</stream:stream>` and waits up to `wait` for
    /// the server's, then closes the connection.
    pub async fn close(mut self, wait: Duration) {
        let _ = tokio::time::timeout(wait, async {
            let _ = self.send(b"</stream:stream>").await;
            while let Ok(true) = self.read_batch(|_| {}).await {}
            let _ = self.io.shutdown().await;
        })
        .await;
    }
}
