//! End-to-end tests of the client listener over real TCP and TLS (RFC 6120 §4–§7).

use minidom::Element;
use tern_testkit::{RawClient, TestServer};

const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
const NS_STREAM_ERR: &str = "urn:ietf:params:xml:ns:xmpp-streams";

fn stream_error(e: &Element) -> Option<String> {
    if !e.is("error", NS_STREAMS) {
        return None;
    }
    e.children()
        .find(|c| c.ns() == NS_STREAM_ERR && c.name() != "text")
        .map(|c| c.name().to_owned())
}

fn mechanisms(features: &Element) -> Vec<String> {
    features
        .get_child("mechanisms", NS_SASL)
        .map(|m| m.children().map(|c| c.text()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn starttls_is_required_before_auth() {
    let server = TestServer::start().await.unwrap();
    let mut c = RawClient::connect(server.c2s, "localhost").await.unwrap();
    let f = c.open().await.unwrap();
    let st = f.get_child("starttls", NS_TLS).expect("starttls offered");
    assert!(st.has_child("required", NS_TLS));
    assert!(
        mechanisms(&f).is_empty(),
        "no SASL before TLS when TLS is required: {f:?}"
    );
    c.send_str("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>")
        .await
        .unwrap();
    let e = c.next().await.unwrap();
    assert_eq!(stream_error(&e).as_deref(), Some("policy-violation"));
    server.stop().await;
}

#[tokio::test]
async fn mechanisms_after_tls_include_plus_and_plain() {
    let server = TestServer::start().await.unwrap();
    let mut c = RawClient::connect(server.c2s, "localhost").await.unwrap();
    c.open().await.unwrap();
    let (_c, f) = c.starttls(&server.ca_path()).await.unwrap();
    let m = mechanisms(&f);
    for want in [
        "SCRAM-SHA-256-PLUS",
        "SCRAM-SHA-1-PLUS",
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
        "PLAIN",
    ] {
        assert!(m.iter().any(|x| x == want), "{want} missing from {m:?}");
    }
    assert!(f.has_child("register", "http://jabber.org/features/iq-register"));
    server.stop().await;
}

#[tokio::test]
async fn plain_login_bind_and_wrong_password() {
    let server = TestServer::start().await.unwrap();
    server.add_user("alice", "secret").await.unwrap();
    let c = RawClient::login(&server, "alice", "secret", "laptop")
        .await
        .unwrap();
    assert_eq!(c.jid.as_deref(), Some("alice@localhost/laptop"));

    let mut c = RawClient::connect_tls(server.tls, "localhost", &server.ca_path())
        .await
        .unwrap();
    c.open().await.unwrap();
    let r = c.auth_plain("alice", "wrong").await.unwrap();
    assert!(
        r.is("failure", NS_SASL) && r.has_child("not-authorized", NS_SASL),
        "{r:?}"
    );
    let r = c.auth_plain("nobody", "secret").await.unwrap();
    assert!(
        r.is("failure", NS_SASL) && r.has_child("not-authorized", NS_SASL),
        "{r:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_iq_gets_service_unavailable() {
    let server = TestServer::start().await.unwrap();
    server.add_user("alice", "pw").await.unwrap();
    let mut c = RawClient::login(&server, "alice", "pw", "r").await.unwrap();
    for to in ["localhost", "alice@localhost", "nobody@localhost"] {
        c.send_str(&format!(
            "<iq type='get' id='u1' to='{to}'><query xmlns='urn:example:unknown'/></iq>"
        ))
        .await
        .unwrap();
        let r = c.expect("iq error", |e| e.name() == "iq").await.unwrap();
        assert_eq!(r.attr("type"), Some("error"), "{to}: {r:?}");
        assert_eq!(r.attr("id"), Some("u1"));
        let err = r.get_child("error", "jabber:client").expect("error child");
        assert!(
            err.has_child("service-unavailable", "urn:ietf:params:xml:ns:xmpp-stanzas"),
            "{r:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn chat_between_two_accounts() {
    let server = TestServer::start().await.unwrap();
    server.add_user("alice", "pw").await.unwrap();
    server.add_user("bob", "pw").await.unwrap();
    let mut a = RawClient::login(&server, "alice", "pw", "a1")
        .await
        .unwrap();
    let mut b = RawClient::login(&server, "bob", "pw", "b1").await.unwrap();
    b.send_str("<presence/>").await.unwrap();
    // Full JID: delivered to that resource.
    a.send_str("<message to='bob@localhost/b1' type='chat' id='m1'><body>hi</body></message>")
        .await
        .unwrap();
    let m = b
        .expect("message", |e| e.name() == "message")
        .await
        .unwrap();
    assert_eq!(m.attr("from"), Some("alice@localhost/a1"));
    assert_eq!(m.get_child("body", "jabber:client").unwrap().text(), "hi");
    // Bare JID: delivered to the available resource.
    a.send_str("<message to='bob@localhost' type='chat' id='m2'><body>bare</body></message>")
        .await
        .unwrap();
    let m = b
        .expect("message", |e| e.name() == "message")
        .await
        .unwrap();
    assert_eq!(m.attr("id"), Some("m2"));
    server.stop().await;
}

#[tokio::test]
async fn resource_conflict_kicks_the_old_session() {
    let server = TestServer::start().await.unwrap();
    server.add_user("alice", "pw").await.unwrap();
    let mut first = RawClient::login(&server, "alice", "pw", "same")
        .await
        .unwrap();
    let _second = RawClient::login(&server, "alice", "pw", "same")
        .await
        .unwrap();
    let e = first
        .expect("stream error", |e| e.is("error", NS_STREAMS))
        .await
        .unwrap();
    assert_eq!(stream_error(&e).as_deref(), Some("conflict"));
    server.stop().await;
}

#[tokio::test]
async fn spoofed_from_is_invalid_from() {
    let server = TestServer::start().await.unwrap();
    server.add_user("alice", "pw").await.unwrap();
    let mut c = RawClient::login(&server, "alice", "pw", "r").await.unwrap();
    c.send_str("<message from='bob@localhost/x' to='alice@localhost'><body>x</body></message>")
        .await
        .unwrap();
    let e = c
        .expect("stream error", |e| e.is("error", NS_STREAMS))
        .await
        .unwrap();
    assert_eq!(stream_error(&e).as_deref(), Some("invalid-from"));
    server.stop().await;
}

async fn expect_stream_error(server: &TestServer, payload: &str, want: &str) {
    let mut c = RawClient::connect(server.c2s, "localhost").await.unwrap();
    c.send_str(payload).await.unwrap();
    loop {
        let ev = c
            .next_event()
            .await
            .unwrap_or_else(|e| panic!("{payload:?}: no stream error: {e}"));
        if let tern_stream::StreamEvent::Element(e) = ev {
            if let Some(cond) = stream_error(&e) {
                assert_eq!(cond, want, "for {payload:?}");
                return;
            }
        }
    }
}

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

#[tokio::test]
async fn bad_input_gets_the_right_stream_error() {
    let server = TestServer::start().await.unwrap();
    let cases = [
        (format!("{HEADER}<message><body>x</bodyy></message>"), "not-well-formed"),
        ("<?xml version='1.0'?><!DOCTYPE foo [<!ENTITY a 'b'>]><stream:stream/>".to_string(), "restricted-xml"),
        (format!("{HEADER}<!-- hi -->"), "restricted-xml"),
        (format!("{HEADER}<?pi x?>"), "restricted-xml"),
        (
            "<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' to='localhost' version='1.0'>".into(),
            "invalid-namespace",
        ),
        (
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>".into(),
            "invalid-namespace",
        ),
        (
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.net' version='1.0'>".into(),
            "host-unknown",
        ),
    ];
    for (payload, want) in &cases {
        expect_stream_error(&server, payload, want).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn oversized_stanza_is_policy_violation_and_server_keeps_serving() {
    let server = TestServer::start().await.unwrap();
    server.add_user("alice", "pw").await.unwrap();
    server.add_user("bob", "pw").await.unwrap();
    let mut bob = RawClient::login(&server, "bob", "pw", "b").await.unwrap();
    bob.send_str("<presence/>").await.unwrap();
    let mut a = RawClient::login(&server, "alice", "pw", "a").await.unwrap();
    let big = "x".repeat(1024 * 1024);
    let mut payload = String::from("<message to='bob@localhost'><body>");
    for _ in 0..10 {
        payload.push_str(&big);
    }
    // The server may close the connection before all 10 MB are written; that is the point.
    let _ = a.send_str(&payload).await;
    let e = a
        .expect("stream error", |e| e.is("error", NS_STREAMS))
        .await
        .unwrap();
    assert_eq!(stream_error(&e).as_deref(), Some("policy-violation"));
    let mut a2 = RawClient::login(&server, "alice", "pw", "a2")
        .await
        .unwrap();
    a2.send_str("<message to='bob@localhost/b' id='after'><body>still here</body></message>")
        .await
        .unwrap();
    let m = bob
        .expect("message", |e| e.name() == "message")
        .await
        .unwrap();
    assert_eq!(m.attr("id"), Some("after"));
    server.stop().await;
}

#[tokio::test]
async fn every_scram_mechanism_over_starttls_and_direct_tls() {
    use tern_testkit::scram::Binding;
    let server = TestServer::start().await.unwrap();
    server.add_user("alice", "pencil").await.unwrap();
    let cases = [
        ("SCRAM-SHA-1", Binding::None),
        ("SCRAM-SHA-256", Binding::None),
        ("SCRAM-SHA-1-PLUS", Binding::TlsExporter),
        ("SCRAM-SHA-256-PLUS", Binding::TlsExporter),
        ("SCRAM-SHA-256-PLUS", Binding::TlsServerEndPoint),
    ];
    for direct in [false, true] {
        for (mech, binding) in cases {
            let mut c = if direct {
                let mut c = RawClient::connect_tls(server.tls, "localhost", &server.ca_path())
                    .await
                    .unwrap();
                c.open().await.unwrap();
                c
            } else {
                let mut c = RawClient::connect(server.c2s, "localhost").await.unwrap();
                c.open().await.unwrap();
                c.starttls(&server.ca_path()).await.unwrap().0
            };
            let r = c
                .auth_scram(mech, "alice", "pencil", binding)
                .await
                .unwrap();
            assert!(
                r.is("success", NS_SASL),
                "{mech} {binding:?} direct={direct}: {r:?}"
            );
            c.restart();
            let f = c.open().await.unwrap();
            assert!(f.has_child("bind", "urn:ietf:params:xml:ns:xmpp-bind"));
            // Wrong password with the same mechanism fails with not-authorized.
            let mut c = RawClient::connect_tls(server.tls, "localhost", &server.ca_path())
                .await
                .unwrap();
            c.open().await.unwrap();
            let r = c.auth_scram(mech, "alice", "wrong", binding).await.unwrap();
            assert!(
                r.is("failure", NS_SASL) && r.has_child("not-authorized", NS_SASL),
                "{mech}: {r:?}"
            );
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn plus_with_wrong_binding_data_fails() {
    use tern_testkit::scram::Binding;
    let server = TestServer::start().await.unwrap();
    server.add_user("alice", "pencil").await.unwrap();
    let mut c = RawClient::connect_tls(server.tls, "localhost", &server.ca_path())
        .await
        .unwrap();
    c.open().await.unwrap();
    c.bindings.0 = Some(vec![0u8; 32]);
    let r = c
        .auth_scram(
            "SCRAM-SHA-256-PLUS",
            "alice",
            "pencil",
            Binding::TlsExporter,
        )
        .await
        .unwrap();
    assert!(
        r.is("failure", NS_SASL),
        "a forged channel binding must fail: {r:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn resource_conflict_reject_and_rename_policies() {
    let server = TestServer::start_with(|c| c.c2s.resource_conflict = "reject".into())
        .await
        .unwrap();
    server.add_user("alice", "pw").await.unwrap();
    let _first = RawClient::login(&server, "alice", "pw", "same")
        .await
        .unwrap();
    let err = match RawClient::login(&server, "alice", "pw", "same").await {
        Ok(_) => panic!("second bind of the same resource must fail under `reject`"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("conflict"), "{err}");
    server.stop().await;

    let server = TestServer::start_with(|c| c.c2s.resource_conflict = "rename".into())
        .await
        .unwrap();
    server.add_user("alice", "pw").await.unwrap();
    let first = RawClient::login(&server, "alice", "pw", "same")
        .await
        .unwrap();
    let second = RawClient::login(&server, "alice", "pw", "same")
        .await
        .unwrap();
    assert_eq!(first.jid.as_deref(), Some("alice@localhost/same"));
    let j = second.jid.clone().unwrap();
    assert!(
        j.starts_with("alice@localhost/same.") && j.len() > "alice@localhost/same.".len(),
        "{j}"
    );
    server.stop().await;
}

#[tokio::test]
async fn server_generated_resource_and_malformed_to() {
    let server = TestServer::start().await.unwrap();
    server.add_user("alice", "pw").await.unwrap();
    let mut c = RawClient::connect(server.c2s, "localhost").await.unwrap();
    c.open().await.unwrap();
    let (mut c, _) = c.starttls(&server.ca_path()).await.unwrap();
    assert!(c
        .auth_plain("alice", "pw")
        .await
        .unwrap()
        .is("success", NS_SASL));
    c.restart();
    c.open().await.unwrap();
    let r = c.bind(None).await.unwrap();
    assert_eq!(r.attr("type"), Some("result"));
    let jid = c.jid.clone().unwrap();
    assert!(
        jid.starts_with("alice@localhost/") && jid.len() > "alice@localhost/".len(),
        "{jid}"
    );
    c.send_str("<message to='a@b@c' id='bad'><body>x</body></message>")
        .await
        .unwrap();
    let e = c.expect("error", |e| e.name() == "message").await.unwrap();
    assert_eq!(e.attr("type"), Some("error"));
    let err = e.get_child("error", "jabber:client").unwrap();
    assert!(
        err.has_child("jid-malformed", "urn:ietf:params:xml:ns:xmpp-stanzas"),
        "{e:?}"
    );
    // IQ without id is bad-request; the stream survives.
    c.send_str("<iq type='get'><query xmlns='jabber:iq:version'/></iq>")
        .await
        .unwrap();
    let e = c.expect("iq error", |e| e.name() == "iq").await.unwrap();
    assert!(e
        .get_child("error", "jabber:client")
        .unwrap()
        .has_child("bad-request", "urn:ietf:params:xml:ns:xmpp-stanzas"));
    server.stop().await;
}

#[tokio::test]
async fn ping_time_version_and_disco() {
    let server = TestServer::start().await.unwrap();
    server.add_user("alice", "pw").await.unwrap();
    let mut c = RawClient::login(&server, "alice", "pw", "r").await.unwrap();
    c.send_str("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await
        .unwrap();
    let r = c
        .expect("pong", |e| e.attr("id") == Some("p1"))
        .await
        .unwrap();
    assert_eq!(
        (r.attr("type"), r.attr("from")),
        (Some("result"), Some("localhost"))
    );
    c.send_str("<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await
        .unwrap();
    let r = c
        .expect("pong", |e| e.attr("id") == Some("p2"))
        .await
        .unwrap();
    assert_eq!(r.attr("type"), Some("result"));
    c.send_str("<iq type='get' id='t1' to='localhost'><time xmlns='urn:xmpp:time'/></iq>")
        .await
        .unwrap();
    let r = c
        .expect("time", |e| e.attr("id") == Some("t1"))
        .await
        .unwrap();
    let utc = r
        .get_child("time", "urn:xmpp:time")
        .unwrap()
        .get_child("utc", "urn:xmpp:time")
        .unwrap()
        .text();
    assert!(utc.starts_with("20") && utc.ends_with('Z'), "{utc}");
    c.send_str("<iq type='get' id='v1' to='localhost'><query xmlns='jabber:iq:version'/></iq>")
        .await
        .unwrap();
    let r = c
        .expect("version", |e| e.attr("id") == Some("v1"))
        .await
        .unwrap();
    assert_eq!(
        r.get_child("query", "jabber:iq:version")
            .unwrap()
            .get_child("name", "jabber:iq:version")
            .unwrap()
            .text(),
        "Tern"
    );
    c.send_str("<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await.unwrap();
    let r = c
        .expect("disco", |e| e.attr("id") == Some("d1"))
        .await
        .unwrap();
    let q = r
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    let id = q
        .get_child("identity", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert_eq!(
        (id.attr("category"), id.attr("type")),
        (Some("server"), Some("im"))
    );
    let features: Vec<_> = q.children().filter_map(|f| f.attr("var")).collect();
    for f in [
        "urn:xmpp:ping",
        "jabber:iq:roster",
        "msgoffline",
        "jabber:iq:register",
        "http://jabber.org/protocol/disco#info",
    ] {
        assert!(features.contains(&f), "{f} missing from {features:?}");
    }
    // Unknown node: item-not-found.
    c.send_str("<iq type='get' id='d2' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='nope'/></iq>")
        .await
        .unwrap();
    let r = c
        .expect("disco error", |e| e.attr("id") == Some("d2"))
        .await
        .unwrap();
    assert!(r
        .get_child("error", "jabber:client")
        .unwrap()
        .has_child("item-not-found", "urn:ietf:params:xml:ns:xmpp-stanzas"));
    server.stop().await;
}
