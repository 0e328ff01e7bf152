//! Writing the archive: which messages are stored (XEP-0313 §5.1.1 with the XEP-0334 hints),
//! archive ids, and the XEP-0359 `<stanza-id/>` that tells the recipient where its copy is.

use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine;
use jid::{BareJid, Jid};
use minidom::{Element, Node};

use tern_router::time::now_micros;
use tern_router::xml::BuilderExt;
use tern_router::Router;
use tern_storage::{ArchiveItem, StoreError};

/// Archive store name (also used by the MUC service for room archives, under its domain).
pub const STORE: &str = "mam";
/// XEP-0359 namespace.
pub const NS_SID: &str = "urn:xmpp:sid:0";
/// XEP-0334 hints namespace.
const NS_HINTS: &str = "urn:xmpp:hints";

/// XEP-0313 §5.1.1: messages of type chat or normal with a body are archived; groupchat (no
/// MUC archive yet) and errors never are. XEP-0334: `<no-store/>` and `<no-permanent-store/>`
/// keep a message out (an archive is permanent storage), `<store/>` puts an otherwise skipped
/// one in (a body-less chat message, a headline).
pub(crate) fn worth_archiving(el: &Element) -> bool {
    let type_ = el.attr("type").unwrap_or("normal");
    if matches!(type_, "error" | "groupchat") {
        return false;
    }
    if el.has_child("no-store", NS_HINTS) || el.has_child("no-permanent-store", NS_HINTS) {
        return false;
    }
    if el.has_child("store", NS_HINTS) {
        return true;
    }
    // The stanza's own namespace: jabber:client from clients, jabber:server from peers.
    matches!(type_, "chat" | "normal") && el.has_child("body", el.ns().as_str())
}

/// Never archived, whatever other modules say: errors, groupchat (no MUC archive yet) and
/// messages whose sender asked for no permanent storage (XEP-0334).
pub(crate) fn excluded(el: &Element) -> bool {
    matches!(el.attr("type"), Some("error" | "groupchat"))
        || el.has_child("no-store", NS_HINTS)
        || el.has_child("no-permanent-store", NS_HINTS)
}

/// XEP-0359 §5: nobody but this server may claim an id in the account's archive, so every
/// `<stanza-id/>` with `by` naming the archive is removed before the message goes further.
pub fn strip_stanza_ids(el: &mut Element, by: &BareJid) {
    let ours = |c: &Element| {
        c.is("stanza-id", NS_SID)
            && c.attr("by")
                .and_then(|b| Jid::new(b).ok())
                .is_some_and(|b| b == *by)
    };
    if !el.children().any(ours) {
        return;
    }
    for node in el.take_nodes() {
        match &node {
            Node::Element(c) if ours(c) => {}
            _ => el.append_node(node),
        }
    }
}

/// The `<stanza-id/>` for an archived message.
pub fn stanza_id(id: &str, by: &BareJid) -> Element {
    Element::builder("stanza-id", NS_SID)
        .a("id", id)
        .a("by", by.as_str())
        .build()
}

/// A timestamp that never goes backwards within the process, so archive order (by time, then
/// insertion) is arrival order even if the clock is stepped back, and no two items share one.
pub fn next_when() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = now_micros();
    let prev = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    now.max(prev + 1)
}

/// A fresh archive id: 8 bytes of time (ids sort roughly by age, handy when reading logs)
/// and 8 random bytes (XEP-0313 §3: unpredictable), base64url without padding: 22 URL-safe
/// characters.
pub fn new_id(when: i64) -> String {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&when.to_be_bytes());
    raw[8..].copy_from_slice(&rand::random::<[u8; 8]>());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Appends `el` to `owner`'s archive with `peer` as its `with`; returns the archive id.
pub async fn append(
    router: &Router,
    owner: &BareJid,
    peer: &BareJid,
    el: &Element,
) -> Result<String, StoreError> {
    let mut data = Vec::new();
    el.write_to(&mut data)
        .map_err(|e| StoreError::Backend(format!("cannot serialize message: {e}")))?;
    let (host, user) = (
        owner.domain().as_str(),
        owner.node().map_or("", |n| n.as_str()),
    );
    let when = next_when();
    let mut item = ArchiveItem {
        id: new_id(when),
        when,
        with: peer.to_string(),
        data,
    };
    // A collision of 64 random bits is next to impossible; one retry covers it anyway.
    for attempt in 0..2 {
        match router
            .storage()
            .archive
            .append(host, STORE, user, &item)
            .await
        {
            Err(StoreError::Conflict) if attempt == 0 => item.id = new_id(when),
            r => return r.map(|()| item.id),
        }
    }
    unreachable!("the loop returns on its second attempt")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Element {
        s.parse().unwrap()
    }

    #[test]
    fn what_is_archived() {
        let yes = [
            "<message xmlns='jabber:client' type='chat'><body>hi</body></message>",
            "<message xmlns='jabber:client'><body>normal by default</body></message>",
            "<message xmlns='jabber:server' type='chat'><body>from a peer</body></message>",
            "<message xmlns='jabber:client' type='chat'><store xmlns='urn:xmpp:hints'/><x xmlns='urn:example'/></message>",
            "<message xmlns='jabber:client' type='headline'><body>b</body><store xmlns='urn:xmpp:hints'/></message>",
        ];
        let no = [
            "<message xmlns='jabber:client' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
            "<message xmlns='jabber:client' type='groupchat'><body>muc</body></message>",
            "<message xmlns='jabber:client' type='error'><body>e</body></message>",
            "<message xmlns='jabber:client' type='headline'><body>news</body></message>",
            "<message xmlns='jabber:client' type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>",
            "<message xmlns='jabber:client' type='chat'><body>x</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>",
            "<message xmlns='jabber:client' type='chat'><body>x</body><store xmlns='urn:xmpp:hints'/><no-store xmlns='urn:xmpp:hints'/></message>",
        ];
        for m in yes {
            assert!(worth_archiving(&parse(m)), "{m}");
        }
        for m in no {
            assert!(!worth_archiving(&parse(m)), "{m}");
        }
    }

    #[test]
    fn spoofed_stanza_ids_are_removed_others_kept() {
        let mut m = parse(
            "<message xmlns='jabber:client'><body>b</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='juliet@capulet.lit' id='fake1'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='Juliet@capulet.lit' id='fake2'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.capulet.lit' id='keep'/></message>",
        );
        let by = BareJid::new("juliet@capulet.lit").unwrap();
        strip_stanza_ids(&mut m, &by);
        let left: Vec<_> = m
            .children()
            .filter(|c| c.is("stanza-id", NS_SID))
            .map(|c| c.attr("id").unwrap())
            .collect();
        assert_eq!(left, ["keep"]);
    }

    #[test]
    fn ids_are_url_safe_unique_and_times_increase() {
        let mut last = 0;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let w = next_when();
            assert!(w > last);
            last = w;
            let id = new_id(w);
            assert_eq!(id.len(), 22);
            assert!(id
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
            assert!(seen.insert(id));
        }
    }
}
