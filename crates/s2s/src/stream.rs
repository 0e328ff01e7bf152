//! One server-to-server XML stream over plain TCP or TLS (either side of the handshake):
//! reading events with deadlines, writing elements in `jabber:server`, headers that declare
//! the dialback prefix, and stream errors (RFC 6120 §4).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use minidom::Element;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use tern_router::xml::renamespace;
use tern_stream::{
    stream_header, write_element, Limits, StreamError, StreamErrorCondition, StreamEvent,
    StreamReader, NS_CLIENT, NS_SERVER, STREAM_CLOSE,
};

use crate::dialback::NS_DB;
use crate::error::S2sError;

/// Plain TCP before STARTTLS, TLS after it (as initiator or as receiver).
pub(crate) enum Transport {
    Plain(TcpStream),
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Transport {
    pub(crate) fn is_tls(&self) -> bool {
        !matches!(self, Transport::Plain(_))
    }

    /// The certificate chain the peer presented in the TLS handshake, if any.
    pub(crate) fn peer_certs(&self) -> Option<Vec<CertificateDer<'static>>> {
        let certs = match self {
            Transport::Plain(_) => None,
            Transport::Client(s) => s.get_ref().1.peer_certificates(),
            Transport::Server(s) => s.get_ref().1.peer_certificates(),
        }?;
        Some(certs.iter().map(|c| c.clone().into_owned()).collect())
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Transport::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Transport::Client($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            Transport::Server($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}

/// A stream header for `jabber:server` that also declares the dialback prefix: peers that
/// predate the dialback stream feature look for that declaration (XEP-0220 §2.1.1).
pub(crate) fn s2s_header(from: &str, to: Option<&str>, id: &str) -> String {
    stream_header(NS_SERVER, Some(from), to, id, None).replacen(
        "<stream:stream ",
        "<stream:stream xmlns:db='jabber:server:dialback' ",
        1,
    )
}

/// An XMPP server stream: the transport, its parser and our side's state.
pub(crate) struct XmlStream {
    pub io: Transport,
    pub reader: StreamReader,
    pub peer: SocketAddr,
    /// Whether our header for the current stream has been written.
    pub header_sent: bool,
    buf: Vec<u8>,
}

impl XmlStream {
    pub(crate) fn new(io: Transport, limits: Limits, peer: SocketAddr) -> Self {
        XmlStream {
            io,
            reader: StreamReader::new(limits, NS_SERVER),
            peer,
            header_sent: false,
            buf: vec![0; 4096],
        }
    }

    /// The next stream event; a parse error is answered with its stream error first. A
    /// received `<stream:error/>` becomes [`S2sError::PeerStreamError`].
    pub(crate) async fn read_event(&mut self, timeout: Duration) -> Result<StreamEvent, S2sError> {
        loop {
            match self.reader.next_event() {
                Ok(Some(StreamEvent::Close)) => {
                    let _ = self.close().await;
                    return Err(S2sError::Closed);
                }
                Ok(Some(StreamEvent::Element(el))) => {
                    if let Some(e) = StreamError::from_element(&el) {
                        return Err(S2sError::PeerStreamError(e));
                    }
                    return Ok(StreamEvent::Element(el));
                }
                Ok(Some(ev)) => return Ok(ev),
                Ok(None) => {}
                Err(e) => return Err(self.fail(StreamError::from(&e)).await),
            }
            let n = match tokio::time::timeout(timeout, self.io.read(&mut self.buf)).await {
                Err(_) => return Err(S2sError::Timeout("waiting for the peer")),
                Ok(Err(e)) => return Err(S2sError::Io(e)),
                Ok(Ok(0)) => return Err(S2sError::Closed),
                Ok(Ok(n)) => n,
            };
            if let Err(e) = self.reader.feed(&self.buf[..n]) {
                return Err(self.fail(StreamError::from(&e)).await);
            }
        }
    }

    /// The next element; a header or close here is a protocol error.
    pub(crate) async fn read_element(&mut self, timeout: Duration) -> Result<Element, S2sError> {
        match self.read_event(timeout).await? {
            StreamEvent::Element(el) => Ok(el),
            _ => Err(self
                .fail(StreamError::with_text(
                    StreamErrorCondition::NotWellFormed,
                    "unexpected stream header",
                ))
                .await),
        }
    }

    /// Writes raw bytes and flushes them (one TLS record where possible).
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// Writes one element; stanzas from local clients move to `jabber:server`.
    pub(crate) async fn send(&mut self, el: &Element) -> io::Result<()> {
        let mut out = Vec::with_capacity(256);
        encode(el, &mut out);
        self.write(&out).await
    }

    /// Writes our stream header.
    pub(crate) async fn send_header(
        &mut self,
        from: &str,
        to: Option<&str>,
        id: &str,
    ) -> io::Result<()> {
        self.header_sent = true;
        self.write(s2s_header(from, to, id).as_bytes()).await
    }

    /// Ends the stream with an error (a header first if we had not sent one, RFC 6120
    /// §4.9.1.2) and closes the connection.
    pub(crate) async fn fail(&mut self, err: StreamError) -> S2sError {
        let mut out = Vec::new();
        if !self.header_sent {
            let from = self.reader.header().and_then(|h| h.to.clone());
            out.extend_from_slice(
                s2s_header(from.as_deref().unwrap_or(""), None, &random_id()).as_bytes(),
            );
            self.header_sent = true;
        }
        out.extend_from_slice(&err.to_bytes());
        out.extend_from_slice(STREAM_CLOSE.as_bytes());
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = self.write(&out).await;
            let _ = self.io.shutdown().await;
        })
        .await;
        S2sError::Sent(err)
    }

    /// Closes the stream cleanly (RFC 6120 §4.4).
    pub(crate) async fn close(&mut self) -> io::Result<()> {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            self.write(STREAM_CLOSE.as_bytes()).await?;
            self.io.shutdown().await
        })
        .await;
        Ok(())
    }

    /// Runs the TLS handshake as initiator over the plain connection (STARTTLS).
    pub(crate) async fn start_tls_client(
        self,
        config: Arc<rustls::ClientConfig>,
        name: &str,
        timeout: Duration,
    ) -> Result<XmlStream, S2sError> {
        let Transport::Plain(tcp) = self.io else {
            return Err(S2sError::Protocol("STARTTLS on an encrypted stream".into()));
        };
        let tls = tls_connect(tcp, config, name, timeout).await?;
        let mut reader = self.reader;
        reader.restart();
        Ok(XmlStream {
            io: Transport::Client(Box::new(tls)),
            reader,
            peer: self.peer,
            header_sent: false,
            buf: self.buf,
        })
    }

    /// Runs the TLS handshake as receiver over the plain connection (STARTTLS).
    pub(crate) async fn start_tls_server(
        self,
        config: Arc<rustls::ServerConfig>,
        timeout: Duration,
    ) -> Result<XmlStream, S2sError> {
        let Transport::Plain(tcp) = self.io else {
            return Err(S2sError::Protocol("STARTTLS on an encrypted stream".into()));
        };
        let tls = tls_accept(tcp, config, timeout).await?;
        let mut reader = self.reader;
        reader.restart();
        Ok(XmlStream {
            io: Transport::Server(Box::new(tls)),
            reader,
            peer: self.peer,
            header_sent: false,
            buf: self.buf,
        })
    }

    /// Starts a new stream on the same transport (after SASL success).
    pub(crate) fn restart(&mut self) {
        self.reader.restart();
        self.header_sent = false;
    }
}

/// Serializes an element for a `jabber:server` stream.
pub(crate) fn encode(el: &Element, out: &mut Vec<u8>) {
    if el.ns() == NS_DB {
        return encode_dialback(el, out);
    }
    let el = renamespace(el, NS_CLIENT, NS_SERVER);
    write_element(&el, NS_SERVER, out);
}

/// Dialback elements are written with the `db:` prefix our stream header declares: some
/// servers (ejabberd) match them by their prefixed name and silently ignore
/// `<result xmlns='jabber:server:dialback'/>`, although it means the same.
fn encode_dialback(el: &Element, out: &mut Vec<u8>) {
    out.extend_from_slice(b"<db:");
    out.extend_from_slice(el.name().as_bytes());
    for ((ns, name), value) in el.attrs().iter() {
        if ns.is_some() {
            continue;
        }
        out.push(b' ');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"='");
        escape(value, out);
        out.push(b'\'');
    }
    if el.nodes().next().is_none() {
        out.extend_from_slice(b"/>");
        return;
    }
    out.push(b'>');
    for node in el.nodes() {
        match node {
            minidom::Node::Element(child) => {
                let child = renamespace(child, NS_CLIENT, NS_SERVER);
                write_element(&child, NS_SERVER, out);
            }
            minidom::Node::Text(t) => escape(t, out),
        }
    }
    out.extend_from_slice(b"</db:");
    out.extend_from_slice(el.name().as_bytes());
    out.push(b'>');
}

/// Escapes text or a single-quoted attribute value.
fn escape(s: &str, out: &mut Vec<u8>) {
    for c in s.chars() {
        match c {
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '\'' => out.extend_from_slice(b"&apos;"),
            '"' => out.extend_from_slice(b"&quot;"),
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

/// TLS as initiator, with SNI set to the peer's domain.
pub(crate) async fn tls_connect(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    name: &str,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, S2sError> {
    let name = ServerName::try_from(name.to_owned())
        .map_err(|e| S2sError::Tls(format!("{name:?} is not a valid server name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Err(_) => Err(S2sError::Timeout("in the TLS handshake")),
        Ok(Err(e)) => Err(S2sError::Tls(e.to_string())),
        Ok(Ok(s)) => Ok(s),
    }
}

/// TLS as receiver.
pub(crate) async fn tls_accept(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    timeout: Duration,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, S2sError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Err(_) => Err(S2sError::Timeout("in the TLS handshake")),
        Ok(Err(e)) => Err(S2sError::Tls(e.to_string())),
        Ok(Ok(s)) => Ok(s),
    }
}

/// A random stream id.
pub(crate) fn random_id() -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(16)
        .map(char::from)
        .collect()
}

impl XmlStream {
    /// The transport and the parser, for a loop that reads and writes independently.
    pub(crate) fn into_parts(self) -> (Transport, StreamReader) {
        (self.io, self.reader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialback_elements_use_the_db_prefix() {
        let mut out = Vec::new();
        encode(
            &crate::dialback::result_request("a.example", "b'.example", "k&1"),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<db:result from='a.example' to='b&apos;.example'>k&amp;1</db:result>"
        );
        let mut out = Vec::new();
        let e = crate::dialback::error_answer("result", "a", "b", "item-not-found", "no");
        encode(&e, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with("<db:result ") && s.ends_with("</db:result>"),
            "{s}"
        );
        assert!(s.contains("<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"), "{s}");
        let mut out = Vec::new();
        let m: Element = "<message xmlns='jabber:client' to='x@b'><body>hi</body></message>"
            .parse()
            .unwrap();
        encode(&m, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<message to='x@b'><body>hi</body></message>"
        );
    }
}
