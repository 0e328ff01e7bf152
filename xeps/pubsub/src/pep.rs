//! XEP-0163 Personal Eventing Protocol: every account is a pubsub service at its bare JID.
//! This module answers `pubsub`/`pubsub#owner` IQs to accounts, disco queries for their
//! nodes, and watches presence (own resources' broadcasts, contacts' presence to the account)
//! to keep the entity-capabilities view that filters notifications and triggers last-item
//! delivery. It also consumes the clients' answers to its caps disco#info queries.

use std::sync::Arc;

use async_trait::async_trait;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use tern_router::Spec;
use tracing::debug;

use tern_router::xml::BuilderExt;
use tern_router::{
    Ctx, Event, Flow, Hooks, Kind, Module, Origin, Router, SessionEvent, SessionHandle, Stanza,
    Target,
};
use tern_stream::NS_CLIENT;

use crate::bookmarks;
use crate::caps::{Caps, Next};
use crate::config::PubSubConfig;
use crate::disco;
use crate::engine::Entity;
use crate::error::reply_error;
use crate::iq;
use crate::ns::{self, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_OWNER, NS_PUBSUB};

/// Priority of the disco hooks: above the router's generic disco module (priority 0), so
/// queries naming a PEP node are answered here; everything else falls through to it.
const DISCO_PRIORITY: i32 = 10;

/// The PEP module.
pub struct PepModule {
    cfg: Arc<PubSubConfig>,
    caps: Arc<Caps>,
}

impl PepModule {
    /// A PEP module with these settings.
    pub fn new(cfg: Arc<PubSubConfig>) -> Self {
        let caps = Arc::new(Caps::new(cfg.caps_cache_entries));
        PepModule { cfg, caps }
    }

    /// The capabilities view, shared with the private storage module's bookmark sync.
    pub fn caps(&self) -> Arc<Caps> {
        self.caps.clone()
    }

    fn entity<'a>(&'a self, router: &'a Arc<Router>, account: &BareJid) -> Entity<'a> {
        Entity::pep(router, account, &self.cfg, &self.caps)
    }

    async fn pubsub_iq(&self, ctx: &Ctx<'_>, st: &Stanza) {
        let Some(account) = st.to.as_ref().map(|t| t.to_bare()) else {
            return;
        };
        let entity = self.entity(ctx.router, &account);
        match iq::handle(&entity, st).await {
            Ok(out) => {
                ctx.router.reply_result(st, out.reply).await;
                if let Some(node) = out.changed {
                    bookmarks::after_pep_change(&entity, &node).await;
                }
            }
            Err(e) => {
                debug!(to = %account, "pep request failed: {e}");
                reply_error(ctx.router, st, &e).await
            }
        }
    }

    async fn disco(&self, ns: &str, ctx: &Ctx<'_>, st: &Stanza) -> Flow {
        let (Some(node), Some(account)) = (
            st.iq_payload().and_then(|q| q.attr("node")),
            st.to.as_ref().map(|t| t.to_bare()),
        ) else {
            return Flow::Continue;
        };
        if st.type_() != "get" {
            return Flow::Continue;
        }
        let entity = self.entity(ctx.router, &account);
        match disco::node_query(&entity, ns, node, &st.from).await {
            Ok(Some(q)) => {
                ctx.router.reply_result(st, Some(q)).await;
                Flow::Handled
            }
            Ok(None) => Flow::Continue,
            Err(e) => {
                reply_error(ctx.router, st, &e).await;
                Flow::Handled
            }
        }
    }

    /// Presence reaching `owner` from `from` (a contact, or one of the owner's own resources).
    async fn presence(&self, router: &Arc<Router>, owner: &BareJid, from: &FullJid, st: &Stanza) {
        match st.type_() {
            "available" => match self.caps.available(owner, from, &st.el) {
                Next::Nothing => {}
                Next::Deliver => self.deliver_last(router, owner, from).await,
                Next::Query { id, node } => {
                    let q = Element::builder("query", NS_DISCO_INFO)
                        .a("node", node)
                        .build();
                    let iq = Element::builder("iq", NS_CLIENT)
                        .a("type", "get")
                        .a("id", id)
                        .append(q)
                        .build();
                    let st = Stanza::new(
                        Kind::Iq,
                        Jid::from(owner.clone()),
                        Some(Jid::from(from.clone())),
                        iq,
                    );
                    router.route(Origin::Local, st).await;
                }
            },
            "unavailable" => self.caps.unavailable(owner, from),
            _ => {}
        }
    }

    async fn deliver_last(&self, router: &Arc<Router>, owner: &BareJid, to: &FullJid) {
        if let Err(e) = self.entity(router, owner).deliver_last_to(to).await {
            debug!(owner = %owner, to = %to, "last item delivery failed: {e}");
        }
    }

    /// A client's answer to one of our caps queries: consumed here, never routed on.
    async fn caps_response(&self, router: &Arc<Router>, st: &Stanza) -> Flow {
        let Some(id) = st.id().filter(|id| self.caps.is_ours(id)) else {
            return Flow::Continue;
        };
        let Ok(from) = st.from.clone().try_into_full() else {
            return Flow::Continue;
        };
        let query = (st.type_() == "result")
            .then(|| st.el.get_child("query", NS_DISCO_INFO))
            .flatten();
        for (owner, jid) in self.caps.response(id, &from, query) {
            self.deliver_last(router, &owner, &jid).await;
        }
        Flow::Handled
    }
}

#[async_trait]
impl Module for PepModule {
    fn name(&self) -> &'static str {
        "pep"
    }

    fn specs(&self) -> Vec<Spec> {
        vec![
            Spec::xep(163, "1.2.2"),
            Spec::xep(223, "1.1.1"),
            Spec::xep(84, "1.1.4"),
            Spec::xep(384, "0.9.0"),
            Spec::xep(115, "1.6.0"),
            Spec::xep(402, "1.2.0"),
            Spec::xep(48, "1.2"),
        ]
    }

    fn account_features(&self) -> Vec<&'static str> {
        let mut f = ns::pep_features().to_vec();
        f.push(bookmarks::FEATURE_COMPAT);
        f.push(bookmarks::FEATURE_COMPAT_PEP);
        f
    }

    fn account_identities(&self) -> Vec<(&'static str, &'static str)> {
        vec![("pubsub", "pep")]
    }

    async fn account_items(
        &self,
        router: &Arc<Router>,
        account: &BareJid,
        requester: &Jid,
    ) -> Vec<Element> {
        let entity = self.entity(router, account);
        disco::node_list(&entity, requester)
            .await
            .unwrap_or_default()
    }

    fn register(&self, hooks: &mut Hooks) {
        hooks.on(Event::Iq(Target::Bare, NS_PUBSUB.into()));
        hooks.on(Event::Iq(Target::Bare, NS_OWNER.into()));
        hooks.on_priority(
            Event::Iq(Target::Bare, NS_DISCO_INFO.into()),
            DISCO_PRIORITY,
        );
        hooks.on_priority(
            Event::Iq(Target::Bare, NS_DISCO_ITEMS.into()),
            DISCO_PRIORITY,
        );
        hooks.on(Event::Presence(Target::Bare));
        hooks.on(Event::Presence(Target::Full));
        hooks.on(Event::PresenceBroadcast);
        hooks.on(Event::Outgoing(Kind::Iq));
        hooks.on_session();
    }

    async fn on_stanza(&self, event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        match event {
            Event::Iq(_, ns) if ns == NS_PUBSUB || ns == NS_OWNER => {
                self.pubsub_iq(ctx, st).await;
                Flow::Handled
            }
            Event::Iq(_, ns) if ns == NS_DISCO_INFO || ns == NS_DISCO_ITEMS => {
                self.disco(ns, ctx, st).await
            }
            Event::Presence(_) => {
                // Observed only: the presence module and the router deliver it.
                if let (Some(owner), Ok(from)) = (
                    st.to.as_ref().map(|t| t.to_bare()),
                    st.from.clone().try_into_full(),
                ) {
                    if from.to_bare() != owner {
                        self.presence(ctx.router, &owner, &from, st).await;
                    }
                }
                Flow::Continue
            }
            Event::PresenceBroadcast => {
                if let Some(s) = ctx.origin.session() {
                    let me = s.jid().clone();
                    self.presence(ctx.router, &me.to_bare(), &me, st).await;
                }
                Flow::Continue
            }
            Event::Outgoing(Kind::Iq) if matches!(st.type_(), "result" | "error") => {
                self.caps_response(ctx.router, st).await
            }
            _ => Flow::Continue,
        }
    }

    async fn on_session(&self, event: SessionEvent, _router: &Arc<Router>, s: &SessionHandle) {
        if event == SessionEvent::Closed {
            self.caps.unavailable(&s.jid().to_bare(), s.jid());
        }
    }
}
