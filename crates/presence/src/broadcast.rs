//! Presence broadcast: initial (RFC 6121 §4.2), subsequent (§4.4) and unavailable (§4.5)
//! presence, plus the small sending helpers the rest of the crate shares.

use std::sync::Arc;

use minidom::Element;
use tracing::warn;

use tern_roster::{roster_of, RosterItem};
use tern_router::xml::BuilderExt;
use tern_router::{
    BareJid, Jid, Kind, Origin, Router, SessionEvent, SessionHandle, SharedStanza, Stanza,
};
use tern_stream::NS_CLIENT;

/// Routes a presence stanza the server generates (or forwards for a user after processing it).
pub(crate) async fn send(router: &Arc<Router>, from: Jid, to: Jid, el: Element) {
    let st = Stanza::new(Kind::Presence, from, Some(to), el);
    router.route(Origin::Local, st).await;
}

/// An empty presence of the given type (`None`: available).
pub(crate) fn presence(type_: Option<&str>) -> Element {
    Element::builder("presence", NS_CLIENT)
        .a_opt("type", type_)
        .build()
}

/// The available sessions of an account.
pub(crate) fn available_sessions(router: &Router, owner: &BareJid) -> Vec<SessionHandle> {
    let mut all = router.sessions().resources(owner);
    all.retain(SessionHandle::is_available);
    all
}

/// Delivers a stanza to every available resource of `owner`, each with its own `to`.
pub(crate) fn deliver_to_available(router: &Router, owner: &BareJid, st: &Stanza) {
    for s in available_sessions(router, owner) {
        deliver_to(router, &s, st.from.clone(), st.el.clone());
    }
}

/// Queues a presence on one session, addressed to its full JID.
fn deliver_to(router: &Router, s: &SessionHandle, from: Jid, el: Element) {
    let to = Jid::from(s.jid().clone());
    router.deliver(s, &Stanza::new(Kind::Presence, from, Some(to), el));
}

/// A broadcast presence from `from`, serialized once for every local recipient.
fn shared(from: &Jid, el: Element) -> Arc<SharedStanza> {
    Arc::new(SharedStanza::new(
        Stanza::new(Kind::Presence, from.clone(), None, el).el,
    ))
}

/// Queues a shared presence on each of `sessions` (each writes its own full JID as `to`).
fn deliver_shared(sessions: &[SessionHandle], st: &Arc<SharedStanza>) {
    for s in sessions {
        if let Err(e) = s.send_shared(vec![st.clone()]) {
            warn!(to = %s.jid(), "delivery to session failed: {e:?}");
        }
    }
}

/// Sends a broadcast presence to each contact: every copy passes the router's hooks
/// (blocking, entity capabilities) as if routed alone, but local resources share one
/// serialization.
async fn broadcast(router: &Arc<Router>, st: &Arc<SharedStanza>, from: &Jid, to: &[BareJid]) {
    for c in to {
        router.route_shared(st, from, Jid::from(c.clone())).await;
    }
}

/// The last presence of each available resource of `owner`, sent to `to`.
pub(crate) async fn send_current(router: &Arc<Router>, owner: &BareJid, to: &Jid) {
    for s in router.sessions().resources(owner) {
        if let Some(p) = s.presence().presence {
            send(router, Jid::from(s.jid().clone()), to.clone(), p).await;
        }
    }
}

/// Unavailable from each available resource of `owner`, sent to `to`.
pub(crate) async fn send_unavailable(router: &Arc<Router>, owner: &BareJid, to: &Jid) {
    for s in available_sessions(router, owner) {
        let from = Jid::from(s.jid().clone());
        send(router, from, to.clone(), presence(Some("unavailable"))).await;
    }
}

/// The account's roster items, or none if it cannot be read (logged).
pub(crate) async fn items(router: &Router, bare: &BareJid) -> Vec<RosterItem> {
    let Some(store) = roster_of(router, bare) else {
        return Vec::new();
    };
    store.all().await.unwrap_or_else(|e| {
        warn!(jid = %bare, "cannot read roster: {e}");
        Vec::new()
    })
}

/// RFC 6121 §4.7.2.3: an integer from -128 to 127, 0 when absent; out-of-range values are
/// clamped rather than rejected, unparsable ones count as absent.
fn priority(el: &Element) -> i8 {
    el.get_child("priority", NS_CLIENT)
        .and_then(|p| p.text().trim().parse::<i64>().ok())
        .map(|p| p.clamp(i8::MIN.into(), i8::MAX.into()) as i8)
        .unwrap_or(0)
}

/// A broadcast from a client: initial, subsequent or unavailable presence.
pub(crate) async fn from_client(router: &Arc<Router>, session: &SessionHandle, st: &Stanza) {
    match st.el.attr("type") {
        None => available(router, session, st.el.clone()).await,
        Some("unavailable") => unavailable(router, session, Some(st.el.clone())).await,
        // Other types need an addressee (RFC 6121 §4.7.1); without one there is nobody to tell.
        _ => {}
    }
}

/// Available presence from a client (§4.2.2 initial, §4.4.2 subsequent).
async fn available(router: &Arc<Router>, session: &SessionHandle, el: Element) {
    let bare = session.jid().to_bare();
    let (initial, became_reachable) = session.update_presence(|p| {
        let initial = !p.available();
        let was_reachable = p.available() && p.priority >= 0;
        p.priority = priority(&el);
        p.presence = Some(el.clone());
        (initial, !was_reachable && p.priority >= 0)
    });
    let roster = items(router, &bare).await;
    let from = Jid::from(session.jid().clone());
    let st = shared(&from, el);
    let contacts: Vec<BareJid> = roster
        .iter()
        .filter(|i| i.subscription.has_from())
        .filter_map(RosterItem::bare)
        .collect();
    broadcast(router, &st, &from, &contacts).await;
    // The account's available resources see it too, the sender included: an account is
    // implicitly subscribed to its own presence (§4.2.2).
    deliver_shared(&available_sessions(router, &bare), &st);
    if initial {
        initial_extras(router, session, &roster).await;
    }
    if became_reachable {
        // Messages to the bare JID may now reach this session (RFC 6121 §8.5.2.1.1): tell the
        // modules that hold them back, such as offline storage.
        router.session_event(SessionEvent::Available, session).await;
    }
}

/// What only initial presence triggers: probes to the contacts we are subscribed to (§4.2.2),
/// the presence of the account's other resources, and requests that arrived while the account
/// was away (§3.1.3).
async fn initial_extras(router: &Arc<Router>, session: &SessionHandle, roster: &[RosterItem]) {
    let bare = session.jid().to_bare();
    let me_bare = Jid::from(bare.clone());
    for c in roster.iter().filter(|i| i.subscription.has_to()) {
        if let Some(c) = c.bare() {
            // §4.3.1: probes carry the bare JID; answers come back to it and reach every
            // available resource, this one included.
            send(
                router,
                me_bare.clone(),
                Jid::from(c),
                presence(Some("probe")),
            )
            .await;
        }
    }
    for s in available_sessions(router, &bare) {
        if s.id() != session.id() {
            if let Some(p) = s.presence().presence {
                deliver_to(router, session, Jid::from(s.jid().clone()), p);
            }
        }
    }
    for item in roster {
        if let (Some(req), Some(c)) = (item.pending_request_element(), item.bare()) {
            deliver_to(router, session, Jid::from(c), req);
        }
    }
}

/// Unavailable presence, explicit or because the session ended (§4.5.2): to contacts with a
/// `from` subscription and the account's other resources if the session was available, and to
/// every directed-presence recipient not already told (§4.6.3).
pub(crate) async fn unavailable(
    router: &Arc<Router>,
    session: &SessionHandle,
    el: Option<Element>,
) {
    let (was, directed) = session.update_presence(|p| {
        let was = p.available();
        p.presence = None;
        p.priority = 0;
        (was, std::mem::take(&mut p.directed))
    });
    let el = el.unwrap_or_else(|| presence(Some("unavailable")));
    let me = Jid::from(session.jid().clone());
    let bare = session.jid().to_bare();
    let mut told: Vec<BareJid> = Vec::new();
    if was {
        told = items(router, &bare)
            .await
            .iter()
            .filter(|i| i.subscription.has_from())
            .filter_map(RosterItem::bare)
            .collect();
        let st = shared(&me, el.clone());
        broadcast(router, &st, &me, &told).await;
        let others = available_sessions(router, &bare);
        deliver_shared(&others, &st);
        if others.is_empty() {
            crate::last::record(router, &bare, &me, &el).await;
        }
    }
    for to in directed {
        if !told.contains(&to.to_bare()) {
            send(router, me.clone(), to, el.clone()).await;
        }
    }
}
