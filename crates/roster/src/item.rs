//! The roster item and its subscription state (RFC 6121 §2.1.2, §3, Appendix A).

use jid::BareJid;
use minidom::Element;
use serde::{Deserialize, Serialize};

use tern_router::xml::BuilderExt;
use tern_stream::NS_CLIENT;

/// The roster namespace.
pub const NS_ROSTER: &str = "jabber:iq:roster";

/// Presence subscription between the owner and a contact (RFC 6121 §2.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subscription {
    /// Neither side is subscribed.
    #[default]
    None,
    /// The owner receives the contact's presence.
    To,
    /// The contact receives the owner's presence.
    From,
    /// Both.
    Both,
}

impl Subscription {
    /// Wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    /// The owner receives the contact's presence.
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    /// The contact receives the owner's presence.
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    /// With or without the "to" half.
    pub fn with_to(self, on: bool) -> Self {
        Self::from_halves(on, self.has_from())
    }

    /// With or without the "from" half.
    pub fn with_from(self, on: bool) -> Self {
        Self::from_halves(self.has_to(), on)
    }

    fn from_halves(to: bool, from: bool) -> Self {
        match (to, from) {
            (false, false) => Subscription::None,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (true, true) => Subscription::Both,
        }
    }
}

/// One contact of an account, with the subscription state the server tracks for it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RosterItem {
    /// The contact's bare JID (also the storage key).
    pub jid: String,
    /// Handle chosen by the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Groups chosen by the owner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Subscription state.
    #[serde(default)]
    pub subscription: Subscription,
    /// The owner asked to subscribe and the contact has not answered ("pending out", shown as
    /// `ask='subscribe'`, RFC 6121 §2.1.2.2).
    #[serde(default)]
    pub ask: bool,
    /// The contact asked to subscribe and the owner has not answered ("pending in").
    #[serde(default)]
    pub pending_in: bool,
    /// The pending request as received (XML), redelivered at each initial presence until the
    /// owner answers, extended content such as a XEP-0172 nick included (RFC 6121 §3.1.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_request: Option<String>,
    /// The owner pre-approved the contact's subscription (RFC 6121 §3.4).
    #[serde(default)]
    pub approved: bool,
    /// Whether the item is on the roster the client sees. An inbound request alone keeps
    /// state for the contact without adding it to the roster (RFC 6121 §3.1.3).
    #[serde(default = "yes")]
    pub listed: bool,
}

fn yes() -> bool {
    true
}

impl RosterItem {
    /// A listed item with no subscription.
    pub fn new(jid: &str) -> Self {
        RosterItem {
            jid: jid.to_owned(),
            listed: true,
            ..Default::default()
        }
    }

    /// A state-only item that is not on the visible roster (e.g. a stranger's pending request).
    pub fn hidden(jid: &str) -> Self {
        RosterItem {
            listed: false,
            ..RosterItem::new(jid)
        }
    }

    /// The contact's JID, parsed.
    pub fn bare(&self) -> Option<BareJid> {
        BareJid::new(&self.jid).ok()
    }

    /// Whether nothing is left worth keeping (a hidden item with no state).
    pub fn is_empty(&self) -> bool {
        !self.listed
            && !self.pending_in
            && !self.approved
            && !self.ask
            && self.subscription == Subscription::None
    }

    /// The `<item/>` element as clients see it (RFC 6121 §2.1.2). Pending-in is deliberately
    /// absent: the protocol has no attribute for it, the request itself tells the client.
    pub fn to_element(&self) -> Element {
        let mut b = Element::builder("item", NS_ROSTER)
            .a("jid", self.jid.as_str())
            .a("subscription", self.subscription.as_str())
            .a_opt("name", self.name.as_deref());
        if self.ask {
            b = b.a("ask", "subscribe");
        }
        if self.approved {
            b = b.a("approved", "true");
        }
        for g in &self.groups {
            b = b.append(
                Element::builder("group", NS_ROSTER)
                    .append(g.as_str())
                    .build(),
            );
        }
        b.build()
    }

    /// The `<item subscription='remove'/>` pushed when an item is deleted (RFC 6121 §2.5.2).
    pub fn removal_element(jid: &str) -> Element {
        Element::builder("item", NS_ROSTER)
            .a("jid", jid)
            .a("subscription", "remove")
            .build()
    }

    /// Records an inbound request, keeping the stanza so it can be redelivered later.
    pub fn set_pending_request(&mut self, request: &Element) {
        self.pending_in = true;
        let mut bytes = Vec::new();
        // A stanza that parsed cannot fail to serialize short of a minidom bug; losing the
        // extended content is then better than losing the request.
        self.pending_request = request
            .write_to(&mut bytes)
            .ok()
            .and_then(|()| String::from_utf8(bytes).ok());
    }

    /// Forgets the inbound request (answered or withdrawn).
    pub fn clear_pending_request(&mut self) {
        self.pending_in = false;
        self.pending_request = None;
    }

    /// The pending request to redeliver: the stored stanza, or a bare `subscribe` when none
    /// was kept (or it no longer parses). Addresses are re-stamped by whoever routes it.
    pub fn pending_request_element(&self) -> Option<Element> {
        if !self.pending_in {
            return None;
        }
        let stored = self
            .pending_request
            .as_deref()
            .and_then(|x| x.parse::<Element>().ok())
            .filter(|e| e.name() == "presence");
        Some(stored.unwrap_or_else(|| {
            Element::builder("presence", NS_CLIENT)
                .a("type", "subscribe")
                .build()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_compose() {
        assert_eq!(Subscription::None.with_to(true), Subscription::To);
        assert_eq!(Subscription::To.with_from(true), Subscription::Both);
        assert_eq!(Subscription::Both.with_to(false), Subscription::From);
        assert_eq!(Subscription::From.with_from(false), Subscription::None);
    }

    #[test]
    fn element_shows_ask_and_approved() {
        let mut i = RosterItem::new("bob@example.com");
        i.ask = true;
        i.approved = true;
        i.groups = vec!["Friends".into()];
        let e = i.to_element();
        assert_eq!(e.attr("ask"), Some("subscribe"));
        assert_eq!(e.attr("approved"), Some("true"));
        assert_eq!(e.attr("subscription"), Some("none"));
        assert_eq!(e.get_child("group", NS_ROSTER).unwrap().text(), "Friends");
    }

    #[test]
    fn stored_form_round_trips() {
        let mut i = RosterItem::hidden("bob@example.com");
        let req: Element = "<presence xmlns='jabber:client' type='subscribe'><status>hi</status>\
             <nick xmlns='http://jabber.org/protocol/nick'>Bob</nick></presence>"
            .parse()
            .unwrap();
        i.set_pending_request(&req);
        let json = serde_json::to_vec(&i).unwrap();
        let back = serde_json::from_slice::<RosterItem>(&json).unwrap();
        assert_eq!(back, i);
        let again = back.pending_request_element().unwrap();
        assert_eq!(again.attr("type"), Some("subscribe"));
        assert!(again.has_child("nick", "http://jabber.org/protocol/nick"));
    }

    #[test]
    fn pending_request_falls_back_to_plain_subscribe() {
        let mut i = RosterItem::hidden("bob@example.com");
        assert!(i.pending_request_element().is_none());
        i.pending_in = true;
        i.pending_request = Some("<not xml".into());
        assert_eq!(
            i.pending_request_element().unwrap().attr("type"),
            Some("subscribe")
        );
        i.clear_pending_request();
        assert!(i.is_empty());
    }
}
