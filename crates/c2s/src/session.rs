//! The bound session loop: stanzas from the client are checked and routed (`inbound`); items
//! queued for the client are coalesced into one write per wakeup (DESIGN.md §6); with stream
//! management (`sm`) the session survives the loss of its connection until it is resumed or
//! its resumption timeout passes, and what the client never acknowledged is redelivered.

use std::sync::Arc;
use std::time::Instant;

use minidom::Element;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use tern_router::xml::BuilderExt;
use tern_router::{Kind, Origin, Outbound, SessionEvent, SessionHandle, Stanza};
use tern_stream::{ParseError, StreamError, StreamErrorCondition as Sec, StreamEvent};

use crate::conn::XmlConn;
use crate::csi::{Csi, NS_CSI};
use crate::inbound::check_element;
use crate::item::Item;
use crate::link::{Link, LinkError, Outbox};
use crate::rate::RateLimiter;
use crate::sm::{ack_element, failed, ResumeRequest, Sm, NS_SM};
use crate::{random_id, C2s};

/// Ask the client for an acknowledgement after this many unacknowledged stanzas.
const REQUEST_ACK_EVERY: usize = 5;

/// Output bytes a session buffers from its own queue while its routing waits, before it stops
/// taking more (they are written once the routing is done).
const DRAIN_WHILE_ROUTING: usize = 256 * 1024;

/// Why the loop ended, for the log line.
#[derive(Debug)]
enum End {
    ClientClosed,
    Io(String),
    Error(Sec),
    Shutdown,
    ResumeTimeout,
}

/// What is being written to the client: stanzas are counted for stream management.
pub(crate) struct Out {
    buf: Outbox,
    pub(crate) sm: Option<Sm>,
    csi: Csi,
    /// The session's full JID: the `to` of shared stanzas.
    jid: String,
}

impl Out {
    /// Queues a stanza for the client (unless client state indication holds it back).
    pub(crate) fn stanza(&mut self, el: Element) {
        self.item(Item::Own(el));
    }

    fn item(&mut self, item: Item) {
        for item in self.csi.filter(item) {
            self.write_stanza(item);
        }
    }

    fn write_stanza(&mut self, item: Item) {
        item.write(&self.jid, &mut self.buf);
        if let Some(sm) = &mut self.sm {
            sm.sent(item);
        }
    }

    fn set_inactive(&mut self, inactive: bool) {
        for el in self.csi.set_inactive(inactive) {
            self.write_stanza(el);
        }
    }

    /// Queues a stream error; the stream ends after it.
    pub(crate) fn error(&mut self, err: &StreamError) {
        self.buf.stream_error(err);
    }

    fn nonza(&mut self, el: &Element) {
        self.buf.element(el);
    }
}

struct Session {
    c2s: Arc<C2s>,
    handle: SessionHandle,
    rx: mpsc::Receiver<Outbound>,
    io: Option<Box<dyn Link>>,
    out: Out,
    limiter: RateLimiter,
    paused_until: Option<tokio::time::Instant>,
    last_read: Instant,
    last_write: Instant,
    /// A XEP-0199 ping went out since the client last sent anything.
    pinged: bool,
    resume_rx: Option<mpsc::Receiver<ResumeRequest>>,
    detached_until: Option<tokio::time::Instant>,
}

/// Runs a bound session until its stream ends for good, then unregisters it.
pub(crate) async fn run(
    c2s: Arc<C2s>,
    conn: XmlConn,
    handle: SessionHandle,
    rx: mpsc::Receiver<Outbound>,
) {
    // Bursts up to one maximal stanza pass unthrottled.
    let burst = (c2s.config.limits.max_stanza_bytes as u64).max(c2s.config.max_bytes_per_second);
    let limiter = RateLimiter::new(c2s.config.max_bytes_per_second, burst);
    let framing = conn.link.framing();
    let jid = handle.jid().to_string();
    let mut s = Session {
        c2s,
        handle,
        rx,
        io: Some(conn.link),
        out: Out {
            buf: Outbox::new(framing),
            sm: None,
            csi: Csi::default(),
            jid,
        },
        limiter,
        paused_until: None,
        last_read: Instant::now(),
        last_write: Instant::now(),
        pinged: false,
        resume_rx: None,
        detached_until: None,
    };
    let end = s.run_loop().await;
    s.finish(end).await;
}

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn read_opt(io: &mut Option<Box<dyn Link>>) -> Result<usize, LinkError> {
    match io {
        Some(io) => io.receive().await,
        None => std::future::pending().await,
    }
}

async fn recv_opt(rx: &mut Option<mpsc::Receiver<ResumeRequest>>) -> Option<ResumeRequest> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn parse_error(out: &mut Out, e: ParseError) -> End {
    info!("stream error: {e}");
    let err = StreamError::with_text(e.condition(), e.to_string());
    out.error(&err);
    End::Error(err.condition)
}

impl Session {
    async fn run_loop(&mut self) -> End {
        let mut shutdown = self.c2s.shutdown_signal();
        let mut keepalive = tokio::time::interval(self.c2s.config.keepalive_interval);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if let Some(end) = self.process_buffered().await {
                return end;
            }
            if let Err(e) = self.flush().await {
                if let Some(end) = self.connection_lost(e.to_string()) {
                    return end;
                }
            }
            let attached = self.io.is_some();
            tokio::select! {
                biased;
                _ = shutdown.changed() => return End::Shutdown,
                Some(req) = recv_opt(&mut self.resume_rx) => self.resume(req),
                _ = sleep_until_opt(self.detached_until), if !attached => return End::ResumeTimeout,
                item = self.rx.recv(), if attached => {
                    let Some(item) = item else { return End::Shutdown };
                    if let Some(end) = self.queue(item) {
                        return end;
                    }
                }
                // Over its rate the client is not read for a while: TCP pushes back on it.
                _ = sleep_until_opt(self.paused_until), if self.paused_until.is_some() => self.paused_until = None,
                r = read_opt(&mut self.io), if attached && self.paused_until.is_none() => {
                    match r {
                        Ok(n) => {
                            self.last_read = Instant::now();
                            self.pinged = false;
                            self.paused_until = self.limiter.take(n, self.last_read).map(|d| tokio::time::Instant::now() + d);
                        }
                        // Events framed before the error are handled first; the reader
                        // reports the error again once they are taken.
                        Err(LinkError::Parse(_)) => {}
                        Err(e) => {
                            if let Some(end) = self.connection_lost(e.to_string()) {
                                return end;
                            }
                        }
                    }
                }
                _ = keepalive.tick(), if attached => {
                    if self.last_read.elapsed() >= self.c2s.config.idle_timeout {
                        self.out.error(&StreamError::with_text(Sec::ConnectionTimeout, "idle for too long"));
                        return End::Error(Sec::ConnectionTimeout);
                    }
                    // XEP-0199 §4.2: halfway to the idle timeout (and at least two ticks
                    // before it), ask the client for an answer; a live one replies and
                    // stays, a dead one times out.
                    let idle = self.c2s.config.idle_timeout;
                    let ping_after = (idle / 2).min(idle.saturating_sub(2 * self.c2s.config.keepalive_interval));
                    if !self.pinged && self.last_read.elapsed() >= ping_after {
                        self.pinged = true;
                        self.out.write_stanza(Item::Own(self.ping()));
                    }
                    // RFC 6120 §4.6.1: whitespace keeps NATs open and detects dead peers.
                    if self.last_write.elapsed() >= self.c2s.config.keepalive_interval {
                        match &self.out.sm {
                            Some(sm) if sm.unacked_len() > 0 => self.out.nonza(&Element::bare("r", NS_SM)),
                            _ => self.out.buf.keepalive(),
                        }
                    }
                }
            }
        }
    }

    /// A XEP-0199 ping from the server to this session's client.
    fn ping(&self) -> Element {
        let jid = self.handle.jid();
        Element::builder("iq", tern_stream::NS_CLIENT)
            .a("type", "get")
            .a("id", format!("tern-ping-{}", self.handle.id()))
            .a("from", jid.domain().as_str())
            .a("to", jid.as_str())
            .append(Element::bare("ping", "urn:xmpp:ping"))
            .build()
    }

    /// Handles every event already parsed.
    async fn process_buffered(&mut self) -> Option<End> {
        loop {
            let ev = match self.io.as_mut()?.next_event() {
                Ok(Some(ev)) => ev,
                Ok(None) => return None,
                Err(e) => return Some(parse_error(&mut self.out, e)),
            };
            match ev {
                StreamEvent::Element(el) if el.ns() == NS_CSI => match el.name() {
                    "active" => self.out.set_inactive(false),
                    "inactive" => self.out.set_inactive(true),
                    _ => {
                        if let Err(c) = self.unsupported(&el) {
                            return Some(End::Error(c));
                        }
                    }
                },
                StreamEvent::Element(el) if el.ns() == NS_SM => {
                    if let Err(c) = self.sm_nonza(&el) {
                        return Some(End::Error(c));
                    }
                }
                StreamEvent::Element(el) => {
                    let stanza = Kind::of(&el).is_some();
                    let end = match check_element(&self.handle, el, &mut self.out) {
                        Err(c) => return Some(End::Error(c)),
                        Ok(Some(st)) => self.route(st).await,
                        Ok(None) => None,
                    };
                    // XEP-0198 §4: counted once handled, i.e. routed or durably stored.
                    if let (true, Some(sm)) = (stanza, &mut self.out.sm) {
                        sm.h_in = sm.h_in.wrapping_add(1);
                    }
                    if end.is_some() {
                        return end;
                    }
                }
                StreamEvent::Close => return Some(End::ClientClosed),
                StreamEvent::Header(_) => return Some(End::Error(Sec::NotWellFormed)),
            }
        }
    }

    /// Routes a stanza from the client. Routing waits while a recipient's queue is full
    /// (`c2s.queue_wait_ms`); meanwhile this session keeps moving its own queue into the output
    /// buffer, so two sessions sending to each other never wait on each other.
    async fn route(&mut self, st: Stanza) -> Option<End> {
        let router = self.c2s.router.clone();
        let mut routing = router.route(Origin::Client(self.handle.clone()), st);
        let mut end = None;
        let mut open = true;
        loop {
            tokio::select! {
                biased;
                () = &mut routing => return end,
                item = self.rx.recv(), if open && end.is_none() && self.out.buf.len() < DRAIN_WHILE_ROUTING => {
                    match item {
                        Some(item) => end = self.queue(item),
                        None => open = false,
                    }
                }
            }
        }
    }

    /// Moves queued items into the output buffer.
    fn queue(&mut self, first: Outbound) -> Option<End> {
        let mut item = Some(first);
        while let Some(it) = item.take().or_else(|| self.rx.try_recv().ok()) {
            match it {
                Outbound::Stanza(el) => self.out.stanza(*el),
                Outbound::Shared(items) => {
                    for s in items {
                        self.out.item(Item::Shared(s));
                    }
                }
                Outbound::Close(err) => {
                    self.out.error(&err);
                    return Some(End::Error(err.condition));
                }
            }
        }
        if let Some(sm) = &mut self.out.sm {
            if sm.unacked_len() > self.c2s.config.sm_max_unacked {
                let err =
                    StreamError::with_text(Sec::PolicyViolation, "too many unacknowledged stanzas");
                self.out.error(&err);
                return Some(End::Error(Sec::PolicyViolation));
            }
            if sm.should_request(REQUEST_ACK_EVERY) {
                self.out.nonza(&Element::bare("r", NS_SM));
            }
        }
        None
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let Some(io) = self.io.as_mut() else {
            return Ok(());
        };
        if self.out.buf.is_empty() {
            return Ok(());
        }
        // A client that stops reading must not hold its session (and the queue that senders
        // wait on) forever: past the write timeout the connection counts as lost.
        let limit = self.c2s.config.write_timeout;
        match tokio::time::timeout(limit, io.write(&self.out.buf)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("client did not read for {}s", limit.as_secs()),
                ))
            }
        }
        self.out.buf.clear();
        self.last_write = Instant::now();
        Ok(())
    }

    /// The connection broke. A resumable session waits for the client to come back; any
    /// other ends here.
    fn connection_lost(&mut self, reason: String) -> Option<End> {
        self.io = None;
        self.out.buf.clear();
        self.paused_until = None;
        match &self.out.sm {
            Some(sm) if sm.id.is_some() => {
                info!(jid = %self.handle.jid(), "connection lost ({reason}); waiting {}s for resumption", sm.resume_timeout.as_secs());
                self.detached_until = Some(tokio::time::Instant::now() + sm.resume_timeout);
                self.handle.set_flag(tern_router::FLAG_DETACHED, true);
                None
            }
            _ => Some(End::Io(reason)),
        }
    }

    /// XEP-0198 nonzas: enable, r, a.
    fn sm_nonza(&mut self, el: &Element) -> Result<(), Sec> {
        match el.name() {
            "enable" => {
                if self.out.sm.is_some() {
                    self.out.nonza(&failed("unexpected-request", None));
                    return Ok(());
                }
                let limit = self.c2s.config.sm_resume_timeout;
                let resume = matches!(el.attr("resume"), Some("true" | "1")) && !limit.is_zero();
                let wanted = el
                    .attr("max")
                    .and_then(|m| m.parse::<u64>().ok())
                    .map(std::time::Duration::from_secs);
                let timeout = wanted.map_or(limit, |w| w.min(limit));
                let id = resume.then(|| random_id(24));
                let reply = Element::builder("enabled", NS_SM)
                    .a_opt("id", id.clone())
                    .a_opt("resume", resume.then_some("true"))
                    .a_opt("max", resume.then(|| timeout.as_secs().to_string()))
                    .build();
                if let Some(id) = &id {
                    let (tx, rx) = mpsc::channel(1);
                    self.c2s
                        .resumable_insert(id.clone(), (self.handle.jid().to_bare(), tx));
                    self.resume_rx = Some(rx);
                }
                self.out.sm = Some(Sm::new(id, timeout));
                self.out.nonza(&reply);
                Ok(())
            }
            "r" => match &self.out.sm {
                Some(sm) => {
                    let a = ack_element(sm.h_in);
                    self.out.nonza(&a);
                    Ok(())
                }
                None => self.unsupported(el),
            },
            "a" => {
                let Some(sm) = &mut self.out.sm else {
                    return self.unsupported(el);
                };
                let Some(h) = el.attr("h").and_then(|h| h.parse::<u32>().ok()) else {
                    self.out.error(&StreamError::with_text(
                        Sec::BadFormat,
                        "<a/> needs a numeric 'h'",
                    ));
                    return Err(Sec::BadFormat);
                };
                if let Err(e) = sm.ack(h) {
                    self.out
                        .buf
                        .stream_error_element(&count_too_high(e.h, e.sent));
                    return Err(Sec::UndefinedCondition);
                }
                Ok(())
            }
            _ => self.unsupported(el),
        }
    }

    fn unsupported(&mut self, el: &Element) -> Result<(), Sec> {
        let err = StreamError::with_text(
            Sec::UnsupportedStanzaType,
            format!("<{}/> is not supported here", el.name()),
        );
        self.out.error(&err);
        Err(Sec::UnsupportedStanzaType)
    }

    /// Takes over a new connection for this session (XEP-0198 §5): the client's count drops
    /// what it received, and the rest is sent again after `<resumed/>`.
    fn resume(&mut self, req: ResumeRequest) {
        let Some(sm) = &mut self.out.sm else { return };
        if let Some(old) = self.io.take() {
            // The client gave up on the old connection; whatever is buffered for it is resent below.
            drop(old);
        }
        self.out.buf.clear();
        let mut io = req.conn.link;
        if let Err(e) = sm.ack(req.h) {
            let mut bytes = Outbox::new(io.framing());
            bytes.stream_error_element(&count_too_high(e.h, e.sent));
            tokio::spawn(async move {
                let _ = io.close(&bytes).await;
            });
            warn!(jid = %self.handle.jid(), "resumption refused: client count too high");
            return;
        }
        let resumed = Element::builder("resumed", NS_SM)
            .a("previd", sm.id.clone().unwrap_or_default())
            .a("h", sm.h_in.to_string())
            .build();
        // The new connection may be another kind of link (TCP, WebSocket, BOSH).
        self.out.buf.set_framing(io.framing());
        self.out.buf.element(&resumed);
        for item in sm.unacked() {
            item.write(&self.out.jid, &mut self.out.buf);
        }
        info!(jid = %self.handle.jid(), resent = sm.unacked_len(), "session resumed");
        self.io = Some(io);
        self.detached_until = None;
        self.handle.set_flag(tern_router::FLAG_DETACHED, false);
        self.last_read = Instant::now();
        self.pinged = false;
    }

    /// Ends the session for good: unregister, close the stream, tell modules, and hand back
    /// every stanza the client did not receive.
    async fn finish(mut self, end: End) {
        self.c2s.router.sessions().remove(&self.handle);
        if let Some(id) = self.out.sm.as_ref().and_then(|sm| sm.id.clone()) {
            self.c2s.resumable_remove(&id);
        }
        if let End::Shutdown = end {
            self.out.error(&StreamError::new(Sec::SystemShutdown));
        }
        if let (Some(mut io), false) = (self.io.take(), matches!(end, End::Io(_))) {
            let bytes = &self.out.buf;
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), io.close(bytes)).await;
        }
        let jid = self.handle.jid().clone();
        match &end {
            End::Io(e) => info!(jid = %jid, "session ended: {e}"),
            End::Error(c) => info!(jid = %jid, "session ended with stream error <{}/>", c.as_str()),
            End::ClientClosed => info!(jid = %jid, "session closed by client"),
            End::Shutdown => info!(jid = %jid, "session ended: server shutdown"),
            End::ResumeTimeout => info!(jid = %jid, "session ended: not resumed in time"),
        }
        self.c2s
            .router
            .session_event(SessionEvent::Closed, &self.handle)
            .await;
        // XEP-0198 §5: unacknowledged stanzas and anything still queued are redelivered.
        let mut pending: Vec<Element> = self
            .out
            .sm
            .as_mut()
            .map(Sm::take_unacked)
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.into_element(&self.out.jid))
            .collect();
        self.rx.close();
        while let Ok(item) = self.rx.try_recv() {
            pending.extend(item.into_elements(&self.out.jid));
        }
        if !pending.is_empty() {
            info!(jid = %jid, count = pending.len(), "redelivering stanzas the client did not acknowledge");
        }
        for el in pending {
            self.c2s.router.redeliver(el).await;
        }
    }
}

/// XEP-0198 §4: the stream error for an acknowledgement of more than was sent.
fn count_too_high(h: u32, sent: u32) -> Element {
    let mut err = StreamError::with_text(
        Sec::UndefinedCondition,
        "acknowledged more stanzas than were sent",
    )
    .to_element();
    err.append_child(
        Element::builder("handled-count-too-high", NS_SM)
            .a("h", h.to_string())
            .a("send-count", sent.to_string())
            .build(),
    );
    err
}
