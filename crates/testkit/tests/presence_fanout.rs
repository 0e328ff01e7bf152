//! Presence broadcasts to local contacts are serialized once and shared by every recipient
//! session (`Router::route_shared`): these tests check, over real TLS streams, that each
//! recipient still gets what RFC 6121 §4.4.3 and the per-recipient policies say it should.

use std::time::Duration;

use minidom::Element;
use tern_testkit::{RawClient, TestServer};

const C: &str = "jabber:client";

fn status(e: &Element) -> String {
    e.get_child("status", C)
        .map(|s| s.text())
        .unwrap_or_default()
}

fn from_alice(e: &Element) -> bool {
    e.name() == "presence" && e.attr("from") == Some("alice@localhost/a")
}

async fn online(s: &TestServer, user: &str, resource: &str) -> RawClient {
    let mut c = RawClient::login(s, user, "pw", resource).await.unwrap();
    c.send_str("<presence/>").await.unwrap();
    let me = format!("{user}@localhost/{resource}");
    c.expect("own presence", |e| {
        e.name() == "presence" && e.attr("from") == Some(me.as_str())
    })
    .await
    .unwrap();
    c
}

/// §4.4.3: every available resource of a contact gets the broadcast addressed to it; a
/// contact that blocks the sender gets nothing (XEP-0191 §3.6); a resource that declared
/// itself inactive (XEP-0352) gets only the latest, when it becomes active; the sender's own
/// resource gets its echo (§4.2.2).
#[tokio::test]
async fn broadcast_to_contacts_is_per_recipient() {
    let s = TestServer::start().await.unwrap();
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, "pw").await.unwrap();
    }
    let mut a = online(&s, "alice", "a").await;
    let mut b1 = online(&s, "bob", "b1").await;
    let mut c = online(&s, "carol", "c").await;
    a.befriend("alice@localhost", &mut b1, "bob@localhost")
        .await
        .unwrap();
    a.befriend("alice@localhost", &mut c, "carol@localhost")
        .await
        .unwrap();
    let mut b2 = online(&s, "bob", "b2").await;
    let r = c
        .iq("blk", "<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='alice@localhost'/></block></iq>")
        .await
        .unwrap();
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    b2.send_str("<inactive xmlns='urn:xmpp:csi:0'/>")
        .await
        .unwrap();
    // Let every state settle, and drop what the logins and probes produced (b2's probe is
    // answered to bob's bare JID, so b1 sees alice's presence again), before the broadcasts.
    for cl in [&mut a, &mut b1, &mut b2, &mut c] {
        cl.silent_for(Duration::from_millis(300), |_| false)
            .await
            .unwrap();
    }

    a.send_str("<presence><show>away</show><status>one</status></presence>")
        .await
        .unwrap();
    a.send_str("<presence><show>dnd</show><status>two</status></presence>")
        .await
        .unwrap();

    // The active resource: both, in order, each addressed to its full JID.
    for want in ["one", "two"] {
        let p = b1.expect("alice's presence", from_alice).await.unwrap();
        assert_eq!(status(&p), want, "{p:?}");
        assert_eq!(p.attr("to"), Some("bob@localhost/b1"));
        assert_eq!(p.attr("type"), None);
    }
    // The sender's own resource sees its presence too.
    for want in ["one", "two"] {
        let p = a
            .expect("own echo", |e| {
                e.name() == "presence" && e.attr("from") == Some("alice@localhost/a")
            })
            .await
            .unwrap();
        assert_eq!(status(&p), want);
        assert_eq!(p.attr("to"), Some("alice@localhost/a"));
    }
    // Carol blocks alice: none of it reaches her.
    assert!(c
        .silent_for(Duration::from_millis(400), from_alice)
        .await
        .unwrap());
    // Inactive b2: held back, then only the latest once active.
    assert!(b2
        .silent_for(Duration::from_millis(300), from_alice)
        .await
        .unwrap());
    b2.send_str("<active xmlns='urn:xmpp:csi:0'/>")
        .await
        .unwrap();
    let p = b2.expect("held presence", from_alice).await.unwrap();
    assert_eq!(status(&p), "two", "only the latest is kept: {p:?}");
    assert_eq!(p.attr("to"), Some("bob@localhost/b2"));
    assert_eq!(p.get_child("show", C).unwrap().text(), "dnd");
    assert!(b2
        .silent_for(Duration::from_millis(300), from_alice)
        .await
        .unwrap());

    // §4.5.2: unavailable goes the same way (b2 is active now).
    a.send_str("<presence type='unavailable'><status>bye</status></presence>")
        .await
        .unwrap();
    for b in [&mut b1, &mut b2] {
        let p = b.expect("unavailable", from_alice).await.unwrap();
        assert_eq!(p.attr("type"), Some("unavailable"));
        assert_eq!(status(&p), "bye");
    }
    assert!(c
        .silent_for(Duration::from_millis(300), from_alice)
        .await
        .unwrap());
    s.stop().await;
}

/// §4.4.3: only available resources get the broadcast; a bound resource that never sent
/// initial presence is skipped.
#[tokio::test]
async fn broadcast_skips_unavailable_resources() {
    let s = TestServer::start().await.unwrap();
    for u in ["alice", "bob"] {
        s.add_user(u, "pw").await.unwrap();
    }
    let mut a = online(&s, "alice", "a").await;
    let mut b1 = online(&s, "bob", "b1").await;
    a.befriend("alice@localhost", &mut b1, "bob@localhost")
        .await
        .unwrap();
    // b2 is bound but never sent initial presence: not an available resource (§4.4.3).
    let mut b2 = RawClient::login(&s, "bob", "pw", "b2").await.unwrap();
    a.send_str("<presence><status>x</status></presence>")
        .await
        .unwrap();
    let p = b1.expect("presence", from_alice).await.unwrap();
    assert_eq!(status(&p), "x");
    assert!(b2
        .silent_for(Duration::from_millis(400), from_alice)
        .await
        .unwrap());
    s.stop().await;
}
