//! The bound session loop: stanzas from the client are checked (RFC 6120 §8.1), stamped and
//! routed; items queued for the client are coalesced into one write per wakeup (DESIGN.md §6).

use std::sync::Arc;
use std::time::Instant;

use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info};

use tern_router::xml::set_attr;
use tern_router::{
    Condition, Jid, Kind, Origin, Outbound, SessionEvent, SessionHandle, Stanza, StanzaError,
};
use tern_stream::{
    write_element, ParseError, StreamError, StreamErrorCondition as Sec, StreamEvent, NS_CLIENT,
    STREAM_CLOSE,
};

use crate::bind::NS_SESSION;
use crate::conn::XmlConn;
use crate::rate::RateLimiter;
use crate::transport::Transport;
use crate::C2s;

/// Why the loop ended, for the log line.
#[derive(Debug)]
enum End {
    ClientClosed,
    Io(String),
    Error(Sec),
    Shutdown,
}

/// Runs a bound session until the stream ends, then unregisters it.
pub(crate) async fn run(
    c2s: Arc<C2s>,
    conn: XmlConn,
    handle: SessionHandle,
    mut rx: mpsc::Receiver<Outbound>,
) {
    let XmlConn { io, mut reader, .. } = conn;
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut buf = vec![0u8; 4096];
    let mut out: Vec<u8> = Vec::new();
    let mut shutdown = c2s.shutdown_signal();
    let mut keepalive = tokio::time::interval(c2s.config.keepalive_interval);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_write = Instant::now();
    let mut last_read = Instant::now();
    // Bursts up to one maximal stanza pass unthrottled.
    let burst = (c2s.config.limits.max_stanza_bytes as u64).max(c2s.config.max_bytes_per_second);
    let mut limiter = RateLimiter::new(c2s.config.max_bytes_per_second, burst);
    let mut paused_until: Option<tokio::time::Instant> = None;

    let end = 'outer: loop {
        // Everything already buffered is handled before waiting again.
        loop {
            match reader.next_event() {
                Ok(Some(StreamEvent::Element(el))) => {
                    if let Err(cond) = handle_element(&c2s, &handle, el, &mut out).await {
                        break 'outer End::Error(cond);
                    }
                }
                Ok(Some(StreamEvent::Close)) => break 'outer End::ClientClosed,
                Ok(Some(StreamEvent::Header(_))) => break 'outer End::Error(Sec::NotWellFormed),
                Ok(None) => break,
                Err(e) => break 'outer parse_error(&mut out, e),
            }
        }
        if !out.is_empty() {
            if let Err(e) = write_out(&mut wr, &mut out).await {
                break End::Io(e.to_string());
            }
            last_write = Instant::now();
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => break End::Shutdown,
            item = rx.recv() => {
                let Some(item) = item else { break End::Shutdown };
                let mut closing = None;
                for item in std::iter::once(item).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                    match item {
                        Outbound::Stanza(el) => write_element(&el, NS_CLIENT, &mut out),
                        Outbound::Close(err) => { closing = Some(err); break; }
                    }
                }
                if let Some(err) = closing {
                    out.extend_from_slice(&err.to_bytes());
                    break End::Error(err.condition);
                }
            }
            // Over its rate the client is not read for a while: TCP pushes back on it.
            _ = sleep_until_opt(paused_until), if paused_until.is_some() => paused_until = None,
            r = rd.read(&mut buf), if paused_until.is_none() => match r {
                Ok(0) => break End::Io("connection closed by peer".into()),
                Ok(n) => {
                    last_read = Instant::now();
                    paused_until = limiter.take(n, last_read).map(|d| tokio::time::Instant::now() + d);
                    if let Err(e) = reader.feed(&buf[..n]) {
                        break parse_error(&mut out, e);
                    }
                }
                Err(e) => break End::Io(e.to_string()),
            },
            _ = keepalive.tick() => {
                if last_read.elapsed() >= c2s.config.idle_timeout {
                    out.extend_from_slice(&StreamError::with_text(Sec::ConnectionTimeout, "idle for too long").to_bytes());
                    break End::Error(Sec::ConnectionTimeout);
                }
                // RFC 6120 §4.6.1: whitespace keeps NATs open and detects dead peers.
                if last_write.elapsed() >= c2s.config.keepalive_interval {
                    out.push(b' ');
                }
            }
        }
    };

    // Unregister first, so nothing more is queued for a session that is going away.
    c2s.router.sessions().remove(&handle);
    if let End::Shutdown = end {
        out.extend_from_slice(&StreamError::new(Sec::SystemShutdown).to_bytes());
    }
    if !matches!(end, End::Io(_)) {
        out.extend_from_slice(STREAM_CLOSE.as_bytes());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let _ = write_out(&mut wr, &mut out).await;
            let _ = wr.shutdown().await;
        })
        .await;
    }
    match &end {
        End::Io(e) => info!(jid = %handle.jid(), "session ended: {e}"),
        End::Error(c) => {
            info!(jid = %handle.jid(), "session ended with stream error <{}/>", c.as_str())
        }
        End::ClientClosed => info!(jid = %handle.jid(), "session closed by client"),
        End::Shutdown => info!(jid = %handle.jid(), "session ended: server shutdown"),
    }
    c2s.router
        .session_event(SessionEvent::Closed, &handle)
        .await;
    drop(rx);
}

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    if let Some(t) = t {
        tokio::time::sleep_until(t).await;
    }
}

async fn write_out(
    wr: &mut tokio::io::WriteHalf<Transport>,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    wr.write_all(out).await?;
    wr.flush().await?;
    out.clear();
    // Large bursts should not pin their buffer for the rest of an idle session.
    if out.capacity() > 64 * 1024 {
        *out = Vec::new();
    }
    Ok(())
}

fn parse_error(out: &mut Vec<u8>, e: ParseError) -> End {
    info!("stream error: {e}");
    let err = StreamError::with_text(e.condition(), e.to_string());
    out.extend_from_slice(&err.to_bytes());
    End::Error(err.condition)
}

/// Checks and routes one element from the client. Errors end the stream with that condition
/// (the stream error is already in `out`).
async fn handle_element(
    c2s: &Arc<C2s>,
    handle: &SessionHandle,
    el: Element,
    out: &mut Vec<u8>,
) -> Result<(), Sec> {
    let Some(kind) = Kind::of(&el) else {
        let err = StreamError::with_text(
            Sec::UnsupportedStanzaType,
            format!("<{}/> is not supported", el.name()),
        );
        out.extend_from_slice(&err.to_bytes());
        return Err(Sec::UnsupportedStanzaType);
    };
    let me = handle.jid();
    // RFC 6120 §8.1.2.1: a 'from' other than the full or bare JID of the session is spoofing.
    if let Some(from) = el.attr("from") {
        let ok = Jid::new(from)
            .map(|j| j == *me || j == me.to_bare())
            .unwrap_or(false);
        if !ok {
            let err =
                StreamError::with_text(Sec::InvalidFrom, "'from' does not match the bound JID");
            out.extend_from_slice(&err.to_bytes());
            return Err(Sec::InvalidFrom);
        }
    }
    let from = Jid::from(me.clone());
    let to = match el.attr("to").map(Jid::new) {
        None => None,
        Some(Ok(j)) => Some(j),
        Some(Err(_)) => {
            reply_local(
                handle,
                &el,
                kind,
                StanzaError::new(Condition::JidMalformed),
                out,
            );
            return Ok(());
        }
    };
    if let Some(err) = check_stanza(kind, &el) {
        reply_local(handle, &el, kind, err, out);
        return Ok(());
    }
    // RFC 6120 §10.3: no 'to' means the account itself, except presence (a broadcast).
    let to = match (to, kind) {
        (None, Kind::Presence) => None,
        (None, _) => Some(Jid::from(me.to_bare())),
        (Some(t), _) => Some(t),
    };
    let st = Stanza::new(kind, from, to, el);
    if kind == Kind::Iq && is_legacy_session(&st) {
        write_element(&st.iq_result(None), NS_CLIENT, out);
        return Ok(());
    }
    debug!(kind = ?kind, to = ?st.to.as_ref().map(|j| j.as_str()), "stanza from client");
    c2s.router.route(Origin::Client(handle.clone()), st).await;
    Ok(())
}

/// Type and shape checks of RFC 6120 §8.1.3 and §8.2.3.
fn check_stanza(kind: Kind, el: &Element) -> Option<StanzaError> {
    let t = el.attr("type");
    let valid = match kind {
        Kind::Message => matches!(
            t,
            None | Some("chat" | "error" | "groupchat" | "headline" | "normal")
        ),
        Kind::Presence => matches!(
            t,
            None | Some(
                "error"
                    | "probe"
                    | "subscribe"
                    | "subscribed"
                    | "unavailable"
                    | "unsubscribe"
                    | "unsubscribed"
            )
        ),
        Kind::Iq => match t {
            Some("get" | "set") => el.attr("id").is_some() && el.children().count() == 1,
            Some("result") => el.attr("id").is_some() && el.children().count() <= 1,
            Some("error") => el.attr("id").is_some(),
            _ => false,
        },
    };
    (!valid).then(|| StanzaError::new(Condition::BadRequest).with_text("malformed stanza"))
}

fn is_legacy_session(st: &Stanza) -> bool {
    st.type_() == "set" && st.iq_payload().is_some_and(|p| p.is("session", NS_SESSION))
}

/// Answers a stanza the session itself rejects, straight back to the client.
fn reply_local(
    handle: &SessionHandle,
    el: &Element,
    kind: Kind,
    err: StanzaError,
    out: &mut Vec<u8>,
) {
    if el.attr("type") == Some("error") || (kind == Kind::Iq && el.attr("type") == Some("result")) {
        return;
    }
    let mut reply = el.clone();
    set_attr(&mut reply, "type", Some("error"));
    set_attr(&mut reply, "to", Some(handle.jid().as_str()));
    set_attr(&mut reply, "from", None);
    reply.append_child(err.to_element());
    write_element(&reply, NS_CLIENT, out);
}
