//! Presence probes to local accounts (RFC 6121 §4.3) and directed presence from local
//! sessions (§4.6).

use std::sync::Arc;

use tracing::warn;

use tern_roster::roster_of;
use tern_router::{BareJid, Jid, Router, SessionHandle, Stanza};

use crate::broadcast::{presence, send, send_current};

/// Whether `contact` has a `from` (or `both`) subscription in `owner`'s roster, that is,
/// whether it may see the owner's presence. A read error counts as "no": presence is not
/// revealed on doubt.
pub(crate) async fn is_subscriber(router: &Router, owner: &BareJid, contact: &BareJid) -> bool {
    let Some(store) = roster_of(router, owner) else {
        return false;
    };
    match store.get(contact.as_str()).await {
        Ok(item) => item.is_some_and(|i| i.subscription.has_from()),
        Err(e) => {
            warn!(jid = %owner, "cannot read roster: {e}");
            false
        }
    }
}

/// A probe to a local account (§4.3.2), to its bare JID or to a full JID (answered the same
/// way: the prober's subscription is to the account, not to one resource).
pub(crate) async fn probe(router: &Arc<Router>, st: &Stanza, target: &BareJid) {
    let prober = st.from.to_bare();
    // An account is implicitly subscribed to itself (§4.2.2).
    let allowed = &prober == target || is_subscriber(router, target, &prober).await;
    let reply_to = Jid::from(prober);
    let from_bare = Jid::from(target.clone());
    if !allowed {
        // §4.3.2: a prober without a subscription learns nothing about the account's
        // presence; it gets "unsubscribed", which also lets its server repair a roster that
        // still claims a subscription.
        send(router, from_bare, reply_to, presence(Some("unsubscribed"))).await;
        return;
    }
    let any = router
        .sessions()
        .resources(target)
        .iter()
        .any(|s| s.presence().available());
    if any {
        send_current(router, target, &reply_to).await;
    } else if let Some((from, last)) = crate::last::load(router, target).await {
        // §4.3.2: subscribed, but no resource is available: the last unavailable presence,
        // stamped with when it was sent.
        send(router, from, reply_to, last).await;
    } else {
        // Never seen since the server kept track: a plain unavailable.
        send(router, from_bare, reply_to, presence(Some("unavailable"))).await;
    }
}

/// Directed presence from a session (§4.6.3): remembered while the session is available, so
/// the recipient can be told when it goes unavailable; forgotten on directed unavailable.
/// Subscribers are not tracked: the unavailable broadcast reaches them anyway.
pub(crate) async fn directed(router: &Arc<Router>, session: &SessionHandle, st: &Stanza) {
    let Some(to) = st.to.clone() else { return };
    let bare = session.jid().to_bare();
    if to.to_bare() == bare {
        return;
    }
    if st.type_() == "unavailable" {
        session.update_presence(|p| p.directed.remove(&to));
        return;
    }
    if !session.presence().available() || is_subscriber(router, &bare, &to.to_bare()).await {
        return;
    }
    session.update_presence(|p| {
        // Checked again under the lock: the session may have gone unavailable meanwhile, and
        // an entry left then would never be cleared by an unavailable broadcast.
        if p.available() {
            p.directed.insert(to);
        }
    });
}
