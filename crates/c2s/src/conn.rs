//! One XMPP stream over a [`Link`] during negotiation: reading events with deadlines and
//! writing elements, headers and stream errors (RFC 6120 §4).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use minidom::Element;

use tern_stream::{StreamError, StreamErrorCondition, StreamEvent};

use crate::link::{Header, Link, LinkError, Outbox};

/// Why a stream ended.
#[derive(Debug)]
pub(crate) enum ConnError {
    /// The peer closed the connection or its stream.
    Closed,
    /// A transport error.
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

/// An XMPP stream before it becomes a bound session.
pub(crate) struct XmlConn {
    pub link: Box<dyn Link>,
    pub peer: SocketAddr,
    /// Id of our current response stream header (new after every restart).
    pub stream_id: String,
    /// Whether our response header for the current stream has been written.
    pub header_sent: bool,
    /// The host the client asked for in its header, once accepted.
    pub host: Option<String>,
}

impl XmlConn {
    pub(crate) fn new(link: Box<dyn Link>, peer: SocketAddr) -> Self {
        XmlConn {
            link,
            peer,
            stream_id: String::new(),
            header_sent: false,
            host: None,
        }
    }

    /// The next stream event, reading as needed; a parse error is answered with the matching
    /// stream error (RFC 6120 §4.9.3) before returning.
    pub(crate) async fn read_event(&mut self, timeout: Duration) -> Result<StreamEvent, ConnError> {
        loop {
            match self.link.next_event() {
                Ok(Some(StreamEvent::Close)) => {
                    let _ = self.close().await;
                    return Err(ConnError::Closed);
                }
                Ok(Some(ev)) => return Ok(ev),
                Ok(None) => {}
                Err(e) => return Err(self.parse_failure(e).await),
            }
            match tokio::time::timeout(timeout, self.link.receive()).await {
                Err(_) => {
                    let err = StreamError::with_text(
                        StreamErrorCondition::ConnectionTimeout,
                        "idle for too long",
                    );
                    return Err(self.fail(err).await);
                }
                Ok(Err(LinkError::Parse(e))) => return Err(self.parse_failure(e).await),
                Ok(Err(LinkError::Io(e))) => return Err(ConnError::Io(e)),
                Ok(Err(_)) => return Err(ConnError::Closed),
                Ok(Ok(_)) => {}
            }
        }
    }

    async fn parse_failure(&mut self, e: tern_stream::ParseError) -> ConnError {
        tracing::info!(peer = %self.peer, stream = %self.stream_id, "stream error: {e}");
        let text = e.to_string();
        self.fail(StreamError::with_text(e.condition(), text)).await
    }

    /// Writes one top-level element.
    pub(crate) async fn send(&mut self, el: &Element) -> io::Result<()> {
        let mut out = Outbox::new(self.link.framing());
        out.element(el);
        self.link.write(&out).await
    }

    /// Writes our response stream header with a fresh id (RFC 6120 §4.7).
    pub(crate) async fn send_header(&mut self, from: &str, to: Option<&str>) -> io::Result<()> {
        self.stream_id = crate::random_id(16);
        self.header_sent = true;
        let id = self.stream_id.clone();
        self.link
            .send_header(&Header {
                from: Some(from),
                to,
                id: &id,
            })
            .await
    }

    /// Ends the stream with a stream error (RFC 6120 §4.9.1.2: a header first if we had not
    /// sent one yet) and closes the connection.
    pub(crate) async fn fail(&mut self, err: StreamError) -> ConnError {
        let condition = err.condition;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            if !self.header_sent {
                self.stream_id = crate::random_id(16);
                self.header_sent = true;
                let (host, id) = (self.host.clone(), self.stream_id.clone());
                let h = Header {
                    from: host.as_deref(),
                    to: None,
                    id: &id,
                };
                let _ = self.link.send_header(&h).await;
            }
            let mut out = Outbox::new(self.link.framing());
            out.stream_error(&err);
            let _ = self.link.close(&out).await;
        })
        .await;
        ConnError::Stream(condition)
    }

    /// Closes the stream cleanly (RFC 6120 §4.4).
    pub(crate) async fn close(&mut self) -> io::Result<()> {
        let out = Outbox::new(self.link.framing());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.link.close(&out)).await;
        Ok(())
    }
}
