//! XEP-0198 stream management end to end: counting, resumption after a cut connection, and
//! redelivery when resumption is refused.

use std::time::Duration;

use minidom::Element;
use tern_testkit::{RawClient, TestServer};

const SM: &str = "urn:xmpp:sm:3";

fn is_msg(id: &str) -> impl Fn(&Element) -> bool + '_ {
    move |e| e.name() == "message" && e.attr("id") == Some(id)
}

async fn users() -> TestServer {
    let s = TestServer::start().await.unwrap();
    s.add_user("alice", "pw").await.unwrap();
    s.add_user("bob", "pw").await.unwrap();
    s
}

/// Binds, sends initial presence and enables stream management; returns the SM id.
async fn sm_session(
    s: &TestServer,
    user: &str,
    res: &str,
    resume: bool,
) -> (RawClient, Option<String>) {
    let (mut c, f) = RawClient::authenticate(s, user, "pw").await.unwrap();
    assert!(f.has_child("sm", SM), "sm advertised: {f:?}");
    c.bind(Some(res)).await.unwrap();
    c.send_str(&format!(
        "<enable xmlns='urn:xmpp:sm:3'{}/>",
        if resume { " resume='true'" } else { "" }
    ))
    .await
    .unwrap();
    let en = c.expect("enabled", |e| e.is("enabled", SM)).await.unwrap();
    c.send_str("<presence/>").await.unwrap();
    (c, en.attr("id").map(str::to_owned))
}

#[tokio::test]
async fn counts_and_acks() {
    let s = users().await;
    let (mut a, _) = sm_session(&s, "alice", "a", false).await;
    for i in 0..3 {
        a.send_str(&format!(
            "<iq type='get' id='q{i}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await
        .unwrap();
    }
    a.send_str("<r xmlns='urn:xmpp:sm:3'/>").await.unwrap();
    let ack = a.expect("ack", |e| e.is("a", SM)).await.unwrap();
    // presence + 3 pings = 4 stanzas handled.
    assert_eq!(ack.attr("h"), Some("4"));
    // Acknowledging more than the server sent is an error (XEP-0198 §4).
    a.send_str("<a xmlns='urn:xmpp:sm:3' h='1000'/>")
        .await
        .unwrap();
    let e = a
        .expect("stream error", |e| e.name() == "error")
        .await
        .unwrap();
    assert!(
        e.has_child("undefined-condition", "urn:ietf:params:xml:ns:xmpp-streams"),
        "{e:?}"
    );
    assert!(e.has_child("handled-count-too-high", SM), "{e:?}");
    s.stop().await;
}

#[tokio::test]
async fn resumption_after_cut_delivers_every_message_exactly_once() {
    let s = users().await;
    let (mut a, id) = sm_session(&s, "alice", "phone", true).await;
    let id = id.expect("resumable id");
    let mut b = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
    b.send_str("<presence/>").await.unwrap();

    b.send_str("<message to='alice@localhost/phone' type='chat' id='m1'><body>1</body></message>")
        .await
        .unwrap();
    a.expect("m1", is_msg("m1")).await.unwrap();
    // Alice acknowledges everything so far (her own presence echo and m1 included) by counting
    // stanzas: ask the server how many it sent by requesting its ack request answer.
    b.send_str("<message to='alice@localhost/phone' type='chat' id='m2'><body>2</body></message>")
        .await
        .unwrap();
    a.expect("m2", is_msg("m2")).await.unwrap();
    // Cut the TCP connection without a closing stream, acknowledging nothing.
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 3..=5 {
        b.send_str(&format!(
            "<message to='alice@localhost/phone' type='chat' id='m{i}'><body>{i}</body></message>"
        ))
        .await
        .unwrap();
    }
    // Bob must not get errors: the session is only detached.
    assert!(b
        .silent_for(Duration::from_millis(300), |e| e.attr("type")
            == Some("error"))
        .await
        .unwrap());

    let (mut a2, _) = RawClient::authenticate(&s, "alice", "pw").await.unwrap();
    // Alice's client saw 2 stanzas before the cut? It saw presence echo + m1 + m2 = 3 stanzas
    // (plus possibly an ack request, which is not a stanza). Claim exactly those 3.
    a2.send_str(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='3'/>"
    ))
    .await
    .unwrap();
    let r = a2.expect("resumed", |e| e.is("resumed", SM)).await.unwrap();
    assert_eq!(r.attr("previd"), Some(id.as_str()));
    assert_eq!(
        r.attr("h"),
        Some("1"),
        "the server handled alice's one presence"
    );
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let m = a2
            .expect("resent", |e| e.name() == "message")
            .await
            .unwrap();
        seen.push(m.attr("id").unwrap().to_owned());
    }
    assert_eq!(
        seen,
        ["m3", "m4", "m5"],
        "m1 and m2 were acknowledged and must not come again"
    );
    assert!(
        a2.silent_for(Duration::from_millis(400), |e| e.name() == "message")
            .await
            .unwrap(),
        "exactly once"
    );
    // The resumed session works both ways.
    b.send_str("<message to='alice@localhost/phone' type='chat' id='m6'><body>6</body></message>")
        .await
        .unwrap();
    a2.expect("m6", is_msg("m6")).await.unwrap();
    s.stop().await;
}

#[tokio::test]
async fn refused_resumption_then_messages_come_from_offline_storage() {
    let s = TestServer::start_with(|c| c.c2s.sm_resume_timeout_secs = 1)
        .await
        .unwrap();
    s.add_user("alice", "pw").await.unwrap();
    s.add_user("bob", "pw").await.unwrap();
    let (a, id) = sm_session(&s, "alice", "phone", true).await;
    let id = id.unwrap();
    let mut b = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.send_str(
        "<message to='alice@localhost' type='chat' id='x1'><body>while away</body></message>",
    )
    .await
    .unwrap();
    b.send_str("<message to='alice@localhost/phone' type='chat' id='x2'><body>to the resource</body></message>").await.unwrap();
    // Let the resumption window pass.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let (mut a2, _) = RawClient::authenticate(&s, "alice", "pw").await.unwrap();
    a2.send_str(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='0'/>"
    ))
    .await
    .unwrap();
    let f = a2.expect("failed", |e| e.is("failed", SM)).await.unwrap();
    assert!(
        f.has_child("item-not-found", "urn:ietf:params:xml:ns:xmpp-stanzas"),
        "{f:?}"
    );
    // The stream is still usable: bind, and the undelivered messages arrive from offline storage.
    let r = a2.bind(Some("phone")).await.unwrap();
    assert_eq!(r.attr("type"), Some("result"));
    a2.send_str("<presence/>").await.unwrap();
    a2.expect("x1", is_msg("x1")).await.unwrap();
    a2.expect("x2", is_msg("x2")).await.unwrap();
    assert!(b
        .silent_for(Duration::from_millis(200), |e| e.attr("type")
            == Some("error"))
        .await
        .unwrap());
    s.stop().await;
}

#[tokio::test]
async fn resumption_by_another_account_is_refused() {
    let s = users().await;
    let (_a, id) = sm_session(&s, "alice", "phone", true).await;
    let (mut b, _) = RawClient::authenticate(&s, "bob", "pw").await.unwrap();
    b.send_str(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{}' h='0'/>",
        id.unwrap()
    ))
    .await
    .unwrap();
    let f = b.expect("failed", |e| e.is("failed", SM)).await.unwrap();
    assert!(f.has_child("item-not-found", "urn:ietf:params:xml:ns:xmpp-stanzas"));
    s.stop().await;
}

#[tokio::test]
async fn csi_holds_presence_until_a_message() {
    let s = users().await;
    let (mut a, f) = RawClient::authenticate(&s, "alice", "pw").await.unwrap();
    assert!(f.has_child("csi", "urn:xmpp:csi:0"));
    a.bind(Some("a")).await.unwrap();
    a.send_str("<presence/>").await.unwrap();
    a.expect("own presence", |e| e.name() == "presence")
        .await
        .unwrap();
    a.send_str("<inactive xmlns='urn:xmpp:csi:0'/>")
        .await
        .unwrap();
    let mut b = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
    // Directed presence from bob: held while alice is inactive.
    b.send_str("<presence to='alice@localhost/a'><show>away</show></presence>")
        .await
        .unwrap();
    b.send_str("<presence to='alice@localhost/a'><show>dnd</show></presence>")
        .await
        .unwrap();
    assert!(a
        .silent_for(Duration::from_millis(400), |e| e.name() == "presence")
        .await
        .unwrap());
    b.send_str("<message to='alice@localhost/a' id='wake'><body>hi</body></message>")
        .await
        .unwrap();
    // The latest presence arrives before the message; the superseded one never.
    let p = a
        .expect("held presence", |e| {
            e.name() == "presence" || e.name() == "message"
        })
        .await
        .unwrap();
    assert_eq!(p.name(), "presence", "held presence comes first");
    assert_eq!(p.get_child("show", "jabber:client").unwrap().text(), "dnd");
    let m = a
        .expect("message", |e| {
            e.name() == "message" || e.name() == "presence"
        })
        .await
        .unwrap();
    assert_eq!(m.attr("id"), Some("wake"));
    a.send_str("<active xmlns='urn:xmpp:csi:0'/>")
        .await
        .unwrap();
    b.send_str("<presence to='alice@localhost/a'><show>chat</show></presence>")
        .await
        .unwrap();
    a.expect("immediate presence", |e| e.name() == "presence")
        .await
        .unwrap();
    s.stop().await;
}
