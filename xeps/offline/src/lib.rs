//! XEP-0160: Best Practices for Handling Offline Messages, with XEP-0203 delay stamps.
//!
//! A chat or normal message to an account with no resource that can take it (the router's
//! `Undeliverable` event, RFC 6121 §8.5.2.2.1) is appended to the account's "offline" archive
//! with a `<delay/>` stamp; when a resource next becomes available with a non-negative
//! priority, the stored messages are delivered to it in order and then deleted.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use minidom::Element;
use tern_router::Spec;
use tracing::{debug, info, warn};

use tern_router::time::{format_micros, now_micros};
use tern_router::xml::BuilderExt;
use tern_router::BareJid;
use tern_router::{
    Condition, Ctx, Event, Flow, Hooks, Kind, Module, Router, SessionEvent, SessionHandle, Stanza,
    StanzaError,
};
use tern_storage::{ArchiveItem, ArchiveQuery};

/// Archive store name.
const STORE: &str = "offline";
/// XEP-0203 namespace.
pub const NS_DELAY: &str = "urn:xmpp:delay";
/// Messages read from storage per round of a flush.
const FLUSH_BATCH: usize = 100;
/// XEP-0334 hints namespace.
const NS_HINTS: &str = "urn:xmpp:hints";
/// XEP-0085 chat states namespace.
const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";

/// Offline storage settings.
#[derive(Debug, Clone)]
pub struct OfflineConfig {
    /// Most messages kept for one account; further ones are refused with `resource-constraint`.
    pub max_per_user: u64,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig { max_per_user: 1000 }
    }
}

/// Most accounts remembered as having nothing stored (beyond it, the set starts over).
const MAX_KNOWN_EMPTY: usize = 100_000;

/// The offline storage module.
#[derive(Default)]
pub struct OfflineModule {
    config: OfflineConfig,
    empty: KnownEmpty,
}

impl OfflineModule {
    /// A module with these settings.
    pub fn new(config: OfflineConfig) -> Self {
        OfflineModule {
            config,
            empty: KnownEmpty::default(),
        }
    }
}

/// Accounts whose offline store is known to be empty: most logins find nothing stored, and
/// then cost no archive query. Only this module appends to the store, and it takes the
/// account out of the set after every append; a flush that found the store empty puts it
/// back only if no append happened since the flush began (the generation check), so a
/// message stored concurrently is never hidden.
#[derive(Default)]
struct KnownEmpty {
    inner: Mutex<KnownEmptyInner>,
}

#[derive(Default)]
struct KnownEmptyInner {
    accounts: HashSet<BareJid>,
    /// Bumped by every append.
    generation: u64,
}

impl KnownEmpty {
    fn lock(&self) -> MutexGuard<'_, KnownEmptyInner> {
        // A hint only: a poisoned set loses nothing the store does not have.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the account has nothing stored; otherwise the current generation, to hand
    /// to [`KnownEmpty::mark`] after reading the store.
    fn check(&self, bare: &BareJid) -> Result<(), u64> {
        let inner = self.lock();
        if inner.accounts.contains(bare) {
            Ok(())
        } else {
            Err(inner.generation)
        }
    }

    /// Records that the store held nothing for the account when read in `generation`.
    fn mark(&self, bare: &BareJid, generation: u64) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.accounts.len() >= MAX_KNOWN_EMPTY {
            inner.accounts.clear();
        }
        inner.accounts.insert(bare.clone());
    }

    /// Forgets the account: something was (or is being) stored for it.
    fn stored(&self, bare: &BareJid) {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        inner.accounts.remove(bare);
    }
}

/// What to do with an undeliverable message.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Store,
    /// Not worth storing and not worth an error: standalone chat states (XEP-0085 §5.5).
    Drop,
    /// The sender asked not to store it (XEP-0334 no-store / no-permanent-store): bounce.
    Refuse,
}

fn verdict(el: &Element) -> Verdict {
    if el.has_child("no-store", NS_HINTS) || el.has_child("no-permanent-store", NS_HINTS) {
        return Verdict::Refuse;
    }
    if el.has_child("store", NS_HINTS) {
        return Verdict::Store;
    }
    let only_states = el
        .children()
        .all(|c| c.ns() == NS_CHATSTATES || c.is("thread", tern_stream::NS_CLIENT));
    if only_states {
        Verdict::Drop
    } else {
        Verdict::Store
    }
}

impl OfflineModule {
    async fn store(&self, router: &Arc<Router>, st: &Stanza) -> Result<(), StanzaError> {
        let Some(to) = st.to.as_ref().map(|t| t.to_bare()) else {
            return Err(Condition::BadRequest.into());
        };
        let (host, user) = (
            to.domain().to_string(),
            to.node().map(|n| n.to_string()).unwrap_or_default(),
        );
        let archive = &router.storage().archive;
        let internal = |e: tern_storage::StoreError| {
            warn!(jid = %to, "offline storage failed: {e}");
            StanzaError::new(Condition::InternalServerError)
        };
        let count = archive.count(&host, STORE, &user).await.map_err(internal)?;
        if count >= self.config.max_per_user {
            info!(jid = %to, count, "offline storage full; message refused");
            return Err(StanzaError::new(Condition::ResourceConstraint)
                .with_text("the recipient's offline storage is full"));
        }
        let when = now_micros();
        let mut el = st.el.clone();
        el.append_child(
            Element::builder("delay", NS_DELAY)
                .a("from", host.as_str())
                .a("stamp", format_micros(when))
                .append("Offline Storage")
                .build(),
        );
        let mut data = Vec::new();
        el.write_to(&mut data).map_err(|e| {
            warn!("cannot serialize message: {e}");
            StanzaError::new(Condition::InternalServerError)
        })?;
        let item = ArchiveItem {
            id: format!("{when:016x}{:08x}", rand::random::<u32>()),
            when,
            with: st.from.to_bare().to_string(),
            data,
        };
        // Before and after: a flush reading between the two sees the message or is stale.
        self.empty.stored(&to);
        let appended = archive.append(&host, STORE, &user, &item).await;
        self.empty.stored(&to);
        appended.map_err(internal)?;
        debug!(jid = %to, "message stored offline");
        Ok(())
    }

    /// Delivers stored messages in order, a batch at a time, deleting each batch once queued.
    /// It runs in the session's own task, before the stanza that made the session available
    /// is answered, so the client gets its backlog first. It stops while half of the queue is
    /// still free, leaving room for live traffic and IQ replies; what does not fit stays stored
    /// for the next time the account becomes available.
    async fn flush(&self, router: Arc<Router>, session: SessionHandle) {
        let bare = session.jid().to_bare();
        let Err(generation) = self.empty.check(&bare) else {
            return;
        };
        let (host, user) = (
            bare.domain().to_string(),
            bare.node().map(|n| n.to_string()).unwrap_or_default(),
        );
        let archive = &router.storage().archive;
        let keep_free = session.queue_capacity() / 2;
        let mut total = 0usize;
        loop {
            let q = ArchiveQuery {
                limit: Some(FLUSH_BATCH),
                ..Default::default()
            };
            let page = match archive.query(&host, STORE, &user, &q).await {
                Ok(p) => p,
                Err(e) => return warn!(jid = %bare, "cannot read offline messages: {e}"),
            };
            let mut delivered = Vec::new();
            let mut stopped = false;
            for item in &page.items {
                let Some(el) = std::str::from_utf8(&item.data)
                    .ok()
                    .and_then(|s| s.parse::<Element>().ok())
                else {
                    // Unreadable: it can never be delivered, so it is dropped rather than
                    // blocking every later message.
                    warn!(jid = %bare, id = %item.id, "unreadable offline message dropped");
                    delivered.push(item.id.clone());
                    continue;
                };
                // What is not queued stays stored for the next time the account comes online.
                if session.queue_free() <= keep_free || session.send(el).is_err() {
                    stopped = true;
                    break;
                }
                delivered.push(item.id.clone());
            }
            total += delivered.len();
            if !delivered.is_empty() {
                if let Err(e) = archive.delete(&host, STORE, &user, Some(&delivered)).await {
                    return warn!(jid = %bare, "cannot delete delivered offline messages: {e}");
                }
            }
            if page.items.is_empty() && total == 0 {
                self.empty.mark(&bare, generation);
            }
            if stopped || page.items.len() < FLUSH_BATCH {
                break;
            }
        }
        if total > 0 {
            info!(jid = %session.jid(), count = total, "offline messages delivered");
        }
    }
}

#[async_trait]
impl Module for OfflineModule {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn specs(&self) -> Vec<Spec> {
        vec![Spec::xep(160, "1.0.1"), Spec::xep(203, "2.0")]
    }

    fn features(&self) -> Vec<&'static str> {
        vec!["msgoffline"]
    }

    fn register(&self, hooks: &mut Hooks) {
        hooks.on(Event::Undeliverable);
        hooks.on_session();
    }

    async fn on_stanza(&self, _event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        if st.kind != Kind::Message || !matches!(st.type_(), "normal" | "chat") {
            return Flow::Continue;
        }
        match verdict(&st.el) {
            Verdict::Refuse => Flow::Continue,
            Verdict::Drop => Flow::Handled,
            Verdict::Store => match self.store(ctx.router, st).await {
                Ok(()) => Flow::Handled,
                Err(e) => {
                    ctx.router.bounce(st, e).await;
                    Flow::Handled
                }
            },
        }
    }

    async fn on_session(&self, event: SessionEvent, router: &Arc<Router>, session: &SessionHandle) {
        if event == SessionEvent::Available {
            self.flush(router.clone(), session.clone()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Element {
        s.parse().unwrap()
    }

    #[test]
    fn what_is_stored() {
        let body = parse("<message xmlns='jabber:client'><body>hi</body></message>");
        assert_eq!(verdict(&body), Verdict::Store);
        let typing = parse("<message xmlns='jabber:client'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
        assert_eq!(verdict(&typing), Verdict::Drop);
        let no_store = parse("<message xmlns='jabber:client'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>");
        assert_eq!(verdict(&no_store), Verdict::Refuse);
        let receipt = parse(
            "<message xmlns='jabber:client'><received xmlns='urn:xmpp:receipts' id='1'/></message>",
        );
        assert_eq!(verdict(&receipt), Verdict::Store);
    }
}
