//! RFC 7395: XMPP over WebSocket at `/xmpp-websocket`.
//!
//! The upgrade needs the `xmpp` subprotocol (§3.1) and an allowed `Origin`. Every message is
//! one complete element with its namespaces declared (§3.3.3); `<open/>` and `<close/>` in
//! urn:ietf:params:xml:ns:xmpp-framing stand for the stream header and its end (§3.3.2,
//! §3.6). Messages are parsed by `tern-stream` with the c2s limits, inside a stream context
//! of our own (never the client's), and must hold exactly one element each. Keepalives are
//! Ping frames; any frame from the client counts as activity.

use std::collections::VecDeque;
use std::io;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures::SinkExt;
use minidom::Element;

use tern_c2s::{FrameKind, Framing, Header, Link, LinkError, Outbox};
use tern_stream::{Limits, ParseError, StreamEvent, StreamHeader, StreamReader, NS_CLIENT, NS_XML};

use crate::{cors, AppState, ConnInfo, WEBSOCKET_PATH};

/// RFC 7395 §3.3.1: the framing namespace of `<open/>` and `<close/>`.
pub(crate) const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
/// The subprotocol name (§3.1, IANA WebSocket Subprotocol Name Registry).
const SUBPROTOCOL: &str = "xmpp";

/// The stream context messages are parsed in: the default namespace is jabber:client, and
/// `stream:` is bound, as on a TCP stream. The client never sends this header.
const CONTEXT: &[u8] = b"<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route(WEBSOCKET_PATH, get(upgrade))
}

fn offers_xmpp(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

async fn upgrade(
    State(state): State<AppState>,
    Extension(info): Extension<ConnInfo>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    if !cors::allowed(&state.config, &headers) {
        tracing::info!(peer = %info.peer, origin = ?cors::origin(&headers), "WebSocket refused: Origin not allowed");
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    if !offers_xmpp(&headers) {
        return (
            StatusCode::BAD_REQUEST,
            "the 'xmpp' WebSocket subprotocol is required (RFC 7395)",
        )
            .into_response();
    }
    let max = state.config.websocket_max_message_bytes;
    let limits = state.c2s.config.limits.clone();
    ws.protocols([SUBPROTOCOL])
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let link = WsLink::new(socket, limits, info.secure);
            state
                .c2s
                .run_link(Box::new(link), info.peer, "websocket")
                .await;
        })
}

/// A client stream over one WebSocket.
pub(crate) struct WsLink {
    ws: WebSocket,
    reader: StreamReader,
    events: VecDeque<StreamEvent>,
    /// A framing or parse error, reported once the events before it are taken.
    error: Option<ParseError>,
    secure: bool,
    closed: bool,
}

impl WsLink {
    pub(crate) fn new(ws: WebSocket, limits: Limits, secure: bool) -> Self {
        let mut reader = StreamReader::new(limits, NS_CLIENT);
        // Our own, well-formed context; it cannot fail.
        let _ = reader.feed(CONTEXT);
        let _ = reader.next_event();
        WsLink {
            ws,
            reader,
            events: VecDeque::new(),
            error: None,
            secure,
            closed: false,
        }
    }

    /// Parses one text message into exactly one event.
    fn message(&mut self, text: &str) -> Result<(), ParseError> {
        if text.trim().is_empty() {
            return Ok(());
        }
        self.reader.feed(text.as_bytes())?;
        let mut got = Vec::new();
        while let Some(ev) = self.reader.next_event()? {
            got.push(ev);
        }
        if self.reader.buffered() > 0 {
            return Err(ParseError::NotWellFormed(
                "a WebSocket message must hold a complete element (RFC 7395 §3.3.3)".into(),
            ));
        }
        if got.len() != 1 {
            return Err(ParseError::PolicyViolation(
                "one element per WebSocket message (RFC 7395 §3.3.3)".into(),
            ));
        }
        let ev = match got.pop() {
            Some(StreamEvent::Element(el)) if el.ns() == NS_FRAMING => framing(el)?,
            Some(StreamEvent::Close) | Some(StreamEvent::Header(_)) | None => {
                return Err(ParseError::NotWellFormed(
                    "stream tags are not allowed on WebSocket; use <open/> and <close/>".into(),
                ))
            }
            Some(ev) => ev,
        };
        self.events.push_back(ev);
        Ok(())
    }

    async fn send_text(&mut self, bytes: &[u8]) -> io::Result<()> {
        let s = std::str::from_utf8(bytes).map_err(io::Error::other)?;
        self.ws
            .feed(Message::Text(Utf8Bytes::from(s)))
            .await
            .map_err(io::Error::other)
    }
}

/// `<open/>` is the stream header, `<close/>` its end (RFC 7395 §3.3.2, §3.6).
fn framing(el: Element) -> Result<StreamEvent, ParseError> {
    match el.name() {
        "open" => Ok(StreamEvent::Header(StreamHeader {
            to: el.attr("to").map(str::to_owned),
            from: el.attr("from").map(str::to_owned),
            id: el.attr("id").map(str::to_owned),
            version: el.attr("version").map(str::to_owned),
            lang: el.attr_ns(NS_XML, "lang").map(str::to_owned),
            default_ns: Some(NS_CLIENT.to_owned()),
        })),
        "close" => Ok(StreamEvent::Close),
        other => Err(ParseError::InvalidNamespace(format!(
            "<{other}/> is not an element of {NS_FRAMING}"
        ))),
    }
}

#[async_trait::async_trait]
impl Link for WsLink {
    fn framing(&self) -> Framing {
        Framing::Standalone
    }

    fn is_secure(&self) -> bool {
        self.secure
    }

    async fn receive(&mut self) -> Result<usize, LinkError> {
        if self.closed {
            return Err(LinkError::Closed);
        }
        if let Some(e) = &self.error {
            return Err(LinkError::Parse(e.clone()));
        }
        // `recv` polls the socket's stream, which keeps its state across cancellation.
        match self.ws.recv().await {
            None | Some(Ok(Message::Close(_))) => {
                self.closed = true;
                Err(LinkError::Closed)
            }
            Some(Err(e)) => {
                self.closed = true;
                Err(LinkError::Io(io::Error::other(e)))
            }
            Some(Ok(Message::Text(t))) => match self.message(t.as_str()) {
                Ok(()) => Ok(t.len()),
                Err(e) => {
                    self.error = Some(e.clone());
                    Err(LinkError::Parse(e))
                }
            },
            Some(Ok(Message::Binary(_))) => {
                let e = ParseError::NotWellFormed(
                    "XMPP over WebSocket uses text messages only (RFC 7395 §3.2)".into(),
                );
                self.error = Some(e.clone());
                Err(LinkError::Parse(e))
            }
            // Ping (answered by the library) and Pong: activity without data.
            Some(Ok(_)) => Ok(0),
        }
    }

    fn next_event(&mut self) -> Result<Option<StreamEvent>, ParseError> {
        match (self.events.pop_front(), &self.error) {
            (Some(ev), _) => Ok(Some(ev)),
            (None, Some(e)) => Err(e.clone()),
            (None, None) => Ok(None),
        }
    }

    /// Nothing to reset: the client opens the new stream with another `<open/>` (§3.5).
    fn restart(&mut self) {}

    async fn write(&mut self, out: &Outbox) -> io::Result<()> {
        for (bytes, kind) in out.frames() {
            match kind {
                FrameKind::Keepalive => self
                    .ws
                    .feed(Message::Ping(Default::default()))
                    .await
                    .map_err(io::Error::other)?,
                FrameKind::Element | FrameKind::StreamError => self.send_text(bytes).await?,
            }
        }
        self.ws.flush().await.map_err(io::Error::other)
    }

    async fn send_header(&mut self, h: &Header<'_>) -> io::Result<()> {
        let mut open = format!("<open xmlns='{NS_FRAMING}'");
        for (name, value) in [("from", h.from), ("to", h.to), ("id", Some(h.id))] {
            if let Some(v) = value {
                open.push_str(&format!(" {name}='{}'", attr_escape(v)));
            }
        }
        open.push_str(" version='1.0' xml:lang='en'/>");
        self.send_text(open.as_bytes()).await?;
        self.ws.flush().await.map_err(io::Error::other)
    }

    /// §3.6: our `<close/>` after whatever is pending, then the WebSocket closing handshake.
    async fn close(&mut self, out: &Outbox) -> io::Result<()> {
        self.write(out).await?;
        let mut end = Outbox::new(Framing::Standalone);
        end.element(&Element::bare("close", NS_FRAMING));
        self.write(&end).await?;
        self.closed = true;
        self.ws
            .send(Message::Close(None))
            .await
            .map_err(io::Error::other)
    }
}

fn attr_escape(v: &str) -> String {
    v.replace('&', "&amp;")
        .replace('\'', "&apos;")
        .replace('<', "&lt;")
        .replace('"', "&quot;")
}
