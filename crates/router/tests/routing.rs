//! RFC 6121 §8.5 delivery rules through the real router and session queues.

use std::sync::Arc;

use minidom::Element;
use tokio::sync::mpsc;

use tern_router::{
    FullJid, Jid, Kind, LocalRegistry, Origin, Outbound, Router, SessionHandle, Stanza,
};
mod common;

use common::record;
use tern_storage::Storage;

async fn router() -> Arc<Router> {
    let storage = Storage::memory();
    for u in ["alice", "bob"] {
        storage
            .accounts
            .create("example.com", u, &record())
            .await
            .unwrap();
    }
    Router::builder(storage, Arc::new(LocalRegistry::default()))
        .host("example.com")
        .build()
}

fn session(
    r: &Router,
    jid: &str,
    priority: Option<i8>,
) -> (SessionHandle, mpsc::Receiver<Outbound>) {
    let (tx, rx) = mpsc::channel(16);
    let h = SessionHandle::new(FullJid::new(jid).unwrap(), tx);
    if let Some(p) = priority {
        h.update_presence(|s| {
            s.presence = Some(Element::bare("presence", "jabber:client"));
            s.priority = p;
        });
    }
    r.sessions().try_insert(h.clone()).unwrap();
    (h, rx)
}

fn message(from: &str, to: &str, type_: &str) -> Stanza {
    let el: Element =
        format!("<message xmlns='jabber:client' type='{type_}' id='m'><body>x</body></message>")
            .parse()
            .unwrap();
    Stanza::new(
        Kind::Message,
        Jid::new(from).unwrap(),
        Some(Jid::new(to).unwrap()),
        el,
    )
}

fn got(rx: &mut mpsc::Receiver<Outbound>) -> Option<Element> {
    match rx.try_recv() {
        Ok(Outbound::Stanza(e)) => Some(*e),
        _ => None,
    }
}

fn error_condition(e: &Element) -> Option<String> {
    let err = e.get_child("error", "jabber:client")?;
    err.children().next().map(|c| c.name().to_owned())
}

#[tokio::test]
async fn bare_jid_goes_to_highest_non_negative_priority() {
    let r = router().await;
    let (_h1, mut low) = session(&r, "bob@example.com/low", Some(1));
    let (_h2, mut high) = session(&r, "bob@example.com/high", Some(5));
    let (_h3, mut neg) = session(&r, "bob@example.com/neg", Some(-1));
    let (_h4, mut sender) = session(&r, "alice@example.com/a", Some(0));
    r.route(
        Origin::Local,
        message("alice@example.com/a", "bob@example.com", "chat"),
    )
    .await;
    assert!(got(&mut high).is_some());
    assert!(got(&mut low).is_none());
    assert!(got(&mut neg).is_none());
    assert!(got(&mut sender).is_none());
}

#[tokio::test]
async fn no_available_resource_bounces_chat_and_ignores_headline() {
    let r = router().await;
    let (_n, mut neg) = session(&r, "bob@example.com/neg", Some(-3));
    let (_a, mut alice) = session(&r, "alice@example.com/a", Some(0));
    r.route(
        Origin::Local,
        message("alice@example.com/a", "bob@example.com", "chat"),
    )
    .await;
    let e = got(&mut alice).expect("error bounced to the sender");
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
    assert!(got(&mut neg).is_none());
    r.route(
        Origin::Local,
        message("alice@example.com/a", "bob@example.com", "headline"),
    )
    .await;
    assert!(got(&mut alice).is_none(), "headline is silently dropped");
}

#[tokio::test]
async fn groupchat_to_bare_is_an_error_and_full_jid_fallbacks() {
    let r = router().await;
    let (_b, mut bob) = session(&r, "bob@example.com/b", Some(0));
    let (_a, mut alice) = session(&r, "alice@example.com/a", Some(0));
    r.route(
        Origin::Local,
        message("alice@example.com/a", "bob@example.com", "groupchat"),
    )
    .await;
    assert_eq!(
        error_condition(&got(&mut alice).unwrap()).as_deref(),
        Some("service-unavailable")
    );
    assert!(got(&mut bob).is_none());
    // A chat to an absent resource is treated as sent to the bare JID (RFC 6121 §8.5.3.2.1).
    r.route(
        Origin::Local,
        message("alice@example.com/a", "bob@example.com/gone", "chat"),
    )
    .await;
    assert!(got(&mut bob).is_some());
    // A message to a resource with negative priority is still delivered when addressed to it.
    let (_n, mut neg) = session(&r, "bob@example.com/neg", Some(-1));
    r.route(
        Origin::Local,
        message("alice@example.com/a", "bob@example.com/neg", "chat"),
    )
    .await;
    assert!(got(&mut neg).is_some());
}

#[tokio::test]
async fn unknown_user_and_errors_are_never_answered_with_errors() {
    let r = router().await;
    let (_a, mut alice) = session(&r, "alice@example.com/a", Some(0));
    r.route(
        Origin::Local,
        message("alice@example.com/a", "nobody@example.com", "chat"),
    )
    .await;
    assert_eq!(
        error_condition(&got(&mut alice).unwrap()).as_deref(),
        Some("service-unavailable")
    );
    r.route(
        Origin::Local,
        message("alice@example.com/a", "nobody@example.com", "error"),
    )
    .await;
    assert!(got(&mut alice).is_none());
}

#[tokio::test]
async fn remote_domains_bounce_without_federation() {
    let r = router().await;
    let (_a, mut alice) = session(&r, "alice@example.com/a", Some(0));
    r.route(
        Origin::Local,
        message("alice@example.com/a", "x@elsewhere.example", "chat"),
    )
    .await;
    assert_eq!(
        error_condition(&got(&mut alice).unwrap()).as_deref(),
        Some("remote-server-not-found")
    );
}
