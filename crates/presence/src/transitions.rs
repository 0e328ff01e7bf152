//! The subscription state machine of RFC 6121 §3 and Appendix A, as pure functions on a
//! roster item. Each returns what the server must do besides storing the item.

use tern_roster::RosterItem;

/// A subscription-related presence type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    /// Request to receive presence.
    Subscribe,
    /// Approval of a request (or pre-approval).
    Subscribed,
    /// Cancel receiving presence.
    Unsubscribe,
    /// Deny or revoke a subscription.
    Unsubscribed,
}

impl SubKind {
    /// From the presence `type` attribute.
    pub fn from_type(t: &str) -> Option<SubKind> {
        Some(match t {
            "subscribe" => SubKind::Subscribe,
            "subscribed" => SubKind::Subscribed,
            "unsubscribe" => SubKind::Unsubscribe,
            "unsubscribed" => SubKind::Unsubscribed,
            _ => return None,
        })
    }
}

/// What follows an outbound subscription stanza from the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outbound {
    /// The item changed: store it and push it.
    pub changed: bool,
    /// Route the stanza to the contact.
    pub route: bool,
    /// The contact just gained our presence: send it our current presence (RFC 6121 §3.1.5).
    pub send_presence: bool,
    /// The contact just lost our presence: send it unavailable (RFC 6121 §3.2.2).
    pub send_unavailable: bool,
}

/// RFC 6121 §3.1.2, §3.2.2, §3.3.2, §3.4: the owner sends `kind` to the item's contact.
pub fn outbound(item: &mut RosterItem, kind: SubKind) -> Outbound {
    let before = item.clone();
    let mut out = Outbound {
        route: true,
        ..Default::default()
    };
    match kind {
        SubKind::Subscribe => {
            item.listed = true;
            if !item.subscription.has_to() {
                item.ask = true;
            }
        }
        SubKind::Subscribed => {
            if item.pending_in {
                item.pending_in = false;
                item.pending_status = None;
                item.subscription = item.subscription.with_from(true);
                item.listed = true;
                out.send_presence = true;
            } else if !item.subscription.has_from() {
                // §3.4: no request is pending, so this pre-approves; it is not routed.
                item.approved = true;
                item.listed = true;
                out.route = false;
            } else {
                out.route = false;
            }
        }
        SubKind::Unsubscribe => {
            item.ask = false;
            item.subscription = item.subscription.with_to(false);
        }
        SubKind::Unsubscribed => {
            out.send_unavailable = item.subscription.has_from();
            item.pending_in = false;
            item.pending_status = None;
            item.approved = false;
            item.subscription = item.subscription.with_from(false);
        }
    }
    out.changed = *item != before;
    out
}

/// What follows an inbound subscription stanza from the contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inbound {
    /// The item changed: store it, and push it when `push` says so.
    pub changed: bool,
    /// The change is visible on the roster: push it to interested resources.
    pub push: bool,
    /// Deliver the stanza to the owner's available resources.
    pub deliver: bool,
    /// Answer the contact with `subscribed` on the owner's behalf.
    pub auto_subscribed: bool,
    /// The contact no longer receives the owner's presence: send it unavailable (RFC 6121 §3.3.3).
    pub send_unavailable: bool,
    /// The contact just gained the owner's presence: send it the current presence.
    pub send_presence: bool,
}

/// RFC 6121 §3.1.3, §3.1.6, §3.2.3, §3.3.3: the contact sends `kind` to the owner.
pub fn inbound(item: &mut RosterItem, kind: SubKind, status: Option<String>) -> Inbound {
    let before = item.clone();
    let mut r = Inbound::default();
    match kind {
        SubKind::Subscribe => {
            if item.subscription.has_from() {
                r.auto_subscribed = true;
            } else if item.approved {
                item.approved = false;
                item.subscription = item.subscription.with_from(true);
                r.auto_subscribed = true;
                r.send_presence = true;
            } else {
                item.pending_in = true;
                item.pending_status = status;
                r.deliver = true;
            }
        }
        SubKind::Subscribed => {
            // §3.1.6: only an answer to our own pending request counts.
            if item.ask {
                item.ask = false;
                item.subscription = item.subscription.with_to(true);
                r.deliver = true;
            }
        }
        SubKind::Unsubscribe => {
            if item.subscription.has_from() || item.pending_in {
                r.send_unavailable = item.subscription.has_from();
                item.subscription = item.subscription.with_from(false);
                item.pending_in = false;
                item.pending_status = None;
                r.deliver = true;
            }
        }
        SubKind::Unsubscribed => {
            if item.subscription.has_to() || item.ask {
                item.ask = false;
                item.subscription = item.subscription.with_to(false);
                r.deliver = true;
            }
        }
    }
    r.changed = *item != before;
    r.push =
        r.changed && (item.listed || before.listed) && !(kind == SubKind::Subscribe && r.deliver);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_roster::Subscription::*;

    fn item() -> RosterItem {
        RosterItem::new("c@example.com")
    }

    #[test]
    fn full_handshake_both_ways() {
        // User side: subscribe → none + pending out.
        let mut u = item();
        assert!(outbound(&mut u, SubKind::Subscribe).route);
        assert!(u.ask && u.subscription == None);
        // Contact side: inbound subscribe → pending in, delivered, not listed.
        let mut c = RosterItem {
            listed: false,
            ..item()
        };
        let r = inbound(&mut c, SubKind::Subscribe, Some("hi".into()));
        assert!(r.deliver && !r.push && c.pending_in && !c.listed);
        // Contact approves → from, presence sent.
        let o = outbound(&mut c, SubKind::Subscribed);
        assert!(o.route && o.send_presence && c.subscription == From && c.listed && !c.pending_in);
        // User receives subscribed → to.
        let r = inbound(&mut u, SubKind::Subscribed, Option::None);
        assert!(r.deliver && r.push && u.subscription == To && !u.ask);
        // Reverse direction.
        outbound(&mut c, SubKind::Subscribe);
        inbound(&mut u, SubKind::Subscribe, Option::None);
        outbound(&mut u, SubKind::Subscribed);
        inbound(&mut c, SubKind::Subscribed, Option::None);
        assert_eq!((u.subscription, c.subscription), (Both, Both));
    }

    #[test]
    fn unsolicited_subscribed_is_ignored() {
        let mut u = item();
        let r = inbound(&mut u, SubKind::Subscribed, Option::None);
        assert!(!r.deliver && !r.changed && u.subscription == None);
    }

    #[test]
    fn pre_approval_auto_answers() {
        let mut c = item();
        let o = outbound(&mut c, SubKind::Subscribed);
        assert!(!o.route && c.approved);
        let r = inbound(&mut c, SubKind::Subscribe, Option::None);
        assert!(r.auto_subscribed && !r.deliver && c.subscription == From && !c.approved);
    }

    #[test]
    fn subscribe_when_already_from_is_auto_answered() {
        let mut c = RosterItem {
            subscription: Both,
            ..item()
        };
        let r = inbound(&mut c, SubKind::Subscribe, Option::None);
        assert!(r.auto_subscribed && !r.changed);
    }

    #[test]
    fn cancellations() {
        let mut u = RosterItem {
            subscription: Both,
            ..item()
        };
        let o = outbound(&mut u, SubKind::Unsubscribed);
        assert!(o.send_unavailable && u.subscription == To);
        let o = outbound(&mut u, SubKind::Unsubscribe);
        assert!(o.route && u.subscription == None);
        let mut c = RosterItem {
            subscription: From,
            ..item()
        };
        let r = inbound(&mut c, SubKind::Unsubscribe, Option::None);
        assert!(r.deliver && r.send_unavailable && c.subscription == None);
        let r = inbound(&mut c, SubKind::Unsubscribed, Option::None);
        assert!(!r.deliver, "nothing to cancel");
    }
}
