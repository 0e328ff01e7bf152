//! Federation end to end: two in-process servers on loopback, reaching each other through
//! static routes, with real TLS, SASL EXTERNAL over their test CAs or dialback when they do
//! not trust each other, and bounces that say why delivery failed.

use std::time::Duration;

use minidom::Element;
use tern_s2s::AuthMethod;
use tern_testkit::{start_federated, RawClient, TestServer};

const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

fn body(m: &Element) -> Option<String> {
    m.get_child("body", "jabber:client").map(|b| b.text())
}

fn error_condition(m: &Element) -> Option<(String, String)> {
    let e = m.get_child("error", "jabber:client")?;
    let cond = e
        .children()
        .find(|c| c.ns() == NS_STANZAS && c.name() != "text")?
        .name()
        .to_owned();
    let text = e
        .get_child("text", NS_STANZAS)
        .map(|t| t.text())
        .unwrap_or_default();
    Some((cond, text))
}

async fn users(a: &TestServer, b: &TestServer) -> (RawClient, RawClient) {
    a.add_user("alice", "pw").await.unwrap();
    b.add_user("bob", "pw").await.unwrap();
    let mut alice = RawClient::login(a, "alice", "pw", "r").await.unwrap();
    let mut bob = RawClient::login(b, "bob", "pw", "r").await.unwrap();
    for c in [&mut alice, &mut bob] {
        c.send_str("<presence/>").await.unwrap();
    }
    (alice, bob)
}

/// A message each way; returns how each side's outgoing stream authenticated.
async fn converse(a: &TestServer, b: &TestServer) -> (AuthMethod, AuthMethod) {
    let (mut alice, mut bob) = users(a, b).await;
    alice
        .send_str(&format!(
            "<message to='bob@{}/r' type='chat' id='m1'><body>hello bob</body></message>",
            b.domain
        ))
        .await
        .unwrap();
    let m = bob
        .expect("alice's message", |e| e.name() == "message")
        .await
        .unwrap();
    assert_eq!(
        m.attr("from"),
        Some(format!("alice@{}/r", a.domain).as_str())
    );
    assert_eq!(body(&m).as_deref(), Some("hello bob"), "{m:?}");
    bob.send_str(&format!(
        "<message to='alice@{}/r' type='chat' id='m2'><body>hello alice</body></message>",
        a.domain
    ))
    .await
    .unwrap();
    let m = alice
        .expect("bob's reply", |e| e.name() == "message")
        .await
        .unwrap();
    assert_eq!(m.attr("from"), Some(format!("bob@{}/r", b.domain).as_str()));
    assert_eq!(body(&m).as_deref(), Some("hello alice"), "{m:?}");
    let method = |s: &TestServer, peer: &str| {
        s.running
            .as_ref()
            .unwrap()
            .s2s
            .as_ref()
            .unwrap()
            .connected()
            .into_iter()
            .find(|(_, r, _)| r == peer)
            .map(|(_, _, m)| m)
            .expect("an outgoing stream to the peer")
    };
    (method(a, &b.domain), method(b, &a.domain))
}

#[tokio::test]
async fn trusted_certificates_use_sasl_external_both_ways() {
    let (a, b) = start_federated("a.test", "b.test", true, |_, _| {})
        .await
        .unwrap();
    let methods = converse(&a, &b).await;
    assert_eq!(
        methods,
        (AuthMethod::SaslExternal, AuthMethod::SaslExternal)
    );
}

#[tokio::test]
async fn untrusted_certificates_fall_back_to_dialback_when_policy_allows() {
    let (a, b) = start_federated("a.test", "b.test", false, |_, c| {
        c.s2s.require_verified_certificates = false;
    })
    .await
    .unwrap();
    let methods = converse(&a, &b).await;
    assert_eq!(methods, (AuthMethod::Dialback, AuthMethod::Dialback));
}

#[tokio::test]
async fn per_domain_override_allows_dialback_for_one_peer() {
    let (a, b) = start_federated("a.test", "b.test", false, |me, c| {
        let peer = if me == "a.test" { "b.test" } else { "a.test" };
        c.s2s.domain.insert(
            peer.into(),
            tern_s2s::config::DomainPolicy {
                require_verified_certificates: Some(false),
                allow_dialback: None,
            },
        );
    })
    .await
    .unwrap();
    let methods = converse(&a, &b).await;
    assert_eq!(methods, (AuthMethod::Dialback, AuthMethod::Dialback));
}

#[tokio::test]
async fn untrusted_certificate_bounces_by_default_and_says_why() {
    // Each trusts only its own CA, so the peer's certificate has an unknown issuer.
    let (a, b) = start_federated("a.test", "b.test", false, |_, c| {
        c.s2s.ca_files = vec![c.server.data_dir.join("ca.crt")];
    })
    .await
    .unwrap();
    let (mut alice, mut bob) = users(&a, &b).await;
    alice
        .send_str("<message to='bob@b.test/r' type='chat' id='u1'><body>hi</body></message>")
        .await
        .unwrap();
    let e = alice
        .expect("bounce", |e| e.attr("id") == Some("u1"))
        .await
        .unwrap();
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(e.attr("from"), Some("bob@b.test/r"));
    let (cond, text) = error_condition(&e).expect("an error condition");
    assert_eq!(cond, "remote-server-not-found");
    assert!(
        text.contains("certificate") && text.contains("unknown authority"),
        "{text}"
    );
    assert!(bob
        .silent_for(Duration::from_millis(300), |e| e.name() == "message")
        .await
        .unwrap());
}

#[tokio::test]
async fn refused_port_bounces_with_remote_server_not_found() {
    let port = tern_testkit::free_port();
    let s = TestServer::start_with(|c| {
        c.s2s
            .routes
            .insert("down.test".into(), format!("127.0.0.1:{port}"));
        c.s2s.connect_retries = 1;
        c.s2s.retry_delay_secs = 0;
    })
    .await
    .unwrap();
    s.add_user("alice", "pw").await.unwrap();
    let mut alice = RawClient::login(&s, "alice", "pw", "r").await.unwrap();
    for id in ["d1", "d2"] {
        alice
            .send_str(&format!(
                "<message to='x@down.test' type='chat' id='{id}'><body>hi</body></message>"
            ))
            .await
            .unwrap();
    }
    for id in ["d1", "d2"] {
        let e = alice
            .expect("bounce", |e| e.attr("id") == Some(id))
            .await
            .unwrap();
        let (cond, text) = error_condition(&e).expect("an error condition");
        assert_eq!(cond, "remote-server-not-found");
        assert!(
            text.contains("refused") && text.contains(&port.to_string()),
            "{text}"
        );
    }
    // IQ results and errors are never bounced back.
    alice
        .send_str("<iq to='x@down.test' type='result' id='r1'/>")
        .await
        .unwrap();
    assert!(alice
        .silent_for(Duration::from_millis(300), |e| e.attr("id") == Some("r1"))
        .await
        .unwrap());
}

#[tokio::test]
async fn blocked_domain_is_refused_without_connecting() {
    let s = TestServer::start_with(|c| c.s2s.blocked = vec!["evil.test".into()])
        .await
        .unwrap();
    s.add_user("alice", "pw").await.unwrap();
    let mut alice = RawClient::login(&s, "alice", "pw", "r").await.unwrap();
    alice
        .send_str("<message to='x@sub.evil.test' id='b1'><body>hi</body></message>")
        .await
        .unwrap();
    let e = alice
        .expect("bounce", |e| e.attr("id") == Some("b1"))
        .await
        .unwrap();
    let (cond, text) = error_condition(&e).unwrap();
    assert_eq!(cond, "remote-server-not-found");
    assert!(text.contains("blocked"), "{text}");
}

#[tokio::test]
async fn presence_subscription_completes_across_domains() {
    let (a, b) = start_federated("a.test", "b.test", true, |_, _| {})
        .await
        .unwrap();
    let (mut alice, mut bob) = users(&a, &b).await;
    // Roster pushes go to resources that asked for the roster (RFC 6121 §2.1.6).
    alice
        .send_str("<iq type='get' id='ros1'><query xmlns='jabber:iq:roster'/></iq>")
        .await
        .unwrap();
    alice
        .expect("roster", |e| e.attr("id") == Some("ros1"))
        .await
        .unwrap();
    alice
        .send_str("<presence to='bob@b.test' type='subscribe'/>")
        .await
        .unwrap();
    let sub = bob
        .expect("subscription request", |e| {
            e.name() == "presence" && e.attr("type") == Some("subscribe")
        })
        .await
        .unwrap();
    assert_eq!(sub.attr("from"), Some("alice@a.test"));
    bob.send_str("<presence to='alice@a.test' type='subscribed'/>")
        .await
        .unwrap();
    let push = alice
        .expect("roster push with subscription 'to'", |e| {
            e.name() == "iq"
                && e.get_child("query", "jabber:iq:roster")
                    .and_then(|q| q.get_child("item", "jabber:iq:roster"))
                    .is_some_and(|i| {
                        i.attr("jid") == Some("bob@b.test") && i.attr("subscription") == Some("to")
                    })
        })
        .await
        .unwrap();
    assert_eq!(push.attr("type"), Some("set"));
    // Bob's available presence follows the approval (RFC 6121 §3.1.6).
    let p = alice
        .expect("bob's presence", |e| {
            e.name() == "presence" && e.attr("from") == Some("bob@b.test/r")
        })
        .await
        .unwrap();
    assert_eq!(p.attr("type"), None);
}

#[tokio::test]
async fn idle_streams_close_and_reopen_on_demand() {
    let (a, b) = start_federated("a.test", "b.test", true, |_, c| c.s2s.idle_timeout_secs = 1)
        .await
        .unwrap();
    let (mut alice, mut bob) = users(&a, &b).await;
    let s2s = a.running.as_ref().unwrap().s2s.clone().unwrap();
    for (id, wait) in [("i1", true), ("i2", false)] {
        alice
            .send_str(&format!(
                "<message to='bob@b.test/r' type='chat' id='{id}'><body>{id}</body></message>"
            ))
            .await
            .unwrap();
        bob.expect("message", |e| e.attr("id") == Some(id))
            .await
            .unwrap();
        assert_eq!(s2s.connected().len(), 1);
        if wait {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            assert!(s2s.connected().is_empty(), "idle stream still open");
        }
    }
}

#[tokio::test]
async fn peer_refusing_our_authentication_is_named_in_the_bounce() {
    // a.test trusts b.test's certificate; b.test trusts only its own CA and requires verified
    // certificates, so it offers a.test no SASL EXTERNAL and refuses its dialback.
    let (a, b) = start_federated("a.test", "b.test", true, |me, c| {
        if me == "b.test" {
            c.s2s.ca_files = vec![c.server.data_dir.join("ca.crt")];
        }
    })
    .await
    .unwrap();
    let (mut alice, _bob) = users(&a, &b).await;
    alice
        .send_str("<message to='bob@b.test/r' type='chat' id='r1'><body>hi</body></message>")
        .await
        .unwrap();
    let e = alice
        .expect("bounce", |e| e.attr("id") == Some("r1"))
        .await
        .unwrap();
    let (cond, text) = error_condition(&e).expect("an error condition");
    assert_eq!(cond, "remote-server-not-found");
    assert!(
        text.contains("authentication refused by peer") && text.contains("not-authorized"),
        "{text}"
    );
}

#[tokio::test]
async fn silent_peer_times_out_and_the_queue_is_bounded() {
    // Accepts connections (in the kernel backlog) but never says anything.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let s = TestServer::start_with(|c| {
        c.s2s.routes.insert("slow.test".into(), addr.to_string());
        c.s2s.connect_timeout_secs = 1;
        c.s2s.connect_retries = 0;
        c.s2s.queue_size = 1;
    })
    .await
    .unwrap();
    s.add_user("alice", "pw").await.unwrap();
    let mut alice = RawClient::login(&s, "alice", "pw", "r").await.unwrap();
    for id in ["q1", "q2"] {
        alice
            .send_str(&format!(
                "<message to='x@slow.test' type='chat' id='{id}'><body>hi</body></message>"
            ))
            .await
            .unwrap();
    }
    // The queue holds one stanza: the second bounces at once.
    let e = alice
        .expect("bounce", |e| e.attr("id") == Some("q2"))
        .await
        .unwrap();
    assert_eq!(error_condition(&e).unwrap().0, "resource-constraint");
    let e = alice
        .expect("bounce", |e| e.attr("id") == Some("q1"))
        .await
        .unwrap();
    let (cond, text) = error_condition(&e).unwrap();
    assert_eq!(cond, "remote-server-timeout");
    // The reason says where the attempt stalled. Two timers of the same length race here (the
    // whole attempt's, which names the address, and the stream read's inside it); on a loaded
    // machine either may fire first, and both name a timeout waiting for the peer.
    assert!(
        text.contains("timed out")
            && (text.contains(&format!("waiting for {addr}"))
                || text.contains("waiting for the peer")),
        "{text}"
    );
    let err = e.get_child("error", "jabber:client").unwrap();
    assert_eq!(err.attr("type"), Some("wait"));
    drop(silent);
}

#[tokio::test]
async fn federation_disabled_bounces_remote_stanzas() {
    let s = TestServer::start_with(|c| c.s2s.enabled = false)
        .await
        .unwrap();
    assert!(s.running.as_ref().unwrap().s2s_addrs.is_empty());
    s.add_user("alice", "pw").await.unwrap();
    let mut alice = RawClient::login(&s, "alice", "pw", "r").await.unwrap();
    alice
        .send_str("<message to='x@elsewhere.test' id='n1'><body>hi</body></message>")
        .await
        .unwrap();
    let e = alice
        .expect("bounce", |e| e.attr("id") == Some("n1"))
        .await
        .unwrap();
    let (cond, text) = error_condition(&e).unwrap();
    assert_eq!(cond, "remote-server-not-found");
    assert!(text.contains("federation is not enabled"), "{text}");
}
