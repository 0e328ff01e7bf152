//! RFC 6121 §4 through the real router: initial presence and probes, subsequent and
//! unavailable broadcasts, session close, directed presence, and presence errors.

mod common;

use std::sync::Arc;

use common::*;
use tern_router::{Router, SessionHandle};

/// Alice and Bob subscribed both ways; Carol a stranger. Nobody online.
async fn friends() -> Arc<Router> {
    let router = server(&["alice", "bob", "carol"]).await;
    let a = login(&router, "alice", "setup").await;
    let b = login(&router, "bob", "setup").await;
    a.send("<presence to='bob@example.com' type='subscribe'/>")
        .await;
    b.send("<presence to='alice@example.com' type='subscribed'/>")
        .await;
    b.send("<presence to='alice@example.com' type='subscribe'/>")
        .await;
    a.send("<presence to='bob@example.com' type='subscribed'/>")
        .await;
    a.close().await;
    b.close().await;
    router
}

#[tokio::test]
async fn initial_presence_probes_and_is_broadcast() {
    let router = friends().await;
    let mut b = login(&router, "bob", "b").await;
    b.send("<presence><status>here</status><priority>5</priority></presence>")
        .await;
    let got = b.drain();
    // §4.2.2: the sender sees its own presence; Alice is offline, so her probe answer is
    // unavailable from her bare JID (§4.3.2).
    assert_eq!(
        presences(&got, None, "bob@example.com/b").len(),
        1,
        "{got:?}"
    );
    assert_eq!(
        presences(&got, Some("unavailable"), "alice@example.com").len(),
        1
    );
    assert_eq!(b.handle.presence().priority, 5);

    let mut a = login(&router, "alice", "a").await;
    let got = a.available().await;
    // The probe to Bob is answered with his last presence, from his full JID.
    let p = presences(&got, None, "bob@example.com/b");
    assert_eq!(p.len(), 1, "{got:?}");
    assert_eq!(p[0].get_child("status", C).unwrap().text(), "here");
    assert_eq!(p[0].attr("to"), Some("alice@example.com"));
    // Bob, a subscriber, receives Alice's initial presence.
    let got = b.drain();
    assert_eq!(
        presences(&got, None, "alice@example.com/a").len(),
        1,
        "{got:?}"
    );
}

#[tokio::test]
async fn own_resources_see_each_other() {
    let router = friends().await;
    let mut a1 = login(&router, "alice", "one").await;
    a1.send("<presence><show>away</show></presence>").await;
    a1.drain();
    let mut a2 = login(&router, "alice", "two").await;
    let got = a2.available().await;
    // §4.2.2: the new resource gets the other's presence and its own echo.
    let other = presences(&got, None, "alice@example.com/one");
    assert_eq!(other.len(), 1, "{got:?}");
    assert_eq!(other[0].attr("to"), Some("alice@example.com/two"));
    assert_eq!(presences(&got, None, "alice@example.com/two").len(), 1);
    let got = a1.drain();
    assert_eq!(
        presences(&got, None, "alice@example.com/two").len(),
        1,
        "{got:?}"
    );
}

#[tokio::test]
async fn subsequent_presence_reaches_subscribers_only() {
    let router = friends().await;
    let mut a = login(&router, "alice", "a").await;
    let mut b = login(&router, "bob", "b").await;
    let mut c = login(&router, "carol", "c").await;
    for s in [&mut a, &mut b, &mut c] {
        s.available().await;
    }
    a.drain();
    b.drain();
    c.drain();
    a.send("<presence><show>dnd</show></presence>").await;
    let got = b.drain();
    let p = presences(&got, None, "alice@example.com/a");
    assert_eq!(p.len(), 1, "{got:?}");
    assert_eq!(p[0].get_child("show", C).unwrap().text(), "dnd");
    assert!(c.drain().is_empty(), "Carol is not subscribed");
    // §4.4.2: no probes on a subsequent presence.
    let got = a.drain();
    assert!(
        presences(&got, None, "bob@example.com/b").is_empty(),
        "{got:?}"
    );
}

#[tokio::test]
async fn close_without_unavailable_is_broadcast_once() {
    let router = friends().await;
    let mut a = login(&router, "alice", "a").await;
    let mut a2 = login(&router, "alice", "a2").await;
    let mut b = login(&router, "bob", "b").await;
    for s in [&mut a, &mut a2, &mut b] {
        s.available().await;
    }
    a2.drain();
    b.drain();
    a.close().await;
    // §4.5.2: subscribers and the account's other resources are told.
    let got = b.drain();
    assert_eq!(
        presences(&got, Some("unavailable"), "alice@example.com/a").len(),
        1,
        "{got:?}"
    );
    let got = a2.drain();
    assert_eq!(
        presences(&got, Some("unavailable"), "alice@example.com/a").len(),
        1,
        "{got:?}"
    );

    // An explicit unavailable first: the later close adds nothing.
    a2.send("<presence type='unavailable'><status>bye</status></presence>")
        .await;
    let got = b.drain();
    let p = presences(&got, Some("unavailable"), "alice@example.com/a2");
    assert_eq!(p.len(), 1, "{got:?}");
    assert_eq!(p[0].get_child("status", C).unwrap().text(), "bye");
    a2.close().await;
    assert!(b.drain().is_empty());
}

#[tokio::test]
async fn replaced_session_close_is_silent() {
    let router = friends().await;
    let mut a = login(&router, "alice", "a").await;
    let mut b = login(&router, "bob", "b").await;
    a.available().await;
    b.available().await;
    b.drain();
    // Kick-old: a new session takes alice@example.com/a before the old one's Closed arrives.
    let (tx, _rx) = tokio::sync::mpsc::channel(8);
    let newer = SessionHandle::new(a.jid().clone(), tx);
    router.sessions().replace(newer);
    router
        .session_event(tern_router::SessionEvent::Closed, &a.handle)
        .await;
    assert!(b.drain().is_empty(), "the JID is still in use");
}

#[tokio::test]
async fn directed_presence_is_revoked_on_close() {
    let router = friends().await;
    let mut a = login(&router, "alice", "a").await;
    let mut b = login(&router, "bob", "b").await;
    let mut c = login(&router, "carol", "c").await;
    for s in [&mut a, &mut b, &mut c] {
        s.available().await;
    }
    b.drain();
    c.drain();
    // §4.6: to a non-subscriber (tracked) and to a subscriber (not tracked).
    a.send("<presence to='carol@example.com/c'><show>chat</show></presence>")
        .await;
    a.send("<presence to='bob@example.com'/>").await;
    assert_eq!(presences(&c.drain(), None, "alice@example.com/a").len(), 1);
    assert_eq!(b.drain().len(), 1);
    let directed = a.handle.presence().directed;
    assert_eq!(directed.len(), 1, "{directed:?}");
    a.close().await;
    // §4.6.3: Carol is told, Bob once (by the broadcast).
    let got = c.drain();
    assert_eq!(
        presences(&got, Some("unavailable"), "alice@example.com/a").len(),
        1,
        "{got:?}"
    );
    assert_eq!(got[0].attr("to"), Some("carol@example.com/c"));
    let got = b.drain();
    assert_eq!(
        presences(&got, Some("unavailable"), "alice@example.com/a").len(),
        1,
        "{got:?}"
    );
}

#[tokio::test]
async fn directed_unavailable_ends_tracking() {
    let router = friends().await;
    let mut a = login(&router, "alice", "a").await;
    let mut c = login(&router, "carol", "c").await;
    a.available().await;
    c.available().await;
    a.send("<presence to='carol@example.com'/>").await;
    a.send("<presence to='carol@example.com' type='unavailable'/>")
        .await;
    assert_eq!(c.drain().len(), 2);
    assert!(a.handle.presence().directed.is_empty());
    a.close().await;
    assert!(c.drain().is_empty());
}

#[tokio::test]
async fn directed_presence_before_initial_is_not_tracked() {
    let router = friends().await;
    let a = login(&router, "alice", "a").await;
    let mut c = login(&router, "carol", "c").await;
    c.available().await;
    a.send("<presence to='carol@example.com'/>").await;
    assert_eq!(c.drain().len(), 1, "it is still delivered");
    assert!(a.handle.presence().directed.is_empty());
}

#[tokio::test]
async fn probes_from_strangers_learn_nothing() {
    let router = friends().await;
    let mut a = login(&router, "alice", "a").await;
    let mut c = login(&router, "carol", "c").await;
    a.available().await;
    c.available().await;
    // §4.3.2: Carol has no subscription to Alice. The server's "unsubscribed" answer is
    // consumed by Carol's side of the state machine (she has nothing to cancel).
    c.send("<presence to='alice@example.com' type='probe'/>")
        .await;
    assert!(c.drain().is_empty());
    assert!(a.drain().is_empty(), "probes are answered by the server");
    assert!(stored(&router, "carol", "alice").await.is_none());
}

#[tokio::test]
async fn probe_answer_repairs_a_stale_subscription() {
    let router = friends().await;
    let mut a = login(&router, "alice", "a").await;
    a.available().await;
    // Carol's roster claims a subscription to Alice that Alice never granted.
    let store = tern_roster::RosterStore::new(router.storage().map.as_ref(), HOST, "carol");
    let mut item = tern_roster::RosterItem::new("alice@example.com");
    item.subscription = tern_roster::Subscription::To;
    store.put(&item).await.unwrap();
    let mut c = login(&router, "carol", "c").await;
    c.roster().await;
    let got = c.available().await;
    // Her initial presence probes Alice; "unsubscribed" comes back and cancels the claim.
    assert!(
        presences(&got, None, "alice@example.com/a").is_empty(),
        "{got:?}"
    );
    assert_eq!(
        presences(&got, Some("unsubscribed"), "alice@example.com").len(),
        1
    );
    assert_eq!(pushes(&got)[0].attr("subscription"), Some("none"));
    assert!(a.drain().is_empty());
}

#[tokio::test]
async fn priority_is_clamped() {
    let router = friends().await;
    let a = login(&router, "alice", "a").await;
    a.send("<presence><priority>500</priority></presence>")
        .await;
    assert_eq!(a.handle.presence().priority, 127);
    a.send("<presence><priority>-1000</priority></presence>")
        .await;
    assert_eq!(a.handle.presence().priority, -128);
    a.send("<presence><priority>nonsense</priority></presence>")
        .await;
    assert_eq!(a.handle.presence().priority, 0);
}

#[tokio::test]
async fn presence_errors_reach_the_account() {
    let router = friends().await;
    let mut a = login(&router, "alice", "a").await;
    let mut idle = login(&router, "alice", "idle").await;
    a.available().await;
    // An error to the bare JID (as a remote server answers a probe) reaches available
    // resources only.
    let b = login(&router, "bob", "b").await;
    b.send(
        "<presence to='alice@example.com' type='error'><error type='cancel'>\
         <remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>",
    )
    .await;
    let got = a.drain();
    assert_eq!(
        presences(&got, Some("error"), "bob@example.com/b").len(),
        1,
        "{got:?}"
    );
    assert!(idle.drain().is_empty());
}
