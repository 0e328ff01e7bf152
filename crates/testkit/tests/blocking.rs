//! XEP-0191 blocking end to end: the list protocol with pushes, and enforcement of messages,
//! presence and IQs in both directions, then unblocking restoring them.

use std::time::Duration;

use minidom::Element;
use tern_testkit::{error_condition as condition, RawClient, TestServer};

const NS: &str = "urn:xmpp:blocking";

fn chat(to: &str, id: &str) -> String {
    format!("<message to='{to}' type='chat' id='{id}'><body>hi {id}</body></message>")
}

fn is_msg(id: &'static str) -> impl Fn(&Element) -> bool {
    move |e: &Element| e.name() == "message" && e.attr("id") == Some(id)
}

#[tokio::test]
async fn block_list_protocol_and_enforcement_both_ways() {
    let s = TestServer::start().await.unwrap();
    s.add_user("alice", "pw").await.unwrap();
    s.add_user("bob", "pw").await.unwrap();
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    let mut a2 = RawClient::login(&s, "alice", "pw", "a2").await.unwrap();
    let mut b = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
    a.send_str("<presence/>").await.unwrap();
    b.send_str("<presence/>").await.unwrap();
    a.befriend("alice@localhost", &mut b, "bob@localhost")
        .await
        .unwrap();
    // befriend() consumed the presence each got from the other on approval.

    // Disco, and an empty list; a2 retrieves it too so it gets pushes.
    let d = a.iq("d", "<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await.unwrap();
    assert!(d
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap()
        .children()
        .any(|f| f.attr("var") == Some(NS)));
    for c in [&mut a, &mut a2] {
        let l = c
            .iq(
                "l0",
                "<iq type='get' id='l0'><blocklist xmlns='urn:xmpp:blocking'/></iq>",
            )
            .await
            .unwrap();
        assert_eq!(l.attr("type"), Some("result"));
        assert_eq!(l.get_child("blocklist", NS).unwrap().children().count(), 0);
    }

    // Errors: empty block, malformed JID, someone else's list.
    let e = a
        .iq(
            "e1",
            "<iq type='set' id='e1'><block xmlns='urn:xmpp:blocking'/></iq>",
        )
        .await
        .unwrap();
    assert_eq!(condition(&e).as_deref(), Some("bad-request"));
    let e = a
        .iq(
            "e2",
            "<iq type='set' id='e2'><block xmlns='urn:xmpp:blocking'><item jid='@@'/></block></iq>",
        )
        .await
        .unwrap();
    assert_eq!(condition(&e).as_deref(), Some("jid-malformed"));
    let e = b.iq("e3", "<iq type='get' id='e3' to='alice@localhost'><blocklist xmlns='urn:xmpp:blocking'/></iq>").await.unwrap();
    assert_eq!(condition(&e).as_deref(), Some("forbidden"));

    // Alice blocks Bob: Bob sees her go offline, a2 gets the push.
    let r = a.iq("b1", "<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>").await.unwrap();
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let p = b
        .expect("unavailable", |e| {
            e.name() == "presence" && e.attr("from") == Some("alice@localhost/a")
        })
        .await
        .unwrap();
    assert_eq!(p.attr("type"), Some("unavailable"));
    let push = a2
        .expect("push", |e| {
            e.name() == "iq" && e.get_child("block", NS).is_some()
        })
        .await
        .unwrap();
    assert_eq!(push.attr("type"), Some("set"));
    assert_eq!(
        push.get_child("block", NS)
            .unwrap()
            .children()
            .next()
            .unwrap()
            .attr("jid"),
        Some("bob@localhost")
    );
    let l = a
        .iq(
            "l1",
            "<iq type='get' id='l1'><blocklist xmlns='urn:xmpp:blocking'/></iq>",
        )
        .await
        .unwrap();
    let items: Vec<_> = l
        .get_child("blocklist", NS)
        .unwrap()
        .children()
        .map(|i| i.attr("jid").unwrap().to_owned())
        .collect();
    assert_eq!(items, vec!["bob@localhost"]);

    // Outbound: Alice's message to Bob is refused with <blocked/>; nothing reaches Bob.
    a.send_str(&chat("bob@localhost", "m1")).await.unwrap();
    let e = a.expect("refusal", is_msg("m1")).await.unwrap();
    assert_eq!(condition(&e).as_deref(), Some("not-acceptable"));
    assert!(e
        .get_child("error", "jabber:client")
        .unwrap()
        .get_child("blocked", "urn:xmpp:blocking:errors")
        .is_some());
    // Inbound: Bob's message and IQ get service-unavailable; his presence is dropped.
    b.send_str(&chat("alice@localhost", "m2")).await.unwrap();
    let e = b.expect("bounce", is_msg("m2")).await.unwrap();
    assert_eq!(condition(&e).as_deref(), Some("service-unavailable"));
    let e = b
        .iq(
            "v",
            "<iq type='get' id='v' to='alice@localhost/a'><query xmlns='jabber:iq:version'/></iq>",
        )
        .await
        .unwrap();
    assert_eq!(condition(&e).as_deref(), Some("service-unavailable"));
    b.send_str("<presence><status>away</status></presence>")
        .await
        .unwrap();
    // Alice's presence change is not sent to Bob either.
    a.send_str("<presence><show>dnd</show></presence>")
        .await
        .unwrap();
    let quiet = |e: &Element| {
        e.name() == "message"
            || (e.name() == "presence" && e.attr("from").is_some_and(|f| f.starts_with("bob@")))
    };
    assert!(a
        .silent_for(Duration::from_millis(400), quiet)
        .await
        .unwrap());
    assert!(b
        .silent_for(Duration::from_millis(100), |e| e.name() == "presence"
            && e.attr("from").is_some_and(|f| f.starts_with("alice@")))
        .await
        .unwrap());

    // Unblock all: pushed, Bob gets Alice's current presence, messages flow both ways again.
    let r = a
        .iq(
            "u1",
            "<iq type='set' id='u1'><unblock xmlns='urn:xmpp:blocking'/></iq>",
        )
        .await
        .unwrap();
    assert_eq!(r.attr("type"), Some("result"));
    a2.expect("unblock push", |e| {
        e.name() == "iq" && e.get_child("unblock", NS).is_some()
    })
    .await
    .unwrap();
    let p = b
        .expect("presence again", |e| {
            e.name() == "presence" && e.attr("from") == Some("alice@localhost/a")
        })
        .await
        .unwrap();
    assert_eq!(
        p.get_child("show", "jabber:client").map(|s| s.text()),
        Some("dnd".into())
    );
    a.send_str(&chat("bob@localhost", "m3")).await.unwrap();
    b.expect("message", is_msg("m3")).await.unwrap();
    b.send_str(&chat("alice@localhost", "m4")).await.unwrap();
    let m = a.expect("message", is_msg("m4")).await.unwrap();
    assert!(m.attr("type") != Some("error"));
}

#[tokio::test]
async fn domain_block_covers_every_jid_there_and_persists() {
    let s = TestServer::start().await.unwrap();
    s.add_user("alice", "pw").await.unwrap();
    s.add_user("bob", "pw").await.unwrap();
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    a.send_str("<presence/>").await.unwrap();
    let r = a.iq("b", "<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='localhost'/></block></iq>").await.unwrap();
    assert_eq!(r.attr("type"), Some("result"));
    drop(a);
    // A new session reads the stored list: Bob (at the blocked domain) cannot reach Alice.
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    a.send_str("<presence/>").await.unwrap();
    let mut b = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
    b.send_str(&chat("alice@localhost/a", "m1")).await.unwrap();
    let e = b.expect("bounce", is_msg("m1")).await.unwrap();
    assert_eq!(condition(&e).as_deref(), Some("service-unavailable"));
    assert!(a
        .silent_for(Duration::from_millis(300), |e| e.name() == "message")
        .await
        .unwrap());
    // Her own server's answers still reach her (her own account is never blocked).
    let r = a
        .iq(
            "p",
            "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await
        .unwrap();
    assert_eq!(r.attr("type"), Some("result"));
}
