//! The bound session loop: stanzas from the client are checked and routed (`inbound`); items
//! queued for the client are coalesced into one write per wakeup (DESIGN.md §6); with stream
//! management (`sm`) the session survives the loss of its connection until it is resumed or
//! its resumption timeout passes, and what the client never acknowledged is redelivered.

use std::sync::Arc;
use std::time::Instant;

use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use tern_router::xml::BuilderExt;
use tern_router::{Kind, Outbound, SessionEvent, SessionHandle};
use tern_stream::{
    write_element, ParseError, StreamError, StreamErrorCondition as Sec, StreamEvent, StreamReader,
    NS_CLIENT, STREAM_CLOSE,
};

use crate::conn::XmlConn;
use crate::csi::{Csi, NS_CSI};
use crate::inbound::handle_element;
use crate::rate::RateLimiter;
use crate::sm::{ack_element, failed, ResumeRequest, Sm, NS_SM};
use crate::transport::Transport;
use crate::{random_id, C2s};

/// Ask the client for an acknowledgement after this many unacknowledged stanzas.
const REQUEST_ACK_EVERY: usize = 5;

/// Read buffer of a bound session, held for the session's life. Small: TLS records are
/// buffered by rustls already, so this only bounds how much plaintext one read hands over,
/// and every idle session pays for it (docs/benchmarks.md).
const READ_BUF: usize = 1024;

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
    buf: Vec<u8>,
    pub(crate) sm: Option<Sm>,
    csi: Csi,
}

impl Out {
    /// Queues a stanza for the client (unless client state indication holds it back).
    pub(crate) fn stanza(&mut self, el: Element) {
        for el in self.csi.filter(el) {
            self.write_stanza(el);
        }
    }

    fn write_stanza(&mut self, el: Element) {
        write_element(&el, NS_CLIENT, &mut self.buf);
        if let Some(sm) = &mut self.sm {
            sm.sent(el);
        }
    }

    fn set_inactive(&mut self, inactive: bool) {
        for el in self.csi.set_inactive(inactive) {
            self.write_stanza(el);
        }
    }

    /// Queues a nonza or raw bytes (stream errors, SM elements, whitespace).
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    fn nonza(&mut self, el: &Element) {
        write_element(el, NS_CLIENT, &mut self.buf);
    }
}

struct Io {
    rd: ReadHalf<Transport>,
    wr: WriteHalf<Transport>,
    reader: StreamReader,
}

impl Io {
    fn new(conn: XmlConn) -> Io {
        let XmlConn { io, reader, .. } = conn;
        let (rd, wr) = tokio::io::split(io);
        Io { rd, wr, reader }
    }
}

struct Session {
    c2s: Arc<C2s>,
    handle: SessionHandle,
    rx: mpsc::Receiver<Outbound>,
    io: Option<Io>,
    out: Out,
    buf: Vec<u8>,
    limiter: RateLimiter,
    paused_until: Option<tokio::time::Instant>,
    last_read: Instant,
    last_write: Instant,
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
    let mut s = Session {
        c2s,
        handle,
        rx,
        io: Some(Io::new(conn)),
        out: Out {
            buf: Vec::new(),
            sm: None,
            csi: Csi::default(),
        },
        buf: vec![0u8; READ_BUF],
        limiter,
        paused_until: None,
        last_read: Instant::now(),
        last_write: Instant::now(),
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

async fn read_opt(io: &mut Option<Io>, buf: &mut [u8]) -> std::io::Result<usize> {
    match io {
        Some(io) => io.rd.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn recv_opt(rx: &mut Option<mpsc::Receiver<ResumeRequest>>) -> Option<ResumeRequest> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn write_out(wr: &mut WriteHalf<Transport>, out: &mut Vec<u8>) -> std::io::Result<()> {
    wr.write_all(out).await?;
    wr.flush().await?;
    out.clear();
    // Large bursts should not pin their buffer for the rest of an idle session.
    if out.capacity() > 64 * 1024 {
        *out = Vec::new();
    }
    Ok(())
}

fn parse_error(out: &mut Out, e: ParseError) -> End {
    info!("stream error: {e}");
    let err = StreamError::with_text(e.condition(), e.to_string());
    out.raw(&err.to_bytes());
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
                r = read_opt(&mut self.io, &mut self.buf), if attached && self.paused_until.is_none() => {
                    let r = match r {
                        Ok(0) => Err("connection closed by peer".to_owned()),
                        Ok(n) => Ok(n),
                        Err(e) => Err(e.to_string()),
                    };
                    match r {
                        Ok(n) => {
                            self.last_read = Instant::now();
                            self.paused_until = self.limiter.take(n, self.last_read).map(|d| tokio::time::Instant::now() + d);
                            let fed = self.io.as_mut().map(|io| io.reader.feed(&self.buf[..n]));
                            if let Some(Err(e)) = fed {
                                return parse_error(&mut self.out, e);
                            }
                        }
                        Err(e) => {
                            if let Some(end) = self.connection_lost(e) {
                                return end;
                            }
                        }
                    }
                }
                _ = keepalive.tick(), if attached => {
                    if self.last_read.elapsed() >= self.c2s.config.idle_timeout {
                        self.out.raw(&StreamError::with_text(Sec::ConnectionTimeout, "idle for too long").to_bytes());
                        return End::Error(Sec::ConnectionTimeout);
                    }
                    // RFC 6120 §4.6.1: whitespace keeps NATs open and detects dead peers.
                    if self.last_write.elapsed() >= self.c2s.config.keepalive_interval {
                        match &self.out.sm {
                            Some(sm) if sm.unacked_len() > 0 => self.out.nonza(&Element::bare("r", NS_SM)),
                            _ => self.out.raw(b" "),
                        }
                    }
                }
            }
        }
    }

    /// Handles every event already parsed.
    async fn process_buffered(&mut self) -> Option<End> {
        loop {
            let ev = match self.io.as_mut()?.reader.next_event() {
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
                    if let Err(c) = handle_element(&self.c2s, &self.handle, el, &mut self.out).await
                    {
                        return Some(End::Error(c));
                    }
                    // XEP-0198 §4: counted once handled, i.e. routed or durably stored.
                    if let (true, Some(sm)) = (stanza, &mut self.out.sm) {
                        sm.h_in = sm.h_in.wrapping_add(1);
                    }
                }
                StreamEvent::Close => return Some(End::ClientClosed),
                StreamEvent::Header(_) => return Some(End::Error(Sec::NotWellFormed)),
            }
        }
    }

    /// Moves queued items into the output buffer.
    fn queue(&mut self, first: Outbound) -> Option<End> {
        let mut item = Some(first);
        while let Some(it) = item.take().or_else(|| self.rx.try_recv().ok()) {
            match it {
                Outbound::Stanza(el) => self.out.stanza(el),
                Outbound::Close(err) => {
                    self.out.raw(&err.to_bytes());
                    return Some(End::Error(err.condition));
                }
            }
        }
        if let Some(sm) = &mut self.out.sm {
            if sm.unacked_len() > self.c2s.config.sm_max_unacked {
                let err =
                    StreamError::with_text(Sec::PolicyViolation, "too many unacknowledged stanzas");
                self.out.raw(&err.to_bytes());
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
        write_out(&mut io.wr, &mut self.out.buf).await?;
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
                    self.out.raw(
                        &StreamError::with_text(Sec::BadFormat, "<a/> needs a numeric 'h'")
                            .to_bytes(),
                    );
                    return Err(Sec::BadFormat);
                };
                if let Err(e) = sm.ack(h) {
                    self.out.raw(&count_too_high(e.h, e.sent));
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
        self.out.raw(&err.to_bytes());
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
        let mut io = Io::new(req.conn);
        if let Err(e) = sm.ack(req.h) {
            self.out.raw(&count_too_high(e.h, e.sent));
            self.out.raw(STREAM_CLOSE.as_bytes());
            let mut bytes = std::mem::take(&mut self.out.buf);
            tokio::spawn(async move {
                let _ = write_out(&mut io.wr, &mut bytes).await;
            });
            warn!(jid = %self.handle.jid(), "resumption refused: client count too high");
            return;
        }
        let resumed = Element::builder("resumed", NS_SM)
            .a("previd", sm.id.clone().unwrap_or_default())
            .a("h", sm.h_in.to_string())
            .build();
        let unacked: Vec<Element> = sm.unacked().cloned().collect();
        write_element(&resumed, NS_CLIENT, &mut self.out.buf);
        for el in &unacked {
            write_element(el, NS_CLIENT, &mut self.out.buf);
        }
        info!(jid = %self.handle.jid(), resent = unacked.len(), "session resumed");
        self.io = Some(io);
        self.detached_until = None;
        self.handle.set_flag(tern_router::FLAG_DETACHED, false);
        self.last_read = Instant::now();
    }

    /// Ends the session for good: unregister, close the stream, tell modules, and hand back
    /// every stanza the client did not receive.
    async fn finish(mut self, end: End) {
        self.c2s.router.sessions().remove(&self.handle);
        if let Some(id) = self.out.sm.as_ref().and_then(|sm| sm.id.clone()) {
            self.c2s.resumable_remove(&id);
        }
        if let End::Shutdown = end {
            self.out
                .raw(&StreamError::new(Sec::SystemShutdown).to_bytes());
        }
        if let (Some(mut io), false) = (self.io.take(), matches!(end, End::Io(_))) {
            self.out.raw(STREAM_CLOSE.as_bytes());
            let mut bytes = std::mem::take(&mut self.out.buf);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                let _ = write_out(&mut io.wr, &mut bytes).await;
                let _ = io.wr.shutdown().await;
            })
            .await;
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
        let mut pending = self
            .out
            .sm
            .as_mut()
            .map(Sm::take_unacked)
            .unwrap_or_default();
        self.rx.close();
        while let Ok(item) = self.rx.try_recv() {
            if let Outbound::Stanza(el) = item {
                pending.push(el);
            }
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
fn count_too_high(h: u32, sent: u32) -> Vec<u8> {
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
    tern_stream::to_bytes(&err, NS_CLIENT)
}
