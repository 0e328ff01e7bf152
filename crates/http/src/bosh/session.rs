//! One BOSH session (XEP-0124): requests taken in `rid` order within the window (§14.2),
//! up to `hold` of them held for output (§9.3), the last `requests` responses cached so a
//! lost one can be fetched again by repeating its `rid` (§14.3), pausing (§10), overactivity
//! (§11) and the terminal conditions (§17.2). Its c2s side is [`super::link::BoshLink`].
//!
//! All state sits behind one mutex that is never held across an `.await`; HTTP handlers wait
//! on a oneshot for their response.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::info;

use tern_c2s::{FrameKind, Outbox};
use tern_stream::StreamEvent;

use super::body::{render, terminal, Terminal, NS_XBOSH};

/// What the session-creation response announces (§7.1).
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub wait: Duration,
    pub hold: usize,
    pub requests: u64,
    pub inactivity: Duration,
    pub polling: Duration,
    pub maxpause: u64,
    pub max_pending: usize,
}

/// Input for the c2s side: events and the byte count they came from (rate limiting).
pub(crate) type Batch = (Vec<StreamEvent>, usize);

/// What a request asks for besides carrying payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An ordinary request (or the session creation, when `creation` is set).
    Normal,
    /// `type='terminate'` (§12).
    Terminate,
    /// `pause='n'` (§10).
    Pause(u64),
}

/// A parsed request.
pub(crate) struct Request {
    pub rid: u64,
    pub events: Vec<StreamEvent>,
    pub bytes: usize,
    pub kind: Kind,
    pub creation: bool,
}

/// How a request is answered.
pub(crate) enum Reply {
    /// At once.
    Now(Vec<u8>),
    /// When output arrives or `wait` passes.
    Wait(u64, oneshot::Receiver<Vec<u8>>),
}

/// Where a request's response body goes.
type Responder = oneshot::Sender<Vec<u8>>;

struct Held {
    rid: u64,
    tx: Responder,
    creation: bool,
}

struct Inner {
    next_rid: u64,
    /// Requests ahead of `next_rid`; the sender is gone once their `wait` ran out (their
    /// payload is still processed in order when the gap fills).
    pending: BTreeMap<u64, (Request, Option<Responder>)>,
    held: VecDeque<Held>,
    cache: VecDeque<(u64, Vec<u8>)>,
    out: Vec<u8>,
    terminal: Option<Vec<u8>>,
    to_link: Option<mpsc::Sender<Batch>>,
    stream_id: String,
    from: String,
    last_activity: Instant,
    last_request: Option<Instant>,
    pause_until: Option<Instant>,
}

/// A BOSH session.
pub(crate) struct BoshSession {
    pub sid: String,
    pub params: Params,
    inner: Mutex<Inner>,
}

impl BoshSession {
    /// A session whose first request will be `first_rid`; `to_link` feeds its c2s stream.
    pub(crate) fn new(
        sid: String,
        params: Params,
        first_rid: u64,
        from: String,
        to_link: mpsc::Sender<Batch>,
    ) -> Arc<Self> {
        Arc::new(BoshSession {
            sid,
            params,
            inner: Mutex::new(Inner {
                next_rid: first_rid,
                pending: BTreeMap::new(),
                held: VecDeque::new(),
                cache: VecDeque::new(),
                out: Vec::new(),
                terminal: None,
                to_link: Some(to_link),
                stream_id: String::new(),
                from,
                last_activity: Instant::now(),
                last_request: None,
                pause_until: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one request (§14.2 window, §14.3 repeated `rid`s, §11 overactivity).
    pub(crate) fn request(&self, req: Request) -> Reply {
        let mut g = self.lock();
        let now = Instant::now();
        let previous = g.last_request.replace(now);
        g.last_activity = now;
        g.pause_until = None;
        if let Some(t) = &g.terminal {
            return Reply::Now(t.clone());
        }
        let rid = req.rid;
        if rid < g.next_rid || g.pending.contains_key(&rid) {
            return self.repeated(&mut g, rid);
        }
        let lowest = g.held.front().map_or(g.next_rid, |h| h.rid.min(g.next_rid));
        if rid >= lowest.saturating_add(self.params.requests) {
            info!(sid = %self.sid, rid, lowest, "BOSH rid outside the window");
            return Reply::Now(self.kill(&mut g, Terminal::ItemNotFound));
        }
        // §11: a full set of unanswered requests, the last one empty and too soon after the
        // previous one, is a client polling faster than allowed.
        let unanswered = g.held.len() + g.pending.len() + 1;
        let empty = req.events.is_empty() && req.kind == Kind::Normal && !req.creation;
        let too_soon = previous.is_some_and(|p| now.duration_since(p) < self.params.polling);
        if empty && too_soon && unanswered as u64 >= self.params.requests {
            info!(sid = %self.sid, rid, "BOSH overactivity");
            return Reply::Now(self.kill(&mut g, Terminal::PolicyViolation));
        }
        let (tx, rx) = oneshot::channel();
        g.pending.insert(rid, (req, Some(tx)));
        loop {
            let expected = g.next_rid;
            let Some(next) = g.pending.remove(&expected) else {
                break;
            };
            g.next_rid += 1;
            self.process(&mut g, next);
            if g.terminal.is_some() {
                break;
            }
        }
        self.answer_overflow(&mut g);
        self.deliver(&mut g);
        Reply::Wait(rid, rx)
    }

    /// §14.3: a repeated `rid` gets its cached response, or takes over the held slot of the
    /// request it repeats; anything older is gone.
    fn repeated(&self, g: &mut Inner, rid: u64) -> Reply {
        if let Some((_, resp)) = g.cache.iter().find(|(r, _)| *r == rid) {
            info!(sid = %self.sid, rid, "BOSH response sent again");
            return Reply::Now(resp.clone());
        }
        let (tx, rx) = oneshot::channel();
        if let Some(h) = g.held.iter_mut().find(|h| h.rid == rid) {
            h.tx = tx;
            self.deliver(g);
            return Reply::Wait(rid, rx);
        }
        if let Some((_, slot)) = g.pending.get_mut(&rid) {
            *slot = Some(tx);
            return Reply::Wait(rid, rx);
        }
        info!(sid = %self.sid, rid, "BOSH rid repeated but no longer cached");
        Reply::Now(self.kill(g, Terminal::ItemNotFound))
    }

    fn process(&self, g: &mut Inner, (req, tx): (Request, Option<Responder>)) {
        if !req.events.is_empty() {
            let sent = g
                .to_link
                .as_ref()
                .map(|l| l.try_send((req.events, req.bytes)));
            if let Some(Err(_)) = sent {
                // The session does not keep up with what the client sends.
                let t = self.kill(g, Terminal::PolicyViolation);
                if let Some(tx) = tx {
                    let _ = tx.send(t);
                }
                return;
            }
        }
        let Some(tx) = tx else {
            // Already answered when its wait ran out; only its payload mattered.
            if req.kind == Kind::Terminate {
                let body = render(&[("type", "terminate".into())], b"");
                g.terminal = Some(body.clone());
                g.to_link = None;
                self.answer_all(g, &body);
            }
            return;
        };
        let held = Held {
            rid: req.rid,
            tx,
            creation: req.creation,
        };
        match req.kind {
            Kind::Normal => g.held.push_back(held),
            Kind::Terminate => {
                // §12: the stream ends (the Close event was sent above); answer at once.
                let body = render(&[("type", "terminate".into())], b"");
                g.terminal = Some(body.clone());
                g.to_link = None;
                g.held.push_back(held);
                self.answer_all(g, &body);
            }
            Kind::Pause(secs) => {
                if secs > self.params.maxpause {
                    let t = self.kill(g, Terminal::PolicyViolation);
                    let _ = held.tx.send(t);
                    return;
                }
                // §10: every held request is answered, and the session waits `secs`.
                g.held.push_back(held);
                while let Some(h) = g.held.pop_front() {
                    self.respond(g, h, Vec::new());
                }
                g.pause_until = Some(Instant::now() + Duration::from_secs(secs));
            }
        }
    }

    /// §9.3: never more than `hold` requests waiting; the oldest are answered first.
    fn answer_overflow(&self, g: &mut Inner) {
        while g.held.len() > self.params.hold {
            let Some(h) = g.held.pop_front() else { break };
            let data = if h.tx.is_closed() {
                Vec::new()
            } else {
                std::mem::take(&mut g.out)
            };
            self.respond(g, h, data);
        }
    }

    /// Sends pending output on the oldest held request whose client is still there.
    fn deliver(&self, g: &mut Inner) {
        if g.out.is_empty() || g.terminal.is_some() {
            return;
        }
        let Some(i) = g.held.iter().position(|h| !h.tx.is_closed()) else {
            return;
        };
        if let Some(h) = g.held.remove(i) {
            let data = std::mem::take(&mut g.out);
            self.respond(g, h, data);
        }
    }

    fn respond(&self, g: &mut Inner, h: Held, children: Vec<u8>) {
        let mut attrs: Vec<(&str, String)> = Vec::new();
        if h.creation {
            let p = &self.params;
            attrs.extend([
                ("sid", self.sid.clone()),
                ("wait", p.wait.as_secs().to_string()),
                ("hold", p.hold.to_string()),
                ("requests", p.requests.to_string()),
                ("inactivity", p.inactivity.as_secs().to_string()),
                ("polling", p.polling.as_secs().to_string()),
                ("ver", "1.11".into()),
                ("from", g.from.clone()),
                ("authid", g.stream_id.clone()),
                ("xmlns:xmpp", NS_XBOSH.into()),
                ("xmpp:version", "1.0".into()),
                ("xmpp:restartlogic", "true".into()),
            ]);
            if p.maxpause > 0 {
                attrs.push(("maxpause", p.maxpause.to_string()));
            }
        }
        let body = render(&attrs, &children);
        self.cache(g, h.rid, body.clone());
        g.last_activity = Instant::now();
        let _ = h.tx.send(body);
    }

    fn cache(&self, g: &mut Inner, rid: u64, body: Vec<u8>) {
        g.cache.push_back((rid, body));
        while g.cache.len() as u64 > self.params.requests {
            g.cache.pop_front();
        }
    }

    fn answer_all(&self, g: &mut Inner, body: &[u8]) {
        while let Some(h) = g.held.pop_front() {
            self.cache(g, h.rid, body.to_vec());
            let _ = h.tx.send(body.to_vec());
        }
        for (_, (_, tx)) in std::mem::take(&mut g.pending) {
            if let Some(tx) = tx {
                let _ = tx.send(body.to_vec());
            }
        }
    }

    /// Ends the session with a terminal condition; returns the body to send.
    fn kill(&self, g: &mut Inner, condition: Terminal) -> Vec<u8> {
        let body = terminal(condition);
        if g.terminal.is_none() {
            info!(sid = %self.sid, condition = condition.as_str(), "BOSH session terminated");
            g.terminal = Some(body.clone());
            g.to_link = None;
            self.answer_all(g, &body);
        }
        g.terminal.clone().unwrap_or(body)
    }

    /// A held request's `wait` ran out: it gets an empty body (or whatever is pending).
    pub(crate) fn expire(&self, rid: u64) {
        let mut g = self.lock();
        if let Some(i) = g.held.iter().position(|h| h.rid == rid) {
            if let Some(h) = g.held.remove(i) {
                let data = std::mem::take(&mut g.out);
                self.respond(&mut g, h, data);
            }
        } else if let Some((_, slot)) = g.pending.get_mut(&rid) {
            // Still waiting for an earlier rid: answer empty, keep the payload in line.
            if let Some(tx) = slot.take() {
                let _ = tx.send(render(&[], b""));
            }
        }
    }

    /// c2s side: output for the client.
    pub(crate) fn push(&self, out: &Outbox) -> std::io::Result<()> {
        let mut g = self.lock();
        if g.terminal.is_some() {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        for (bytes, kind) in out.frames() {
            if kind != FrameKind::Keepalive {
                g.out.extend_from_slice(bytes);
            }
        }
        if g.out.len() > self.params.max_pending {
            // The client stopped fetching; what was not delivered goes back through c2s.
            g.out.clear();
            self.kill(&mut g, Terminal::PolicyViolation);
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        self.deliver(&mut g);
        Ok(())
    }

    /// c2s side: the stream ends; XEP-0206 §2 puts a stream error into a
    /// `remote-stream-error` terminate body.
    pub(crate) fn end(&self, out: &Outbox) {
        let mut g = self.lock();
        if g.terminal.is_some() {
            return;
        }
        let mut children = std::mem::take(&mut g.out);
        let mut error = false;
        for (bytes, kind) in out.frames() {
            match kind {
                FrameKind::Keepalive => {}
                FrameKind::StreamError => {
                    error = true;
                    children.extend_from_slice(bytes);
                }
                FrameKind::Element => children.extend_from_slice(bytes),
            }
        }
        let mut attrs = vec![("type", "terminate".to_owned())];
        if error {
            attrs.push(("condition", "remote-stream-error".into()));
        }
        let body = render(&attrs, &children);
        g.terminal = Some(body.clone());
        g.to_link = None;
        self.answer_all(&mut g, &body);
    }

    /// The served host the session was created for.
    pub(crate) fn host(&self) -> String {
        self.lock().from.clone()
    }

    /// c2s side: our stream header; its id is the `authid` of the creation response.
    pub(crate) fn header(&self, id: &str, from: Option<&str>) {
        let mut g = self.lock();
        g.stream_id = id.to_owned();
        if let Some(f) = from {
            g.from = f.to_owned();
        }
    }

    /// c2s side went away without ending the stream (connection limit, lost session).
    pub(crate) fn abandon(&self) {
        let mut g = self.lock();
        self.kill(&mut g, Terminal::UndefinedCondition);
    }

    /// Whether the session should be dropped from the table now: it ended a while ago, or
    /// no request has been waiting for longer than `inactivity` (or its pause) allows.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        let mut g = self.lock();
        let idle = now.saturating_duration_since(g.last_activity);
        if g.terminal.is_some() {
            return idle > self.params.inactivity;
        }
        let live_pending = g
            .pending
            .values()
            .any(|(_, tx)| tx.as_ref().is_some_and(|t| !t.is_closed()));
        if g.held.iter().any(|h| !h.tx.is_closed()) || live_pending {
            return false;
        }
        let over = match g.pause_until {
            Some(t) => now > t,
            None => idle > self.params.inactivity,
        };
        if over {
            info!(sid = %self.sid, "BOSH session inactive; ending it");
            // The client is gone: no terminal body will be read, and c2s sees a lost
            // connection (a stream-management session stays resumable).
            g.terminal = Some(terminal(Terminal::ItemNotFound));
            g.to_link = None;
        }
        over
    }

    /// Ends the session for server shutdown, when c2s did not already.
    pub(crate) fn shutdown(&self) {
        let mut g = self.lock();
        self.kill(&mut g, Terminal::SystemShutdown);
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
