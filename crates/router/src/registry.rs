//! The session registry: who is connected, under which full JID, and how to reach them.
//!
//! Sessions never call each other (DESIGN.md §3); each owns a bounded queue and is reached
//! only through this registry. The [`SessionRegistry`] trait is what a cluster replaces: the
//! single-node [`LocalRegistry`] keeps everything in one in-memory map.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use tokio::sync::mpsc;
use tracing::debug;

use tern_stream::StreamError;

/// What a session's task receives from the rest of the server.
#[derive(Debug)]
pub enum Outbound {
    /// A stanza to write to the client. Boxed, like `Close`, so that the item is as small as
    /// the `Vec` of `Shared`: tokio's queue allocates its first block of 32 items when the
    /// session binds, and idle sessions pay for it (docs/benchmarks.md, change 3).
    Stanza(Box<Element>),
    /// Stanzas serialized once for many sessions (MUC fan-out, DESIGN.md §6), written in
    /// order; one queue slot for the lot, so a room's join burst fits any queue.
    Shared(Vec<Arc<SharedStanza>>),
    /// Close the stream with this error (e.g. `<conflict/>` when a newer session took the resource).
    Close(Box<StreamError>),
}

impl Outbound {
    /// The stanzas of this item as the session with full JID `jid` would write them (shared
    /// ones with `jid` as their `to`); a close carries none.
    pub fn into_elements(self, jid: &str) -> Vec<Element> {
        match self {
            Outbound::Stanza(el) => vec![*el],
            Outbound::Shared(items) => items.iter().map(|s| s.to_element(jid)).collect(),
            Outbound::Close(_) => Vec::new(),
        }
    }
}

/// A stanza serialized once and shared by every session it goes to. It carries no `to`: each
/// session writes its own full JID into the bytes, so the recipients of a room message share
/// one allocation and one serialization.
#[derive(Debug)]
pub struct SharedStanza {
    el: Element,
    /// The serialization after `<name`: attributes, children, end tag.
    tail: Vec<u8>,
}

impl SharedStanza {
    /// Serializes `el` (any `to` is dropped) for a `jabber:client` stream.
    pub fn new(mut el: Element) -> SharedStanza {
        crate::xml::set_attr(&mut el, "to", None);
        let bytes = tern_stream::to_bytes(&el, tern_stream::NS_CLIENT);
        let tail = bytes[1 + el.name().len()..].to_vec();
        SharedStanza { el, tail }
    }

    /// The stanza, without `to`.
    pub fn element(&self) -> &Element {
        &self.el
    }

    /// Writes the stanza addressed to `to`, byte for byte what `write_element` would write
    /// for the element with that `to` added first.
    pub fn write_to(&self, to: &str, out: &mut Vec<u8>) {
        out.push(b'<');
        out.extend_from_slice(self.el.name().as_bytes());
        tern_stream::write_attr("to", to, out);
        out.extend_from_slice(&self.tail);
    }

    /// A copy of the stanza addressed to `to` (for redelivery, or a recipient that is not a
    /// local session).
    pub fn to_element(&self, to: &str) -> Element {
        let mut el = self.el.clone();
        crate::xml::set_attr(&mut el, "to", Some(to));
        el
    }

    /// Serialized size in bytes, without the `to` attribute.
    pub fn len(&self) -> usize {
        1 + self.el.name().len() + self.tail.len()
    }

    /// Never true: a stanza has at least a name.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Presence-related state of a session, kept by the presence and roster modules.
#[derive(Debug, Default, Clone)]
pub struct PresenceState {
    /// The last available presence broadcast by the session (None: unavailable / none sent yet).
    pub presence: Option<Element>,
    /// Priority from that presence (RFC 6121 §4.7.2.3); meaningful only when available.
    pub priority: i8,
    /// The session requested the roster, so it is an "interested resource" (RFC 6121 §2.1.6).
    pub roster_requested: bool,
    /// Entities the session sent directed presence to (RFC 6121 §4.6), to notify on unavailable.
    pub directed: HashSet<Jid>,
    /// Per-session switches modules set for themselves (e.g. "carbons" for XEP-0280), named by
    /// the module that owns them.
    pub flags: HashSet<&'static str>,
}

impl PresenceState {
    /// An available resource: it sent initial presence and has not gone unavailable.
    pub fn available(&self) -> bool {
        self.presence.is_some()
    }
}

/// Session flag set by c2s while a XEP-0198 session has lost its connection and waits to be
/// resumed ("hibernating"): stanzas queue up for it, but no client reads them yet (XEP-0357
/// push notifications are sent for such sessions).
pub const FLAG_DETACHED: &str = "sm.detached";

/// Shared, cheap-to-clone handle to one bound session.
#[derive(Debug, Clone)]
pub struct SessionHandle(Arc<SessionInner>);

#[derive(Debug)]
struct SessionInner {
    id: u64,
    jid: FullJid,
    tx: mpsc::Sender<Outbound>,
    state: Mutex<PresenceState>,
}

/// Why a delivery to a session failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The session has ended.
    Gone,
    /// Its queue is full: the client is not reading fast enough.
    Full,
}

static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

impl SessionHandle {
    /// A handle for a newly bound session, with a process-unique id.
    pub fn new(jid: FullJid, tx: mpsc::Sender<Outbound>) -> Self {
        let id = NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed);
        SessionHandle(Arc::new(SessionInner {
            id,
            jid,
            tx,
            state: Mutex::new(PresenceState::default()),
        }))
    }

    /// Process-unique session id.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The bound full JID.
    pub fn jid(&self) -> &FullJid {
        &self.0.jid
    }

    /// Queues a stanza for the client without waiting.
    pub fn send(&self, el: Element) -> Result<(), SendError> {
        self.send_raw(Outbound::Stanza(Box::new(el)))
    }

    /// Queues a stanza; while the queue is full, waits up to `wait` for the client to catch
    /// up, which holds back whoever is sending (back-pressure instead of a failed delivery).
    pub async fn send_wait(&self, el: Element, wait: Duration) -> Result<(), SendError> {
        use mpsc::error::{SendTimeoutError, TrySendError};
        match self.0.tx.try_send(Outbound::Stanza(Box::new(el))) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(_)) => Err(SendError::Gone),
            Err(TrySendError::Full(item)) => {
                debug!(to = %self.0.jid, "session queue full: the sender waits");
                self.0
                    .tx
                    .send_timeout(item, wait)
                    .await
                    .map_err(|e| match e {
                        SendTimeoutError::Timeout(_) => SendError::Full,
                        SendTimeoutError::Closed(_) => SendError::Gone,
                    })
            }
        }
    }

    /// Queues shared stanzas, in order, as one queue item without waiting.
    pub fn send_shared(&self, items: Vec<Arc<SharedStanza>>) -> Result<(), SendError> {
        self.send_raw(Outbound::Shared(items))
    }

    /// Queues any outbound item without waiting.
    pub fn send_raw(&self, item: Outbound) -> Result<(), SendError> {
        self.0.tx.try_send(item).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::Gone,
        })
    }

    /// Free slots in the session's queue right now.
    pub fn queue_free(&self) -> usize {
        self.0.tx.capacity()
    }

    /// Length of the session's queue.
    pub fn queue_capacity(&self) -> usize {
        self.0.tx.max_capacity()
    }

    /// A snapshot of the presence state.
    pub fn presence(&self) -> PresenceState {
        self.lock().clone()
    }

    /// Whether the session is an available resource, without copying the presence state
    /// (broadcasts ask this once per recipient).
    pub fn is_available(&self) -> bool {
        self.lock().available()
    }

    /// Changes the presence state; the closure runs under a short, never-awaited lock.
    pub fn update_presence<R>(&self, f: impl FnOnce(&mut PresenceState) -> R) -> R {
        f(&mut self.lock())
    }

    /// Whether a module's per-session switch is on.
    pub fn flag(&self, name: &'static str) -> bool {
        self.lock().flags.contains(name)
    }

    /// Turns a module's per-session switch on or off.
    pub fn set_flag(&self, name: &'static str, on: bool) {
        let mut s = self.lock();
        if on {
            s.flags.insert(name);
        } else {
            s.flags.remove(name);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PresenceState> {
        // A panic while holding this lock cannot leave the state half-written in a way that
        // matters more than losing the session, so recover the data instead of propagating.
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The registry interface a cluster-wide implementation replaces.
pub trait SessionRegistry: Send + Sync + 'static {
    /// Adds a session unless its full JID is taken; returns the existing session if it is.
    fn try_insert(&self, session: SessionHandle) -> Result<(), SessionHandle>;
    /// Adds a session, replacing any holder of the full JID, which is returned.
    fn replace(&self, session: SessionHandle) -> Option<SessionHandle>;
    /// Removes the session if it is still the one registered under its JID.
    fn remove(&self, session: &SessionHandle) -> bool;
    /// The session bound to a full JID.
    fn get(&self, jid: &FullJid) -> Option<SessionHandle>;
    /// All sessions of an account.
    fn resources(&self, bare: &BareJid) -> Vec<SessionHandle>;
    /// Number of bound sessions.
    fn count(&self) -> usize;
}

/// Single-node registry: a map from bare JID to that account's sessions.
#[derive(Default)]
pub struct LocalRegistry {
    map: RwLock<HashMap<BareJid, Vec<SessionHandle>>>,
}

impl LocalRegistry {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<BareJid, Vec<SessionHandle>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<BareJid, Vec<SessionHandle>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl SessionRegistry for LocalRegistry {
    fn try_insert(&self, session: SessionHandle) -> Result<(), SessionHandle> {
        let mut map = self.write();
        let list = map.entry(session.jid().to_bare()).or_default();
        if let Some(existing) = list.iter().find(|s| s.jid() == session.jid()) {
            return Err(existing.clone());
        }
        list.push(session);
        Ok(())
    }

    fn replace(&self, session: SessionHandle) -> Option<SessionHandle> {
        let mut map = self.write();
        let list = map.entry(session.jid().to_bare()).or_default();
        let old = list
            .iter()
            .position(|s| s.jid() == session.jid())
            .map(|i| list.remove(i));
        list.push(session);
        old
    }

    fn remove(&self, session: &SessionHandle) -> bool {
        let mut map = self.write();
        let bare = session.jid().to_bare();
        let Some(list) = map.get_mut(&bare) else {
            return false;
        };
        let before = list.len();
        list.retain(|s| s.id() != session.id());
        let removed = list.len() != before;
        if list.is_empty() {
            map.remove(&bare);
        }
        removed
    }

    fn get(&self, jid: &FullJid) -> Option<SessionHandle> {
        self.read()
            .get(&jid.to_bare())?
            .iter()
            .find(|s| s.jid() == jid)
            .cloned()
    }

    fn resources(&self, bare: &BareJid) -> Vec<SessionHandle> {
        self.read().get(bare).cloned().unwrap_or_default()
    }

    fn count(&self) -> usize {
        self.read().values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(j: &str) -> (SessionHandle, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(4);
        (SessionHandle::new(FullJid::new(j).unwrap(), tx), rx)
    }

    #[test]
    fn queue_items_stay_small() {
        // Every bound session's queue allocates 32 items up front (tokio's first block).
        assert!(std::mem::size_of::<Outbound>() <= 24);
    }

    #[test]
    fn insert_conflict_replace_remove() {
        let reg = LocalRegistry::default();
        let (a, _ra) = handle("u@h/r");
        let (b, _rb) = handle("u@h/r");
        let (c, _rc) = handle("u@h/other");
        assert!(reg.try_insert(a.clone()).is_ok());
        assert_eq!(reg.try_insert(b.clone()).unwrap_err().id(), a.id());
        assert!(reg.try_insert(c).is_ok());
        assert_eq!(reg.count(), 2);
        assert_eq!(reg.replace(b.clone()).unwrap().id(), a.id());
        // The replaced session's late removal must not evict its successor.
        assert!(!reg.remove(&a));
        assert_eq!(
            reg.get(&FullJid::new("u@h/r").unwrap()).unwrap().id(),
            b.id()
        );
        assert_eq!(reg.resources(&BareJid::new("u@h").unwrap()).len(), 2);
        assert!(reg.remove(&b));
        assert_eq!(reg.count(), 1);
    }

    #[test]
    fn shared_stanza_writes_the_element_with_its_to() {
        let el: Element = "<message xmlns='jabber:client' to='x@y' from='r@muc/n&apos;1' type='groupchat'><body>a &amp; b</body></message>"
            .parse()
            .unwrap();
        let s = SharedStanza::new(el.clone());
        assert!(s.element().attr("to").is_none());
        let to = "u@h/r'&";
        let mut out = Vec::new();
        s.write_to(to, &mut out);
        // What goes on the wire parses back to the original with the new `to`.
        let text = String::from_utf8(out.clone()).unwrap();
        let wrapped = format!("<w xmlns='jabber:client'>{text}</w>");
        let back: Element = wrapped.parse().unwrap();
        let back = back.children().next().unwrap().clone();
        let mut expected = el.clone();
        crate::xml::set_attr(&mut expected, "to", Some(to));
        assert_eq!(back, expected);
        assert_eq!(s.to_element(to), expected);
        assert_eq!(s.len() + " to='u@h/r&apos;&amp;'".len(), out.len());
    }

    #[test]
    fn full_queue_is_reported() {
        let (a, _rx) = handle("u@h/r");
        for _ in 0..4 {
            a.send(Element::bare("message", "jabber:client")).unwrap();
        }
        assert_eq!(
            a.send(Element::bare("message", "jabber:client")),
            Err(SendError::Full)
        );
    }
}
