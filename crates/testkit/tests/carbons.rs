//! XEP-0280 Message Carbons end to end: two accounts with two resources each, over real TLS.

use std::time::Duration;

use minidom::Element;
use tern_testkit::{RawClient, TestServer};

const NS_CARBONS: &str = "urn:xmpp:carbons:2";
const NS_FORWARD: &str = "urn:xmpp:forward:0";
const NS_CLIENT: &str = "jabber:client";
const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// Long enough for a copy already queued to arrive; copies are queued before the original is.
const QUIET: Duration = Duration::from_millis(300);

fn is_message(e: &Element) -> bool {
    e.name() == "message"
}

/// The forwarded message inside a `<sent/>` or `<received/>` carbon.
fn carbon<'a>(e: &'a Element, wrapper: &str) -> Option<&'a Element> {
    e.get_child(wrapper, NS_CARBONS)?
        .get_child("forwarded", NS_FORWARD)?
        .get_child("message", NS_CLIENT)
}

fn body(e: &Element) -> String {
    e.get_child("body", NS_CLIENT)
        .map(|b| b.text())
        .unwrap_or_default()
}

/// Sends an IQ and returns the reply with the same id.
async fn iq(c: &mut RawClient, id: &str, xml: &str) -> Element {
    c.send_str(xml).await.unwrap();
    c.expect("iq reply", |e| e.name() == "iq" && e.attr("id") == Some(id))
        .await
        .unwrap()
}

async fn set_carbons(c: &mut RawClient, on: bool, to: Option<&str>) -> Element {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    let op = if on { "enable" } else { "disable" };
    let r = iq(
        c,
        op,
        &format!("<iq type='set' id='{op}'{to}><{op} xmlns='{NS_CARBONS}'/></iq>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{op}: {r:?}");
    assert!(r.children().next().is_none(), "empty result: {r:?}");
    r
}

/// Logs in, sends initial presence with `priority` and, if asked, enables carbons. The IQ
/// round trip also guarantees the presence was processed before the test goes on.
async fn online(s: &TestServer, user: &str, res: &str, priority: i8, carbons: bool) -> RawClient {
    let mut c = RawClient::login(s, user, "pw", res).await.unwrap();
    c.send_str(&format!(
        "<presence><priority>{priority}</priority></presence>"
    ))
    .await
    .unwrap();
    if carbons {
        let r = set_carbons(&mut c, true, None).await;
        assert_eq!(r.attr("from"), Some(format!("{user}@localhost").as_str()));
        assert_eq!(
            r.attr("to"),
            Some(format!("{user}@localhost/{res}").as_str())
        );
    } else {
        let r = iq(
            &mut c,
            "sync",
            "<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
        assert_eq!(r.attr("type"), Some("result"));
    }
    c
}

struct Four {
    server: TestServer,
    a1: RawClient,
    a2: RawClient,
    b1: RawClient,
    b2: RawClient,
}

/// alice/a1, alice/a2, bob/b1 (priority 5, the top one) and bob/b2 (priority 1), all with
/// carbons enabled.
async fn four() -> Four {
    let server = TestServer::start().await.unwrap();
    server.add_user("alice", "pw").await.unwrap();
    server.add_user("bob", "pw").await.unwrap();
    let a1 = online(&server, "alice", "a1", 1, true).await;
    let a2 = online(&server, "alice", "a2", 1, true).await;
    let b1 = online(&server, "bob", "b1", 5, true).await;
    let b2 = online(&server, "bob", "b2", 1, true).await;
    Four {
        server,
        a1,
        a2,
        b1,
        b2,
    }
}

#[tokio::test]
async fn message_to_bare_jid_sent_and_received_copies() {
    let Four {
        server,
        mut a1,
        mut a2,
        mut b1,
        mut b2,
    } = four().await;
    a1.send_str("<message to='bob@localhost' type='chat' id='m1'><body>hello</body></message>")
        .await
        .unwrap();

    // bob/b1 has the highest priority: it gets the original, unwrapped.
    let m = b1.expect("original", is_message).await.unwrap();
    assert_eq!(m.attr("id"), Some("m1"));
    assert_eq!(m.attr("from"), Some("alice@localhost/a1"));
    assert!(carbon(&m, "received").is_none(), "{m:?}");
    assert_eq!(body(&m), "hello");

    // bob/b2 did not get the original: a <received/> copy from bob's bare JID.
    let c = b2.expect("received carbon", is_message).await.unwrap();
    assert_eq!(c.attr("from"), Some("bob@localhost"));
    assert_eq!(c.attr("to"), Some("bob@localhost/b2"));
    assert_eq!(c.attr("type"), Some("chat"));
    let inner = carbon(&c, "received").expect("received/forwarded/message");
    assert_eq!(inner.attr("from"), Some("alice@localhost/a1"));
    assert_eq!(inner.attr("to"), Some("bob@localhost"));
    assert_eq!(inner.attr("id"), Some("m1"));
    assert_eq!(body(inner), "hello");

    // alice/a2: a <sent/> copy from alice's bare JID.
    let c = a2.expect("sent carbon", is_message).await.unwrap();
    assert_eq!(c.attr("from"), Some("alice@localhost"));
    assert_eq!(c.attr("to"), Some("alice@localhost/a2"));
    assert_eq!(c.attr("type"), Some("chat"));
    let inner = carbon(&c, "sent").expect("sent/forwarded/message");
    assert_eq!(inner.attr("from"), Some("alice@localhost/a1"));
    assert_eq!(inner.attr("to"), Some("bob@localhost"));
    assert_eq!(body(inner), "hello");

    // Nobody gets a second copy: not the sender, not the original's recipient.
    assert!(a1.silent_for(QUIET, is_message).await.unwrap());
    assert!(b1.silent_for(QUIET, is_message).await.unwrap());
    assert!(b2.silent_for(QUIET, is_message).await.unwrap());
    assert!(a2.silent_for(QUIET, is_message).await.unwrap());
    server.stop().await;
}

#[tokio::test]
async fn message_to_full_jid_is_copied_to_the_other_resource() {
    let Four {
        server,
        mut a1,
        mut a2,
        mut b1,
        mut b2,
    } = four().await;
    // To the low-priority resource by full JID: b2 gets the original, b1 the copy.
    a1.send_str("<message to='bob@localhost/b2' type='chat' id='m2'><body>to b2</body></message>")
        .await
        .unwrap();
    let m = b2.expect("original", is_message).await.unwrap();
    assert_eq!(m.attr("id"), Some("m2"));
    assert!(carbon(&m, "received").is_none(), "{m:?}");
    let c = b1.expect("received carbon", is_message).await.unwrap();
    assert_eq!(c.attr("from"), Some("bob@localhost"));
    assert_eq!(c.attr("to"), Some("bob@localhost/b1"));
    let inner = carbon(&c, "received").expect("received carbon");
    assert_eq!(inner.attr("to"), Some("bob@localhost/b2"));
    assert_eq!(inner.attr("from"), Some("alice@localhost/a1"));
    assert_eq!(body(inner), "to b2");
    let c = a2.expect("sent carbon", is_message).await.unwrap();
    assert_eq!(
        carbon(&c, "sent").and_then(|m| m.attr("to")),
        Some("bob@localhost/b2")
    );

    // A type normal message with a body is eligible too; without one it is not.
    b1.send_str("<message to='alice@localhost/a2' id='n1'><body>normal</body></message>")
        .await
        .unwrap();
    let m = a2.expect("original", is_message).await.unwrap();
    assert_eq!(m.attr("id"), Some("n1"));
    let c = a1.expect("received carbon", is_message).await.unwrap();
    assert_eq!(
        carbon(&c, "received").and_then(|m| m.attr("id")),
        Some("n1")
    );
    assert!(c.attr("type").is_none(), "the copy keeps the (absent) type");
    let c = b2.expect("sent carbon", is_message).await.unwrap();
    assert_eq!(carbon(&c, "sent").and_then(|m| m.attr("id")), Some("n1"));

    b1.send_str("<message to='alice@localhost/a2' id='n2'><subject>no body</subject></message>")
        .await
        .unwrap();
    let m = a2.expect("original", is_message).await.unwrap();
    assert_eq!(m.attr("id"), Some("n2"));
    assert!(a1.silent_for(QUIET, is_message).await.unwrap());
    assert!(b2.silent_for(QUIET, is_message).await.unwrap());
    server.stop().await;
}

#[tokio::test]
async fn private_and_no_copy_messages_are_not_copied() {
    let Four {
        server,
        mut a1,
        mut a2,
        mut b1,
        mut b2,
    } = four().await;
    a1.send_str(&format!(
        "<message to='bob@localhost' type='chat' id='p1'><body>secret</body><private xmlns='{NS_CARBONS}'/></message>"
    ))
    .await
    .unwrap();
    let m = b1.expect("original", is_message).await.unwrap();
    assert_eq!(m.attr("id"), Some("p1"));
    assert_eq!(body(&m), "secret");
    // XEP-0280 §9: the receiving server SHOULD remove <private/> before delivery.
    assert!(!m.has_child("private", NS_CARBONS), "{m:?}");
    assert!(a2.silent_for(QUIET, is_message).await.unwrap());
    assert!(b2.silent_for(QUIET, is_message).await.unwrap());

    a1.send_str(
        "<message to='bob@localhost' type='chat' id='p2'><body>just here</body><no-copy xmlns='urn:xmpp:hints'/></message>",
    )
    .await
    .unwrap();
    let m = b1.expect("original", is_message).await.unwrap();
    assert_eq!(m.attr("id"), Some("p2"));
    assert!(
        m.has_child("no-copy", "urn:xmpp:hints"),
        "other hints are left alone"
    );
    assert!(a2.silent_for(QUIET, is_message).await.unwrap());
    assert!(b2.silent_for(QUIET, is_message).await.unwrap());

    // Control: the next ordinary message is copied to both, so they were listening.
    a1.send_str("<message to='bob@localhost' type='chat' id='p3'><body>open</body></message>")
        .await
        .unwrap();
    let c = a2.expect("sent carbon", is_message).await.unwrap();
    assert_eq!(carbon(&c, "sent").and_then(|m| m.attr("id")), Some("p3"));
    let c = b2.expect("received carbon", is_message).await.unwrap();
    assert_eq!(
        carbon(&c, "received").and_then(|m| m.attr("id")),
        Some("p3")
    );
    server.stop().await;
}

#[tokio::test]
async fn disabled_and_never_enabled_resources_get_no_copies() {
    let server = TestServer::start().await.unwrap();
    server.add_user("alice", "pw").await.unwrap();
    server.add_user("bob", "pw").await.unwrap();
    let mut a1 = online(&server, "alice", "a1", 5, true).await;
    let mut off = online(&server, "alice", "off", 1, true).await;
    let r = set_carbons(&mut off, false, None).await;
    assert_eq!(r.attr("id"), Some("disable"));
    // §10.1: a second disable is not an error.
    set_carbons(&mut off, false, None).await;
    let mut never = online(&server, "alice", "never", 1, false).await;
    let mut on = online(&server, "alice", "on", 1, true).await;
    let mut b = online(&server, "bob", "b", 0, false).await;

    a1.send_str("<message to='bob@localhost' type='chat' id='s1'><body>out</body></message>")
        .await
        .unwrap();
    assert_eq!(
        b.expect("original", is_message).await.unwrap().attr("id"),
        Some("s1")
    );
    b.send_str("<message to='alice@localhost' type='chat' id='r1'><body>in</body></message>")
        .await
        .unwrap();
    assert_eq!(
        a1.expect("original", is_message).await.unwrap().attr("id"),
        Some("r1")
    );
    // The enabled resource sees both directions...
    let c = on.expect("sent carbon", is_message).await.unwrap();
    assert_eq!(carbon(&c, "sent").and_then(|m| m.attr("id")), Some("s1"));
    let c = on.expect("received carbon", is_message).await.unwrap();
    assert_eq!(
        carbon(&c, "received").and_then(|m| m.attr("id")),
        Some("r1")
    );
    // ...the disabled one and the one that never enabled see neither.
    assert!(off.silent_for(QUIET, is_message).await.unwrap());
    assert!(never.silent_for(QUIET, is_message).await.unwrap());
    server.stop().await;
}

#[tokio::test]
async fn forged_carbons_from_another_user_are_not_copied() {
    let Four {
        server,
        mut a1,
        mut a2,
        mut b1,
        mut b2,
    } = four().await;
    // bob wraps a made-up message in <received/> and sends it to alice's bare JID. alice/a2
    // has the higher priority now, so it gets the original.
    set_priority(&mut a2, 9).await;
    let forged = format!(
        "<message to='alice@localhost' type='chat' id='f1'><received xmlns='{NS_CARBONS}'><forwarded xmlns='{NS_FORWARD}'><message xmlns='jabber:client' from='carol@localhost/x' to='alice@localhost/a1' type='chat'><body>fake</body></message></forwarded></received></message>"
    );
    b1.send_str(&forged).await.unwrap();
    let m = a2.expect("the forged message", is_message).await.unwrap();
    assert_eq!(m.attr("id"), Some("f1"));
    // XEP-0280 §11: it comes from bob's full JID, not alice's bare JID, so a client MUST
    // ignore it as a carbon; the server never re-wraps it as one from alice's bare JID.
    assert_eq!(m.attr("from"), Some("bob@localhost/b1"));
    assert_ne!(m.attr("from"), Some("alice@localhost"));
    // Control message after it: the first message a1 and b2 see is the control's copy, so
    // neither got a copy of the forgery (nor bob's other resource a <sent/> one).
    b1.send_str("<message to='alice@localhost' type='chat' id='ok'><body>real</body></message>")
        .await
        .unwrap();
    let c = a1.expect("received carbon", is_message).await.unwrap();
    assert_eq!(c.attr("from"), Some("alice@localhost"));
    let inner = carbon(&c, "received").expect("received carbon");
    assert_eq!(
        inner.attr("id"),
        Some("ok"),
        "no copy of the forgery: {c:?}"
    );
    let c = b2.expect("sent carbon", is_message).await.unwrap();
    assert_eq!(carbon(&c, "sent").and_then(|m| m.attr("id")), Some("ok"));
    let m = a2
        .expect("the control's original", is_message)
        .await
        .unwrap();
    assert_eq!(m.attr("id"), Some("ok"));

    // Claiming alice's bare JID as 'from' is spoofing: bob's stream is closed (RFC 6120
    // §8.1.2.1) and alice gets nothing.
    b1.send_str(&format!(
        "<message from='alice@localhost' to='alice@localhost/a1' type='chat' id='f2'><received xmlns='{NS_CARBONS}'><forwarded xmlns='{NS_FORWARD}'><message xmlns='jabber:client' from='carol@localhost/x' type='chat'><body>fake</body></message></forwarded></received></message>"
    ))
    .await
    .unwrap();
    let e = b1
        .expect("stream error", |e| e.name() == "error")
        .await
        .unwrap();
    assert!(
        e.has_child("invalid-from", "urn:ietf:params:xml:ns:xmpp-streams"),
        "{e:?}"
    );
    assert!(a1.silent_for(QUIET, is_message).await.unwrap());
    assert!(a2.silent_for(QUIET, is_message).await.unwrap());
    server.stop().await;
}

async fn set_priority(c: &mut RawClient, p: i8) {
    c.send_str(&format!("<presence><priority>{p}</priority></presence>"))
        .await
        .unwrap();
    let r = iq(
        c,
        "prio",
        "<iq type='get' id='prio'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
}

#[tokio::test]
async fn enable_via_server_domain_and_refusals() {
    let server = TestServer::start().await.unwrap();
    server.add_user("alice", "pw").await.unwrap();
    server.add_user("bob", "pw").await.unwrap();
    let mut a1 = online(&server, "alice", "a1", 1, false).await;
    let mut a2 = online(&server, "alice", "a2", 1, false).await;
    let mut b = online(&server, "bob", "b", 1, false).await;

    // The server advertises the feature (§3).
    let r = iq(
        &mut a1,
        "d",
        "<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    )
    .await;
    let features: Vec<String> = r
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .expect("disco result")
        .children()
        .filter_map(|f| f.attr("var").map(str::to_owned))
        .collect();
    assert!(features.iter().any(|f| f == NS_CARBONS), "{features:?}");

    // Enabling with to='localhost' works the same as without 'to'.
    let r = set_carbons(&mut a1, true, Some("localhost")).await;
    assert_eq!(r.attr("from"), Some("localhost"));
    assert_eq!(r.attr("to"), Some("alice@localhost/a1"));

    // Someone else's account: not-allowed. A get: bad-request.
    for (req, cond) in [
        (
            format!(
                "<iq type='set' id='x1' to='bob@localhost'><enable xmlns='{NS_CARBONS}'/></iq>"
            ),
            "not-allowed",
        ),
        (
            format!("<iq type='get' id='x2'><enable xmlns='{NS_CARBONS}'/></iq>"),
            "bad-request",
        ),
    ] {
        let id = if cond == "not-allowed" { "x1" } else { "x2" };
        let r = iq(&mut a2, id, &req).await;
        assert_eq!(r.attr("type"), Some("error"), "{r:?}");
        let err = r.get_child("error", NS_CLIENT).expect("error");
        assert!(err.has_child(cond, NS_STANZAS), "{r:?}");
    }

    // a1 now gets copies of what a2 sends and receives; a2 (not enabled) gets none.
    a2.send_str("<message to='bob@localhost' type='chat' id='d1'><body>x</body></message>")
        .await
        .unwrap();
    b.expect("original", is_message).await.unwrap();
    let c = a1.expect("sent carbon", is_message).await.unwrap();
    assert_eq!(c.attr("from"), Some("alice@localhost"));
    assert_eq!(carbon(&c, "sent").and_then(|m| m.attr("id")), Some("d1"));
    b.send_str("<message to='alice@localhost/a2' type='chat' id='d2'><body>y</body></message>")
        .await
        .unwrap();
    a2.expect("original", is_message).await.unwrap();
    let c = a1.expect("received carbon", is_message).await.unwrap();
    assert_eq!(
        carbon(&c, "received").and_then(|m| m.attr("id")),
        Some("d2")
    );
    b.send_str("<message to='alice@localhost/a1' type='chat' id='d3'><body>z</body></message>")
        .await
        .unwrap();
    a1.expect("original", is_message).await.unwrap();
    assert!(a2.silent_for(QUIET, is_message).await.unwrap());
    server.stop().await;
}

#[tokio::test]
async fn errors_answering_eligible_messages_are_copied() {
    let server = TestServer::start().await.unwrap();
    server.add_user("alice", "pw").await.unwrap();
    let mut a1 = online(&server, "alice", "a1", 1, true).await;
    let mut a2 = online(&server, "alice", "a2", 1, true).await;
    // No such user: the server bounces service-unavailable to a1.
    a1.send_str(
        "<message to='nobody@localhost' type='chat' id='e1'><body>anyone?</body></message>",
    )
    .await
    .unwrap();
    let e = a1.expect("bounce", is_message).await.unwrap();
    assert_eq!(e.attr("type"), Some("error"));
    let c = a2.expect("sent carbon", is_message).await.unwrap();
    assert_eq!(carbon(&c, "sent").and_then(|m| m.attr("id")), Some("e1"));
    let c = a2
        .expect("received carbon of the error", is_message)
        .await
        .unwrap();
    assert_eq!(c.attr("type"), Some("error"));
    let inner = carbon(&c, "received").expect("received carbon");
    assert_eq!(inner.attr("id"), Some("e1"));
    assert_eq!(inner.attr("from"), Some("nobody@localhost"));
    assert!(inner
        .get_child("error", NS_CLIENT)
        .is_some_and(|e| e.has_child("service-unavailable", NS_STANZAS)));

    // The error for a message that was not copied is not copied either.
    a1.send_str("<message to='nobody@localhost' type='chat' id='e2'><body>quiet</body><no-copy xmlns='urn:xmpp:hints'/></message>")
        .await
        .unwrap();
    let e = a1.expect("bounce", is_message).await.unwrap();
    assert_eq!(e.attr("id"), Some("e2"));
    assert!(a2.silent_for(QUIET, is_message).await.unwrap());
    server.stop().await;
}

#[tokio::test]
async fn recipient_without_a_reachable_resource_still_gets_copies() {
    let server = TestServer::start().await.unwrap();
    server.add_user("alice", "pw").await.unwrap();
    server.add_user("bob", "pw").await.unwrap();
    let mut a = online(&server, "alice", "a", 1, false).await;
    // A negative priority: never chosen for bare-JID messages, but carbons are on.
    let mut b1 = online(&server, "bob", "b1", -1, true).await;
    a.send_str("<message to='bob@localhost' type='chat' id='o1'><body>later</body></message>")
        .await
        .unwrap();
    // §7: every carbons-enabled resource that did not get the original gets a copy, even
    // when the original goes to offline storage.
    let c = b1.expect("received carbon", is_message).await.unwrap();
    assert_eq!(c.attr("from"), Some("bob@localhost"));
    assert_eq!(
        carbon(&c, "received").and_then(|m| m.attr("id")),
        Some("o1")
    );
    // The original was stored, and reaches the next resource that becomes available.
    let mut b2 = RawClient::login(&server, "bob", "pw", "b2").await.unwrap();
    b2.send_str("<presence/>").await.unwrap();
    let m = b2.expect("offline message", is_message).await.unwrap();
    assert_eq!(m.attr("id"), Some("o1"));
    assert!(carbon(&m, "received").is_none());
    server.stop().await;
}
