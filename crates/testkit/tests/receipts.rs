//! XEP-0184 receipts and XEP-0333 markers end to end: never fabricated, archived (they carry
//! no body), stored offline and carbon-copied like the messages they confirm.

use std::time::Duration;

use minidom::Element;
use tern_testkit::{RawClient, TestServer};

const MAM: &str = "urn:xmpp:mam:2";
const FWD: &str = "urn:xmpp:forward:0";

/// Runs a MAM query for everything and returns the archived inner messages.
async fn archive(c: &mut RawClient, qid: &str) -> Vec<Element> {
    c.send_str(&format!(
        "<iq type='set' id='{qid}'><query xmlns='urn:xmpp:mam:2' queryid='{qid}'/></iq>"
    ))
    .await
    .unwrap();
    let mut out = Vec::new();
    loop {
        let e = c
            .expect("mam", |e| {
                e.attr("id") == Some(qid) || e.get_child("result", MAM).is_some()
            })
            .await
            .unwrap();
        if e.name() == "iq" {
            assert_eq!(e.attr("type"), Some("result"), "{e:?}");
            return out;
        }
        let inner = e
            .get_child("result", MAM)
            .unwrap()
            .get_child("forwarded", FWD)
            .unwrap();
        out.push(inner.get_child("message", "jabber:client").unwrap().clone());
    }
}

fn has(msgs: &[Element], name: &str, ns: &str, id: &str) -> bool {
    msgs.iter()
        .any(|m| m.get_child(name, ns).and_then(|r| r.attr("id")) == Some(id))
}

#[tokio::test]
async fn receipts_and_markers_are_archived_stored_offline_and_copied() {
    let s = TestServer::start().await.unwrap();
    s.add_user("alice", "pw").await.unwrap();
    s.add_user("bob", "pw").await.unwrap();
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    a.send_str("<presence/>").await.unwrap();

    // Bob is offline: the request and then his client's receipt and marker.
    a.send_str("<message to='bob@localhost' type='chat' id='m1'><body>hi</body><request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>")
        .await
        .unwrap();
    let mut b = RawClient::login(&s, "bob", "pw", "b1").await.unwrap();
    let mut b2 = RawClient::login(&s, "bob", "pw", "b2").await.unwrap();
    for c in [&mut b, &mut b2] {
        c.send_str("<iq type='set' id='cb'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
            .await
            .unwrap();
        c.expect("carbons on", |e| e.attr("id") == Some("cb"))
            .await
            .unwrap();
    }
    b.send_str("<presence><priority>5</priority></presence>")
        .await
        .unwrap();
    let m = b
        .expect("offline m1", |e| {
            e.name() == "message" && e.attr("id") == Some("m1")
        })
        .await
        .unwrap();
    assert!(m.has_child("request", "urn:xmpp:receipts"));
    b2.send_str("<presence/>").await.unwrap();
    // The server itself never answered the request on Bob's behalf.
    assert!(a
        .silent_for(Duration::from_millis(300), |e| e
            .has_child("received", "urn:xmpp:receipts"))
        .await
        .unwrap());

    b.send_str("<message to='alice@localhost/a' type='chat' id='r1'><received xmlns='urn:xmpp:receipts' id='m1'/></message>").await.unwrap();
    b.send_str("<message to='alice@localhost/a' type='chat' id='d1'><displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/></message>").await.unwrap();
    a.expect("receipt", |e| e.has_child("received", "urn:xmpp:receipts"))
        .await
        .unwrap();
    a.expect("marker", |e| {
        e.has_child("displayed", "urn:xmpp:chat-markers:0")
    })
    .await
    .unwrap();
    // Bob's other device sees both as sent carbons.
    for ns in ["urn:xmpp:receipts", "urn:xmpp:chat-markers:0"] {
        b2.expect("sent carbon", |e| {
            e.get_child("sent", "urn:xmpp:carbons:2")
                .and_then(|s| s.get_child("forwarded", FWD))
                .and_then(|f| f.get_child("message", "jabber:client"))
                .is_some_and(|m| m.children().any(|c| c.ns() == ns))
        })
        .await
        .unwrap();
    }
    // Both archives hold the body-less receipt and marker.
    let mine = archive(&mut a, "qa").await;
    assert!(
        has(&mine, "received", "urn:xmpp:receipts", "m1"),
        "alice's archive: {mine:?}"
    );
    assert!(has(&mine, "displayed", "urn:xmpp:chat-markers:0", "m1"));
    let theirs = archive(&mut b, "qb").await;
    assert!(
        has(&theirs, "received", "urn:xmpp:receipts", "m1"),
        "bob's archive: {theirs:?}"
    );
    assert!(has(&theirs, "displayed", "urn:xmpp:chat-markers:0", "m1"));
    // A no-store hint still wins, and chat states are never archived.
    b.send_str("<message to='alice@localhost/a' type='chat' id='r2'><received xmlns='urn:xmpp:receipts' id='m9'/><no-store xmlns='urn:xmpp:hints'/></message>").await.unwrap();
    b.send_str("<message to='alice@localhost/a' type='chat' id='c1'><active xmlns='http://jabber.org/protocol/chatstates'/></message>").await.unwrap();
    a.expect("r2", |e| e.attr("id") == Some("r2"))
        .await
        .unwrap();
    a.expect("c1", |e| e.attr("id") == Some("c1"))
        .await
        .unwrap();
    let mine = archive(&mut a, "qa2").await;
    assert!(!has(&mine, "received", "urn:xmpp:receipts", "m9"));
    assert!(!mine.iter().any(|m| m.attr("id") == Some("c1")));
    s.stop().await;
}
