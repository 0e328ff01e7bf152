//! End-to-end tests of the web transports against an in-process server: WebSocket (RFC 7395)
//! and BOSH (XEP-0124/0206) clients exchanging messages with TCP clients, stream-management
//! resumption over WebSocket, lost BOSH responses, the BOSH error conditions, and XEP-0156.

mod support;

use std::time::Duration;

use minidom::Element;
use tern_testkit::{RawClient, TestServer};

use support::*;

fn is_msg_with(body: &'static str) -> impl Fn(&Element) -> bool {
    move |e: &Element| {
        e.name() == "message"
            && e.get_child("body", "jabber:client")
                .is_some_and(|b| b.text() == body)
    }
}

async fn server() -> TestServer {
    let s = TestServer::start().await.expect("server");
    s.add_user("alice", "alice-pw").await.unwrap();
    s.add_user("bob", "bob-pw").await.unwrap();
    s
}

#[tokio::test]
async fn websocket_login_and_chat_with_a_tcp_client() {
    let s = server().await;
    let mut bob = RawClient::login(&s, "bob", "bob-pw", "tcp").await.unwrap();

    let mut ws = Ws::connect(&s, true).await.unwrap();
    let features = ws.open().await.unwrap();
    // wss:// is encrypted: no STARTTLS, PLAIN is offered, no -PLUS (no channel binding).
    assert!(features
        .get_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
        .is_none());
    let mechs: Vec<String> = features
        .get_child("mechanisms", NS_SASL)
        .expect("mechanisms")
        .children()
        .map(|m| m.text())
        .collect();
    assert!(mechs.contains(&"PLAIN".to_string()), "{mechs:?}");
    assert!(!mechs.iter().any(|m| m.ends_with("-PLUS")), "{mechs:?}");
    ws.send(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{}</auth>",
        plain_auth("alice", "alice-pw")
    ))
    .await
    .unwrap();
    assert!(ws.next().await.unwrap().is("success", NS_SASL));
    let features = ws.open().await.unwrap();
    assert!(features.get_child("bind", NS_BIND).is_some());
    assert!(features.get_child("sm", NS_SM).is_some());
    ws.send(&format!("<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{NS_BIND}'><resource>web</resource></bind></iq>")).await.unwrap();
    let bound = ws.next().await.unwrap();
    assert_eq!(bound.attr("type"), Some("result"));

    ws.send("<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat'><body>hello from the web</body></message>").await.unwrap();
    let m = bob
        .expect("message from WebSocket", is_msg_with("hello from the web"))
        .await
        .unwrap();
    assert_eq!(m.attr("from"), Some("alice@localhost/web"));
    bob.send_str(
        "<message to='alice@localhost/web' type='chat'><body>hello from TCP</body></message>",
    )
    .await
    .unwrap();
    let m = ws
        .expect("message from TCP", is_msg_with("hello from TCP"))
        .await
        .unwrap();
    assert_eq!(m.attr("from"), Some("bob@localhost/tcp"));

    // RFC 7395 §3.6: <close/> is answered with <close/>.
    ws.send(&format!("<close xmlns='{NS_FRAMING}'/>"))
        .await
        .unwrap();
    ws.expect("close", |e| e.is("close", NS_FRAMING))
        .await
        .unwrap();
    s.stop().await;
}

#[tokio::test]
async fn websocket_framing_errors_and_upgrade_checks() {
    let s = TestServer::start_with(|c| {
        c.http.allowed_origins = vec!["https://chat.example".into()];
    })
    .await
    .unwrap();
    // No xmpp subprotocol: refused (RFC 7395 §3.1).
    let e = Ws::connect_with(&s, true, None, None)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("400"), "{e}");
    // An Origin that is not allowed: refused.
    let e = Ws::connect_with(&s, true, Some("xmpp"), Some("https://evil.example"))
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("403"), "{e}");
    assert!(
        Ws::connect_with(&s, true, Some("xmpp"), Some("https://chat.example"))
            .await
            .is_ok()
    );

    // Two elements in one message: a stream error, then <close/>.
    let mut ws = Ws::connect(&s, true).await.unwrap();
    ws.open().await.unwrap();
    ws.send("<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>")
        .await
        .unwrap();
    let err = ws.next().await.unwrap();
    assert!(
        err.is("error", "http://etherx.jabber.org/streams"),
        "{err:?}"
    );
    assert!(err
        .get_child("policy-violation", "urn:ietf:params:xml:ns:xmpp-streams")
        .is_some());
    assert!(ws.next().await.unwrap().is("close", NS_FRAMING));

    // A stream header instead of <open/>.
    let mut ws = Ws::connect(&s, true).await.unwrap();
    ws.send("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>").await.unwrap();
    let first = ws.next().await.unwrap();
    let err = if first.is("open", NS_FRAMING) {
        ws.next().await.unwrap()
    } else {
        first
    };
    assert!(
        err.is("error", "http://etherx.jabber.org/streams"),
        "{err:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn plain_websocket_from_loopback_counts_as_secure_unless_configured() {
    let s = TestServer::start_with(|c| c.http.plain_is_secure = tern_http::PlainSecure::Never)
        .await
        .unwrap();
    let mut ws = Ws::connect(&s, false).await.unwrap();
    ws.send(&format!(
        "<open xmlns='{NS_FRAMING}' to='localhost' version='1.0'/>"
    ))
    .await
    .unwrap();
    assert!(ws.next().await.unwrap().is("open", NS_FRAMING));
    let err = ws.next().await.unwrap();
    assert!(
        err.get_child("policy-violation", "urn:ietf:params:xml:ns:xmpp-streams")
            .is_some(),
        "unencrypted and encryption required: {err:?}"
    );
    s.stop().await;

    let s = server().await;
    let mut ws = Ws::connect(&s, false).await.unwrap();
    let f = ws.open().await.unwrap();
    assert!(f.get_child("mechanisms", NS_SASL).is_some(), "{f:?}");
    s.stop().await;
}

#[tokio::test]
async fn websocket_session_resumes_after_the_socket_drops() {
    let s = server().await;
    let mut bob = RawClient::login(&s, "bob", "bob-pw", "tcp").await.unwrap();
    let mut ws = Ws::login(&s, "alice", "alice-pw", "web").await.unwrap();
    ws.send(&format!("<enable xmlns='{NS_SM}' resume='true'/>"))
        .await
        .unwrap();
    let enabled = ws
        .expect("enabled", |e| e.is("enabled", NS_SM))
        .await
        .unwrap();
    let previd = enabled.attr("id").expect("resumption id").to_owned();
    // Drop the socket without <close/>: the session waits for resumption.
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    bob.send_str(
        "<message to='alice@localhost/web' type='chat'><body>while you were away</body></message>",
    )
    .await
    .unwrap();
    assert!(
        bob.silent_for(Duration::from_millis(500), |e| e.attr("type")
            == Some("error"))
            .await
            .unwrap(),
        "no bounce while the session is resumable"
    );

    let mut ws = Ws::connect(&s, true).await.unwrap();
    ws.open().await.unwrap();
    ws.send(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{}</auth>",
        plain_auth("alice", "alice-pw")
    ))
    .await
    .unwrap();
    assert!(ws.next().await.unwrap().is("success", NS_SASL));
    ws.open().await.unwrap();
    ws.send(&format!(
        "<resume xmlns='{NS_SM}' previd='{previd}' h='0'/>"
    ))
    .await
    .unwrap();
    let resumed = ws.next().await.unwrap();
    assert!(resumed.is("resumed", NS_SM), "{resumed:?}");
    ws.expect(
        "the message sent while away",
        is_msg_with("while you were away"),
    )
    .await
    .unwrap();
    // The resumed session still routes both ways.
    ws.send("<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat'><body>back</body></message>").await.unwrap();
    bob.expect("message after resumption", is_msg_with("back"))
        .await
        .unwrap();
    s.stop().await;
}

fn child<'a>(body: &'a Element, name: &str) -> Option<&'a Element> {
    body.children().find(|c| c.name() == name)
}

#[tokio::test]
async fn bosh_session_chat_and_lost_response_recovery() {
    let s = server().await;
    let mut bob = RawClient::login(&s, "bob", "bob-pw", "tcp").await.unwrap();
    let (probe, created) = Bosh::create(s.http, 5).await.unwrap();
    for attr in [
        "sid",
        "wait",
        "hold",
        "requests",
        "inactivity",
        "polling",
        "authid",
    ] {
        assert!(
            created.attr(attr).is_some(),
            "creation response lacks {attr}: {created:?}"
        );
    }
    assert_eq!(created.attr("from"), Some("localhost"));
    assert_eq!(created.attr("requests"), Some("2"));
    drop(probe);

    let mut b = Bosh::login(s.http, "alice", "alice-pw", "bosh")
        .await
        .unwrap();
    // Message from BOSH to TCP.
    b.send("", "<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat'><body>hi over BOSH</body></message>").await.unwrap();
    let m = bob
        .expect("message from BOSH", is_msg_with("hi over BOSH"))
        .await
        .unwrap();
    assert_eq!(m.attr("from"), Some("alice@localhost/bosh"));

    // A held request answered with the reply from TCP.
    b.rid += 1;
    let rid = b.rid;
    let held_body = b.body(rid, "", "");
    let addr = b.addr;
    let held = tokio::spawn(async move { Bosh::post_raw(addr, &held_body).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    bob.send_str(
        "<message to='alice@localhost/bosh' type='chat'><body>reply over TCP</body></message>",
    )
    .await
    .unwrap();
    let resp = held.await.unwrap().unwrap();
    let m = child(&resp, "message").expect("message in the held response");
    assert_eq!(
        m.get_child("body", "jabber:client").unwrap().text(),
        "reply over TCP"
    );

    // XEP-0124 §14.3: the client lost that response; the same rid gets it again.
    let again = Bosh::post_raw(b.addr, &b.body(rid, "", "")).await.unwrap();
    assert_eq!(again, resp, "a repeated rid gets the cached response");

    // Out-of-order requests are processed in rid order.
    let (r1, r2) = (b.rid + 1, b.rid + 2);
    b.rid += 2;
    let second = b.body(r2, "", "<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat'><body>second</body></message>");
    let first = b.body(r1, "", "<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat'><body>first</body></message>");
    let late = tokio::spawn(async move { Bosh::post_raw(addr, &second).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        bob.silent_for(Duration::from_millis(300), is_msg_with("second"))
            .await
            .unwrap(),
        "rid {r2} waits for {r1}"
    );
    let early = Bosh::post_raw(addr, &first).await.unwrap();
    bob.expect("first", is_msg_with("first")).await.unwrap();
    bob.expect("second", is_msg_with("second")).await.unwrap();
    let _ = (early, late.await.unwrap().unwrap());

    // A rid beyond the window ends the session with item-not-found.
    let far = Bosh::post_raw(b.addr, &b.body(b.rid + 10, "", ""))
        .await
        .unwrap();
    assert_eq!(far.attr("type"), Some("terminate"));
    assert_eq!(far.attr("condition"), Some("item-not-found"));
    s.stop().await;
}

#[tokio::test]
async fn bosh_lost_response_while_held_loses_no_message() {
    let s = server().await;
    let mut bob = RawClient::login(&s, "bob", "bob-pw", "tcp").await.unwrap();
    let mut b = Bosh::login(s.http, "alice", "alice-pw", "bosh")
        .await
        .unwrap();
    // A held request whose connection dies before anything is sent on it.
    b.rid += 1;
    let rid = b.rid;
    let body = b.body(rid, "", "");
    let addr = b.addr;
    let lost = tokio::spawn(async move { Bosh::post_raw(addr, &body).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    lost.abort();
    let _ = lost.await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    bob.send_str(
        "<message to='alice@localhost/bosh' type='chat'><body>do not lose me</body></message>",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The client repeats the request it never got an answer to.
    let resp = Bosh::post_raw(addr, &b.body(rid, "", "")).await.unwrap();
    let m = child(&resp, "message").expect("the message arrives on the repeated request");
    assert_eq!(
        m.get_child("body", "jabber:client").unwrap().text(),
        "do not lose me"
    );

    // Terminate: the session ends, and later requests learn so.
    let t = b
        .send(
            "type='terminate'",
            "<presence xmlns='jabber:client' type='unavailable'/>",
        )
        .await
        .unwrap();
    assert_eq!(t.attr("type"), Some("terminate"));
    s.stop().await;
}

#[tokio::test]
async fn bosh_error_conditions() {
    let s = TestServer::start_with(|c| c.http.bosh_max_body_bytes = 4096)
        .await
        .unwrap();
    let cond = |b: &Element| {
        assert_eq!(b.attr("type"), Some("terminate"), "{b:?}");
        b.attr("condition").unwrap_or_default().to_owned()
    };
    let unknown = Bosh::post_raw(
        s.http,
        &format!("<body xmlns='{NS_HTTPBIND}' sid='nope' rid='5'/>"),
    )
    .await
    .unwrap();
    assert_eq!(cond(&unknown), "item-not-found");
    let garbage = Bosh::post_raw(s.http, "<body xmlns='jabber:client'/>")
        .await
        .unwrap();
    assert_eq!(cond(&garbage), "bad-request");
    let no_rid = Bosh::post_raw(
        s.http,
        &format!("<body xmlns='{NS_HTTPBIND}' to='localhost'/>"),
    )
    .await
    .unwrap();
    assert_eq!(cond(&no_rid), "bad-request");
    let host = Bosh::post_raw(
        s.http,
        &format!("<body xmlns='{NS_HTTPBIND}' rid='1' to='elsewhere.example' wait='5' hold='1'/>"),
    )
    .await
    .unwrap();
    assert_eq!(cond(&host), "host-unknown");
    let no_to = Bosh::post_raw(
        s.http,
        &format!("<body xmlns='{NS_HTTPBIND}' rid='1' wait='5' hold='1'/>"),
    )
    .await
    .unwrap();
    assert_eq!(cond(&no_to), "improper-addressing");
    let big = format!(
        "<body xmlns='{NS_HTTPBIND}' rid='1' to='localhost'>{}</body>",
        "<presence xmlns='jabber:client'/>".repeat(200)
    );
    let big = Bosh::post_raw(s.http, &big).await.unwrap();
    assert_eq!(cond(&big), "policy-violation");

    // Pausing beyond maxpause is a policy violation.
    let (mut b, created) = Bosh::create(s.http, 5).await.unwrap();
    let maxpause: u64 = created.attr("maxpause").unwrap().parse().unwrap();
    let r = b
        .send(&format!("pause='{}'", maxpause + 1), "")
        .await
        .unwrap();
    assert_eq!(cond(&r), "policy-violation");

    // CORS preflight for an allowed origin.
    let r = http(
        s.http,
        "OPTIONS",
        "/http-bind",
        &[
            ("Origin", "https://web.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Content-Type"));
    s.stop().await;
}

#[tokio::test]
async fn bosh_inactive_session_expires() {
    let s = TestServer::start_with(|c| c.http.bosh_inactivity_secs = 5)
        .await
        .unwrap();
    s.add_user("alice", "alice-pw").await.unwrap();
    let b = Bosh::login(s.http, "alice", "alice-pw", "idle")
        .await
        .unwrap();
    let router = s.running.as_ref().unwrap().router.clone();
    assert_eq!(router.sessions().count(), 1);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        router.sessions().count(),
        0,
        "the session ended after inactivity"
    );
    let r = Bosh::post_raw(b.addr, &b.body(b.rid + 1, "", ""))
        .await
        .unwrap();
    assert_eq!(r.attr("condition"), Some("item-not-found"));
    s.stop().await;
}

#[tokio::test]
async fn host_meta_lists_both_endpoints() {
    let s = TestServer::start().await.unwrap();
    let r = http(
        s.http,
        "GET",
        "/.well-known/host-meta",
        &[("Origin", "https://web.example")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/xrd+xml"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let xrd = r.element().unwrap();
    let links: Vec<(String, String)> = xrd
        .children()
        .map(|l| {
            (
                l.attr("rel").unwrap().to_owned(),
                l.attr("href").unwrap().to_owned(),
            )
        })
        .collect();
    let port = s.http.port();
    assert!(
        links.contains(&(
            "urn:xmpp:alt-connections:websocket".into(),
            format!("ws://localhost:{port}/xmpp-websocket")
        )),
        "{links:?}"
    );
    assert!(
        links.contains(&(
            "urn:xmpp:alt-connections:xbosh".into(),
            format!("http://localhost:{port}/http-bind")
        )),
        "{links:?}"
    );

    let r = http(s.http, "GET", "/.well-known/host-meta.json", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("urn:xmpp:alt-connections:xbosh"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains(&format!("ws://localhost:{port}/xmpp-websocket")),
        "{}",
        r.body
    );
    s.stop().await;
}

#[tokio::test]
async fn websocket_keepalive_is_a_ping() {
    let s = TestServer::start_with(|c| c.c2s.keepalive_secs = 1)
        .await
        .unwrap();
    s.add_user("alice", "alice-pw").await.unwrap();
    let mut ws = Ws::login(&s, "alice", "alice-pw", "idle").await.unwrap();
    use futures::StreamExt;
    let ping = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Ping(_))) => return true,
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    assert!(t.trim().is_empty() || t.starts_with('<'), "{t}");
                }
                Some(Ok(_)) => {}
                _ => return false,
            }
        }
    })
    .await
    .expect("a Ping within 5 s");
    assert!(
        ping,
        "an idle WebSocket session gets Ping frames, not whitespace"
    );
    s.stop().await;
}

#[tokio::test]
async fn bosh_overactivity_is_a_policy_violation() {
    let s = TestServer::start().await.unwrap();
    let (mut b, created) = Bosh::create(s.http, 5).await.unwrap();
    assert_eq!(created.attr("polling"), Some("2"));
    // One empty request held, a second empty one at once: `requests` (2) unanswered requests,
    // the last empty and sooner than `polling` after the previous (XEP-0124 §11).
    b.rid += 1;
    let held = tokio::spawn(Bosh::post_raw(b.addr, b.body(b.rid, "", "")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = b.send("", "").await.unwrap();
    assert_eq!(r.attr("type"), Some("terminate"));
    assert_eq!(r.attr("condition"), Some("policy-violation"));
    let h = held.await.unwrap().unwrap();
    assert_eq!(
        h.attr("condition"),
        Some("policy-violation"),
        "held requests learn it too"
    );
    s.stop().await;
}
