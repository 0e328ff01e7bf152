//! XEP-0357 push notifications end to end: a client enables push towards an app server's
//! push service (here a service attached on `push.localhost` that records what it gets); a
//! message for the resource while it is offline or hibernating (XEP-0198) is published as a
//! summary with publish options; an error answer disables the registration.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use minidom::Element;
use tern_router::{Condition, Kind, Origin, Router, Service, Stanza, StanzaError};
use tern_testkit::{RawClient, TestServer};
use tokio::sync::mpsc;

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";

/// The app server's XMPP push service: records publishes and answers result or error.
struct AppServer {
    got: mpsc::UnboundedSender<Element>,
    refuse: AtomicBool,
}

#[async_trait]
impl Service for AppServer {
    fn name(&self) -> &'static str {
        "test-push"
    }
    async fn handle(&self, router: &Arc<Router>, _o: &Origin, st: Stanza) {
        if st.kind != Kind::Iq || !st.is_iq_request() {
            return;
        }
        let _ = self.got.send(st.el.clone());
        if self.refuse.load(Ordering::SeqCst) {
            router
                .bounce(&st, StanzaError::new(Condition::ItemNotFound))
                .await;
        } else {
            router.reply_result(&st, None).await;
        }
    }
}

fn summary(iq: &Element) -> Vec<(String, String)> {
    let n = iq
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("publish", PUBSUB))
        .and_then(|p| p.get_child("item", PUBSUB))
        .and_then(|i| i.get_child("notification", "urn:xmpp:push:0"))
        .and_then(|n| n.get_child("x", "jabber:x:data"))
        .expect("notification form");
    n.children()
        .map(|f| {
            let v = f.children().next().map(|v| v.text()).unwrap_or_default();
            (f.attr("var").unwrap_or_default().to_owned(), v)
        })
        .collect()
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Element>) -> Element {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a publish within 5 s")
        .unwrap()
}

#[tokio::test]
async fn offline_and_hibernating_resources_get_push_summaries() {
    let s = TestServer::start().await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = Arc::new(AppServer {
        got: tx,
        refuse: AtomicBool::new(false),
    });
    let router = s.running.as_ref().unwrap().router.clone();
    router.services().attach("push.localhost", app.clone());
    s.add_user("alice", "pw").await.unwrap();
    s.add_user("bob", "pw").await.unwrap();

    let mut phone = RawClient::login(&s, "alice", "pw", "phone").await.unwrap();
    let d = phone.iq("d", "<iq type='get' id='d' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await.unwrap();
    assert!(d
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap()
        .children()
        .any(|f| f.attr("var") == Some("urn:xmpp:push:0")));
    let bad = phone
        .iq(
            "e0",
            "<iq type='set' id='e0'><enable xmlns='urn:xmpp:push:0' node='n'/></iq>",
        )
        .await
        .unwrap();
    assert_eq!(bad.attr("type"), Some("error"));
    let r = phone
        .iq("e1", "<iq type='set' id='e1'><enable xmlns='urn:xmpp:push:0' jid='push.localhost' node='node-1'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>s3cr3t</value></field></x></enable></iq>")
        .await
        .unwrap();
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    phone.send_str("<presence/>").await.unwrap();

    // Online and attached: no push.
    let mut b = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
    b.send_str("<message to='alice@localhost' type='chat' id='m0'><body>hello</body></message>")
        .await
        .unwrap();
    phone
        .expect("m0", |e| e.attr("id") == Some("m0"))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "pushed for a reachable resource"
    );

    // Offline: two messages, two publishes with a growing count, options passed on, no body.
    phone.send_str("</stream:stream>").await.unwrap();
    drop(phone);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (i, body) in ["one", "two"].iter().enumerate() {
        b.send_str(&format!(
            "<message to='alice@localhost' type='chat' id='o{i}'><body>{body}</body></message>"
        ))
        .await
        .unwrap();
        let iq = next(&mut rx).await;
        assert_eq!(iq.attr("from"), Some("alice@localhost"));
        assert_eq!(
            iq.get_child("pubsub", PUBSUB)
                .unwrap()
                .get_child("publish", PUBSUB)
                .unwrap()
                .attr("node"),
            Some("node-1")
        );
        let f = summary(&iq);
        assert!(f.contains(&("FORM_TYPE".into(), "urn:xmpp:push:summary".into())));
        assert!(
            f.contains(&("message-count".into(), (i + 1).to_string())),
            "{f:?}"
        );
        assert!(f.contains(&("last-message-sender".into(), "bob@localhost/b".into())));
        assert!(
            !f.iter().any(|(k, _)| k == "last-message-body"),
            "body leaked: {f:?}"
        );
        let opts = iq
            .get_child("pubsub", PUBSUB)
            .unwrap()
            .get_child("publish-options", PUBSUB)
            .expect("publish-options");
        assert!(String::from(opts).contains("s3cr3t"));
    }
    // A chat state alone is not worth waking the phone for.
    b.send_str("<message to='alice@localhost' type='chat' id='cs'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>").await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(300), rx.recv())
        .await
        .is_err());

    // The push service refuses: the registration is disabled, no further publishes.
    app.refuse.store(true, Ordering::SeqCst);
    b.send_str("<message to='alice@localhost' type='chat' id='o3'><body>three</body></message>")
        .await
        .unwrap();
    next(&mut rx).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.send_str("<message to='alice@localhost' type='chat' id='o4'><body>four</body></message>")
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "still pushing after an error"
    );
}

#[tokio::test]
async fn hibernating_session_is_pushed_and_disable_stops_it() {
    let s = TestServer::start().await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let router = s.running.as_ref().unwrap().router.clone();
    router.services().attach(
        "push.localhost",
        Arc::new(AppServer {
            got: tx,
            refuse: AtomicBool::new(false),
        }),
    );
    s.add_user("alice", "pw").await.unwrap();
    s.add_user("bob", "pw").await.unwrap();
    let mut phone = RawClient::login(&s, "alice", "pw", "phone").await.unwrap();
    phone
        .send_str("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await
        .unwrap();
    phone
        .expect("enabled", |e| e.name() == "enabled")
        .await
        .unwrap();
    let r = phone.iq("e1", "<iq type='set' id='e1'><enable xmlns='urn:xmpp:push:0' jid='push.localhost' node='n2'/></iq>").await.unwrap();
    assert_eq!(r.attr("type"), Some("result"));
    phone.send_str("<presence/>").await.unwrap();
    // The connection drops without a stream close: the session hibernates.
    drop(phone);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut b = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
    b.send_str(
        "<message to='alice@localhost/phone' type='chat' id='h1'><body>wake up</body></message>",
    )
    .await
    .unwrap();
    let iq = next(&mut rx).await;
    assert!(summary(&iq).contains(&("message-count".into(), "1".into())));

    // Another resource disables push for the service: no more publishes.
    let mut laptop = RawClient::login(&s, "alice", "pw", "laptop").await.unwrap();
    let r = laptop
        .iq(
            "x",
            "<iq type='set' id='x'><disable xmlns='urn:xmpp:push:0' jid='push.localhost'/></iq>",
        )
        .await
        .unwrap();
    assert_eq!(r.attr("type"), Some("result"));
    b.send_str(
        "<message to='alice@localhost/phone' type='chat' id='h2'><body>again</body></message>",
    )
    .await
    .unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(500), rx.recv())
        .await
        .is_err());
}
