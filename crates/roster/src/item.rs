//! The roster item and its subscription state (RFC 6121 §2.1.2, §3, Appendix A).

use minidom::Element;
use serde::{Deserialize, Serialize};

use tern_router::xml::BuilderExt;

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
    /// The contact's bare JID.
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
    /// The owner asked to subscribe and the contact has not answered ("pending out").
    #[serde(default)]
    pub ask: bool,
    /// The contact asked to subscribe and the owner has not answered ("pending in"); the
    /// request is kept so it can be delivered again at the next login (RFC 6121 §3.1.3).
    #[serde(default)]
    pub pending_in: bool,
    /// Text of the pending request's `<status/>`, shown again when it is redelivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_status: Option<String>,
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

    /// Whether nothing is left worth keeping (a hidden item with no state).
    pub fn is_empty(&self) -> bool {
        !self.listed
            && !self.pending_in
            && !self.approved
            && !self.ask
            && self.subscription == Subscription::None
    }

    /// The `<item/>` element as clients see it (RFC 6121 §2.1.2).
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

    /// The `<item subscription='remove'/>` pushed when an item is deleted.
    pub fn removal_element(jid: &str) -> Element {
        Element::builder("item", NS_ROSTER)
            .a("jid", jid)
            .a("subscription", "remove")
            .build()
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
        let mut i = RosterItem::new("bob@example.com");
        i.pending_in = true;
        i.listed = false;
        let json = serde_json::to_vec(&i).unwrap();
        assert_eq!(serde_json::from_slice::<RosterItem>(&json).unwrap(), i);
    }
}
