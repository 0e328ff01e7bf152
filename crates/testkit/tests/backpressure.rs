//! Flow control between sessions: a client that reads slowly slows down whoever sends to it
//! (`c2s.queue_wait_ms`), and a client that stops reading loses its connection
//! (`c2s.write_timeout_secs`), end to end over TLS.

use std::time::Duration;

use tern_testkit::{RawClient, TestServer};

/// Enough to fill the kernel's socket buffers on both sides of the reader's connection
/// several times over, so its session queue must fill.
const MESSAGES: usize = 7_500;
const BODY: usize = 4096;

fn message(to: &str, kind: &str, i: usize, body: &str) -> String {
    format!("<message to='{to}' type='{kind}' id='m{i}'><body>{body}</body></message>")
}

/// A server with a 16-stanza session queue, no byte-rate limit and the given c2s settings;
/// alice logged in, bob logged in and available.
async fn setup(
    queue_wait_ms: u64,
    write_timeout_secs: Option<u64>,
) -> (TestServer, RawClient, RawClient) {
    let s = TestServer::start_with(|c| {
        c.c2s.queue_size = 16;
        c.c2s.queue_wait_ms = queue_wait_ms;
        if let Some(t) = write_timeout_secs {
            c.c2s.write_timeout_secs = t;
        }
        c.c2s.max_bytes_per_second = 1 << 30;
    })
    .await
    .unwrap();
    s.add_user("alice", "pw").await.unwrap();
    s.add_user("bob", "pw").await.unwrap();
    let a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    let mut b = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
    b.send_str("<presence/>").await.unwrap();
    b.expect("own presence", |e| e.name() == "presence")
        .await
        .unwrap();
    (s, a, b)
}

#[tokio::test]
async fn a_slow_reader_holds_the_sender_back_and_gets_every_message_live() {
    let (s, mut a, mut b) = setup(60_000, None).await;

    // Bob does not read while Alice sends ~30 MB: his socket buffers fill, then his queue.
    let body = "x".repeat(BODY);
    let sender = tokio::spawn(async move {
        for i in 0..MESSAGES {
            a.send_str(&message("bob@localhost/b", "chat", i, &body))
                .await?;
        }
        anyhow::Ok(a)
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !sender.is_finished(),
        "the sender was not held back while the reader's queue was full"
    );

    // Every message reaches Bob's session, in order: none was diverted to offline storage.
    for i in 0..MESSAGES {
        let m = b
            .expect("message", |e| e.name() == "message")
            .await
            .unwrap();
        let id = format!("m{i}");
        assert_eq!(m.attr("id"), Some(id.as_str()), "out of order or missing");
        assert!(m.get_child("error", "jabber:client").is_none(), "{m:?}");
    }
    let mut a = tokio::time::timeout(Duration::from_secs(30), sender)
        .await
        .expect("the sender finishes once the reader caught up")
        .unwrap()
        .unwrap();
    // No error came back to the sender.
    assert!(a
        .silent_for(Duration::from_millis(300), |e| e.attr("type")
            == Some("error"))
        .await
        .unwrap());
    // And nothing is waiting in offline storage.
    let mut b2 = RawClient::login(&s, "bob", "pw", "b2").await.unwrap();
    b2.send_str("<presence/>").await.unwrap();
    assert!(b2
        .silent_for(Duration::from_millis(500), |e| e.name() == "message")
        .await
        .unwrap());
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_after_the_write_timeout() {
    let (_s, mut a, mut b) = setup(50, Some(1)).await;

    // Headlines: once Bob's session is gone they are dropped (RFC 6121 §8.5.2.1.1), so
    // Alice gets no bounces she would have to read.
    let body = "x".repeat(BODY);
    let sender = tokio::spawn(async move {
        for i in 0..MESSAGES {
            a.send_str(&message("bob@localhost/b", "headline", i, &body))
                .await?;
        }
        anyhow::Ok(a)
    });
    // Bob reads nothing for a few seconds: the server's write to him times out.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut got = 0;
    let closed = loop {
        match b.next().await {
            Ok(e) if e.name() == "message" => got += 1,
            Ok(_) => {}
            Err(e) => break e.to_string(),
        }
    };
    // The connection ends (EOF, or a TLS error on the record cut short by the drop), where
    // without the write timeout the reader would wait in vain for more.
    assert!(
        !closed.contains("timed out waiting"),
        "expected the server to drop the stalled connection, got: {closed}"
    );
    assert!(
        got < MESSAGES,
        "the connection was dropped, so not everything reached it"
    );
    tokio::time::timeout(Duration::from_secs(30), sender)
        .await
        .expect("the sender is not stuck behind the dropped reader")
        .unwrap()
        .unwrap();
}
