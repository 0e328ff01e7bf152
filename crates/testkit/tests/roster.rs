//! RFC 6121 roster and presence end to end: versioning, error cases, removal, pending
//! requests delivered at login, probes and pre-approval.

use minidom::Element;
use tern_testkit::{RawClient, TestServer};

const R: &str = "jabber:iq:roster";
const ST: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

fn cond(e: &Element) -> Option<String> {
    e.get_child("error", "jabber:client")?
        .children()
        .find(|c| c.ns() == ST)
        .map(|c| c.name().to_owned())
}

async fn iq(c: &mut RawClient, id: &str, xml: &str) -> Element {
    c.send_str(xml).await.unwrap();
    c.expect(id, |e| e.name() == "iq" && e.attr("id") == Some(id))
        .await
        .unwrap()
}

async fn server() -> TestServer {
    let s = TestServer::start().await.unwrap();
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, "pw").await.unwrap();
    }
    s
}

#[tokio::test]
async fn versioning_errors_and_removal() {
    let s = server().await;
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    let r = iq(
        &mut a,
        "g1",
        "<iq type='get' id='g1'><query xmlns='jabber:iq:roster'/></iq>",
    )
    .await;
    let ver0 = r
        .get_child("query", R)
        .unwrap()
        .attr("ver")
        .unwrap()
        .to_owned();
    // Unchanged roster + same ver: empty result (XEP-0237 §2.3).
    let r = iq(
        &mut a,
        "g2",
        &format!("<iq type='get' id='g2'><query xmlns='jabber:iq:roster' ver='{ver0}'/></iq>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    assert!(r.get_child("query", R).is_none(), "{r:?}");

    let r = iq(&mut a, "s1", "<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob'><group>Friends</group></item></query></iq>").await;
    assert_eq!(r.attr("type"), Some("result"));
    let push = a
        .expect("push", |e| {
            e.name() == "iq" && e.attr("type") == Some("set")
        })
        .await
        .unwrap();
    let ver1 = push
        .get_child("query", R)
        .unwrap()
        .attr("ver")
        .unwrap()
        .to_owned();
    assert_ne!(ver0, ver1);
    let r = iq(
        &mut a,
        "g3",
        &format!("<iq type='get' id='g3'><query xmlns='jabber:iq:roster' ver='{ver0}'/></iq>"),
    )
    .await;
    let q = r
        .get_child("query", R)
        .expect("changed roster is sent in full");
    assert_eq!(q.attr("ver"), Some(ver1.as_str()));
    let item = q.get_child("item", R).unwrap();
    assert_eq!(
        (
            item.attr("jid"),
            item.attr("name"),
            item.attr("subscription")
        ),
        (Some("bob@localhost"), Some("Bob"), Some("none"))
    );

    for (id, body, want) in [
        (
            "e1",
            "<item jid='x@localhost'/><item jid='y@localhost'/>",
            "bad-request",
        ),
        (
            "e2",
            "<item jid='x@localhost'><group>G</group><group>G</group></item>",
            "bad-request",
        ),
        (
            "e3",
            "<item jid='x@localhost'><group></group></item>",
            "not-acceptable",
        ),
        ("e4", "<item jid='x@localhost/res'/>", "bad-request"),
        (
            "e5",
            "<item jid='nobody@localhost' subscription='remove'/>",
            "item-not-found",
        ),
    ] {
        let r = iq(
            &mut a,
            id,
            &format!(
                "<iq type='set' id='{id}'><query xmlns='jabber:iq:roster'>{body}</query></iq>"
            ),
        )
        .await;
        assert_eq!(cond(&r).as_deref(), Some(want), "{id}: {r:?}");
    }
    // Someone else's roster is forbidden (RFC 6121 §2.1.5).
    let r = iq(
        &mut a,
        "f1",
        "<iq type='get' id='f1' to='bob@localhost'><query xmlns='jabber:iq:roster'/></iq>",
    )
    .await;
    assert_eq!(cond(&r).as_deref(), Some("forbidden"), "{r:?}");

    let r = iq(&mut a, "rm", "<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query></iq>").await;
    assert_eq!(r.attr("type"), Some("result"));
    let push = a
        .expect("removal push", |e| {
            e.name() == "iq" && e.attr("type") == Some("set")
        })
        .await
        .unwrap();
    let item = push
        .get_child("query", R)
        .unwrap()
        .get_child("item", R)
        .unwrap();
    assert_eq!(item.attr("subscription"), Some("remove"));
    s.stop().await;
}

#[tokio::test]
async fn request_to_offline_user_is_delivered_at_login_then_probe_and_presence() {
    let s = server().await;
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    iq(
        &mut a,
        "g",
        "<iq type='get' id='g'><query xmlns='jabber:iq:roster'/></iq>",
    )
    .await;
    a.send_str("<presence/>").await.unwrap();
    a.send_str(
        "<presence to='bob@localhost' type='subscribe'><status>it is alice</status></presence>",
    )
    .await
    .unwrap();
    let push = a
        .expect("push", |e| {
            e.name() == "iq" && e.attr("type") == Some("set")
        })
        .await
        .unwrap();
    let item = push
        .get_child("query", R)
        .unwrap()
        .get_child("item", R)
        .unwrap();
    assert_eq!(
        (item.attr("subscription"), item.attr("ask")),
        (Some("none"), Some("subscribe"))
    );

    // Bob was offline: the request reaches him with his initial presence.
    let mut b = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
    iq(
        &mut b,
        "g",
        "<iq type='get' id='g'><query xmlns='jabber:iq:roster'/></iq>",
    )
    .await;
    b.send_str("<presence/>").await.unwrap();
    let req = b
        .expect("subscribe", |e| {
            e.name() == "presence" && e.attr("type") == Some("subscribe")
        })
        .await
        .unwrap();
    assert_eq!(req.attr("from"), Some("alice@localhost"));
    assert_eq!(
        req.get_child("status", "jabber:client")
            .map(|s| s.text())
            .as_deref(),
        Some("it is alice")
    );

    b.send_str("<presence to='alice@localhost' type='subscribed'/>")
        .await
        .unwrap();
    // Alice: subscription to, and Bob's presence arrives.
    let push = a
        .expect("push to", |e| {
            e.name() == "iq"
                && e.get_child("query", R)
                    .and_then(|q| q.get_child("item", R))
                    .and_then(|i| i.attr("subscription"))
                    == Some("to")
        })
        .await
        .unwrap();
    assert!(push
        .get_child("query", R)
        .unwrap()
        .get_child("item", R)
        .unwrap()
        .attr("ask")
        .is_none());
    let p = a
        .expect("bob's presence", |e| {
            e.name() == "presence"
                && e.attr("from") == Some("bob@localhost/b")
                && e.attr("type").is_none()
        })
        .await
        .unwrap();
    assert_eq!(
        p.attr("to").map(|t| t.starts_with("alice@localhost")),
        Some(true)
    );

    // A new resource of Alice probes and gets Bob's presence.
    let mut a2 = RawClient::login(&s, "alice", "pw", "a2").await.unwrap();
    a2.send_str("<presence/>").await.unwrap();
    a2.expect("probe answer", |e| {
        e.name() == "presence" && e.attr("from") == Some("bob@localhost/b")
    })
    .await
    .unwrap();
    // And Bob sees Alice's resources? No: Bob has no subscription to Alice.
    assert!(b
        .silent_for(std::time::Duration::from_millis(500), |e| e.name()
            == "presence"
            && e.attr("from") == Some("alice@localhost/a2"))
        .await
        .unwrap());
    s.stop().await;
}

#[tokio::test]
async fn pre_approval_and_probe_of_unsubscribed_user() {
    let s = server().await;
    let mut c = RawClient::login(&s, "carol", "pw", "c").await.unwrap();
    iq(
        &mut c,
        "g",
        "<iq type='get' id='g'><query xmlns='jabber:iq:roster'/></iq>",
    )
    .await;
    c.send_str("<presence/>").await.unwrap();
    // Carol pre-approves Alice (RFC 6121 §3.4).
    c.send_str("<presence to='alice@localhost' type='subscribed'/>")
        .await
        .unwrap();
    let push = c
        .expect("push", |e| {
            e.name() == "iq" && e.attr("type") == Some("set")
        })
        .await
        .unwrap();
    assert_eq!(
        push.get_child("query", R)
            .unwrap()
            .get_child("item", R)
            .unwrap()
            .attr("approved"),
        Some("true")
    );

    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    iq(
        &mut a,
        "g",
        "<iq type='get' id='g'><query xmlns='jabber:iq:roster'/></iq>",
    )
    .await;
    a.send_str("<presence/>").await.unwrap();
    a.send_str("<presence to='carol@localhost' type='subscribe'/>")
        .await
        .unwrap();
    // Auto-approved: Alice gets subscribed and Carol's presence; Carol is not asked.
    a.expect("subscribed", |e| {
        e.name() == "presence" && e.attr("type") == Some("subscribed")
    })
    .await
    .unwrap();
    a.expect("carol's presence", |e| {
        e.name() == "presence" && e.attr("from") == Some("carol@localhost/c")
    })
    .await
    .unwrap();
    assert!(c
        .silent_for(std::time::Duration::from_millis(500), |e| e.name()
            == "presence"
            && e.attr("type") == Some("subscribe"))
        .await
        .unwrap());
    s.stop().await;
}
