//! RFC 6121 Appendix A, row by row: for each of the nine states and each subscription stanza,
//! the state after it, and whether the stanza travels on.

use minidom::Element;

use super::*;
use tern_roster::Subscription::{self, Both, From, None as No, To};

/// One row's state: subscription, pending out, pending in.
type State = (Subscription, bool, bool);

/// The nine states of Appendix A, in the RFC's order.
const STATES: [State; 9] = [
    (No, false, false),
    (No, true, false),
    (No, false, true),
    (No, true, true),
    (To, false, false),
    (To, false, true),
    (From, false, false),
    (From, true, false),
    (Both, false, false),
];

fn item(s: State) -> RosterItem {
    let mut i = RosterItem::new("contact@example.com");
    i.subscription = s.0;
    i.ask = s.1;
    i.pending_in = s.2;
    i
}

fn state(i: &RosterItem) -> State {
    (i.subscription, i.ask, i.pending_in)
}

fn request(kind: &str) -> Element {
    format!("<presence xmlns='jabber:client' type='{kind}'/>")
        .parse()
        .unwrap()
}

/// Checks one table: `after[n]` is the state that follows `STATES[n]`.
fn check_outbound(kind: SubKind, after: [State; 9]) {
    for (s, want) in STATES.into_iter().zip(after) {
        let mut i = item(s);
        outbound(&mut i, kind);
        assert_eq!(state(&i), want, "{kind:?} outbound from {s:?}");
    }
}

fn check_inbound(kind: SubKind, after: [State; 9], delivered: [bool; 9]) {
    let el = request("x");
    for ((s, want), deliver) in STATES.into_iter().zip(after).zip(delivered) {
        let mut i = item(s);
        let r = inbound(&mut i, kind, &el);
        assert_eq!(state(&i), want, "{kind:?} inbound from {s:?}");
        assert_eq!(r.deliver, deliver, "{kind:?} inbound delivery from {s:?}");
    }
}

const N: State = (No, false, false);
const N_PO: State = (No, true, false);
const N_PI: State = (No, false, true);
const N_POPI: State = (No, true, true);
const T: State = (To, false, false);
const T_PI: State = (To, false, true);
const F: State = (From, false, false);
const F_PO: State = (From, true, false);
const B: State = (Both, false, false);

#[test]
fn a_2_1_outbound_subscribe() {
    check_outbound(
        SubKind::Subscribe,
        [N_PO, N_PO, N_POPI, N_POPI, T, T_PI, F_PO, F_PO, B],
    );
}

#[test]
fn a_2_2_outbound_subscribed() {
    check_outbound(SubKind::Subscribed, [N, N_PO, F, F_PO, T, B, F, F_PO, B]);
}

#[test]
fn a_2_3_outbound_unsubscribe() {
    check_outbound(SubKind::Unsubscribe, [N, N, N_PI, N_PI, N, N_PI, F, F, F]);
}

#[test]
fn a_2_4_outbound_unsubscribed() {
    check_outbound(SubKind::Unsubscribed, [N, N_PO, N, N_PO, T, T, N, N_PO, T]);
}

#[test]
fn a_3_1_inbound_subscribe() {
    check_inbound(
        SubKind::Subscribe,
        [N_PI, N_POPI, N_PI, N_POPI, T_PI, T_PI, F, F_PO, B],
        [true, true, true, true, true, true, false, false, false],
    );
}

#[test]
fn a_3_2_inbound_subscribed() {
    check_inbound(
        SubKind::Subscribed,
        [N, T, N_PI, T_PI, T, T_PI, F, B, B],
        [false, true, false, true, false, false, false, true, false],
    );
}

#[test]
fn a_3_3_inbound_unsubscribe() {
    check_inbound(
        SubKind::Unsubscribe,
        [N, N_PO, N, N_PO, T, T, N, N_PO, T],
        [false, false, true, true, false, true, true, true, true],
    );
}

#[test]
fn a_3_4_inbound_unsubscribed() {
    check_inbound(
        SubKind::Unsubscribed,
        [N, N, N_PI, N_PI, N, N_PI, F, F, F],
        [false, true, false, true, true, true, false, true, true],
    );
}

#[test]
fn pre_approval_is_kept_not_routed_then_consumed() {
    let mut c = item(N);
    let o = outbound(&mut c, SubKind::Subscribed);
    assert!(!o.route && o.changed && c.approved && c.listed);
    let r = inbound(&mut c, SubKind::Subscribe, &request("subscribe"));
    assert!(r.auto_subscribed && r.send_presence && !r.deliver && r.push);
    assert!(c.subscription == From && !c.approved && !c.pending_in);
}

#[test]
fn unsubscribed_cancels_pre_approval() {
    let mut c = item(N);
    outbound(&mut c, SubKind::Subscribed);
    let o = outbound(&mut c, SubKind::Unsubscribed);
    assert!(o.changed && !c.approved && !o.send_unavailable);
}

#[test]
fn subscribe_from_subscriber_is_answered_for_the_owner() {
    for s in [F, F_PO, B] {
        let mut c = item(s);
        let r = inbound(&mut c, SubKind::Subscribe, &request("subscribe"));
        assert!(r.auto_subscribed && !r.changed && !r.deliver, "{s:?}");
    }
}

#[test]
fn approving_sends_presence_and_revoking_sends_unavailable() {
    let mut c = item(N_PI);
    let o = outbound(&mut c, SubKind::Subscribed);
    assert!(o.route && o.send_presence && !o.send_unavailable);
    let o = outbound(&mut c, SubKind::Unsubscribed);
    assert!(o.route && o.send_unavailable && !o.send_presence);
    let mut c = item(B);
    let r = inbound(&mut c, SubKind::Unsubscribe, &request("unsubscribe"));
    assert!(r.send_unavailable && r.push);
}

#[test]
fn stranger_request_is_kept_hidden_and_never_pushed() {
    let mut c = RosterItem::hidden("stranger@example.com");
    let el: Element =
        "<presence xmlns='jabber:client' type='subscribe'><status>hi</status></presence>"
            .parse()
            .unwrap();
    let r = inbound(&mut c, SubKind::Subscribe, &el);
    assert!(r.deliver && r.changed && !r.push && !c.listed);
    assert!(c.pending_request.as_deref().unwrap().contains("hi"));
    // Declining it leaves nothing to keep, and still nothing to push.
    let o = outbound(&mut c, SubKind::Unsubscribed);
    assert!(o.route && o.changed && c.is_empty());
}

#[test]
fn full_handshake_both_ways() {
    let (mut u, mut c) = (item(N), RosterItem::hidden("user@example.com"));
    let sub = request("subscribe");
    assert!(outbound(&mut u, SubKind::Subscribe).route);
    assert!(inbound(&mut c, SubKind::Subscribe, &sub).deliver);
    assert!(outbound(&mut c, SubKind::Subscribed).send_presence);
    assert!(inbound(&mut u, SubKind::Subscribed, &sub).push);
    assert_eq!((state(&u), state(&c)), (T, F));
    outbound(&mut c, SubKind::Subscribe);
    inbound(&mut u, SubKind::Subscribe, &sub);
    assert_eq!((state(&u), state(&c)), (T_PI, F_PO));
    outbound(&mut u, SubKind::Subscribed);
    inbound(&mut c, SubKind::Subscribed, &sub);
    assert_eq!((state(&u), state(&c)), (B, B));
}
