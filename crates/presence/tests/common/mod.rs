//! A real router with the roster and presence modules, sessions driven the way the c2s layer
//! drives them, and helpers to read what each session received.
#![allow(dead_code)] // each test file uses its own subset

use std::sync::Arc;

use minidom::Element;
use tokio::sync::mpsc;

use tern_presence::PresenceModule;
use tern_roster::{RosterItem, RosterModule, RosterStore, Subscription};
use tern_router::{
    BareJid, FullJid, Jid, Kind, LocalRegistry, Origin, Outbound, Router, SessionEvent,
    SessionHandle, Stanza,
};
use tern_storage::{AccountRecord, ScramCredentials, Storage};

pub const HOST: &str = "example.com";
pub const R: &str = "jabber:iq:roster";
pub const C: &str = "jabber:client";

/// A server with the given accounts on example.com.
pub async fn server(users: &[&str]) -> Arc<Router> {
    let storage = Storage::memory();
    let creds = ScramCredentials {
        salt: vec![0; 16],
        iterations: 4096,
        stored_key: vec![0; 20],
        server_key: vec![0; 20],
    };
    let record = AccountRecord {
        scram_sha1: creds.clone(),
        scram_sha256: creds,
        created: 0,
    };
    for u in users {
        storage.accounts.create(HOST, u, &record).await.unwrap();
    }
    Router::builder(storage, Arc::new(LocalRegistry::default()))
        .host(HOST)
        .module(Arc::new(RosterModule::default()))
        .module(Arc::new(PresenceModule))
        .build()
}

/// One bound session and the queue the client would read.
pub struct Client {
    pub router: Arc<Router>,
    pub handle: SessionHandle,
    rx: mpsc::Receiver<Outbound>,
}

/// Binds `user@example.com/res`.
pub async fn login(router: &Arc<Router>, user: &str, res: &str) -> Client {
    let (tx, rx) = mpsc::channel(256);
    let jid = FullJid::new(&format!("{user}@{HOST}/{res}")).unwrap();
    let handle = SessionHandle::new(jid, tx);
    router.sessions().try_insert(handle.clone()).unwrap();
    router.session_event(SessionEvent::Bound, &handle).await;
    Client {
        router: router.clone(),
        handle,
        rx,
    }
}

/// Parses a stanza written without the client namespace.
pub fn parse(xml: &str) -> Element {
    let end = xml[1..].find([' ', '>', '/']).unwrap() + 1;
    let with_ns = format!("{} xmlns='{C}'{}", &xml[..end], &xml[end..]);
    with_ns.parse().unwrap()
}

impl Client {
    /// The bound full JID.
    pub fn jid(&self) -> &FullJid {
        self.handle.jid()
    }

    /// Sends a stanza as the c2s layer would: `from` stamped; messages and IQs without `to`
    /// addressed to the account; presence without `to` left as a broadcast.
    pub async fn send(&self, xml: &str) {
        let el = parse(xml);
        let kind = Kind::of(&el).unwrap();
        let to = match el.attr("to") {
            Some(t) => Some(Jid::new(t).unwrap()),
            None if kind == Kind::Presence => None,
            None => Some(Jid::from(self.jid().to_bare())),
        };
        let from = Jid::from(self.jid().clone());
        let st = Stanza::new(kind, from, to, el);
        self.router
            .route(Origin::Client(self.handle.clone()), st)
            .await;
    }

    /// Everything queued for the client so far.
    pub fn drain(&mut self) -> Vec<Element> {
        let mut out = Vec::new();
        while let Ok(item) = self.rx.try_recv() {
            out.extend(item.into_elements(self.handle.jid().as_str()));
        }
        out
    }

    /// Sends an IQ and returns its answer (other stanzas received meanwhile are kept out).
    pub async fn iq(&mut self, xml: &str) -> (Element, Vec<Element>) {
        let id = parse(xml).attr("id").unwrap().to_owned();
        self.send(xml).await;
        let mut got = self.drain();
        let i = got
            .iter()
            .position(|e| {
                e.name() == "iq"
                    && e.attr("id") == Some(id.as_str())
                    && matches!(e.attr("type"), Some("result" | "error"))
            })
            .unwrap_or_else(|| panic!("no answer to {id}: {got:?}"));
        let answer = got.remove(i);
        (answer, got)
    }

    /// Requests the roster (making the session interested) and returns the items' elements.
    pub async fn roster(&mut self) -> Vec<Element> {
        let (r, _) = self
            .iq("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
            .await;
        let q = r.get_child("query", R).expect("full roster");
        q.children().cloned().collect()
    }

    /// Initial (or any broadcast) presence; returns what the session received meanwhile.
    pub async fn available(&mut self) -> Vec<Element> {
        self.send("<presence/>").await;
        self.drain()
    }

    /// Ends the session as the c2s layer does: out of the registry, then `Closed`.
    pub async fn close(&self) {
        self.router.sessions().remove(&self.handle);
        self.router
            .session_event(SessionEvent::Closed, &self.handle)
            .await;
    }
}

/// The roster items carried by pushes among `els`.
pub fn pushes(els: &[Element]) -> Vec<Element> {
    els.iter()
        .filter(|e| e.name() == "iq" && e.attr("type") == Some("set"))
        .filter_map(|e| e.get_child("query", R)?.get_child("item", R).cloned())
        .collect()
}

/// The presence stanzas among `els` of a type (`None`: available) from a JID.
pub fn presences<'a>(els: &'a [Element], type_: Option<&str>, from: &str) -> Vec<&'a Element> {
    els.iter()
        .filter(|e| {
            e.name() == "presence" && e.attr("type") == type_ && e.attr("from") == Some(from)
        })
        .collect()
}

/// Subscription, pending out and pending in of `owner`'s item for `contact`, as stored.
pub async fn state(
    router: &Router,
    owner: &str,
    contact: &str,
) -> Option<(Subscription, bool, bool)> {
    stored(router, owner, contact)
        .await
        .map(|i| (i.subscription, i.ask, i.pending_in))
}

/// `owner`'s stored item for `contact`.
pub async fn stored(router: &Router, owner: &str, contact: &str) -> Option<RosterItem> {
    let store = RosterStore::new(router.storage().map.as_ref(), HOST, owner);
    store.get(&format!("{contact}@{HOST}")).await.unwrap()
}

/// `user@example.com` as a bare JID string.
pub fn bare(user: &str) -> String {
    BareJid::new(&format!("{user}@{HOST}")).unwrap().to_string()
}
