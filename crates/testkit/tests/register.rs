//! XEP-0077 end to end: registration before authentication, password change and removal.

use tern_testkit::{RawClient, TestServer};

const NS_REG: &str = "jabber:iq:register";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

async fn tls_stream(server: &TestServer) -> RawClient {
    let mut c = RawClient::connect_tls(server.tls, "localhost", &server.ca_path())
        .await
        .unwrap();
    let f = c.open().await.unwrap();
    assert!(
        f.has_child("register", "http://jabber.org/features/iq-register"),
        "{f:?}"
    );
    c
}

fn error_condition(iq: &minidom::Element) -> Option<String> {
    let e = iq.get_child("error", "jabber:client")?;
    e.children()
        .find(|c| c.ns() == NS_STANZAS)
        .map(|c| c.name().to_owned())
}

#[tokio::test]
async fn register_login_change_password_and_remove() {
    let server = TestServer::start().await.unwrap();
    let mut c = tls_stream(&server).await;
    c.send_str("<iq type='get' id='r1'><query xmlns='jabber:iq:register'/></iq>")
        .await
        .unwrap();
    let form = c.next().await.unwrap();
    let q = form.get_child("query", NS_REG).expect("form");
    assert!(q.has_child("username", NS_REG) && q.has_child("password", NS_REG));

    c.send_str("<iq type='set' id='r2'><query xmlns='jabber:iq:register'><username>Carol</username><password>pw1</password></query></iq>")
        .await
        .unwrap();
    let r = c.next().await.unwrap();
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    // Usernames are nodeprep'd: a second registration of the same name in another case conflicts.
    c.send_str("<iq type='set' id='r3'><query xmlns='jabber:iq:register'><username>carol</username><password>x</password></query></iq>")
        .await
        .unwrap();
    let r = c.next().await.unwrap();
    assert_eq!(error_condition(&r).as_deref(), Some("conflict"), "{r:?}");
    c.send_str("<iq type='set' id='r4'><query xmlns='jabber:iq:register'><username>dave</username></query></iq>")
        .await
        .unwrap();
    let r = c.next().await.unwrap();
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("not-acceptable"),
        "{r:?}"
    );

    let mut s = RawClient::login(&server, "carol", "pw1", "r")
        .await
        .unwrap();
    s.send_str("<iq type='set' id='p1'><query xmlns='jabber:iq:register'><username>carol</username><password>pw2</password></query></iq>")
        .await
        .unwrap();
    let r = s.expect("iq", |e| e.name() == "iq").await.unwrap();
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");

    let mut c = tls_stream(&server).await;
    let r = c.auth_plain("carol", "pw1").await.unwrap();
    assert!(r.is("failure", NS_SASL), "old password must stop working");
    let mut s2 = RawClient::login(&server, "carol", "pw2", "r2")
        .await
        .unwrap();

    s2.send_str("<iq type='set' id='d1'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await
        .unwrap();
    let r = s2.expect("iq", |e| e.name() == "iq").await.unwrap();
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    // Every session of the removed account ends.
    let e = s
        .expect("stream error", |e| e.name() == "error")
        .await
        .unwrap();
    assert!(
        e.has_child("not-authorized", "urn:ietf:params:xml:ns:xmpp-streams"),
        "{e:?}"
    );
    let mut c = tls_stream(&server).await;
    let r = c.auth_plain("carol", "pw2").await.unwrap();
    assert!(r.is("failure", NS_SASL), "removed account must not log in");
    server.stop().await;
}

#[tokio::test]
async fn closed_registration_is_service_unavailable() {
    let server =
        TestServer::start_with(|c| c.server.registration = tern_server::Registration::Closed)
            .await
            .unwrap();
    let mut c = RawClient::connect_tls(server.tls, "localhost", &server.ca_path())
        .await
        .unwrap();
    let f = c.open().await.unwrap();
    assert!(!f.has_child("register", "http://jabber.org/features/iq-register"));
    c.send_str("<iq type='set' id='r2'><query xmlns='jabber:iq:register'><username>eve</username><password>pw</password></query></iq>")
        .await
        .unwrap();
    let r = c.next().await.unwrap();
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("service-unavailable"),
        "{r:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn registrations_per_address_are_limited() {
    let server = TestServer::start_with(|c| c.server.registration_per_ip_per_hour = 2)
        .await
        .unwrap();
    let mut c = tls_stream(&server).await;
    for (i, want) in [(1, None), (2, None), (3, Some("resource-constraint"))] {
        c.send_str(&format!(
            "<iq type='set' id='r{i}'><query xmlns='jabber:iq:register'><username>u{i}</username><password>pw</password></query></iq>"
        ))
        .await
        .unwrap();
        let r = c.next().await.unwrap();
        assert_eq!(
            error_condition(&r).as_deref(),
            want,
            "registration {i}: {r:?}"
        );
    }
    server.stop().await;
}
