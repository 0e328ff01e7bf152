//! A test client on tokio-xmpp's `StanzaStream` with bounded waits.
//!
//! `StanzaStream` is tokio-xmpp's c2s core: its `ServerConnector`, SASL, resource binding,
//! XEP-0198 and reconnection logic. `tokio_xmpp::Client` adds an IQ tracker and a worker task
//! on top, but in 6.0.0 that worker can miss a wakeup (`StanzaReceiver::poll_next` returns
//! `Pending` without registering a waker when its `try_lock` loses against a concurrent send),
//! leaving a received stanza undelivered until the next unrelated event. The tests therefore
//! drive the unsplit `StanzaStream` and match IQ responses themselves; `tests/c2s.rs` still logs
//! in with `Client`.
//!
//! The stream is polled only while a test waits on it; stanzas that arrive while the test waits
//! for something else are kept in an inbox, so no expectation depends on arrival order unless it
//! says so. Every wait has a deadline and fails with everything seen meanwhile.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::{timeout_at, Instant};
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::roster::{Item, Roster};
use tokio_xmpp::parsers::stanza_error::StanzaError;
use tokio_xmpp::stanzastream::{Event, StanzaStage, StanzaState, StanzaStream, StreamEvent};
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{PrintRawXml, Stanza};

use crate::connector::{Mode, TernConnector};
use crate::server::TernServer;

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// Serializes a stanza for failure messages.
pub fn xml(st: &Stanza) -> String {
    PrintRawXml(st).to_string()
}

pub struct TestClient {
    /// Short name for failure messages, e.g. "bob/laptop".
    pub name: String,
    pub jid: FullJid,
    stream: StanzaStream,
    inbox: VecDeque<Stanza>,
    /// Stream events other than stanzas (e.g. an unexpected reconnect), for failure messages.
    events: Vec<String>,
    next_id: u64,
}

impl TestClient {
    /// Logs in as `user@localhost/resource` over STARTTLS and waits until the session is bound.
    pub async fn connect(server: &TernServer, user: &str, password: &str, resource: &str) -> Self {
        let conn = TernConnector::new(server.c2s, Mode::StartTls, &server.ca_file());
        Self::connect_with(conn, user, password, resource).await
    }

    /// Logs in with an explicit connector; panics if the session is not bound within [`WAIT`].
    pub async fn connect_with(
        conn: TernConnector,
        user: &str,
        password: &str,
        resource: &str,
    ) -> Self {
        crate::init_client_log();
        let jid: FullJid = format!("{user}@localhost/{resource}").parse().unwrap();
        let desc = format!("{conn:?}");
        let mut stream = StanzaStream::new_c2s(
            conn,
            jid.clone().into(),
            password.to_owned(),
            Timeouts::tight(),
            64,
        );
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        let bound = loop {
            match timeout_at(deadline, stream.next()).await {
                Ok(Some(Event::Stream(StreamEvent::Reset { bound_jid, .. }))) => break bound_jid,
                Ok(Some(other)) => seen.push(format!("{other:?}")),
                Ok(None) => panic!("{jid}: tokio-xmpp stream ended before binding; seen: {seen:?}"),
                // tokio-xmpp retries failed logins forever (logging them), so a refused login
                // shows up here as a timeout.
                Err(_) => panic!(
                    "{jid}: not bound within {WAIT:?} via {desc} (login refused or stream \
                     negotiation stuck; tokio-xmpp retries silently; TERN_CONFORMANCE_LOG=debug \
                     shows its attempts); events seen: {seen:?}"
                ),
            }
        };
        let bound = bound
            .try_into_full()
            .unwrap_or_else(|b| panic!("{jid}: bound JID {b} is not a full JID"));
        TestClient {
            name: format!("{user}/{resource}"),
            jid: bound,
            stream,
            inbox: VecDeque::new(),
            events: Vec::new(),
            next_id: 0,
        }
    }

    pub fn bare(&self) -> BareJid {
        self.jid.to_bare()
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("tc-{}", self.next_id)
    }

    /// Next event from the stream, stashing stanzas into the inbox; None on timeout.
    async fn pump(&mut self, deadline: Instant) -> Option<Stanza> {
        loop {
            match timeout_at(deadline, self.stream.next()).await {
                Err(_) => return None,
                Ok(Some(Event::Stanza(st))) => return Some(st),
                Ok(Some(Event::Stream(ev))) => self.events.push(format!("{ev:?}")),
                Ok(None) => panic!("{}: tokio-xmpp stream ended", self.name),
            }
        }
    }

    /// Sends a stanza (an id is added when missing) and waits until tokio-xmpp has written it
    /// to the stream, collecting whatever arrives meanwhile.
    pub async fn send(&mut self, st: impl Into<Stanza>) {
        let mut st = st.into();
        match &mut st {
            Stanza::Iq(iq) if iq.id().is_empty() => *iq.id_mut() = self.new_id(),
            Stanza::Message(m) if m.id.is_none() => {
                m.id = Some(tokio_xmpp::parsers::message::Id(self.new_id()))
            }
            Stanza::Presence(p) if p.id.is_none() => p.id = Some(self.new_id()),
            _ => {}
        }
        let text = xml(&st);
        let deadline = Instant::now() + WAIT;
        let mut token = match timeout_at(deadline, self.stream.send(Box::new(st))).await {
            Ok(t) => t,
            Err(_) => panic!("{}: transmit queue full for {WAIT:?}: {text}", self.name),
        };
        loop {
            tokio::select! {
                state = token.wait_for(StanzaStage::Sent) => match state {
                    Some(StanzaState::Sent { .. }) | Some(StanzaState::Acked { .. }) => return,
                    other => panic!("{}: sending failed ({other:?}): {text}", self.name),
                },
                st = self.stream.next() => match st {
                    Some(Event::Stanza(st)) => self.inbox.push_back(st),
                    Some(Event::Stream(ev)) => self.events.push(format!("{ev:?}")),
                    None => panic!("{}: stream ended while sending {text}", self.name),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    panic!("{}: not sent within {WAIT:?}: {text}", self.name)
                }
            }
        }
    }

    /// Sends available presence with this priority (initial presence the first time).
    pub async fn available(&mut self, priority: i8) {
        self.send(Presence::available().with_priority(priority))
            .await;
    }

    /// Sends a chat message with a body.
    pub async fn chat(&mut self, to: impl Into<Jid>, body: &str) {
        let msg = Message::chat(Some(to.into())).with_body(Lang::default(), body.to_owned());
        self.send(msg).await;
    }

    /// Next stanza (inbox first) matching `pred`, waiting up to `limit`; panics with `what` and
    /// every stanza seen otherwise.
    pub async fn expect_within<F>(&mut self, what: &str, limit: Duration, pred: F) -> Stanza
    where
        F: Fn(&Stanza) -> bool,
    {
        if let Some(i) = self.inbox.iter().position(&pred) {
            return self.inbox.remove(i).unwrap();
        }
        let deadline = Instant::now() + limit;
        loop {
            match self.pump(deadline).await {
                Some(st) if pred(&st) => return st,
                Some(st) => self.inbox.push_back(st),
                None => panic!(
                    "{}: did not receive {what} within {limit:?}.\nunmatched stanzas received:\n{}\nstream events: {:?}",
                    self.name,
                    self.dump(),
                    self.events
                ),
            }
        }
    }

    /// [`expect_within`](Self::expect_within) with the default [`WAIT`].
    pub async fn expect<F>(&mut self, what: &str, pred: F) -> Stanza
    where
        F: Fn(&Stanza) -> bool,
    {
        self.expect_within(what, WAIT, pred).await
    }

    /// Waits for a message matching `pred`.
    pub async fn expect_message<F>(&mut self, what: &str, pred: F) -> Message
    where
        F: Fn(&Message) -> bool,
    {
        match self
            .expect(what, |s| matches!(s, Stanza::Message(m) if pred(m)))
            .await
        {
            Stanza::Message(m) => m,
            _ => unreachable!(),
        }
    }

    /// Waits for a presence matching `pred`.
    pub async fn expect_presence<F>(&mut self, what: &str, pred: F) -> Presence
    where
        F: Fn(&Presence) -> bool,
    {
        match self
            .expect(what, |s| matches!(s, Stanza::Presence(p) if pred(p)))
            .await
        {
            Stanza::Presence(p) => p,
            _ => unreachable!(),
        }
    }

    /// Waits for a presence of `type_` from any resource of `from` (or from exactly `from` if
    /// it is a full JID).
    pub async fn expect_presence_from(&mut self, from: &Jid, type_: PresenceType) -> Presence {
        let what = format!("presence type={type_:?} from {from}");
        let from = from.clone();
        self.expect_presence(&what, move |p| {
            p.type_ == type_ && p.from.as_ref().is_some_and(|f| jid_matches(f, &from))
        })
        .await
    }

    /// Asserts that nothing matching `pred` arrives within `window` (or is already in the inbox).
    pub async fn expect_none<F>(&mut self, what: &str, window: Duration, pred: F)
    where
        F: Fn(&Stanza) -> bool,
    {
        if let Some(st) = self.inbox.iter().find(|s| pred(s)) {
            panic!("{}: unexpectedly received {what}: {}", self.name, xml(st));
        }
        let deadline = Instant::now() + window;
        while let Some(st) = self.pump(deadline).await {
            if pred(&st) {
                panic!("{}: unexpectedly received {what}: {}", self.name, xml(&st));
            }
            self.inbox.push_back(st);
        }
    }

    /// Sends an IQ get (without a 'to' when `to` is None, i.e. to our own account) and waits
    /// for its response. See [`iq`](Self::iq).
    pub async fn iq_get(
        &mut self,
        to: Option<Jid>,
        payload: Element,
    ) -> Result<Option<Element>, StanzaError> {
        let id = self.new_id();
        self.iq(Iq::Get {
            from: None,
            to,
            id,
            payload,
        })
        .await
    }

    /// Sends an IQ set and waits for its response. See [`iq`](Self::iq).
    pub async fn iq_set(
        &mut self,
        to: Option<Jid>,
        payload: Element,
    ) -> Result<Option<Element>, StanzaError> {
        let id = self.new_id();
        self.iq(Iq::Set {
            from: None,
            to,
            id,
            payload,
        })
        .await
    }

    /// Sends an IQ request and waits for the result or error with its id, still collecting
    /// everything else. Checks the response comes from where the request went (RFC 6120
    /// §8.1.2.1; no 'to' means our own bare JID, answered with no 'from' or that JID).
    pub async fn iq(&mut self, iq: Iq) -> Result<Option<Element>, StanzaError> {
        let id = iq.id().to_owned();
        let to = iq.to().cloned();
        let req = xml(&Stanza::Iq(iq.clone()));
        self.send(iq).await;
        let is_response = |st: &Stanza| matches!(st, Stanza::Iq(Iq::Result { id: i, .. } | Iq::Error { id: i, .. }) if *i == id);
        let st = self
            .expect(&format!("response to {req}"), is_response)
            .await;
        let Stanza::Iq(resp) = st else { unreachable!() };
        let from = resp.from().cloned();
        let own = Jid::from(self.bare());
        let from_ok = match &to {
            Some(t) => from.as_ref() == Some(t) || (*t == own && from.is_none()),
            None => from.is_none() || from.as_ref() == Some(&own),
        };
        assert!(
            from_ok,
            "{}: response from {from:?} to a request sent to {to:?}: {}",
            self.name,
            xml(&Stanza::Iq(resp.clone()))
        );
        match resp {
            Iq::Result { payload, .. } => Ok(payload),
            Iq::Error { error, .. } => Err(error),
            _ => unreachable!(),
        }
    }

    /// `jabber:iq:roster` get (RFC 6121 §2.1.3).
    pub async fn roster(&mut self) -> Roster {
        let query = Element::builder("query", "jabber:iq:roster").build();
        match self.iq_get(None, query).await {
            Ok(Some(el)) => Roster::try_from(el.clone())
                .unwrap_or_else(|e| panic!("{}: bad roster result {e}: {el:?}", self.name)),
            Ok(None) => panic!("{}: roster result without a query", self.name),
            Err(e) => panic!("{}: roster get failed: {e:?}", self.name),
        }
    }

    /// A round trip through the server (disco#info get to the domain; any answer will do):
    /// everything this client sent before has been processed once it returns.
    pub async fn sync(&mut self) {
        let q = Element::builder("query", "http://jabber.org/protocol/disco#info").build();
        let _ = self.iq_get(Some(Jid::new("localhost").unwrap()), q).await;
    }

    /// Waits for a roster push (RFC 6121 §2.1.6) carrying exactly one item, for `contact`, that
    /// satisfies `pred`; checks the push comes from our own account and acknowledges it.
    pub async fn expect_roster_push<F>(&mut self, what: &str, contact: &BareJid, pred: F) -> Item
    where
        F: Fn(&Item) -> bool,
    {
        let own = self.bare();
        let st = self
            .expect(&format!("roster push: {what}"), |st| {
                roster_push(st).is_some_and(|(_, r)| {
                    r.items.len() == 1 && r.items[0].jid == *contact && pred(&r.items[0])
                })
            })
            .await;
        let Stanza::Iq(Iq::Set {
            from, id, payload, ..
        }) = &st
        else {
            unreachable!()
        };
        if let Some(f) = from {
            assert_eq!(
                f.to_bare(),
                own,
                "{}: roster push from a foreign JID: {}",
                self.name,
                xml(&st)
            );
            assert!(
                f.try_as_full().is_err(),
                "{}: roster push from a full JID: {}",
                self.name,
                xml(&st)
            );
        }
        let item = Roster::try_from(payload.clone()).unwrap().items.remove(0);
        self.send(Iq::Result {
            from: None,
            to: from.clone(),
            id: id.clone(),
            payload: None,
        })
        .await;
        item
    }

    /// The roster item for `contact`, if any, from a fresh roster get.
    pub async fn roster_item(&mut self, contact: &BareJid) -> Option<Item> {
        self.roster()
            .await
            .items
            .into_iter()
            .find(|i| i.jid == *contact)
    }

    /// Stanzas received and not yet consumed by an expectation.
    pub fn pending(&self) -> &VecDeque<Stanza> {
        &self.inbox
    }

    fn dump(&self) -> String {
        let mut out = String::new();
        for st in &self.inbox {
            let _ = writeln!(out, "  {}", xml(st));
        }
        if out.is_empty() {
            out.push_str("  (none)");
        }
        out
    }

    /// Closes the stream cleanly (`</stream:stream>`, no unavailable presence first) and waits
    /// for tokio-xmpp to finish.
    pub async fn disconnect(self) {
        let name = self.name.clone();
        tokio::time::timeout(WAIT, self.stream.close())
            .await
            .unwrap_or_else(|_| panic!("{name}: closing the stream timed out"));
    }
}

/// `actual` is `expected`, or a resource of it when `expected` is bare.
pub fn jid_matches(actual: &Jid, expected: &Jid) -> bool {
    match expected.try_as_full() {
        Ok(_) => actual == expected,
        Err(bare) => actual.to_bare() == *bare,
    }
}

/// A chat or normal message carrying this body.
pub fn has_body(m: &Message, body: &str) -> bool {
    matches!(m.type_, MessageType::Chat | MessageType::Normal)
        && m.bodies.values().any(|b| b == body)
}

/// An IQ `set` carrying a `jabber:iq:roster` query (a roster push, RFC 6121 §2.1.6).
pub fn roster_push(st: &Stanza) -> Option<(String, Roster)> {
    match st {
        Stanza::Iq(Iq::Set { id, payload, .. }) if payload.is("query", "jabber:iq:roster") => {
            Roster::try_from(payload.clone())
                .ok()
                .map(|r| (id.clone(), r))
        }
        _ => None,
    }
}
