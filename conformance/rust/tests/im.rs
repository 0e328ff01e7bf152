//! RFC 6121 with tokio-xmpp clients: message routing to full and bare JIDs (§8.5), the
//! subscription handshake and its roster states (§3.1, Appendix A), roster pushes (§2.1.6) and
//! unavailable presence when a session ends (§4.5, §4.6.3).

use std::time::Duration;

use tern_conformance::client::{has_body, roster_push};
use tern_conformance::jid::{BareJid, Jid};
use tern_conformance::minidom::Element;
use tern_conformance::parsers::message::MessageType;
use tern_conformance::parsers::presence::{Presence, Type as PresenceType};
use tern_conformance::parsers::roster::{Ask, Item, Subscription};
use tern_conformance::tokio_xmpp::Stanza;
use tern_conformance::{TernServer, TestClient};

const USERS: &[(&str, &str)] = &[
    ("alice", "pw-alice"),
    ("bob", "pw-bob"),
    ("carol", "pw-carol"),
];

/// How long "did not receive" is watched for.
const QUIET: Duration = Duration::from_secs(1);

/// How long a sender is watched for an error bounce.
const BOUNCE: Duration = Duration::from_millis(500);

fn is_error_message(st: &Stanza) -> bool {
    matches!(st, Stanza::Message(m) if m.type_ == MessageType::Error)
}

fn is_message_with(st: &Stanza, body: &str) -> bool {
    matches!(st, Stanza::Message(m) if has_body(m, body))
}

/// Test 3: a message to a full JID reaches that resource only; to the bare JID, the available
/// resource with the highest priority (RFC 6121 §8.5.2.1.1, §8.5.3.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_chat_full_and_bare_jid() {
    let server = TernServer::start(USERS);
    let mut a1 = TestClient::connect(&server, "alice", "pw-alice", "phone").await;
    let mut a2 = TestClient::connect(&server, "alice", "pw-alice", "laptop").await;
    let mut b_hi = TestClient::connect(&server, "bob", "pw-bob", "desktop").await;
    let mut b_lo = TestClient::connect(&server, "bob", "pw-bob", "mobile").await;
    a1.available(0).await;
    a2.available(0).await;
    b_hi.available(5).await;
    b_lo.available(1).await;
    for c in [&mut a1, &mut a2, &mut b_hi, &mut b_lo] {
        c.sync().await;
    }

    // To a full JID: the lower-priority resource gets it, the other does not.
    a1.chat(b_lo.jid.clone(), "to-full-mobile").await;
    let m = b_lo
        .expect_message("the message sent to bob/mobile", |m| {
            has_body(m, "to-full-mobile")
        })
        .await;
    assert_eq!(
        m.from,
        Some(Jid::from(a1.jid.clone())),
        "from is the sender's full JID"
    );
    assert_eq!(m.to, Some(Jid::from(b_lo.jid.clone())), "to is unchanged");
    b_hi.expect_none("a message addressed to bob/mobile", QUIET, |s| {
        is_message_with(s, "to-full-mobile")
    })
    .await;

    // And the other way round, to the higher-priority one.
    a2.chat(b_hi.jid.clone(), "to-full-desktop").await;
    let m = b_hi
        .expect_message("the message sent to bob/desktop", |m| {
            has_body(m, "to-full-desktop")
        })
        .await;
    assert_eq!(m.from, Some(Jid::from(a2.jid.clone())));
    b_lo.expect_none("a message addressed to bob/desktop", QUIET, |s| {
        is_message_with(s, "to-full-desktop")
    })
    .await;

    // To the bare JID: priority 5 beats priority 1. (Checking the sender first turns an
    // "undeliverable" bounce into a readable failure.)
    a1.chat(b_hi.bare(), "to-bare").await;
    a1.expect_none(
        "an error reply to the bare-JID message",
        BOUNCE,
        is_error_message,
    )
    .await;
    let m = b_hi
        .expect_message("the message sent to bob's bare JID (priority 5)", |m| {
            has_body(m, "to-bare")
        })
        .await;
    assert_eq!(
        m.from,
        Some(Jid::from(a1.jid.clone())),
        "from is the sender's full JID"
    );
    b_lo.expect_none(
        "the bare-JID message on the priority-1 resource",
        QUIET,
        |s| is_message_with(s, "to-bare"),
    )
    .await;

    // Nothing leaked to the sender's other resource.
    a2.expect_none(
        "bob's messages on alice/laptop",
        Duration::from_millis(200),
        |s| matches!(s, Stanza::Message(_)),
    )
    .await;
    for c in [a1, a2, b_hi, b_lo] {
        c.disconnect().await;
    }
}

/// A negative priority resource never receives bare-JID messages (RFC 6121 §8.5.2.1.1): with
/// the only other resource at priority 0, the message goes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_priority_gets_no_bare_jid_messages() {
    let server = TernServer::start(USERS);
    let mut alice = TestClient::connect(&server, "alice", "pw-alice", "a").await;
    let mut b_neg = TestClient::connect(&server, "bob", "pw-bob", "neg").await;
    let mut b_zero = TestClient::connect(&server, "bob", "pw-bob", "zero").await;
    b_neg.available(-1).await;
    b_zero.available(0).await;
    alice.available(0).await;
    for c in [&mut alice, &mut b_neg, &mut b_zero] {
        c.sync().await;
    }
    alice.chat(b_zero.bare(), "bare-prio").await;
    alice
        .expect_none(
            "an error reply to the bare-JID message",
            BOUNCE,
            is_error_message,
        )
        .await;
    b_zero
        .expect_message("bare-JID message on the priority-0 resource", |m| {
            has_body(m, "bare-prio")
        })
        .await;
    b_neg
        .expect_none(
            "a bare-JID message on the priority -1 resource",
            QUIET,
            |s| is_message_with(s, "bare-prio"),
        )
        .await;
}

fn bare(c: &TestClient) -> BareJid {
    c.bare()
}

fn from_bare(p: &Presence, who: &BareJid) -> bool {
    p.from.as_ref() == Some(&Jid::from(who.clone()))
}

fn state(i: &Item) -> (Subscription, Ask) {
    (i.subscription.clone(), i.ask.clone())
}

async fn assert_roster(
    c: &mut TestClient,
    contact: &BareJid,
    sub: Subscription,
    ask: Ask,
    step: &str,
) {
    let item = c
        .roster_item(contact)
        .await
        .unwrap_or_else(|| panic!("{step}: {}'s roster has no item for {contact}", c.name));
    assert_eq!(
        state(&item),
        (sub, ask),
        "{step}: {}'s roster item for {contact} (subscription, ask): {item:?}",
        c.name
    );
}

/// The four steps of RFC 6121 §3.1 in both directions, checking pushes, delivered presence
/// and `jabber:iq:roster` results after each. Both clients requested the roster and sent
/// initial presence beforehand.
async fn handshake(alice: &mut TestClient, bob: &mut TestClient) {
    let (a, b) = (bare(alice), bare(bob));

    // 1. alice subscribes to bob (§3.1.1, §3.1.2, §3.1.3).
    alice
        .send(Presence::subscribe().with_to(Jid::from(b.clone())))
        .await;
    alice
        .expect_roster_push("bob: none + ask=subscribe", &b, |i| {
            state(i) == (Subscription::None, Ask::Subscribe)
        })
        .await;
    let p = bob
        .expect_presence("subscribe from alice", |p| {
            p.type_ == PresenceType::Subscribe
        })
        .await;
    assert!(
        from_bare(&p, &a),
        "subscription request stamped with alice's bare JID: {p:?}"
    );
    assert_roster(
        alice,
        &b,
        Subscription::None,
        Ask::Subscribe,
        "after step 1",
    )
    .await;
    // The contact has a pending inbound request only; if an item is shown it has no state yet.
    if let Some(item) = bob.roster_item(&a).await {
        assert_eq!(
            state(&item),
            (Subscription::None, Ask::None),
            "after step 1: bob's item for alice: {item:?}"
        );
    }
    alice
        .expect_none(
            "bob's presence before bob approved",
            Duration::from_millis(300),
            |s| {
                matches!(s, Stanza::Presence(p) if p.type_ == PresenceType::None
                && p.from.as_ref().is_some_and(|f| f.to_bare() == b))
            },
        )
        .await;

    // 2. bob approves (§3.1.5, §3.1.6).
    bob.send(Presence::subscribed().with_to(Jid::from(a.clone())))
        .await;
    bob.expect_roster_push("alice: from", &a, |i| {
        state(i) == (Subscription::From, Ask::None)
    })
    .await;
    let p = alice
        .expect_presence("subscribed from bob", |p| {
            p.type_ == PresenceType::Subscribed
        })
        .await;
    assert!(
        from_bare(&p, &b),
        "approval stamped with bob's bare JID: {p:?}"
    );
    alice
        .expect_roster_push("bob: to", &b, |i| state(i) == (Subscription::To, Ask::None))
        .await;
    alice
        .expect_presence_from(&Jid::from(bob.jid.clone()), PresenceType::None)
        .await;
    assert_roster(alice, &b, Subscription::To, Ask::None, "after step 2").await;
    assert_roster(bob, &a, Subscription::From, Ask::None, "after step 2").await;

    // 3. bob subscribes to alice.
    bob.send(Presence::subscribe().with_to(Jid::from(a.clone())))
        .await;
    bob.expect_roster_push("alice: from + ask=subscribe", &a, |i| {
        state(i) == (Subscription::From, Ask::Subscribe)
    })
    .await;
    let p = alice
        .expect_presence("subscribe from bob", |p| p.type_ == PresenceType::Subscribe)
        .await;
    assert!(
        from_bare(&p, &b),
        "subscription request stamped with bob's bare JID: {p:?}"
    );
    assert_roster(bob, &a, Subscription::From, Ask::Subscribe, "after step 3").await;
    assert_roster(alice, &b, Subscription::To, Ask::None, "after step 3").await;

    // 4. alice approves.
    alice
        .send(Presence::subscribed().with_to(Jid::from(b.clone())))
        .await;
    alice
        .expect_roster_push("bob: both", &b, |i| {
            state(i) == (Subscription::Both, Ask::None)
        })
        .await;
    let p = bob
        .expect_presence("subscribed from alice", |p| {
            p.type_ == PresenceType::Subscribed
        })
        .await;
    assert!(
        from_bare(&p, &a),
        "approval stamped with alice's bare JID: {p:?}"
    );
    bob.expect_roster_push("alice: both", &a, |i| {
        state(i) == (Subscription::Both, Ask::None)
    })
    .await;
    bob.expect_presence_from(&Jid::from(alice.jid.clone()), PresenceType::None)
        .await;
    assert_roster(alice, &b, Subscription::Both, Ask::None, "after step 4").await;
    assert_roster(bob, &a, Subscription::Both, Ask::None, "after step 4").await;
}

/// Connects `user/resource`, requests the roster (interested resource) and sends initial
/// presence (available resource).
async fn online(server: &TernServer, user: &str, resource: &str) -> TestClient {
    let password = USERS.iter().find(|(u, _)| *u == user).unwrap().1;
    let mut c = TestClient::connect(server, user, password, resource).await;
    let roster = c.roster().await;
    assert!(
        roster.items.is_empty(),
        "{user}'s roster starts empty: {roster:?}"
    );
    c.available(0).await;
    c.sync().await;
    c
}

/// Test 4: subscription handshake both ways, then each sees the other's presence changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_handshake_both_ways() {
    let server = TernServer::start(USERS);
    let mut alice = online(&server, "alice", "a").await;
    let mut bob = online(&server, "bob", "b").await;
    handshake(&mut alice, &mut bob).await;

    // Mutual subscription: each presence change reaches the other (§4.4).
    let mut away = Presence::available().with_priority(3);
    away.set_status("", "at lunch");
    alice.send(away).await;
    let from_alice = Jid::from(alice.jid.clone());
    let p = bob
        .expect_presence("alice's presence update 'at lunch'", |p| {
            p.from.as_ref() == Some(&from_alice)
                && p.type_ == PresenceType::None
                && p.statuses.values().any(|s| s == "at lunch")
        })
        .await;
    assert_eq!(p.priority.0, 3, "priority kept: {p:?}");
    let mut busy = Presence::available();
    busy.set_status("", "busy");
    bob.send(busy).await;
    let from_bob = Jid::from(bob.jid.clone());
    alice
        .expect_presence("bob's presence update 'busy'", |p| {
            p.from.as_ref() == Some(&from_bob)
                && p.type_ == PresenceType::None
                && p.statuses.values().any(|s| s == "busy")
        })
        .await;
    alice.disconnect().await;
    bob.disconnect().await;
}

/// Test 5: a roster set from one resource is pushed to every interested resource, the
/// originating one included, and the result is in a later roster get (RFC 6121 §2.1.6, §2.3,
/// §2.5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_set_is_pushed_to_other_resources() {
    let server = TernServer::start(USERS);
    let mut one = TestClient::connect(&server, "alice", "pw-alice", "one").await;
    let mut two = TestClient::connect(&server, "alice", "pw-alice", "two").await;
    one.roster().await;
    two.roster().await;
    let carol: BareJid = "carol@localhost".parse().unwrap();

    let set: Element = "<query xmlns='jabber:iq:roster'>\
        <item jid='carol@localhost' name='Carol'><group>Friends</group></item></query>"
        .parse()
        .unwrap();
    let r = one.iq_set(None, set).await;
    assert!(r.is_ok(), "roster set refused: {r:?}");

    for c in [&mut two, &mut one] {
        let item = c
            .expect_roster_push("carol added", &carol, |i| {
                i.subscription == Subscription::None
            })
            .await;
        assert_eq!(item.name.as_deref(), Some("Carol"), "{}: {item:?}", c.name);
        let groups: Vec<&str> = item.groups.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(groups, ["Friends"], "{}: {item:?}", c.name);
        assert_eq!(item.ask, Ask::None, "{}: {item:?}", c.name);
    }
    let item = two
        .roster_item(&carol)
        .await
        .expect("carol in the roster of alice/two");
    assert_eq!(item.name.as_deref(), Some("Carol"));

    // Removal is pushed the same way (§2.5.3).
    let remove: Element = "<query xmlns='jabber:iq:roster'>\
        <item jid='carol@localhost' subscription='remove'/></query>"
        .parse()
        .unwrap();
    let r = two.iq_set(None, remove).await;
    assert!(r.is_ok(), "roster remove refused: {r:?}");
    for c in [&mut one, &mut two] {
        c.expect_roster_push("carol removed", &carol, |i| {
            i.subscription == Subscription::Remove
        })
        .await;
    }
    assert!(
        one.roster_item(&carol).await.is_none(),
        "carol still in the roster after removal"
    );
    // Every push carried exactly one item (§2.1.6) – leftovers would show here.
    for c in [&one, &two] {
        for st in c.pending() {
            if let Some((_, r)) = roster_push(st) {
                assert_eq!(
                    r.items.len(),
                    1,
                    "{}: roster push with {} items",
                    c.name,
                    r.items.len()
                );
            }
        }
    }
}

/// Test 6: when a contact's session ends without it sending unavailable presence, the server
/// broadcasts unavailable presence from that full JID to the subscribers (RFC 6121 §4.5: the
/// server must not depend on receiving it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_presence_seen_when_contact_disconnects() {
    let server = TernServer::start(USERS);
    let mut alice = online(&server, "alice", "a").await;
    let mut bob = online(&server, "bob", "b").await;
    handshake(&mut alice, &mut bob).await;
    let mut bob2 = TestClient::connect(&server, "bob", "pw-bob", "second").await;
    bob2.available(0).await;
    alice
        .expect_presence_from(&Jid::from(bob2.jid.clone()), PresenceType::None)
        .await;

    let gone = Jid::from(bob.jid.clone());
    bob.disconnect().await;
    let p = alice
        .expect_presence_from(&gone, PresenceType::Unavailable)
        .await;
    assert_eq!(p.from, Some(gone.clone()));
    // bob's other session is unaffected: no unavailable for it.
    let still = Jid::from(bob2.jid.clone());
    alice
        .expect_none(
            "unavailable from bob's remaining session",
            Duration::from_millis(300),
            |s| {
                matches!(s, Stanza::Presence(p) if p.type_ == PresenceType::Unavailable
                && p.from.as_ref() == Some(&still))
            },
        )
        .await;
    bob2.disconnect().await;
    alice
        .expect_presence_from(&still, PresenceType::Unavailable)
        .await;
}

/// Directed presence without a subscription (RFC 6121 §4.6.3): the recipient is told when the
/// sender's session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_after_directed_presence_on_disconnect() {
    let server = TernServer::start(USERS);
    let mut alice = TestClient::connect(&server, "alice", "pw-alice", "a").await;
    let mut carol = TestClient::connect(&server, "carol", "pw-carol", "c").await;
    alice.available(0).await;
    carol.available(0).await;
    carol.sync().await;
    alice
        .send(Presence::available().with_to(Jid::from(carol.jid.clone())))
        .await;
    carol
        .expect_presence_from(&Jid::from(alice.jid.clone()), PresenceType::None)
        .await;
    let gone = Jid::from(alice.jid.clone());
    alice.disconnect().await;
    carol
        .expect_presence_from(&gone, PresenceType::Unavailable)
        .await;
}
