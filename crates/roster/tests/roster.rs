//! `jabber:iq:roster` through the real router: get, set and remove with pushes to interested
//! resources only, XEP-0237 versioning, and the error cases of RFC 6121 §2.

use std::sync::Arc;

use minidom::Element;
use tokio::sync::mpsc;

use tern_roster::{RosterConfig, RosterModule, NS_ROSTER as R};
use tern_router::{
    FullJid, Jid, Kind, LocalRegistry, Module, Origin, Outbound, Router, SessionHandle, Stanza,
};
use tern_storage::{AccountRecord, ScramCredentials, Storage};

const ST: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

async fn server(config: RosterConfig) -> Arc<Router> {
    let storage = Storage::memory();
    let c = ScramCredentials {
        salt: vec![1; 16],
        iterations: 4096,
        stored_key: vec![2; 32],
        server_key: vec![3; 32],
    };
    let record = AccountRecord {
        scram_sha1: c.clone(),
        scram_sha256: c,
        created: 0,
    };
    for u in ["alice", "bob"] {
        storage
            .accounts
            .create("example.com", u, &record)
            .await
            .unwrap();
    }
    Router::builder(storage, Arc::new(LocalRegistry::default()))
        .host("example.com")
        .module(Arc::new(RosterModule::new(config)))
        .build()
}

struct Client {
    router: Arc<Router>,
    handle: SessionHandle,
    rx: mpsc::Receiver<Outbound>,
}

async fn login(router: &Arc<Router>, full: &str) -> Client {
    let (tx, rx) = mpsc::channel(64);
    let handle = SessionHandle::new(FullJid::new(full).unwrap(), tx);
    router.sessions().try_insert(handle.clone()).unwrap();
    Client {
        router: router.clone(),
        handle,
        rx,
    }
}

impl Client {
    /// Sends an IQ as c2s would (no `to` means the own bare JID); returns the answer and
    /// whatever else arrived.
    async fn iq(&mut self, body: &str) -> (Element, Vec<Element>) {
        let el: Element = body
            .replacen("<iq ", "<iq xmlns='jabber:client' ", 1)
            .parse()
            .unwrap();
        let id = el.attr("id").unwrap().to_owned();
        let to = el
            .attr("to")
            .map(|t| Jid::new(t).unwrap())
            .unwrap_or_else(|| Jid::from(self.handle.jid().to_bare()));
        let from = Jid::from(self.handle.jid().clone());
        let st = Stanza::new(Kind::Iq, from, Some(to), el);
        self.router
            .route(Origin::Client(self.handle.clone()), st)
            .await;
        let mut got = self.drain();
        let i = got
            .iter()
            .position(|e| e.attr("id") == Some(id.as_str()))
            .unwrap_or_else(|| panic!("no answer to {id}: {got:?}"));
        let answer = got.remove(i);
        (answer, got)
    }

    fn drain(&mut self) -> Vec<Element> {
        let mut out = Vec::new();
        while let Ok(item) = self.rx.try_recv() {
            if matches!(item, Outbound::Close(_)) {
                break;
            }
            out.extend(item.into_elements(self.handle.jid().as_str()));
        }
        out
    }

    async fn get(&mut self, ver: Option<&str>) -> Element {
        let ver = ver.map(|v| format!(" ver='{v}'")).unwrap_or_default();
        let body = format!("<iq type='get' id='g'><query xmlns='jabber:iq:roster'{ver}/></iq>");
        self.iq(&body).await.0
    }

    async fn set(&mut self, items: &str) -> (Element, Vec<Element>) {
        let body =
            format!("<iq type='set' id='s'><query xmlns='jabber:iq:roster'>{items}</query></iq>");
        self.iq(&body).await
    }
}

fn cond(e: &Element) -> Option<String> {
    let err = e.get_child("error", "jabber:client")?;
    err.children()
        .find(|c| c.ns() == ST)
        .map(|c| c.name().to_owned())
}

fn pushed_item(els: &[Element]) -> (Element, String) {
    let iq = els
        .iter()
        .find(|e| e.name() == "iq" && e.attr("type") == Some("set"))
        .unwrap_or_else(|| panic!("no push in {els:?}"));
    let q = iq.get_child("query", R).unwrap();
    (
        q.get_child("item", R).unwrap().clone(),
        q.attr("ver").unwrap().to_owned(),
    )
}

#[tokio::test]
async fn set_get_remove_with_pushes_to_interested_resources() {
    let router = server(RosterConfig::default()).await;
    let mut a = login(&router, "alice@example.com/a").await;
    let mut a2 = login(&router, "alice@example.com/a2").await;
    let mut idle = login(&router, "alice@example.com/idle").await;
    a.get(None).await;
    a2.get(None).await;

    // §2.3.2: a result to the requester, a push to every interested resource (itself too).
    let (r, rest) = a
        .set(
            "<item jid='bob@example.com' name='Bob' subscription='both' ask='subscribe'>\
              <group>Friends</group><group>Work</group></item>",
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    assert!(r.get_child("query", R).is_none());
    let (item, ver) = pushed_item(&rest);
    // §2.1.2: the client's subscription and ask values are not the server's state.
    assert_eq!(
        (
            item.attr("jid"),
            item.attr("name"),
            item.attr("subscription"),
            item.attr("ask")
        ),
        (Some("bob@example.com"), Some("Bob"), Some("none"), None)
    );
    assert_eq!(item.children().filter(|g| g.is("group", R)).count(), 2);
    let (item2, ver2) = pushed_item(&a2.drain());
    assert_eq!((item2, ver2), (item, ver.clone()));
    assert!(
        idle.drain().is_empty(),
        "a resource that never asked gets no pushes"
    );

    // §2.4: an update replaces name and groups.
    let (_, rest) = a.set("<item jid='bob@example.com'/>").await;
    let (item, _) = pushed_item(&rest);
    assert_eq!((item.attr("name"), item.children().count()), (None, 0));
    a2.drain();

    let r = idle.get(None).await;
    let q = r.get_child("query", R).unwrap();
    assert_eq!(q.children().count(), 1);
    assert_eq!(
        q.get_child("item", R).unwrap().attr("jid"),
        Some("bob@example.com")
    );

    // §2.5.2: removal is pushed as subscription='remove', now to the idle resource as well.
    let (r, rest) = a
        .set("<item jid='bob@example.com' subscription='remove'/>")
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    assert_eq!(pushed_item(&rest).0.attr("subscription"), Some("remove"));
    assert_eq!(
        pushed_item(&a2.drain()).0.attr("subscription"),
        Some("remove")
    );
    assert_eq!(
        pushed_item(&idle.drain()).0.attr("subscription"),
        Some("remove")
    );
    let r = a.get(None).await;
    assert_eq!(r.get_child("query", R).unwrap().children().count(), 0);
}

#[tokio::test]
async fn versioning() {
    let router = server(RosterConfig::default()).await;
    let mut a = login(&router, "alice@example.com/a").await;
    let r = a.get(Some("")).await;
    let v0 = r
        .get_child("query", R)
        .unwrap()
        .attr("ver")
        .unwrap()
        .to_owned();

    // Same version: an empty result, the cache is current.
    let r = a.get(Some(&v0)).await;
    assert_eq!((r.attr("type"), r.children().count()), (Some("result"), 0));

    // Every push carries the new version; a stale one gets the whole roster and the new ver.
    let (_, rest) = a.set("<item jid='bob@example.com'/>").await;
    let (_, v1) = pushed_item(&rest);
    assert_ne!(v1, v0);
    let r = a.get(Some(&v0)).await;
    let q = r
        .get_child("query", R)
        .expect("changed roster is sent in full");
    assert_eq!(
        (q.attr("ver"), q.children().count()),
        (Some(v1.as_str()), 1)
    );
    let r = a.get(Some(&v1)).await;
    assert!(r.get_child("query", R).is_none());

    let (_, rest) = a.set("<item jid='carol@example.com'/>").await;
    let (_, v2) = pushed_item(&rest);
    assert_ne!(v2, v1);
    let r = a.get(Some("garbage")).await;
    assert_eq!(r.get_child("query", R).unwrap().children().count(), 2);
}

#[tokio::test]
async fn someone_elses_roster_is_forbidden() {
    let router = server(RosterConfig::default()).await;
    let mut a = login(&router, "alice@example.com/a").await;
    for body in [
        "<iq type='get' id='f1' to='bob@example.com'><query xmlns='jabber:iq:roster'/></iq>",
        "<iq type='set' id='f2' to='bob@example.com'><query xmlns='jabber:iq:roster'>\
         <item jid='eve@example.com'/></query></iq>",
    ] {
        let (r, _) = a.iq(body).await;
        assert_eq!(cond(&r).as_deref(), Some("forbidden"), "{r:?}");
    }
    let mut b = login(&router, "bob@example.com/b").await;
    let r = b.get(None).await;
    assert_eq!(r.get_child("query", R).unwrap().children().count(), 0);
}

#[tokio::test]
async fn malformed_sets_are_refused() {
    let config = RosterConfig {
        max_items: 2,
        max_name_bytes: 8,
    };
    let router = server(config).await;
    let mut a = login(&router, "alice@example.com/a").await;
    a.get(None).await;
    for (body, want) in [
        (
            "<item jid='x@example.com'/><item jid='y@example.com'/>",
            "bad-request",
        ),
        ("", "bad-request"),
        ("<item name='no jid'/>", "bad-request"),
        ("<item jid='x@example.com/res'/>", "bad-request"),
        (
            "<item jid='x@example.com'><group>G</group><group>G</group></item>",
            "bad-request",
        ),
        (
            "<item jid='x@example.com'><group></group></item>",
            "not-acceptable",
        ),
        (
            "<item jid='x@example.com' name='much too long'/>",
            "not-acceptable",
        ),
        (
            "<item jid='x@example.com'><group>much too long</group></item>",
            "not-acceptable",
        ),
        (
            "<item jid='nobody@example.com' subscription='remove'/>",
            "item-not-found",
        ),
    ] {
        let (r, rest) = a.set(body).await;
        assert_eq!(cond(&r).as_deref(), Some(want), "{body}: {r:?}");
        assert!(rest.is_empty(), "{body}: no push for a refused set");
    }
    let (r, _) = a
        .iq(
            "<iq type='get' id='gi'><query xmlns='jabber:iq:roster'><item jid='x@example.com'/>\
             </query></iq>",
        )
        .await;
    assert_eq!(cond(&r).as_deref(), Some("bad-request"));

    // The configured roster size: the third new item is refused, updates still pass.
    for j in ["x@example.com", "y@example.com"] {
        let (r, _) = a.set(&format!("<item jid='{j}'/>")).await;
        assert_eq!(r.attr("type"), Some("result"));
    }
    let (r, _) = a.set("<item jid='z@example.com'/>").await;
    assert_eq!(cond(&r).as_deref(), Some("resource-constraint"));
    let (r, _) = a.set("<item jid='y@example.com' name='Y'/>").await;
    assert_eq!(r.attr("type"), Some("result"));
}

#[tokio::test]
async fn module_advertises_roster_and_versioning() {
    let m = RosterModule::default();
    assert_eq!(m.features(), vec![R]);
    let f = m.session_features();
    assert_eq!(f, vec![tern_roster::stream_feature()]);
    assert!(f[0].is("ver", "urn:xmpp:features:rosterver"));
}
