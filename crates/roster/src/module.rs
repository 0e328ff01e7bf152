//! `jabber:iq:roster` (RFC 6121 §2) with versioning (XEP-0237): roster get, set and remove.

use std::sync::Arc;

use async_trait::async_trait;
use minidom::Element;
use tern_router::Spec;
use tracing::warn;

use tern_router::xml::BuilderExt;
use tern_router::{
    BareJid, Condition, Ctx, ErrorType, Event, Flow, Hooks, Jid, Kind, Module, Origin, Router,
    SessionHandle, Stanza, StanzaError, Target,
};
use tern_stream::NS_CLIENT;

use crate::item::{RosterItem, NS_ROSTER};
use crate::push::{push, roster_of};
use crate::store::RosterStore;

/// XEP-0237 stream feature namespace.
pub const NS_ROSTERVER: &str = "urn:xmpp:features:rosterver";

/// The XEP-0237 stream feature `<ver xmlns='urn:xmpp:features:rosterver'/>`.
pub fn stream_feature() -> Element {
    Element::bare("ver", NS_ROSTERVER)
}

/// Roster limits.
#[derive(Debug, Clone)]
pub struct RosterConfig {
    /// Most items on one roster (visible items; hidden pending requests do not count).
    pub max_items: usize,
    /// Longest item name or group name, in bytes (RFC 6121 §2.3.3 "server-configured limit").
    pub max_name_bytes: usize,
}

impl Default for RosterConfig {
    fn default() -> Self {
        RosterConfig {
            max_items: 1000,
            max_name_bytes: 1023,
        }
    }
}

/// The roster module: answers `jabber:iq:roster` gets and sets from the account's own resources.
#[derive(Default)]
pub struct RosterModule {
    config: RosterConfig,
}

impl RosterModule {
    /// A roster module with these limits.
    pub fn new(config: RosterConfig) -> Self {
        RosterModule { config }
    }
}

/// Routes an IQ reply (or any stanza) from the account to the requesting resource.
async fn reply(router: &Arc<Router>, st: &Stanza, me: &BareJid, el: Element) {
    let reply = Stanza::new(Kind::Iq, Jid::from(me.clone()), Some(st.from.clone()), el);
    router.route(Origin::Local, reply).await;
}

fn internal(e: tern_storage::StoreError) -> StanzaError {
    warn!("roster storage failed: {e}");
    StanzaError::new(Condition::InternalServerError)
}

fn bad_request(text: &str) -> StanzaError {
    StanzaError::new(Condition::BadRequest).with_text(text)
}

fn not_acceptable(text: &str) -> StanzaError {
    StanzaError::new(Condition::NotAcceptable).with_text(text)
}

impl RosterModule {
    /// Roster get (RFC 6121 §2.1.3, §2.2) with XEP-0237 versioning.
    async fn get(
        &self,
        router: &Arc<Router>,
        session: &SessionHandle,
        st: &Stanza,
        me: &BareJid,
    ) -> Result<(), StanzaError> {
        let q = st.iq_payload().ok_or(Condition::BadRequest)?;
        if q.children().next().is_some() {
            // §2.1.3: the query of a roster get MUST NOT contain items.
            return Err(bad_request("a roster get carries no items"));
        }
        // §2.1.6: requesting the roster makes the resource "interested" in pushes.
        session.update_presence(|p| p.roster_requested = true);
        let store = roster_of(router, me).ok_or(Condition::BadRequest)?;
        let (ver, items) = match q.attr("ver") {
            Some(cached) => {
                let ver = store.version().await.map_err(internal)?;
                // XEP-0237: the client's cached copy is current, so the answer is an empty
                // result and any later change reaches it as a push.
                if cached == ver.to_string() {
                    reply(router, st, me, st.iq_result(None)).await;
                    return Ok(());
                }
                (ver, store.listed().await.map_err(internal)?)
            }
            // No cached copy: version and items from one read.
            None => store.listed_with_version().await.map_err(internal)?,
        };
        let mut out = Element::builder("query", NS_ROSTER)
            .a("ver", ver.to_string())
            .build();
        for item in items {
            out.append_child(item.to_element());
        }
        reply(router, st, me, st.iq_result(Some(out))).await;
        Ok(())
    }

    /// Name and groups of a roster set, checked per RFC 6121 §2.3.3.
    fn check_names(&self, item: &Element) -> Result<(Option<String>, Vec<String>), StanzaError> {
        let max = self.config.max_name_bytes;
        let name = item.attr("name").filter(|n| !n.is_empty());
        if name.is_some_and(|n| n.len() > max) {
            return Err(not_acceptable("item name too long"));
        }
        let mut groups: Vec<String> = Vec::new();
        for g in item.children().filter(|c| c.is("group", NS_ROSTER)) {
            let g = g.text();
            if g.is_empty() {
                return Err(not_acceptable("empty group name"));
            }
            if g.len() > max {
                return Err(not_acceptable("group name too long"));
            }
            if groups.contains(&g) {
                return Err(bad_request("duplicate group"));
            }
            groups.push(g);
        }
        Ok((name.map(str::to_owned), groups))
    }

    /// Roster set (RFC 6121 §2.1.5, §2.3, §2.4), or a removal (§2.5).
    async fn set(
        &self,
        router: &Arc<Router>,
        st: &Stanza,
        me: &BareJid,
    ) -> Result<(), StanzaError> {
        let q = st.iq_payload().ok_or(Condition::BadRequest)?;
        let mut items = q.children().filter(|c| c.is("item", NS_ROSTER));
        let (Some(item), None) = (items.next(), items.next()) else {
            return Err(bad_request("a roster set carries exactly one item"));
        };
        // Subscriptions are kept per bare JID (RFC 6121 §3), so an item is one too.
        let jid = item
            .attr("jid")
            .and_then(|j| Jid::new(j).ok())
            .and_then(|j| j.try_into_full().err())
            .ok_or_else(|| bad_request("item needs a bare JID"))?;
        let store = roster_of(router, me).ok_or(Condition::BadRequest)?;
        // §2.1.2.5: of the subscription values a client may send, only "remove" means anything.
        if item.attr("subscription") == Some("remove") {
            return remove(router, st, me, &store, &jid).await;
        }
        let (name, groups) = self.check_names(item)?;
        let _guard = store.lock().await;
        let existing = store.get(jid.as_str()).await.map_err(internal)?;
        if existing.as_ref().is_none_or(|i| !i.listed) {
            let listed = store.listed().await.map_err(internal)?.len();
            if listed >= self.config.max_items {
                // §2.3.3 names no condition for a full roster. resource-constraint is RFC 6120
                // §8.3.3.18's "lacks the resources to service the request"; typed cancel since
                // waiting will not make room.
                return Err(StanzaError::new(Condition::ResourceConstraint)
                    .with_type(ErrorType::Cancel)
                    .with_text("the roster is full"));
            }
        }
        // §2.1.2: ask, approved and subscription in a roster set are the server's to keep.
        let mut it = existing.unwrap_or_else(|| RosterItem::new(jid.as_str()));
        it.name = name;
        it.groups = groups;
        it.listed = true;
        let ver = store.put(&it).await.map_err(internal)?;
        // §2.3.2: a result to the requester, then a push to every interested resource.
        reply(router, st, me, st.iq_result(None)).await;
        push(router, me, it.to_element(), ver);
        Ok(())
    }
}

/// RFC 6121 §2.5.2: removing an item cancels the subscriptions in both directions (pending
/// ones included) before it is forgotten.
async fn remove(
    router: &Arc<Router>,
    st: &Stanza,
    me: &BareJid,
    store: &RosterStore<'_>,
    jid: &BareJid,
) -> Result<(), StanzaError> {
    let item = {
        let _guard = store.lock().await;
        let found = store.get(jid.as_str()).await.map_err(internal)?;
        // §2.5.3: removing an item that is not on the roster is item-not-found.
        let Some(item) = found.filter(|i| i.listed) else {
            return Err(StanzaError::new(Condition::ItemNotFound));
        };
        let ver = store.remove(jid.as_str()).await.map_err(internal)?;
        reply(router, st, me, st.iq_result(None)).await;
        push(router, me, RosterItem::removal_element(jid.as_str()), ver);
        item
    };
    let contact = Jid::from(jid.clone());
    let presence = |from: Jid, type_: &str| {
        let el = Element::builder("presence", NS_CLIENT)
            .a("type", type_)
            .build();
        Stanza::new(Kind::Presence, from, Some(contact.clone()), el)
    };
    // Subscription stanzas carry the bare JID (§3.1.2); the item is gone already, so they go
    // out as the server's own and are not run through the outbound state machine again.
    let me_jid = Jid::from(me.clone());
    if item.subscription.has_to() || item.ask {
        router
            .route(Origin::Local, presence(me_jid.clone(), "unsubscribe"))
            .await;
    }
    if item.subscription.has_from() || item.pending_in {
        router
            .route(Origin::Local, presence(me_jid, "unsubscribed"))
            .await;
    }
    if item.subscription.has_from() {
        // §3.2.2: the contact loses our presence, so it learns we are gone.
        for s in router.sessions().resources(me) {
            if s.presence().available() {
                let from = Jid::from(s.jid().clone());
                router
                    .route(Origin::Local, presence(from, "unavailable"))
                    .await;
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Module for RosterModule {
    fn name(&self) -> &'static str {
        "roster"
    }

    fn specs(&self) -> Vec<Spec> {
        vec![Spec::xep(237, "1.3")]
    }

    fn features(&self) -> Vec<&'static str> {
        vec![NS_ROSTER]
    }

    fn register(&self, hooks: &mut Hooks) {
        hooks.on(Event::Iq(Target::Bare, NS_ROSTER.into()));
    }

    fn session_features(&self) -> Vec<Element> {
        vec![stream_feature()]
    }

    async fn on_stanza(&self, _event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        let me = st.from.to_bare();
        // §2.1.3 / §2.3.3: only the account's own resources may read or change its roster;
        // anyone else addressing it (another user, a remote server) is forbidden.
        let own = st.to.as_ref().is_none_or(|t| t.to_bare() == me);
        let result = match ctx.origin.session() {
            Some(session) if own && st.type_() == "get" => {
                self.get(ctx.router, session, st, &me).await
            }
            Some(_) if own => self.set(ctx.router, st, &me).await,
            _ => Err(StanzaError::new(Condition::Forbidden)),
        };
        if let Err(e) = result {
            ctx.router.bounce(st, e).await;
        }
        Flow::Handled
    }
}
