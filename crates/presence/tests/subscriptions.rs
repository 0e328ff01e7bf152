//! RFC 6121 §3 through the real router: the subscription handshake both ways, pre-approval,
//! requests waiting for an offline contact, cancellations and roster removal.

mod common;

use common::*;
use tern_roster::Subscription::{Both, From, None as No, To};

/// Alice and Bob online, both interested in roster pushes and available.
async fn online() -> (std::sync::Arc<tern_router::Router>, Client, Client) {
    let router = server(&["alice", "bob", "carol"]).await;
    let mut a = login(&router, "alice", "a").await;
    let mut b = login(&router, "bob", "b").await;
    for c in [&mut a, &mut b] {
        c.roster().await;
        c.available().await;
    }
    (router, a, b)
}

#[tokio::test]
async fn handshake_both_ways() {
    let (router, mut a, mut b) = online().await;
    let (alice, bob) = (bare("alice"), bare("bob"));

    // A subscribes to B: A's item is none + pending out; B is asked, from A's bare JID.
    a.send(&format!("<presence to='{bob}' type='subscribe'/>"))
        .await;
    let got = a.drain();
    let p = pushes(&got);
    assert_eq!(p.len(), 1, "{got:?}");
    assert_eq!(
        (
            p[0].attr("jid"),
            p[0].attr("subscription"),
            p[0].attr("ask")
        ),
        (Some(bob.as_str()), Some("none"), Some("subscribe"))
    );
    assert_eq!(
        state(&router, "alice", "bob").await,
        Some((No, true, false))
    );
    let got = b.drain();
    assert_eq!(
        presences(&got, Some("subscribe"), &alice).len(),
        1,
        "{got:?}"
    );
    assert!(
        pushes(&got).is_empty(),
        "a request alone is not a roster item"
    );
    assert!(
        b.roster().await.is_empty(),
        "§3.1.3: not on Bob's roster yet"
    );
    assert_eq!(
        state(&router, "bob", "alice").await,
        Some((No, false, true))
    );

    // B approves: B has from, A has to, A sees the approval and B's presence.
    b.send(&format!("<presence to='{alice}' type='subscribed'/>"))
        .await;
    let got = b.drain();
    assert_eq!(pushes(&got)[0].attr("subscription"), Some("from"));
    assert_eq!(
        state(&router, "bob", "alice").await,
        Some((From, false, false))
    );
    let got = a.drain();
    let p = pushes(&got);
    assert_eq!(
        (p[0].attr("subscription"), p[0].attr("ask")),
        (Some("to"), None)
    );
    assert_eq!(
        presences(&got, Some("subscribed"), &bob).len(),
        1,
        "{got:?}"
    );
    assert_eq!(
        presences(&got, None, "bob@example.com/b").len(),
        1,
        "{got:?}"
    );
    assert_eq!(
        state(&router, "alice", "bob").await,
        Some((To, false, false))
    );

    // B subscribes to A: from + pending out on B's side, to + pending in on A's.
    b.send(&format!("<presence to='{alice}' type='subscribe'/>"))
        .await;
    let p = pushes(&b.drain());
    assert_eq!(
        (p[0].attr("subscription"), p[0].attr("ask")),
        (Some("from"), Some("subscribe"))
    );
    let got = a.drain();
    assert_eq!(presences(&got, Some("subscribe"), &bob).len(), 1);
    assert!(
        pushes(&got).is_empty(),
        "pending in has no roster attribute"
    );
    assert_eq!(
        state(&router, "alice", "bob").await,
        Some((To, false, true))
    );

    // A approves: both sides are "both"; B sees A's presence.
    a.send(&format!("<presence to='{bob}' type='subscribed'/>"))
        .await;
    assert_eq!(pushes(&a.drain())[0].attr("subscription"), Some("both"));
    let got = b.drain();
    assert_eq!(pushes(&got)[0].attr("subscription"), Some("both"));
    assert_eq!(presences(&got, Some("subscribed"), &alice).len(), 1);
    assert_eq!(
        presences(&got, None, "alice@example.com/a").len(),
        1,
        "{got:?}"
    );
    assert_eq!(
        state(&router, "alice", "bob").await,
        Some((Both, false, false))
    );
    assert_eq!(
        state(&router, "bob", "alice").await,
        Some((Both, false, false))
    );

    // Both now appear on each other's roster.
    let items = a.roster().await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].attr("subscription"), Some("both"));
}

#[tokio::test]
async fn pre_approval_answers_for_the_owner() {
    let router = server(&["alice", "carol"]).await;
    let mut c = login(&router, "carol", "c").await;
    c.roster().await;
    c.available().await;
    let mut a = login(&router, "alice", "a").await;
    a.roster().await;
    a.available().await;

    // §3.4: nothing pending, so "subscribed" is a pre-approval, kept and not routed.
    c.send("<presence to='alice@example.com' type='subscribed'/>")
        .await;
    let p = pushes(&c.drain());
    assert_eq!(
        (p[0].attr("approved"), p[0].attr("subscription")),
        (Some("true"), Some("none"))
    );
    assert!(a.drain().is_empty(), "the pre-approval is not routed");

    a.send("<presence to='carol@example.com' type='subscribe'/>")
        .await;
    let got = a.drain();
    assert_eq!(
        presences(&got, Some("subscribed"), "carol@example.com").len(),
        1,
        "{got:?}"
    );
    assert_eq!(
        presences(&got, None, "carol@example.com/c").len(),
        1,
        "{got:?}"
    );
    assert_eq!(
        state(&router, "alice", "carol").await,
        Some((To, false, false))
    );
    let got = c.drain();
    assert!(presences(&got, Some("subscribe"), "alice@example.com").is_empty());
    let p = pushes(&got);
    assert_eq!(
        (p[0].attr("subscription"), p[0].attr("approved")),
        (Some("from"), None)
    );
    assert!(!stored(&router, "carol", "alice").await.unwrap().approved);
}

#[tokio::test]
async fn request_waits_for_offline_contact_until_answered() {
    let router = server(&["alice", "bob"]).await;
    let a = login(&router, "alice", "a").await;
    a.send(
        "<presence to='bob@example.com' type='subscribe'><status>it is alice</status>\
         <nick xmlns='http://jabber.org/protocol/nick'>Ali</nick></presence>",
    )
    .await;

    // Bob was offline; a roster get does not show Alice, initial presence delivers the request
    // with its status and extended content, from Alice's bare JID.
    let mut b = login(&router, "bob", "b").await;
    assert!(b.roster().await.is_empty());
    let got = b.available().await;
    let req = presences(&got, Some("subscribe"), "alice@example.com");
    assert_eq!(req.len(), 1, "{got:?}");
    assert_eq!(req[0].attr("to"), Some("bob@example.com/b"));
    assert_eq!(req[0].get_child("status", C).unwrap().text(), "it is alice");
    assert!(req[0].has_child("nick", "http://jabber.org/protocol/nick"));

    // Unanswered, it comes again with the next session's initial presence.
    b.close().await;
    let mut b = login(&router, "bob", "b2").await;
    let got = b.available().await;
    assert_eq!(
        presences(&got, Some("subscribe"), "alice@example.com").len(),
        1
    );

    // Answered, it does not.
    b.send("<presence to='alice@example.com' type='subscribed'/>")
        .await;
    b.close().await;
    let mut b = login(&router, "bob", "b3").await;
    let got = b.available().await;
    assert!(
        presences(&got, Some("subscribe"), "alice@example.com").is_empty(),
        "{got:?}"
    );
    assert_eq!(
        state(&router, "alice", "bob").await,
        Some((To, false, false))
    );
}

/// Alice and Bob with a mutual subscription.
async fn mutual() -> (std::sync::Arc<tern_router::Router>, Client, Client) {
    let (router, mut a, mut b) = online().await;
    a.send("<presence to='bob@example.com' type='subscribe'/>")
        .await;
    b.send("<presence to='alice@example.com' type='subscribed'/>")
        .await;
    b.send("<presence to='alice@example.com' type='subscribe'/>")
        .await;
    a.send("<presence to='bob@example.com' type='subscribed'/>")
        .await;
    a.drain();
    b.drain();
    assert_eq!(
        state(&router, "alice", "bob").await,
        Some((Both, false, false))
    );
    (router, a, b)
}

#[tokio::test]
async fn revoking_sends_unavailable_and_updates_both_rosters() {
    let (router, mut a, mut b) = mutual().await;
    // §3.2: Bob cancels Alice's subscription to him.
    b.send("<presence to='alice@example.com' type='unsubscribed'/>")
        .await;
    assert_eq!(pushes(&b.drain())[0].attr("subscription"), Some("to"));
    let got = a.drain();
    assert_eq!(pushes(&got)[0].attr("subscription"), Some("from"));
    assert_eq!(
        presences(&got, Some("unsubscribed"), "bob@example.com").len(),
        1
    );
    assert_eq!(
        presences(&got, Some("unavailable"), "bob@example.com/b").len(),
        1,
        "{got:?}"
    );

    // §3.3: Bob, still subscribed to Alice, unsubscribes; her server tells him she is gone.
    b.send("<presence to='alice@example.com' type='unsubscribe'/>")
        .await;
    let got = b.drain();
    assert_eq!(pushes(&got)[0].attr("subscription"), Some("none"));
    assert_eq!(
        presences(&got, Some("unavailable"), "alice@example.com/a").len(),
        1,
        "{got:?}"
    );
    let got = a.drain();
    assert_eq!(pushes(&got)[0].attr("subscription"), Some("none"));
    assert_eq!(
        presences(&got, Some("unsubscribe"), "bob@example.com").len(),
        1
    );
    assert_eq!(
        state(&router, "alice", "bob").await,
        Some((No, false, false))
    );
    assert_eq!(
        state(&router, "bob", "alice").await,
        Some((No, false, false))
    );
}

#[tokio::test]
async fn roster_removal_cancels_both_directions() {
    let (router, mut a, mut b) = mutual().await;
    let (r, rest) = a
        .iq("<iq type='set' id='rm'><query xmlns='jabber:iq:roster'>\
             <item jid='bob@example.com' subscription='remove'/></query></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    assert_eq!(pushes(&rest)[0].attr("subscription"), Some("remove"));
    assert!(stored(&router, "alice", "bob").await.is_none());
    // §2.5.2: Bob's side is cancelled both ways and he sees Alice go unavailable.
    let got = b.drain();
    assert_eq!(
        presences(&got, Some("unsubscribe"), "alice@example.com").len(),
        1,
        "{got:?}"
    );
    assert_eq!(
        presences(&got, Some("unsubscribed"), "alice@example.com").len(),
        1
    );
    assert_eq!(
        presences(&got, Some("unavailable"), "alice@example.com/a").len(),
        1
    );
    assert_eq!(
        pushes(&got).last().unwrap().attr("subscription"),
        Some("none")
    );
    assert_eq!(
        state(&router, "bob", "alice").await,
        Some((No, false, false))
    );
}

#[tokio::test]
async fn unsolicited_approval_is_ignored() {
    let (router, mut a, mut b) = online().await;
    // §3.1.6: Bob "approves" a request Alice never made.
    b.send("<presence to='alice@example.com' type='subscribed'/>")
        .await;
    assert!(a.drain().is_empty());
    assert!(stored(&router, "alice", "bob").await.is_none());
    // On Bob's side it was a pre-approval.
    assert!(stored(&router, "bob", "alice").await.unwrap().approved);
    b.drain();
}

#[tokio::test]
async fn request_from_existing_subscriber_is_answered_by_the_server() {
    let (router, mut a, mut b) = online().await;
    // Bob already lets Alice see him, but Alice's roster lost that (a desync, as after a
    // restore from backup): her request is answered by Bob's server without asking Bob.
    let store = tern_roster::RosterStore::new(router.storage().map.as_ref(), HOST, "bob");
    let mut item = tern_roster::RosterItem::new("alice@example.com");
    item.subscription = From;
    store.put(&item).await.unwrap();
    a.send("<presence to='bob@example.com/b' type='subscribe'/>")
        .await;
    let got = a.drain();
    // §3.1.3 auto-reply; on Alice's side it answers her pending request (§3.1.6).
    assert_eq!(
        presences(&got, Some("subscribed"), "bob@example.com").len(),
        1,
        "{got:?}"
    );
    assert_eq!(
        pushes(&got).last().unwrap().attr("subscription"),
        Some("to")
    );
    assert_eq!(
        presences(&got, None, "bob@example.com/b").len(),
        1,
        "{got:?}"
    );
    assert!(presences(&b.drain(), Some("subscribe"), "alice@example.com").is_empty());
    assert_eq!(
        state(&router, "alice", "bob").await,
        Some((To, false, false))
    );
    assert_eq!(
        state(&router, "bob", "alice").await,
        Some((From, false, false))
    );
}

#[tokio::test]
async fn request_to_full_jid_is_about_the_account() {
    let (router, mut a, mut b) = online().await;
    a.send("<presence to='bob@example.com/elsewhere' type='subscribe'/>")
        .await;
    a.drain();
    assert_eq!(
        state(&router, "alice", "bob").await,
        Some((No, true, false))
    );
    let got = b.drain();
    let req = presences(&got, Some("subscribe"), "alice@example.com");
    assert_eq!(req.len(), 1, "{got:?}");
    assert_eq!(
        state(&router, "bob", "alice").await,
        Some((No, false, true))
    );
}
