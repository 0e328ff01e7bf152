//! The presence module: hooks the router's presence events and session lifecycle, and
//! dispatches to subscriptions, broadcasts, probes and directed presence.

use std::sync::Arc;

use async_trait::async_trait;
use minidom::Element;

use tern_router::{
    Ctx, Event, Flow, Hooks, Kind, Module, Router, SessionEvent, SessionHandle, Stanza, Target,
};

use crate::broadcast::{self, deliver_to_available};
use crate::probe::{directed, probe};
use crate::subscription::{inbound_subscription, outbound_subscription};
use crate::transitions::SubKind;

/// RFC 6121 §3.4 stream feature namespace: the server supports subscription pre-approval.
pub const NS_PRE_APPROVAL: &str = "urn:xmpp:features:pre-approval";

/// Hook priority of every presence handler. The module consumes subscription stanzas, probes
/// and broadcasts (answering `Handled`), so it runs after the default priority: filters such
/// as blocking and observers such as entity-capabilities caches see those stanzas first.
const PRIORITY: i32 = -100;

/// RFC 6121 presence: subscriptions, broadcasts, probes and directed presence.
#[derive(Debug, Default, Clone, Copy)]
pub struct PresenceModule;

impl PresenceModule {
    /// A stanza from a local client, before routing (RFC 6121 §3.x.2, §4.6.3).
    async fn outgoing(&self, ctx: &Ctx<'_>, st: &Stanza) -> Flow {
        let Some(session) = ctx.origin.session() else {
            return Flow::Continue;
        };
        if let Some(kind) = SubKind::from_type(st.type_()) {
            outbound_subscription(ctx.router, st, kind).await;
            return Flow::Handled;
        }
        if matches!(st.type_(), "available" | "unavailable") {
            directed(ctx.router, session, st).await;
        }
        // Directed presence, probes and errors travel on unchanged.
        Flow::Continue
    }

    /// A presence stanza to a local account or one of its resources.
    async fn inbound(&self, target: Target, ctx: &Ctx<'_>, st: &Stanza) -> Flow {
        let Some(owner) = st.to.as_ref().map(|t| t.to_bare()) else {
            return Flow::Continue;
        };
        let router = ctx.router;
        if let Some(kind) = SubKind::from_type(st.type_()) {
            inbound_subscription(router, st, &owner, kind).await;
            return Flow::Handled;
        }
        match (st.type_(), target) {
            ("probe", _) => {
                probe(router, st, &owner).await;
                Flow::Handled
            }
            ("error", Target::Bare) => {
                // An error for the account (e.g. to a probe or subscription request, both sent
                // from the bare JID): its available resources hear of it, as RFC 6121 §8.5.2.1
                // treats other presence to a bare JID; with none it is dropped.
                deliver_to_available(router, &owner, st);
                Flow::Handled
            }
            // Available and unavailable (§4.4.3, §4.5.3): the router delivers them to the
            // account's available resources, or to the addressed resource. Errors to a full
            // JID go to that resource the same way.
            _ => Flow::Continue,
        }
    }
}

#[async_trait]
impl Module for PresenceModule {
    fn name(&self) -> &'static str {
        "presence"
    }

    fn register(&self, hooks: &mut Hooks) {
        hooks.on_priority(Event::PresenceBroadcast, PRIORITY);
        hooks.on_priority(Event::Outgoing(Kind::Presence), PRIORITY);
        hooks.on_priority(Event::Presence(Target::Bare), PRIORITY);
        hooks.on_priority(Event::Presence(Target::Full), PRIORITY);
        hooks.on_session();
    }

    fn session_features(&self) -> Vec<Element> {
        vec![Element::bare("sub", NS_PRE_APPROVAL)]
    }

    async fn on_stanza(&self, event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        match event {
            Event::PresenceBroadcast => {
                if let Some(s) = ctx.origin.session() {
                    broadcast::from_client(ctx.router, s, st).await;
                }
                Flow::Handled
            }
            Event::Outgoing(Kind::Presence) => self.outgoing(ctx, st).await,
            Event::Presence(target) => self.inbound(*target, ctx, st).await,
            _ => Flow::Continue,
        }
    }

    async fn on_session(&self, event: SessionEvent, router: &Arc<Router>, session: &SessionHandle) {
        if event != SessionEvent::Closed {
            return;
        }
        // With the kick-old policy a newer session may already hold this full JID: its presence
        // is current, so no unavailable is sent in its name.
        if router
            .sessions()
            .get(session.jid())
            .is_some_and(|s| s.id() != session.id())
        {
            return;
        }
        // §4.5.2: a session that ends without unavailable presence is treated as if it had
        // sent one.
        broadcast::unavailable(router, session, None).await;
    }
}
