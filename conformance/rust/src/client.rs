//! `tokio_xmpp::Client` with bounded waits.
//!
//! The client is polled only while a test waits on it; stanzas that arrive while the test waits
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
use tokio_xmpp::parsers::roster::Roster;
use tokio_xmpp::parsers::stanza_error::StanzaError;
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Client, Event, IqRequest, IqResponse, PrintRawXml, Stanza};

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
    client: Client,
    inbox: VecDeque<Stanza>,
}

impl TestClient {
    /// Logs in as `user@localhost/resource` over STARTTLS and waits until the session is bound.
    pub async fn connect(server: &TernServer, user: &str, password: &str, resource: &str) -> Self {
        let conn = TernConnector::new(server.c2s, Mode::StartTls, &server.ca_file());
        Self::connect_with(conn, user, password, resource).await
    }

    /// Logs in with an explicit connector; panics if the session is not online within [`WAIT`].
    pub async fn connect_with(
        conn: TernConnector,
        user: &str,
        password: &str,
        resource: &str,
    ) -> Self {
        let jid: FullJid = format!("{user}@localhost/{resource}").parse().unwrap();
        let desc = format!("{conn:?}");
        let mut client =
            Client::new_with_connector(jid.clone(), password, conn, Timeouts::tight());
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        let bound = loop {
            match timeout_at(deadline, client.next()).await {
                Ok(Some(Event::Online { bound_jid, .. })) => break bound_jid,
                Ok(Some(other)) => seen.push(format!("{other:?}")),
                Ok(None) => panic!("{jid}: tokio-xmpp client ended before going online; seen: {seen:?}"),
                // tokio-xmpp retries failed logins forever (logging them), so a refused login
                // shows up here as a timeout.
                Err(_) => panic!(
                    "{jid}: not online within {WAIT:?} via {desc} (login refused or stream \
                     negotiation stuck; tokio-xmpp retries silently); events seen: {seen:?}"
                ),
            }
        };
        let bound = bound
            .try_into_full()
            .unwrap_or_else(|b| panic!("{jid}: bound JID {b} is not a full JID"));
        TestClient {
            name: format!("{user}/{resource}"),
            jid: bound,
            client,
            inbox: VecDeque::new(),
        }
    }

    pub fn bare(&self) -> BareJid {
        self.jid.to_bare()
    }

    /// Sends a stanza and waits until tokio-xmpp has written it.
    pub async fn send(&mut self, st: impl Into<Stanza>) {
        let st = st.into();
        let text = xml(&st);
        tokio::time::timeout(WAIT, self.client.send_stanza(st))
            .await
            .unwrap_or_else(|_| panic!("{}: sending timed out: {text}", self.name))
            .unwrap_or_else(|e| panic!("{}: sending failed ({e}): {text}", self.name));
    }

    /// Sends available presence with this priority (initial presence the first time).
    pub async fn available(&mut self, priority: i8) {
        self.send(Presence::available().with_priority(priority)).await;
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
        let mut events = Vec::new();
        loop {
            match timeout_at(deadline, self.client.next()).await {
                Ok(Some(Event::Stanza(st))) => {
                    if pred(&st) {
                        return st;
                    }
                    self.inbox.push_back(st);
                }
                Ok(Some(other)) => events.push(format!("{other:?}")),
                Ok(None) => panic!("{}: client stream ended while waiting for {what}", self.name),
                Err(_) => panic!(
                    "{}: no {what} within {limit:?}.\nunmatched stanzas received:\n{}\nother events: {events:?}",
                    self.name,
                    self.dump()
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
        while let Ok(ev) = timeout_at(deadline, self.client.next()).await {
            match ev {
                Some(Event::Stanza(st)) => {
                    if pred(&st) {
                        panic!("{}: unexpectedly received {what}: {}", self.name, xml(&st));
                    }
                    self.inbox.push_back(st);
                }
                Some(_) => {}
                None => panic!("{}: client stream ended while checking for {what}", self.name),
            }
        }
    }

    /// Sends an IQ request (to our own account when `to` is None) and waits for its response,
    /// still collecting everything else that arrives meanwhile.
    pub async fn iq(
        &mut self,
        to: Option<Jid>,
        req: IqRequest,
    ) -> Result<Option<Element>, StanzaError> {
        let what = format!("{req:?} to {to:?}");
        let mut token = self.client.send_iq(to, req).await;
        let deadline = Instant::now() + WAIT;
        loop {
            tokio::select! {
                resp = &mut token => {
                    return match resp {
                        Ok(IqResponse::Result(el)) => Ok(el),
                        Ok(IqResponse::Error(e)) => Err(e),
                        Err(e) => panic!("{}: IQ failed locally ({e}): {what}", self.name),
                    };
                }
                ev = self.client.next() => match ev {
                    Some(Event::Stanza(st)) => self.inbox.push_back(st),
                    Some(_) => {}
                    None => panic!("{}: client stream ended while waiting for the response to {what}", self.name),
                },
                _ = tokio::time::sleep_until(deadline) => panic!(
                    "{}: no response within {WAIT:?} to {what}; other stanzas received:\n{}",
                    self.name,
                    self.dump()
                ),
            }
        }
    }

    /// `jabber:iq:roster` get (RFC 6121 §2.1.3).
    pub async fn roster(&mut self) -> Roster {
        let query = Element::builder("query", "jabber:iq:roster").build();
        match self.iq(None, IqRequest::Get(query)).await {
            Ok(Some(el)) => Roster::try_from(el.clone())
                .unwrap_or_else(|e| panic!("{}: bad roster result {e}: {el:?}", self.name)),
            Ok(None) => panic!("{}: roster result without a query", self.name),
            Err(e) => panic!("{}: roster get failed: {e:?}", self.name),
        }
    }

    /// Stanzas received and not yet consumed by an expectation.
    pub fn pending(&self) -> &VecDeque<Stanza> {
        &self.inbox
    }

    /// Drops every stanza received so far that matches `pred`.
    pub fn discard(&mut self, pred: impl Fn(&Stanza) -> bool) {
        self.inbox.retain(|s| !pred(s));
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

    /// Closes the stream cleanly (`</stream:stream>`) and waits for tokio-xmpp to finish.
    pub async fn disconnect(self) {
        let name = self.name.clone();
        tokio::time::timeout(WAIT, self.client.send_end())
            .await
            .unwrap_or_else(|_| panic!("{name}: closing the stream timed out"))
            .unwrap_or_else(|e| panic!("{name}: closing the stream failed: {e}"));
    }

    /// Hands out the tokio-xmpp client itself.
    pub fn into_inner(self) -> Client {
        self.client
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
            Roster::try_from(payload.clone()).ok().map(|r| (id.clone(), r))
        }
        _ => None,
    }
}
