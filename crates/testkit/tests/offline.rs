//! XEP-0160 offline storage end to end, on SQLite, across a restart.

use std::time::Duration;

use tern_testkit::{RawClient, TestServer};

const DELAY: &str = "urn:xmpp:delay";

#[tokio::test]
async fn stored_in_order_with_delay_survives_restart_and_is_delivered_once() {
    let mut s = TestServer::start_with(|c| {
        c.storage.backend = "sqlite".into();
        c.server.offline_max_per_user = 3;
    })
    .await
    .unwrap();
    s.add_user("alice", "pw").await.unwrap();
    s.add_user("bob", "pw").await.unwrap();
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    for i in 1..=3 {
        a.send_str(&format!(
            "<message to='bob@localhost' type='chat' id='m{i}'><body>n{i}</body></message>"
        ))
        .await
        .unwrap();
    }
    // A standalone chat state is neither stored nor bounced.
    a.send_str("<message to='bob@localhost' type='chat' id='cs'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
        .await
        .unwrap();
    // Over the limit: resource-constraint.
    a.send_str("<message to='bob@localhost' type='chat' id='m4'><body>n4</body></message>")
        .await
        .unwrap();
    let e = a
        .expect("bounce", |e| {
            e.name() == "message" && e.attr("type") == Some("error")
        })
        .await
        .unwrap();
    assert_eq!(
        e.attr("id"),
        Some("m4"),
        "only the fourth message is refused: {e:?}"
    );
    assert!(e
        .get_child("error", "jabber:client")
        .unwrap()
        .has_child("resource-constraint", "urn:ietf:params:xml:ns:xmpp-stanzas"));

    s.restart().await.unwrap();

    let mut b = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
    // Nothing before initial presence.
    assert!(b
        .silent_for(Duration::from_millis(300), |e| e.name() == "message")
        .await
        .unwrap());
    b.send_str("<presence/>").await.unwrap();
    for i in 1..=3 {
        let m = b
            .expect("offline message", |e| e.name() == "message")
            .await
            .unwrap();
        assert_eq!(m.attr("id"), Some(format!("m{i}").as_str()), "in order");
        assert_eq!(m.attr("from"), Some("alice@localhost/a"));
        let d = m.get_child("delay", DELAY).expect("XEP-0203 delay");
        assert_eq!(d.attr("from"), Some("localhost"));
        assert!(d
            .attr("stamp")
            .is_some_and(|t| t.ends_with('Z') && t.len() >= 20));
    }
    assert!(b
        .silent_for(Duration::from_millis(300), |e| e.name() == "message")
        .await
        .unwrap());
    drop(b);
    // Delivered messages are gone.
    let mut b = RawClient::login(&s, "bob", "pw", "b2").await.unwrap();
    b.send_str("<presence/>").await.unwrap();
    assert!(b
        .silent_for(Duration::from_millis(500), |e| e.name() == "message")
        .await
        .unwrap());
    s.stop().await;
}

#[tokio::test]
async fn negative_priority_does_not_flush() {
    let s = TestServer::start().await.unwrap();
    s.add_user("alice", "pw").await.unwrap();
    s.add_user("bob", "pw").await.unwrap();
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    a.send_str("<message to='bob@localhost' type='chat' id='x'><body>later</body></message>")
        .await
        .unwrap();
    let mut b = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
    b.send_str("<presence><priority>-1</priority></presence>")
        .await
        .unwrap();
    assert!(b
        .silent_for(Duration::from_millis(400), |e| e.name() == "message")
        .await
        .unwrap());
    b.send_str("<presence><priority>1</priority></presence>")
        .await
        .unwrap();
    let m = b
        .expect("message", |e| e.name() == "message")
        .await
        .unwrap();
    assert_eq!(m.attr("id"), Some("x"));
    s.stop().await;
}

#[tokio::test]
async fn a_backlog_larger_than_half_the_queue_arrives_over_logins_and_iqs_are_answered() {
    let s = TestServer::start_with(|c| c.server.offline_max_per_user = 5000)
        .await
        .unwrap();
    s.add_user("alice", "pw").await.unwrap();
    s.add_user("bob", "pw").await.unwrap();
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    let n = 600; // more than the half of the default session queue (512) a flush may fill
    let mut batch = String::new();
    for i in 0..n {
        batch.push_str(&format!(
            "<message to='bob@localhost' type='chat' id='b{i}'><body>{i}</body></message>"
        ));
    }
    a.send_str(&batch).await.unwrap();
    a.send_str("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await
        .unwrap();
    a.expect("sync", |e| e.attr("id") == Some("sync"))
        .await
        .unwrap();

    let mut next = 0;
    for login in 0..4 {
        let mut b = RawClient::login(&s, "bob", "pw", &format!("b{login}"))
            .await
            .unwrap();
        b.send_str(
            "<presence/><iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await
        .unwrap();
        // The backlog comes first, then the answer to the ping: it is never crowded out.
        loop {
            let e = b
                .expect("backlog", |e| {
                    e.name() == "message" || e.attr("id") == Some("p1")
                })
                .await
                .unwrap();
            if e.name() == "iq" {
                break;
            }
            assert_eq!(
                e.attr("id"),
                Some(format!("b{next}").as_str()),
                "in order, none missing"
            );
            next += 1;
        }
        if next == n {
            break;
        }
    }
    assert_eq!(next, n, "the whole backlog arrived over a few logins");
    s.stop().await;
}

/// A login that finds nothing stored lets the server skip the store on later logins
/// (`KnownEmpty`); a message stored after that must still be delivered at the next one, and
/// the one after that finds nothing again.
#[tokio::test]
async fn message_stored_after_an_empty_login_is_delivered() {
    let s = TestServer::start_with(|c| c.storage.backend = "sqlite".into())
        .await
        .unwrap();
    s.add_user("alice", "pw").await.unwrap();
    s.add_user("bob", "pw").await.unwrap();
    let is_msg = |e: &minidom::Element| e.name() == "message";
    for round in 0..2 {
        // Nothing stored: bob's login delivers nothing.
        let mut b = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
        b.send_str("<presence/>").await.unwrap();
        assert!(b
            .silent_for(Duration::from_millis(300), is_msg)
            .await
            .unwrap());
        drop(b);
        let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
        // Wait until bob's session is gone, so the message is stored rather than delivered.
        let mut stored = false;
        for _ in 0..50 {
            if s.router()
                .sessions()
                .resources(&"bob@localhost".parse().unwrap())
                .is_empty()
            {
                stored = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(stored, "bob's session did not end");
        a.send_str(&format!(
            "<message to='bob@localhost' type='chat' id='r{round}'><body>later</body></message>"
        ))
        .await
        .unwrap();
        // No error: stored.
        assert!(a
            .silent_for(Duration::from_millis(300), is_msg)
            .await
            .unwrap());
        let mut b = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
        b.send_str("<presence/>").await.unwrap();
        let m = b.expect("offline message", is_msg).await.unwrap();
        assert_eq!(m.attr("id"), Some(format!("r{round}").as_str()));
        assert!(m.has_child("delay", "urn:xmpp:delay"));
        assert!(b
            .silent_for(Duration::from_millis(300), is_msg)
            .await
            .unwrap());
        drop(b);
        drop(a);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.stop().await;
}
