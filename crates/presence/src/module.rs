//! The presence module: hooks and dispatch to the subscription state machine and broadcasts.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::{debug, warn};

use tern_roster::{push, roster_of, RosterItem};
use tern_router::{
    BareJid, Ctx, Event, Flow, Hooks, Jid, Kind, Module, Router, SessionEvent, SessionHandle,
    Stanza, Target,
};
use tern_stream::NS_CLIENT;

use crate::broadcast::{self, presence, send};
use crate::transitions::{inbound, outbound, SubKind};

/// RFC 6121 presence: subscriptions, broadcasts, probes and directed presence.
#[derive(Default)]
pub struct PresenceModule;

/// Applies a state change to `owner`'s item for `contact` and pushes it when visible.
async fn update<R>(
    router: &Arc<Router>,
    owner: &BareJid,
    contact: &BareJid,
    f: impl FnOnce(&mut RosterItem) -> (bool, bool, R),
) -> Option<R> {
    let store = roster_of(router, owner)?;
    let mut out = None;
    let mut visible = false;
    let result = store
        .update(contact.as_str(), |item| {
            let (changed, push_it, r) = f(item);
            out = Some(r);
            visible = push_it;
            changed
        })
        .await;
    match result {
        Ok(Some((item, ver))) if visible => push(router, owner, item.to_element(), ver),
        Ok(_) => {}
        Err(e) => {
            warn!(jid = %owner, "roster update failed: {e}");
            return None;
        }
    }
    out
}

/// Presence from every available resource of `owner` to `to`.
async fn current_presence(router: &Arc<Router>, owner: &BareJid, to: &Jid) {
    for s in router.sessions().resources(owner) {
        if let Some(p) = s.presence().presence {
            send(router, Jid::from(s.jid().clone()), to.clone(), p).await;
        }
    }
}

async fn unavailable_to(router: &Arc<Router>, owner: &BareJid, to: &Jid) {
    for s in router
        .sessions()
        .resources(owner)
        .into_iter()
        .filter(|s| s.presence().available())
    {
        send(
            router,
            Jid::from(s.jid().clone()),
            to.clone(),
            presence(Some("unavailable")),
        )
        .await;
    }
}

/// Delivers an inbound stanza to every available resource of `owner` (RFC 6121 §3.1.3).
fn deliver_to_available(router: &Router, owner: &BareJid, st: &Stanza) {
    for s in router
        .sessions()
        .resources(owner)
        .into_iter()
        .filter(|s| s.presence().available())
    {
        router.deliver(&s, st);
    }
}

impl PresenceModule {
    /// A subscription stanza sent by a local user (RFC 6121 §3.x.2).
    async fn outbound_subscription(&self, router: &Arc<Router>, st: &Stanza, kind: SubKind) {
        let me = st.from.to_bare();
        let Some(to) = st.to.as_ref() else { return };
        let contact = to.to_bare();
        if contact == me {
            return;
        }
        let Some(o) = update(router, &me, &contact, |item| {
            let o = outbound(item, kind);
            (o.changed, o.changed, o)
        })
        .await
        else {
            return;
        };
        let contact_jid = Jid::from(contact.clone());
        if o.send_unavailable {
            unavailable_to(router, &me, &contact_jid).await;
        }
        if o.route {
            // §3.1.2: subscription stanzas carry the user's bare JID.
            send(
                router,
                Jid::from(me.clone()),
                contact_jid.clone(),
                st.el.clone(),
            )
            .await;
        }
        if o.send_presence {
            current_presence(router, &me, &contact_jid).await;
        }
    }

    /// A subscription stanza arriving for a local user (RFC 6121 §3.x.3).
    async fn inbound_subscription(
        &self,
        router: &Arc<Router>,
        st: &Stanza,
        owner: &BareJid,
        kind: SubKind,
    ) {
        let contact = st.from.to_bare();
        if &contact == owner {
            return;
        }
        let status = st.el.get_child("status", NS_CLIENT).map(|s| s.text());
        let Some(r) = update(router, owner, &contact, |item| {
            let r = inbound(item, kind, status);
            (r.changed, r.push, r)
        })
        .await
        else {
            return;
        };
        let contact_jid = Jid::from(contact.clone());
        if r.deliver {
            let el = st.el.clone();
            let fwd = Stanza::new(
                Kind::Presence,
                contact_jid.clone(),
                Some(Jid::from(owner.clone())),
                el,
            );
            deliver_to_available(router, owner, &fwd);
        }
        if r.auto_subscribed {
            send(
                router,
                Jid::from(owner.clone()),
                contact_jid.clone(),
                presence(Some("subscribed")),
            )
            .await;
        }
        if r.send_presence {
            current_presence(router, owner, &contact_jid).await;
        }
        if r.send_unavailable {
            unavailable_to(router, owner, &contact_jid).await;
        }
        debug!(owner = %owner, contact = %contact, ?kind, "inbound subscription processed");
    }

    /// Directed presence from a client (§4.6): remembered so it can be revoked on unavailable.
    async fn directed(&self, router: &Arc<Router>, session: &SessionHandle, st: &Stanza) {
        let Some(to) = st.to.clone() else { return };
        let bare = session.jid().to_bare();
        if to.to_bare() == bare {
            return;
        }
        let subscribed = match roster_of(router, &bare) {
            Some(store) => store
                .get(to.to_bare().as_str())
                .await
                .ok()
                .flatten()
                .is_some_and(|i| i.subscription.has_from()),
            None => false,
        };
        session.update_presence(|p| {
            if st.el.attr("type") == Some("unavailable") {
                p.directed.remove(&to);
            } else if !subscribed && p.available() {
                p.directed.insert(to.clone());
            }
        });
    }
}

#[async_trait]
impl Module for PresenceModule {
    fn name(&self) -> &'static str {
        "presence"
    }

    fn register(&self, hooks: &mut Hooks) {
        hooks.on(Event::PresenceBroadcast);
        hooks.on(Event::Outgoing(Kind::Presence));
        hooks.on(Event::Presence(Target::Bare));
        hooks.on(Event::Presence(Target::Full));
        hooks.on_session();
    }

    async fn on_stanza(&self, event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        let router = ctx.router;
        let type_ = st.el.attr("type").unwrap_or("available").to_owned();
        match event {
            Event::PresenceBroadcast => {
                if let Some(s) = ctx.origin.session() {
                    broadcast::from_client(router, s, st).await;
                }
                Flow::Handled
            }
            Event::Outgoing(_) => match (SubKind::from_type(&type_), ctx.origin.session()) {
                (Some(kind), Some(_)) => {
                    self.outbound_subscription(router, st, kind).await;
                    Flow::Handled
                }
                (None, Some(s)) if matches!(type_.as_str(), "available" | "unavailable") => {
                    self.directed(router, s, st).await;
                    Flow::Continue
                }
                _ => Flow::Continue,
            },
            Event::Presence(target) => {
                let Some(owner) = st.to.as_ref().map(|t| t.to_bare()) else {
                    return Flow::Continue;
                };
                if let Some(kind) = SubKind::from_type(&type_) {
                    // §3.1.3: subscription stanzas to a full JID are handled as if to the bare JID.
                    self.inbound_subscription(router, st, &owner, kind).await;
                    return Flow::Handled;
                }
                if type_ == "probe" {
                    broadcast::probe(router, st, &owner).await;
                    return Flow::Handled;
                }
                // Available/unavailable: the router delivers to the account's resources (bare) or
                // to the addressed session (full).
                let _ = target;
                Flow::Continue
            }
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
        broadcast::unavailable(router, session, None).await;
    }
}
