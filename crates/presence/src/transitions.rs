//! The subscription state machine of RFC 6121 §3 and Appendix A, as pure functions on a
//! roster item. Each returns what the server must do besides storing the item; the tables of
//! Appendix A are checked row by row in the tests.

use minidom::Element;

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
    /// The item changed: store it (and push it if it is listed).
    pub changed: bool,
    /// Route the stanza to the contact.
    pub route: bool,
    /// The contact just gained our presence: send it our current presence (RFC 6121 §3.1.5).
    pub send_presence: bool,
    /// The contact just lost our presence: send it unavailable (RFC 6121 §3.2.2).
    pub send_unavailable: bool,
}

/// RFC 6121 §3.1.2, §3.2.2, §3.3.2, §3.4 and Appendix A.2: the owner sends `kind` to the
/// item's contact.
pub fn outbound(item: &mut RosterItem, kind: SubKind) -> Outbound {
    let before = item.clone();
    let mut out = Outbound {
        route: true,
        ..Default::default()
    };
    match kind {
        SubKind::Subscribe => {
            // §3.1.2: the contact goes on the roster, pending out unless already subscribed.
            // The request is routed even then, so the contact's server can answer it again.
            item.listed = true;
            if !item.subscription.has_to() {
                item.ask = true;
            }
        }
        SubKind::Subscribed => {
            if item.pending_in {
                item.clear_pending_request();
                item.subscription = item.subscription.with_from(true);
                item.listed = true;
                out.send_presence = true;
            } else if !item.subscription.has_from() {
                // §3.4: nothing to approve yet, so this is a pre-approval; the server keeps
                // it and does not route the stanza.
                item.approved = true;
                item.listed = true;
                out.route = false;
            } else {
                // A.2.2: already approved; nothing to tell the contact.
                out.route = false;
            }
        }
        SubKind::Unsubscribe => {
            item.ask = false;
            item.subscription = item.subscription.with_to(false);
        }
        SubKind::Unsubscribed => {
            // Denies a pending request, revokes a subscription, or cancels a pre-approval
            // (§3.2.2, §3.4).
            out.send_unavailable = item.subscription.has_from();
            item.clear_pending_request();
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

/// RFC 6121 §3.1.3, §3.1.6, §3.2.3, §3.3.3 and Appendix A.3: the contact sends `kind` (the
/// stanza `request`) to the owner.
pub fn inbound(item: &mut RosterItem, kind: SubKind, request: &Element) -> Inbound {
    let before = item.clone();
    let mut r = Inbound::default();
    match kind {
        SubKind::Subscribe => {
            if item.subscription.has_from() {
                // §3.1.3: already subscribed; answer for the owner without asking again. The
                // requester evidently lost track, so it gets the current presence too, which a
                // subscriber may receive at any time.
                r.auto_subscribed = true;
                r.send_presence = true;
            } else if item.approved {
                // §3.4: pre-approved; approve now and consume the pre-approval.
                item.approved = false;
                item.subscription = item.subscription.with_from(true);
                r.auto_subscribed = true;
                r.send_presence = true;
            } else {
                // §3.1.3: keep the request (for redelivery at login) and deliver it. A repeated
                // request is delivered again: the first may have gone to a client that is gone.
                item.set_pending_request(request);
                r.deliver = true;
            }
        }
        SubKind::Subscribed => {
            // §3.1.6: only an answer to our own pending request counts; anything else is
            // neither stored nor delivered.
            if item.ask {
                item.ask = false;
                item.subscription = item.subscription.with_to(true);
                r.deliver = true;
            }
        }
        SubKind::Unsubscribe => {
            // §3.3.3: the contact stops receiving our presence, or withdraws its request.
            if item.subscription.has_from() || item.pending_in {
                r.send_unavailable = item.subscription.has_from();
                item.subscription = item.subscription.with_from(false);
                item.clear_pending_request();
                r.deliver = true;
            }
        }
        SubKind::Unsubscribed => {
            // §3.2.3: our subscription (or request) is cancelled or denied.
            if item.subscription.has_to() || item.ask {
                item.ask = false;
                item.subscription = item.subscription.with_to(false);
                r.deliver = true;
            }
        }
    }
    r.changed = *item != before;
    // Only a change the client can see is pushed: pending-in has no roster attribute (the
    // delivered request is the notice) and hidden items are not on the client's roster.
    let visible = before.subscription != item.subscription
        || before.ask != item.ask
        || before.approved != item.approved;
    r.push = r.changed && visible && item.listed;
    r
}

#[cfg(test)]
mod tests;
