//! Roster pushes (RFC 6121 §2.1.6) and access to an account's roster, shared with the presence
//! module, whose subscription changes are roster changes too.

use std::sync::atomic::{AtomicU64, Ordering};

use minidom::Element;

use tern_router::xml::BuilderExt;
use tern_router::{BareJid, Router};
use tern_stream::NS_CLIENT;

use crate::item::{RosterItem, NS_ROSTER};
use crate::store::RosterStore;

/// The roster of a local account (`None` for a JID without a localpart, which has none).
pub fn roster_of<'a>(router: &'a Router, bare: &'a BareJid) -> Option<RosterStore<'a>> {
    let user = bare.node()?.as_str();
    Some(RosterStore::new(
        router.storage().map.as_ref(),
        bare.domain().as_str(),
        user,
    ))
}

static PUSH_ID: AtomicU64 = AtomicU64::new(1);

/// Sends a roster push carrying `item` and the new version to every interested resource of
/// `owner`: those that requested the roster in this session (RFC 6121 §2.1.6). The push has no
/// `from`, which clients must accept as coming from their own account.
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
        // A full or closed queue is the session's problem; the roster itself is stored, and a
        // client that missed a push gets the change with its next versioned roster get.
        let _ = s.send(iq);
    }
}

/// Pushes a changed item if the client can see it; hidden state (a stranger's pending
/// request, RFC 6121 §3.1.3) is never pushed.
pub fn push_item(router: &Router, owner: &BareJid, item: &RosterItem, ver: u64) {
    if item.listed {
        push(router, owner, item.to_element(), ver);
    }
}
