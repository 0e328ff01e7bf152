//! One XMPP stream over a [`Transport`]: reading parsed events with deadlines and writing
//! elements, headers and stream errors (RFC 6120 §4).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tern_stream::{
    stream_header, write_element, ParseError, StreamError, StreamErrorCondition, StreamEvent,
    StreamReader, NS_CLIENT, STREAM_CLOSE,
};

use crate::transport::Transport;

/// Size of the per-connection read buffer.
const READ_CHUNK: usize = 4096;

/// Why a stream ended.
#[derive(Debug)]
pub(crate) enum ConnError {
    /// The peer closed the TCP connection or sent `</stream:stream>`.
    Closed,
    /// A socket error.
    Io(io::Error),
    /// We ended the stream with this stream error (already written).
    Stream(StreamErrorCondition),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Closed => f.write_str("closed by peer"),
            ConnError::Io(e) => write!(f, "I/O error: {e}"),
            ConnError::Stream(c) => write!(f, "stream error <{}/>", c.as_str()),
        }
    }
}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> Self {
        ConnError::Io(e)
    }
}

/// An XMPP stream during negotiation (before it is split for the bound session loop).
pub(crate) struct XmlConn {
    pub io: Transport,
    pub reader: StreamReader,
    pub peer: SocketAddr,
    /// Id of our current response stream header (new after every restart).
    pub stream_id: String,
    /// Whether our response header for the current stream has been written.
    pub header_sent: bool,
    /// The host the client asked for in its header, once accepted.
    pub host: Option<String>,
    buf: Vec<u8>,
}

impl XmlConn {
    pub(crate) fn new(io: Transport, reader: StreamReader, peer: SocketAddr) -> Self {
        XmlConn {
            io,
            reader,
            peer,
            stream_id: String::new(),
            header_sent: false,
            host: None,
            buf: vec![0; READ_CHUNK],
        }
    }

    /// Carries the negotiated host over to a new transport (after STARTTLS).
    pub(crate) fn with_host(mut self, host: Option<String>) -> Self {
        self.host = host;
        self
    }

    /// The next stream event, reading as needed; a parse error is answered with the matching
    /// stream error (RFC 6120 §4.9.3) before returning.
    pub(crate) async fn read_event(&mut self, timeout: Duration) -> Result<StreamEvent, ConnError> {
        loop {
            match self.reader.next_event() {
                Ok(Some(StreamEvent::Close)) => {
                    let _ = self.close().await;
                    return Err(ConnError::Closed);
                }
                Ok(Some(ev)) => return Ok(ev),
                Ok(None) => {}
                Err(e) => return Err(self.parse_failure(e).await),
            }
            let n = match tokio::time::timeout(timeout, self.io.read(&mut self.buf)).await {
                Err(_) => {
                    let err = StreamError::with_text(
                        StreamErrorCondition::ConnectionTimeout,
                        "idle for too long",
                    );
                    return Err(self.fail(err).await);
                }
                Ok(Err(e)) => return Err(ConnError::Io(e)),
                Ok(Ok(0)) => return Err(ConnError::Closed),
                Ok(Ok(n)) => n,
            };
            if let Err(e) = self.reader.feed(&self.buf[..n]) {
                return Err(self.parse_failure(e).await);
            }
        }
    }

    async fn parse_failure(&mut self, e: ParseError) -> ConnError {
        tracing::info!(peer = %self.peer, stream = %self.stream_id, "stream error: {e}");
        let text = e.to_string();
        self.fail(StreamError::with_text(e.condition(), text)).await
    }

    /// Writes raw bytes and flushes them out as one TLS record where possible.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// Writes one top-level element.
    pub(crate) async fn send(&mut self, el: &Element) -> io::Result<()> {
        let mut out = Vec::with_capacity(256);
        write_element(el, NS_CLIENT, &mut out);
        self.write(&out).await
    }

    /// Writes our response stream header with a fresh id (RFC 6120 §4.7).
    pub(crate) async fn send_header(&mut self, from: &str, to: Option<&str>) -> io::Result<()> {
        self.stream_id = crate::random_id(16);
        let h = stream_header(NS_CLIENT, Some(from), to, &self.stream_id, Some("en"));
        self.header_sent = true;
        self.write(h.as_bytes()).await
    }

    /// Ends the stream with a stream error (RFC 6120 §4.9.1.2: a header first if we had not
    /// sent one yet) and closes the connection.
    pub(crate) async fn fail(&mut self, err: StreamError) -> ConnError {
        let condition = err.condition;
        let mut out = Vec::new();
        if !self.header_sent {
            self.stream_id = crate::random_id(16);
            let from = self.host.clone();
            out.extend_from_slice(
                stream_header(NS_CLIENT, from.as_deref(), None, &self.stream_id, None).as_bytes(),
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
        ConnError::Stream(condition)
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
}
