//! `jabber:iq:roster` (RFC 6121 §2) with versioning (XEP-0237) and roster pushes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use minidom::Element;
use tracing::warn;

use tern_router::xml::BuilderExt;
use tern_router::{
    BareJid, Condition, Ctx, Event, Flow, Hooks, Jid, Kind, Module, Origin, Router, Stanza,
    StanzaError, Target,
};
use tern_stream::NS_CLIENT;

use crate::item::{RosterItem, NS_ROSTER};
use crate::store::RosterStore;

/// XEP-0237 stream feature namespace.
pub const NS_ROSTERVER: &str = "urn:xmpp:features:rosterver";

/// Roster limits.
#[derive(Debug, Clone)]
pub struct RosterConfig {
    /// Most items on one roster.
    pub max_items: usize,
    /// Longest item name or group name, in bytes.
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

/// The roster module.
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

/// The roster of an account, for modules that need it.
pub fn roster_of<'a>(router: &'a Router, bare: &'a BareJid) -> Option<RosterStore<'a>> {
    let user = bare.node()?.as_str();
    Some(RosterStore::new(
        router.storage().map.as_ref(),
        bare.domain().as_str(),
        user,
    ))
}

static PUSH_ID: AtomicU64 = AtomicU64::new(1);

/// Sends a roster push (RFC 6121 §2.1.6) to every resource of `owner` that requested the roster.
pub fn push(router: &Router, owner: &BareJid, item: Element, ver: u64) {
    for s in router.sessions().resources(owner) {
        if !s.presence().roster_requested {
            continue;
        }
        let query = Element::builder("query", NS_ROSTER)
            .a("ver", ver.to_string())
            .append(item.clone())
            .build();
        let iq = Element::builder("iq", NS_CLIENT)
            .a("type", "set")
            .a(
                "id",
                format!("push{}", PUSH_ID.fetch_add(1, Ordering::Relaxed)),
            )
            .a("to", s.jid().as_str())
            .append(query)
            .build();
        let _ = s.send(iq);
    }
}

/// Sends an IQ reply from the account to the requesting resource.
async fn reply(router: &Arc<Router>, st: &Stanza, me: &BareJid, el: Element) {
    let reply = Stanza::new(Kind::Iq, Jid::from(me.clone()), Some(st.from.clone()), el);
    router.route(Origin::Local, reply).await;
}

fn error(e: tern_storage::StoreError) -> StanzaError {
    warn!("roster storage failed: {e}");
    StanzaError::new(Condition::InternalServerError)
}

impl RosterModule {
    async fn get(
        &self,
        router: &Arc<Router>,
        st: &Stanza,
        me: &BareJid,
    ) -> Result<Element, StanzaError> {
        if let Some(s) = router.sessions().get(
            &st.from
                .clone()
                .try_into_full()
                .map_err(|_| Condition::BadRequest)?,
        ) {
            s.update_presence(|p| p.roster_requested = true);
        }
        let store = roster_of(router, me).ok_or(Condition::BadRequest)?;
        let ver = store.version().await.map_err(error)?;
        let asked = st.iq_payload().and_then(|q| q.attr("ver"));
        // XEP-0237 §2.3: an unchanged roster is answered with an empty result.
        if asked == Some(ver.to_string().as_str()) {
            return Ok(st.iq_result(None));
        }
        let mut q = Element::builder("query", NS_ROSTER)
            .a("ver", ver.to_string())
            .build();
        for item in store
            .all()
            .await
            .map_err(error)?
            .into_iter()
            .filter(|i| i.listed)
        {
            q.append_child(item.to_element());
        }
        Ok(st.iq_result(Some(q)))
    }

    fn check_names(&self, item: &Element) -> Result<(Option<String>, Vec<String>), StanzaError> {
        let too_long = || StanzaError::new(Condition::NotAcceptable).with_text("name too long");
        let name = item
            .attr("name")
            .map(str::to_owned)
            .filter(|n| !n.is_empty());
        if name
            .as_ref()
            .is_some_and(|n| n.len() > self.config.max_name_bytes)
        {
            return Err(too_long());
        }
        let mut groups: Vec<String> = Vec::new();
        for g in item.children().filter(|c| c.is("group", NS_ROSTER)) {
            let g = g.text();
            if g.is_empty() {
                return Err(
                    StanzaError::new(Condition::NotAcceptable).with_text("empty group name")
                );
            }
            if g.len() > self.config.max_name_bytes {
                return Err(too_long());
            }
            if groups.contains(&g) {
                return Err(StanzaError::new(Condition::BadRequest).with_text("duplicate group"));
            }
            groups.push(g);
        }
        Ok((name, groups))
    }

    async fn set(
        &self,
        router: &Arc<Router>,
        st: &Stanza,
        me: &BareJid,
    ) -> Result<Option<Element>, StanzaError> {
        let q = st.iq_payload().ok_or(Condition::BadRequest)?;
        let mut items = q.children().filter(|c| c.is("item", NS_ROSTER));
        let (Some(item), None) = (items.next(), items.next()) else {
            return Err(StanzaError::new(Condition::BadRequest)
                .with_text("a roster set carries exactly one item"));
        };
        let jid = item
            .attr("jid")
            .and_then(|j| Jid::new(j).ok())
            .and_then(|j| j.try_into_full().err())
            .ok_or_else(|| {
                StanzaError::new(Condition::BadRequest).with_text("item needs a bare JID")
            })?;
        let store = roster_of(router, me).ok_or(Condition::BadRequest)?;
        if item.attr("subscription") == Some("remove") {
            return self.remove(router, st, me, &store, &jid).await;
        }
        let (name, groups) = self.check_names(item)?;
        let _guard = store.lock().await;
        let existing = store.get(jid.as_str()).await.map_err(error)?;
        if existing.as_ref().is_none_or(|i| !i.listed) {
            let listed = store
                .all()
                .await
                .map_err(error)?
                .iter()
                .filter(|i| i.listed)
                .count();
            if listed >= self.config.max_items {
                return Err(
                    StanzaError::new(Condition::ResourceConstraint).with_text("roster is full")
                );
            }
        }
        // RFC 6121 §2.1.2.5: the subscription and ask attributes of a client's set are ignored.
        let mut it = existing.unwrap_or_else(|| RosterItem::new(jid.as_str()));
        it.name = name;
        it.groups = groups;
        it.listed = true;
        let ver = store.put(&it).await.map_err(error)?;
        // The requester gets its result before the push (both are required, RFC 6121 §2.3.2).
        reply(router, st, me, st.iq_result(None)).await;
        push(router, me, it.to_element(), ver);
        Ok(None)
    }

    /// RFC 6121 §2.5: removing an item also cancels the subscriptions in both directions.
    async fn remove(
        &self,
        router: &Arc<Router>,
        st: &Stanza,
        me: &BareJid,
        store: &RosterStore<'_>,
        jid: &BareJid,
    ) -> Result<Option<Element>, StanzaError> {
        let item = {
            let _guard = store.lock().await;
            let Some(item) = store
                .get(jid.as_str())
                .await
                .map_err(error)?
                .filter(|i| i.listed)
            else {
                return Err(StanzaError::new(Condition::ItemNotFound));
            };
            let ver = store.remove(jid.as_str()).await.map_err(error)?;
            reply(router, st, me, st.iq_result(None)).await;
            push(router, me, RosterItem::removal_element(jid.as_str()), ver);
            item
        };
        let contact = Jid::from(jid.clone());
        let send = |type_: &'static str| {
            let el = Element::builder("presence", NS_CLIENT)
                .a("type", type_)
                .build();
            Stanza::new(
                Kind::Presence,
                Jid::from(me.clone()),
                Some(contact.clone()),
                el,
            )
        };
        if item.subscription.has_to() || item.ask {
            router.route(Origin::Local, send("unsubscribe")).await;
        }
        if item.subscription.has_from() || item.pending_in {
            if item.subscription.has_from() {
                // The contact loses our presence: tell it we are gone (RFC 6121 §3.2.2).
                for s in router
                    .sessions()
                    .resources(me)
                    .into_iter()
                    .filter(|s| s.presence().available())
                {
                    let el = Element::builder("presence", NS_CLIENT)
                        .a("type", "unavailable")
                        .build();
                    let un = Stanza::new(
                        Kind::Presence,
                        Jid::from(s.jid().clone()),
                        Some(contact.clone()),
                        el,
                    );
                    router.route(Origin::Local, un).await;
                }
            }
            router.route(Origin::Local, send("unsubscribed")).await;
        }
        Ok(None)
    }
}

#[async_trait]
impl Module for RosterModule {
    fn name(&self) -> &'static str {
        "roster"
    }

    fn features(&self) -> Vec<&'static str> {
        vec![NS_ROSTER]
    }

    fn register(&self, hooks: &mut Hooks) {
        hooks.on(Event::Iq(Target::Bare, NS_ROSTER.into()));
    }

    fn session_features(&self) -> Vec<Element> {
        vec![Element::bare("ver", NS_ROSTERVER)]
    }

    async fn on_stanza(&self, _event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        let me = st.from.to_bare();
        // RFC 6121 §2.1.5 / §2.3.3: only the account itself may read or change its roster.
        let own = st.to.as_ref().is_none_or(|t| t.to_bare() == me)
            && matches!(ctx.origin, Origin::Client(_));
        let result = if !own {
            Err(StanzaError::new(Condition::Forbidden))
        } else if st.type_() == "get" {
            self.get(ctx.router, st, &me).await.map(Some)
        } else {
            self.set(ctx.router, st, &me).await
        };
        match result {
            Ok(Some(el)) => reply(ctx.router, st, &me, el).await,
            Ok(None) => {}
            Err(e) => ctx.router.bounce(st, e).await,
        }
        Flow::Handled
    }
}
