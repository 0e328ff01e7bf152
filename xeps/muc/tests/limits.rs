//! `[muc]` limits end to end: who may create rooms, rooms per user, message rate.

mod common;

use common::*;
use tern_testkit::TestServer;

#[tokio::test]
async fn creation_policy_and_rooms_per_user() {
    let s = TestServer::start_with(|c| {
        c.muc.max_rooms_per_user = 1;
    })
    .await
    .unwrap();
    let mut alice = user(&s, "alice").await;
    create(&mut alice, "first", "Alice").await;
    let e = join(&mut alice, "second", "Alice", "").await;
    assert_eq!(
        condition(&e).as_deref(),
        Some("resource-constraint"),
        "{e:?}"
    );

    let s = TestServer::start_with(|c| {
        c.muc.create_rooms = tern_muc::config::CreatePolicy::Admins;
        c.muc.admins = vec!["root@localhost".into()];
    })
    .await
    .unwrap();
    let mut alice = user(&s, "alice").await;
    let e = join(&mut alice, "mine", "Alice", "").await;
    assert_eq!(condition(&e).as_deref(), Some("not-allowed"));
    let mut root = user(&s, "root").await;
    create(&mut root, "mine", "Root").await;
    // The service admin owns it; Alice may now enter.
    let p = join(&mut alice, "mine", "Alice", "").await;
    assert!(codes(&p).contains(&110));
}

#[tokio::test]
async fn message_rate_per_occupant() {
    let s = TestServer::start_with(|c| {
        c.muc.message_rate = 1.0;
        c.muc.message_burst = 3;
    })
    .await
    .unwrap();
    let mut alice = user(&s, "alice").await;
    create(&mut alice, "calm", "Alice").await;
    for i in 0..5 {
        alice
            .send_str(&format!(
                "<message to='calm@{ROOMS}' type='groupchat' id='r{i}'><body>b{i}</body></message>"
            ))
            .await
            .unwrap();
    }
    for i in 0..3 {
        heard(&mut alice, &format!("b{i}")).await;
    }
    let e = alice
        .expect("too fast", |e| e.attr("type") == Some("error"))
        .await
        .unwrap();
    assert_eq!(condition(&e).as_deref(), Some("policy-violation"));
    assert_eq!(
        e.get_child("error", "jabber:client").unwrap().attr("type"),
        Some("wait")
    );
}
