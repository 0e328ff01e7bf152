//! Routing to a service domain (DESIGN.md §1 step 4): every stanza addressed to the domain or
//! any JID at it reaches the attached service, the host lists it in disco#items, and a
//! detached service's domain is treated as remote again.

use std::sync::Arc;

use async_trait::async_trait;
use tern_router::xml::BuilderExt;
use tern_router::{Kind, Origin, Router, Service, Stanza};
use tern_testkit::{RawClient, TestServer};

/// Echoes message bodies back from the JID they were sent to.
struct Echo;

#[async_trait]
impl Service for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn item_name(&self) -> Option<String> {
        Some("Echo service".into())
    }
    async fn handle(&self, router: &Arc<Router>, _origin: &Origin, st: Stanza) {
        if st.kind != Kind::Message {
            return;
        }
        let body = st
            .el
            .get_child("body", "jabber:client")
            .map(|b| b.text())
            .unwrap_or_default();
        let el = minidom::Element::builder("message", "jabber:client")
            .a("type", "chat")
            .append(
                minidom::Element::builder("body", "jabber:client")
                    .append(format!("echo: {body}"))
                    .build(),
            )
            .build();
        let reply = Stanza::new(Kind::Message, st.to.clone().unwrap(), Some(st.from), el);
        router.route(Origin::Local, reply).await;
    }
}

#[tokio::test]
async fn service_domain_gets_its_stanzas_and_is_discoverable() {
    let s = TestServer::start().await.unwrap();
    let router = s.running.as_ref().unwrap().router.clone();
    router.services().attach("echo.localhost", Arc::new(Echo));
    s.add_user("alice", "pw").await.unwrap();
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();

    a.send_str(
        "<message to='room@echo.localhost/nick' type='chat' id='m1'><body>hi</body></message>",
    )
    .await
    .unwrap();
    let m = a.expect("echo", |e| e.name() == "message").await.unwrap();
    assert_eq!(m.attr("from"), Some("room@echo.localhost/nick"));
    assert_eq!(
        m.get_child("body", "jabber:client").map(|b| b.text()),
        Some("echo: hi".to_owned())
    );

    a.send_str("<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await
        .unwrap();
    let r = a
        .expect("items", |e| e.attr("id") == Some("d1"))
        .await
        .unwrap();
    let q = r
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap();
    let items: Vec<_> = q
        .children()
        .map(|i| (i.attr("jid").unwrap_or(""), i.attr("name").unwrap_or("")))
        .collect();
    assert!(
        items.contains(&("echo.localhost", "Echo service")),
        "{items:?}"
    );

    // Detached: the domain is no longer ours, so it is remote (and federation is off here).
    router.services().detach("echo.localhost");
    a.send_str("<message to='echo.localhost' type='chat' id='m2'><body>hi</body></message>")
        .await
        .unwrap();
    let e = a
        .expect("bounce", |e| e.attr("id") == Some("m2"))
        .await
        .unwrap();
    assert_eq!(e.attr("type"), Some("error"));
    assert!(e
        .get_child("error", "jabber:client")
        .and_then(|er| er.get_child(
            "remote-server-not-found",
            "urn:ietf:params:xml:ns:xmpp-stanzas"
        ))
        .is_some());
}
