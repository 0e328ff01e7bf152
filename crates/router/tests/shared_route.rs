//! `Router::route_shared`: each copy of a broadcast passes the hooks as if routed alone; local
//! resources get the shared serialization unless a hook rewrote their copy.

use std::sync::Arc;

use async_trait::async_trait;
use minidom::Element;
use tokio::sync::mpsc;

use tern_router::{
    Ctx, Event, Flow, FullJid, Hooks, Jid, LocalRegistry, Module, Outbound, Router, SessionHandle,
    SharedStanza, Stanza, Target,
};
mod common;

use common::record;
use tern_storage::Storage;

/// Tags presence to carol (a per-recipient rewrite) and swallows presence to dave.
struct Rewriter;

#[async_trait]
impl Module for Rewriter {
    fn name(&self) -> &'static str {
        "rewriter"
    }
    fn register(&self, hooks: &mut Hooks) {
        hooks.on(Event::Presence(Target::Bare));
    }
    async fn on_stanza(&self, _: &Event, _: &Ctx<'_>, st: &mut Stanza) -> Flow {
        match st.to.as_ref().and_then(|t| t.node()).map(|n| n.as_str()) {
            Some("carol") => {
                st.el.append_child(Element::bare("tag", "urn:test"));
                Flow::Continue
            }
            Some("dave") => Flow::Handled,
            _ => Flow::Continue,
        }
    }
}

async fn router() -> Arc<Router> {
    let storage = Storage::memory();
    for u in ["alice", "bob", "carol", "dave"] {
        storage
            .accounts
            .create("example.com", u, &record())
            .await
            .unwrap();
    }
    Router::builder(storage, Arc::new(LocalRegistry::default()))
        .host("example.com")
        .module(Arc::new(Rewriter))
        .build()
}

fn session(r: &Router, jid: &str, available: bool) -> mpsc::Receiver<Outbound> {
    let (tx, rx) = mpsc::channel(16);
    let h = SessionHandle::new(FullJid::new(jid).unwrap(), tx);
    if available {
        h.update_presence(|s| s.presence = Some(Element::bare("presence", "jabber:client")));
    }
    r.sessions().try_insert(h).unwrap();
    rx
}

#[tokio::test]
async fn shared_unless_rewritten() {
    let r = router().await;
    let mut b1 = session(&r, "bob@example.com/1", true);
    let mut b2 = session(&r, "bob@example.com/2", true);
    let mut b3 = session(&r, "bob@example.com/3", false);
    let mut c = session(&r, "carol@example.com/c", true);
    let mut d = session(&r, "dave@example.com/d", true);
    let from = Jid::new("alice@example.com/a").unwrap();
    let el: Element =
        "<presence xmlns='jabber:client' from='alice@example.com/a'><status>s</status></presence>"
            .parse()
            .unwrap();
    let shared = Arc::new(SharedStanza::new(el));
    for to in ["bob@example.com", "carol@example.com", "dave@example.com"] {
        r.route_shared(&shared, &from, Jid::new(to).unwrap()).await;
    }
    // Bob's available resources share the one serialization.
    for rx in [&mut b1, &mut b2] {
        match rx.try_recv() {
            Ok(Outbound::Shared(items)) => {
                assert_eq!(items.len(), 1);
                assert!(Arc::ptr_eq(&items[0], &shared));
            }
            other => panic!("expected the shared stanza, got {other:?}"),
        }
    }
    // Not available: nothing (RFC 6121 §4.4.3).
    assert!(b3.try_recv().is_err());
    // Rewritten by a hook: carol gets her own copy, as the hook left it.
    match c.try_recv() {
        Ok(Outbound::Stanza(el)) => {
            assert!(el.has_child("tag", "urn:test"), "{el:?}");
            assert_eq!(el.attr("to"), Some("carol@example.com"));
            assert_eq!(el.attr("from"), Some("alice@example.com/a"));
        }
        other => panic!("expected carol's own copy, got {other:?}"),
    }
    // Consumed by a hook: nothing.
    assert!(d.try_recv().is_err());
    // The rewrite did not leak into the shared stanza.
    assert!(!shared.element().has_child("tag", "urn:test"));
}
