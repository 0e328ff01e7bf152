//! XEP-0199 from the server: a silent client is pinged halfway to the idle timeout; one that
//! answers stays connected past the timeout, one that does not is closed with
//! `<connection-timeout/>`.

use std::time::Duration;

use tern_testkit::{RawClient, TestServer};

#[tokio::test]
async fn silent_clients_are_pinged_and_dead_ones_time_out() {
    let s = TestServer::start_with(|c| {
        c.c2s.idle_timeout_secs = 2;
        c.c2s.keepalive_secs = 1;
    })
    .await
    .unwrap();
    s.add_user("alice", "pw").await.unwrap();
    s.add_user("bob", "pw").await.unwrap();
    let mut live = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    let mut dead = RawClient::login(&s, "bob", "pw", "b").await.unwrap();

    // The live client answers every ping for three idle periods.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let ping = live
            .expect("server ping", |e| {
                e.name() == "iq" && e.get_child("ping", "urn:xmpp:ping").is_some()
            })
            .await
            .unwrap();
        assert_eq!(ping.attr("type"), Some("get"));
        assert_eq!(ping.attr("from"), Some("localhost"));
        let id = ping.attr("id").unwrap();
        live.send_str(&format!("<iq type='result' id='{id}' to='localhost'/>"))
            .await
            .unwrap();
    }
    // Still connected: a round trip works.
    let r = live
        .iq(
            "p",
            "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await
        .unwrap();
    assert_eq!(r.attr("type"), Some("result"));

    // The dead client was pinged too, never answered, and is gone with connection-timeout.
    let mut saw_ping = false;
    let mut timed_out = false;
    loop {
        match dead.next_event().await {
            Ok(tern_stream::StreamEvent::Element(e)) => {
                if e.get_child("ping", "urn:xmpp:ping").is_some() {
                    saw_ping = true;
                }
                if e.name() == "error"
                    && e.get_child("connection-timeout", "urn:ietf:params:xml:ns:xmpp-streams")
                        .is_some()
                {
                    timed_out = true;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(saw_ping, "the silent client was not pinged");
    assert!(
        timed_out,
        "the silent client was not closed with <connection-timeout/>"
    );
}
