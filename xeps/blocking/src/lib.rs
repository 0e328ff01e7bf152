//! XEP-0191: Blocking Command (`urn:xmpp:blocking`), enforced in both directions for every
//! stanza kind.
//!
//! Layout: [`list`] holds the block list and the XEP-0016 JID matching rules; this file is the
//! module. The list is kept per account in the `KeyVal` store ("blocklist") and cached in
//! memory. Enforcement hooks [`Event::Routing`], which every stanza passes whatever its
//! origin, so a block applies equally to what a client sends, to what the server sends on the
//! account's behalf (presence broadcasts, probe answers, PEP notifications) and to what
//! arrives from other accounts, services and servers:
//!
//! - outbound (the sender blocked the addressee, §3.7): presence is dropped; a client's message
//!   or IQ request is refused with `<not-acceptable/>` and `<blocked/>`;
//! - inbound (the addressee blocked the sender, §3.6 of 1.3): presence is dropped silently;
//!   messages and IQ requests get `<service-unavailable/>`, so the account looks offline;
//!   IQ responses are dropped.
//!
//! Blocking sends the blocked contacts unavailable presence first (§3.3); unblocking sends the
//! current presence to contacts entitled to it (§3.4, §3.5). Both push the change to every
//! resource that has retrieved the list (§3.2).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use minidom::Element;
use tern_router::Spec;
use tracing::{info, warn};

use tern_roster::roster_of;
use tern_router::xml::BuilderExt;
use tern_router::{
    BareJid, Condition, Ctx, ErrorType, Event, Flow, Hooks, Jid, Kind, Module, Origin, Router,
    SessionEvent, SessionHandle, Stanza, StanzaError, Target,
};
use tern_stream::NS_CLIENT;

pub mod list;

pub use list::BlockList;

/// The protocol namespace.
pub const NS_BLOCKING: &str = "urn:xmpp:blocking";
/// The application error namespace (`<blocked/>`).
pub const NS_BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";
/// KeyVal store holding each account's list.
const STORE: &str = "blocklist";
/// Session flag: the resource retrieved the list, so it gets pushes (§3.2).
const FLAG: &str = "blocklist";
/// Cached lists beyond which the cache starts over (the store stays the truth).
const CACHE_MAX: usize = 50_000;
/// Priority of the `Routing` hook: before anything else sees a stanza.
const PRIORITY: i32 = 1000;

/// `[blocking]` settings.
#[derive(Debug, Clone)]
pub struct BlockingConfig {
    /// Most JIDs on one account's list.
    pub max_items: usize,
}

impl Default for BlockingConfig {
    fn default() -> Self {
        BlockingConfig { max_items: 1000 }
    }
}

/// The blocking module.
pub struct BlockingModule {
    config: BlockingConfig,
    cache: Mutex<HashMap<BareJid, Arc<BlockList>>>,
    /// Serialises list changes, so two concurrent blocks cannot lose one another.
    write: tokio::sync::Mutex<()>,
}

static PUSH_ID: AtomicU64 = AtomicU64::new(1);

impl BlockingModule {
    /// A module with the given limits.
    pub fn new(config: BlockingConfig) -> Self {
        BlockingModule {
            config,
            cache: Mutex::new(HashMap::new()),
            write: tokio::sync::Mutex::new(()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<BareJid, Arc<BlockList>>> {
        // A cache only: a poisoned lock loses nothing the store does not have.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The account's list, from the cache or the store. A store failure counts as an empty
    /// list (logged): refusing all traffic would be worse than briefly not blocking.
    async fn list(&self, router: &Router, owner: &BareJid) -> Arc<BlockList> {
        if let Some(l) = self.cache().get(owner) {
            return l.clone();
        }
        let Some(user) = owner.node() else {
            return Arc::new(BlockList::default());
        };
        let list = match router
            .storage()
            .keyval
            .get(owner.domain().as_str(), STORE, user.as_str())
            .await
        {
            Ok(Some(bytes)) => BlockList::decode(&bytes),
            Ok(None) => BlockList::default(),
            Err(e) => {
                warn!(jid = %owner, "cannot read block list: {e}");
                return Arc::new(BlockList::default());
            }
        };
        let list = Arc::new(list);
        let mut cache = self.cache();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(owner.clone(), list.clone());
        list
    }

    async fn store(
        &self,
        router: &Router,
        owner: &BareJid,
        list: BlockList,
    ) -> Result<(), StanzaError> {
        let user = owner.node().map(|n| n.as_str()).unwrap_or_default();
        router
            .storage()
            .keyval
            .set(owner.domain().as_str(), STORE, user, Some(&list.encode()))
            .await
            .map_err(|e| {
                warn!(jid = %owner, "cannot store block list: {e}");
                StanzaError::new(Condition::InternalServerError)
            })?;
        self.cache().insert(owner.clone(), Arc::new(list));
        Ok(())
    }

    /// A local account's bare JID, if `jid` is one.
    fn local_account(router: &Router, jid: &Jid) -> Option<BareJid> {
        (jid.node().is_some() && router.is_local(jid.domain().as_str())).then(|| jid.to_bare())
    }

    /// Enforcement on every routed stanza.
    async fn routing(&self, ctx: &Ctx<'_>, st: &Stanza) -> Flow {
        // Errors the server generates answer something that already passed here (or was
        // refused here): they must reach the sender, or a refusal would vanish.
        if st.is_error() && !matches!(ctx.origin, Origin::Client(_)) {
            return Flow::Continue;
        }
        let Some(to) = st.to.as_ref() else {
            // A broadcast: each copy is routed to its addressee and checked then.
            return Flow::Continue;
        };
        let router = ctx.router;
        let sender = Self::local_account(router, &st.from);
        let addressee = Self::local_account(router, to);
        if sender.is_some() && sender == addressee {
            return Flow::Continue;
        }
        if let Some(me) = &sender {
            if self.list(router, me).await.blocks(to) {
                // §3.7: presence is not sent; a message or request gets an error the client
                // can show. Stanzas the server sends for the account are simply not sent.
                let refuse = matches!(ctx.origin, Origin::Client(_))
                    && (st.kind == Kind::Message || st.is_iq_request());
                if refuse {
                    let err = StanzaError::new(Condition::NotAcceptable)
                        .with_type(ErrorType::Cancel)
                        .with_app(Element::bare("blocked", NS_BLOCKING_ERRORS));
                    router.bounce(st, err).await;
                }
                return Flow::Handled;
            }
        }
        if let Some(owner) = &addressee {
            if self.list(router, owner).await.blocks(&st.from) {
                // XEP-0191 §3.6 (1.3): the account looks offline to the blocked entity.
                if st.kind == Kind::Message || st.is_iq_request() {
                    router
                        .bounce(st, StanzaError::new(Condition::ServiceUnavailable))
                        .await;
                }
                return Flow::Handled;
            }
        }
        Flow::Continue
    }

    /// The IQ protocol (§3.2–§3.5).
    async fn iq(&self, ctx: &Ctx<'_>, st: &Stanza) -> Result<Option<Element>, StanzaError> {
        let router = ctx.router;
        let owner = st
            .to
            .as_ref()
            .map(|t| t.to_bare())
            .unwrap_or_else(|| st.from.to_bare());
        if st.from.to_bare() != owner {
            return Err(StanzaError::new(Condition::Forbidden)
                .with_text("a block list is visible to its owner only"));
        }
        let payload = st
            .iq_payload()
            .cloned()
            .unwrap_or_else(|| Element::bare("x", ""));
        match (st.type_(), payload.name()) {
            ("get", "blocklist") => {
                if let Some(s) = ctx.origin.session() {
                    s.set_flag(FLAG, true);
                }
                let list = self.list(router, &owner).await;
                let mut el = Element::builder("blocklist", NS_BLOCKING).build();
                for j in list.items() {
                    el.append_child(item(j));
                }
                Ok(Some(el))
            }
            ("set", "block") => {
                let jids = items_of(&payload)?;
                if jids.is_empty() {
                    return Err(StanzaError::new(Condition::BadRequest)
                        .with_text("block needs at least one item"));
                }
                self.block(router, &owner, &jids).await?;
                push(router, &owner, &payload);
                Ok(None)
            }
            ("set", "unblock") => {
                let jids = items_of(&payload)?;
                self.unblock(router, &owner, &jids).await?;
                push(router, &owner, &payload);
                Ok(None)
            }
            _ => Err(StanzaError::new(Condition::BadRequest)),
        }
    }

    async fn block(
        &self,
        router: &Arc<Router>,
        owner: &BareJid,
        jids: &[Jid],
    ) -> Result<(), StanzaError> {
        let _w = self.write.lock().await;
        let mut list = (*self.list(router, owner).await).clone();
        let before = list.clone();
        let added = list.add(jids);
        if list.len() > self.config.max_items {
            return Err(StanzaError::new(Condition::ResourceConstraint)
                .with_type(ErrorType::Cancel)
                .with_text(format!(
                    "a block list holds at most {} items",
                    self.config.max_items
                )));
        }
        if added.is_empty() {
            return Ok(());
        }
        // §3.3: contacts that could see the account's presence are told it is gone, while
        // they are not blocked yet and the presence can still pass.
        for contact in presence_recipients(router, owner).await {
            if added.iter().any(|b| list::matches(b, &contact)) && !before.blocks(&contact) {
                for s in available(router, owner) {
                    let p = Element::builder("presence", NS_CLIENT)
                        .a("type", "unavailable")
                        .build();
                    send(router, &s, &contact, p).await;
                }
            }
        }
        self.store(router, owner, list).await?;
        info!(jid = %owner, count = added.len(), "blocked");
        Ok(())
    }

    async fn unblock(
        &self,
        router: &Arc<Router>,
        owner: &BareJid,
        jids: &[Jid],
    ) -> Result<(), StanzaError> {
        let _w = self.write.lock().await;
        let mut list = (*self.list(router, owner).await).clone();
        // §3.5: an unblock without items empties the list.
        let removed = if jids.is_empty() {
            list.clear()
        } else {
            list.remove(jids)
        };
        if removed.is_empty() {
            return Ok(());
        }
        self.store(router, owner, list.clone()).await?;
        info!(jid = %owner, count = removed.len(), "unblocked");
        // §3.4: contacts entitled to presence get the current one again.
        for contact in presence_recipients(router, owner).await {
            if removed.iter().any(|b| list::matches(b, &contact)) && !list.blocks(&contact) {
                for s in available(router, owner) {
                    if let Some(p) = s.presence().presence {
                        send(router, &s, &contact, p).await;
                    }
                }
            }
        }
        Ok(())
    }
}

fn item(j: &Jid) -> Element {
    Element::builder("item", NS_BLOCKING)
        .a("jid", j.to_string())
        .build()
}

/// The JIDs of a `<block/>` or `<unblock/>`; a malformed one refuses the whole request.
fn items_of(el: &Element) -> Result<Vec<Jid>, StanzaError> {
    el.children()
        .filter(|c| c.is("item", NS_BLOCKING))
        .map(|c| {
            let raw = c.attr("jid").ok_or_else(|| {
                StanzaError::new(Condition::BadRequest).with_text("item without a jid")
            })?;
            Jid::new(raw).map_err(|_| StanzaError::new(Condition::JidMalformed))
        })
        .collect()
}

/// Sends a push of the change to every resource that retrieved the list (§3.3).
fn push(router: &Router, owner: &BareJid, change: &Element) {
    for s in router.sessions().resources(owner) {
        if !s.flag(FLAG) {
            continue;
        }
        let iq = Element::builder("iq", NS_CLIENT)
            .a("type", "set")
            .a(
                "id",
                format!("block{}", PUSH_ID.fetch_add(1, Ordering::Relaxed)),
            )
            .a("to", s.jid().as_str())
            .append(change.clone())
            .build();
        // A client that misses a push sees the change at its next retrieval.
        let _ = s.send(iq);
    }
}

fn available(router: &Router, owner: &BareJid) -> Vec<SessionHandle> {
    let mut v = router.sessions().resources(owner);
    v.retain(SessionHandle::is_available);
    v
}

/// Who currently receives the account's presence: contacts with a `from` subscription
/// (RFC 6121 §4.2.2) and directed-presence recipients (§4.6).
async fn presence_recipients(router: &Router, owner: &BareJid) -> Vec<Jid> {
    let mut out: Vec<Jid> = Vec::new();
    if let Some(store) = roster_of(router, owner) {
        match store.all().await {
            Ok(items) => out.extend(
                items
                    .iter()
                    .filter(|i| i.subscription.has_from())
                    .filter_map(|i| i.bare().map(Jid::from)),
            ),
            Err(e) => warn!(jid = %owner, "cannot read roster: {e}"),
        }
    }
    for s in router.sessions().resources(owner) {
        for d in s.presence().directed {
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    out
}

async fn send(router: &Arc<Router>, from: &SessionHandle, to: &Jid, el: Element) {
    let st = Stanza::new(
        Kind::Presence,
        Jid::from(from.jid().clone()),
        Some(to.clone()),
        el,
    );
    router.route(Origin::Local, st).await;
}

#[async_trait]
impl Module for BlockingModule {
    fn name(&self) -> &'static str {
        "blocking"
    }

    fn specs(&self) -> Vec<Spec> {
        vec![Spec::xep(191, "1.3")]
    }

    fn features(&self) -> Vec<&'static str> {
        vec![NS_BLOCKING]
    }

    fn register(&self, hooks: &mut Hooks) {
        for kind in [Kind::Message, Kind::Presence, Kind::Iq] {
            hooks.on_priority(Event::Routing(kind), PRIORITY);
        }
        hooks.on(Event::Iq(Target::Bare, NS_BLOCKING.into()));
        hooks.on_session();
    }

    async fn on_stanza(&self, event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        match event {
            Event::Routing(_) => self.routing(ctx, st).await,
            Event::Iq(..) => {
                match self.iq(ctx, st).await {
                    Ok(payload) => ctx.router.reply_result(st, payload).await,
                    Err(e) => ctx.router.bounce(st, e).await,
                }
                Flow::Handled
            }
            _ => Flow::Continue,
        }
    }

    async fn on_session(&self, event: SessionEvent, router: &Arc<Router>, session: &SessionHandle) {
        // The last session of an account gone: its list leaves the cache (re-read on demand),
        // which keeps the cache to roughly the online accounts.
        if event == SessionEvent::Closed {
            let bare = session.jid().to_bare();
            if router.sessions().resources(&bare).is_empty() {
                self.cache().remove(&bare);
            }
        }
    }
}
