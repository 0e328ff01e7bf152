//! The element transport under a client session: what the session machinery (negotiation,
//! SASL, binding, stream management, CSI) needs from a connection, and nothing about how its
//! bytes travel. TCP with the stream framer of `tern-stream` is one implementation
//! ([`crate::tcp`]); `tern-http` adds WebSocket (RFC 7395) and BOSH (XEP-0124/0206).
//!
//! A link delivers [`StreamEvent`]s (header, element, close) and takes an [`Outbox`] of
//! serialized top-level units, framed for the link: on TCP they are concatenated into the open
//! `<stream:stream>`; on WebSocket and BOSH every unit stands alone with its namespaces
//! declared (RFC 7395 §3.3.3, XEP-0206 §2).

use std::io;

use minidom::Element;

use tern_sasl::ChannelBindings;
use tern_stream::{
    write_element, write_standalone, ParseError, StreamError, StreamEvent, NS_CLIENT,
};

use crate::TlsSettings;

/// How top-level elements are serialized on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Inside a `<stream:stream>` whose header declared `jabber:client` and `stream:`.
    Stream,
    /// Each element a standalone fragment declaring its own namespaces.
    Standalone,
}

/// What one serialized unit of an [`Outbox`] is, so a link can treat it specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A stanza or nonza.
    Element,
    /// A `<stream:error/>`: the stream ends after it (BOSH turns it into a
    /// `remote-stream-error` terminate body, XEP-0206 §2).
    StreamError,
    /// A keepalive: whitespace on TCP, a Ping frame on WebSocket, nothing on BOSH.
    Keepalive,
}

/// Serialized output waiting to be written: one buffer (one TLS record on TCP, DESIGN.md §6)
/// with the boundaries and kinds of its units.
#[derive(Debug)]
pub struct Outbox {
    framing: Framing,
    buf: Vec<u8>,
    frames: Vec<(usize, FrameKind)>,
}

impl Outbox {
    /// An empty outbox for a link with this framing.
    pub fn new(framing: Framing) -> Self {
        Outbox {
            framing,
            buf: Vec::new(),
            frames: Vec::new(),
        }
    }

    /// Changes the framing (a resumed session may continue on another kind of link); only
    /// call it while the outbox is empty.
    pub fn set_framing(&mut self, framing: Framing) {
        self.framing = framing;
    }

    /// Serializes a top-level element.
    pub fn element(&mut self, el: &Element) {
        self.push(el, FrameKind::Element);
    }

    /// Serializes a stanza shared between sessions (MUC fan-out), addressed to `to`. On a
    /// stream the shared bytes are used as they are; standalone framing needs the namespace
    /// declared in each element, so the stanza is serialized for this link alone.
    pub fn shared(&mut self, s: &tern_router::SharedStanza, to: &str) {
        match self.framing {
            Framing::Stream => s.write_to(to, &mut self.buf),
            Framing::Standalone => write_standalone(&s.to_element(to), &mut self.buf),
        }
        self.frames.push((self.buf.len(), FrameKind::Element));
    }

    /// Serializes a stream error.
    pub fn stream_error(&mut self, err: &StreamError) {
        self.push(&err.to_element(), FrameKind::StreamError);
    }

    /// Serializes a `<stream:error/>` built by the caller (with application-specific
    /// children, XEP-0198 §4 `<handled-count-too-high/>`).
    pub fn stream_error_element(&mut self, el: &Element) {
        self.push(el, FrameKind::StreamError);
    }

    /// Adds a keepalive (RFC 6120 §4.6.1 whitespace on a stream).
    pub fn keepalive(&mut self) {
        if self.framing == Framing::Stream {
            self.buf.push(b' ');
        }
        self.frames.push((self.buf.len(), FrameKind::Keepalive));
    }

    fn push(&mut self, el: &Element, kind: FrameKind) {
        match self.framing {
            Framing::Stream => write_element(el, NS_CLIENT, &mut self.buf),
            Framing::Standalone => write_standalone(el, &mut self.buf),
        }
        self.frames.push((self.buf.len(), kind));
    }

    /// Everything, concatenated.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The units in order.
    pub fn frames(&self) -> impl Iterator<Item = (&[u8], FrameKind)> {
        let mut start = 0;
        self.frames.iter().map(move |&(end, kind)| {
            let s = &self.buf[start..end];
            start = end;
            (s, kind)
        })
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Forgets everything written; a large buffer gives its memory back so that an idle
    /// session does not pin the size of its largest burst.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.frames.clear();
        if self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
    }
}

/// Why a link stopped delivering input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The peer closed the connection (or the transport session ended).
    #[error("closed by peer")]
    Closed,
    /// A transport error.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The input violates the stream or framing rules; answered with this stream error.
    #[error("{0}")]
    Parse(#[from] ParseError),
}

/// Our stream header (RFC 6120 §4.7.2), as each link renders it: `<stream:stream>` on TCP,
/// `<open/>` on WebSocket, the session-creation attributes on BOSH.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    /// The served domain (unknown when the client's header named none we serve).
    pub from: Option<&'a str>,
    /// The client's address, if its header named one.
    pub to: Option<&'a str>,
    /// The new stream id.
    pub id: &'a str,
}

/// A client connection as the session machinery sees it.
#[async_trait::async_trait]
pub trait Link: Send + 'static {
    /// How elements are serialized for this link.
    fn framing(&self) -> Framing;

    /// Whether the channel is encrypted (TLS, `wss://`, `https://`, or a trusted proxy).
    fn is_secure(&self) -> bool;

    /// Waits for input from the peer. `Ok(n)` means `n` bytes arrived (0 for activity without
    /// data, such as a WebSocket Pong) and any complete events are ready in
    /// [`Link::next_event`]. Must be cancel-safe: the session loop calls it in `select!`.
    async fn receive(&mut self) -> Result<usize, LinkError>;

    /// The next complete event already received; `Ok(None)` means more input is needed.
    fn next_event(&mut self) -> Result<Option<StreamEvent>, ParseError>;

    /// Expects a new stream header from the peer (after SASL success, RFC 6120 §4.3.3).
    fn restart(&mut self);

    /// Writes everything in the outbox (the caller clears it afterwards).
    async fn write(&mut self, out: &Outbox) -> io::Result<()>;

    /// Writes our stream header.
    async fn send_header(&mut self, header: &Header<'_>) -> io::Result<()>;

    /// Ends the stream cleanly (`</stream:stream>`, `<close/>`, a terminate body) and shuts
    /// the transport down. `out` holds what still has to go before the end (a stream error).
    async fn close(&mut self, out: &Outbox) -> io::Result<()>;

    /// Whether STARTTLS can be offered on this link.
    fn can_starttls(&self) -> bool {
        false
    }

    /// Performs the TLS handshake after `<proceed/>` (RFC 6120 §5.4.3.3). Only called when
    /// [`Link::can_starttls`] said so.
    async fn starttls(&mut self, _tls: &TlsSettings, _timeout: std::time::Duration) -> bool {
        false
    }

    /// Channel-binding data for SCRAM-PLUS; none by default.
    fn channel_bindings(&self, _tls: Option<&TlsSettings>) -> ChannelBindings {
        ChannelBindings::default()
    }
}
