//! Subscription stanzas (RFC 6121 §3): the owner's outbound ones and a contact's inbound ones,
//! run through the state machine in [`crate::transitions`] and stored on the roster.

use std::sync::Arc;

use tracing::{debug, warn};

use tern_roster::{push_item, roster_of, RosterItem};
use tern_router::{BareJid, Condition, Jid, Kind, Router, Stanza};

use crate::broadcast::{deliver_to_available, presence, send, send_current, send_unavailable};
use crate::transitions::{inbound, outbound, SubKind};

/// Applies a state change to `owner`'s item for `contact`, stores it and pushes it when the
/// closure says the change is visible. `None` when the roster could not be read or written.
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
        Ok(Some((item, ver))) if visible => push_item(router, owner, &item, ver),
        Ok(_) => {}
        Err(e) => {
            warn!(jid = %owner, "roster update failed: {e}");
            return None;
        }
    }
    out
}

/// A subscription stanza sent by a local user (RFC 6121 §3.1.2, §3.2.2, §3.3.2, §3.4).
pub(crate) async fn outbound_subscription(router: &Arc<Router>, st: &Stanza, kind: SubKind) {
    let me = st.from.to_bare();
    // §3.1.2: a request to a full JID is about the contact's bare JID. Without `to` the
    // stanza is addressed to the account itself (RFC 6120 §10.3), like an explicit self-address.
    let contact = st.to.as_ref().map_or_else(|| me.clone(), Jid::to_bare);
    if contact == me {
        // An account is implicitly subscribed to itself (§4.2.2); there is nothing to store.
        return;
    }
    let Some(o) = update(router, &me, &contact, |item| {
        let o = outbound(item, kind);
        (o.changed, o.changed, o)
    })
    .await
    else {
        return router
            .bounce(st, Condition::InternalServerError.into())
            .await;
    };
    let contact_jid = Jid::from(contact);
    if o.route {
        // §3.1.2: subscription stanzas leave with the user's bare JID as `from`.
        send(
            router,
            Jid::from(me.clone()),
            contact_jid.clone(),
            st.el.clone(),
        )
        .await;
    }
    if o.send_presence {
        // §3.1.5: the new subscriber gets the current presence of every available resource.
        send_current(router, &me, &contact_jid).await;
    }
    if o.send_unavailable {
        // §3.2.2: after the cancellation, the former subscriber learns we are unavailable.
        send_unavailable(router, &me, &contact_jid).await;
    }
}

/// A subscription stanza arriving for a local user `owner` (RFC 6121 §3.1.3, §3.1.6, §3.2.3,
/// §3.3.3). A `to` with a resource is treated as the bare JID (§3.1.3).
pub(crate) async fn inbound_subscription(
    router: &Arc<Router>,
    st: &Stanza,
    owner: &BareJid,
    kind: SubKind,
) {
    let contact = st.from.to_bare();
    if &contact == owner {
        return;
    }
    let Some(r) = update(router, owner, &contact, |item| {
        let r = inbound(item, kind, &st.el);
        (r.changed, r.push, r)
    })
    .await
    else {
        return;
    };
    let contact_jid = Jid::from(contact.clone());
    if r.deliver {
        // §3.1.3: to every available resource; with none, a request waits in the roster for
        // the next initial presence, and the other kinds are reflected by the stored state.
        let fwd = Stanza::new(
            Kind::Presence,
            contact_jid.clone(),
            Some(Jid::from(owner.clone())),
            st.el.clone(),
        );
        deliver_to_available(router, owner, &fwd);
    }
    if r.auto_subscribed {
        let approval = presence(Some("subscribed"));
        send(
            router,
            Jid::from(owner.clone()),
            contact_jid.clone(),
            approval,
        )
        .await;
    }
    if r.send_presence {
        send_current(router, owner, &contact_jid).await;
    }
    if r.send_unavailable {
        // §3.3.3: the former subscriber stops seeing the owner.
        send_unavailable(router, owner, &contact_jid).await;
    }
    debug!(owner = %owner, contact = %contact, ?kind, "inbound subscription processed");
}
