//! Helpers for the pubsub end-to-end tests: logged-in clients that announce XEP-0115
//! capabilities and answer the server's disco#info queries about them, and mutual presence
//! subscriptions established over the wire.

#![allow(dead_code)]

use minidom::Element;
use tern_pubsub::caps::compute_ver;
use tern_router::xml::BuilderExt;
use tern_testkit::{RawClient, TestServer};

pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub const NS_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
pub const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub const NS_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const NS_INFO: &str = "http://jabber.org/protocol/disco#info";

/// A client plus the disco#info it answers with.
pub struct Peer {
    pub c: RawClient,
    pub jid: String,
    disco: Element,
    next_id: u32,
    /// Elements that arrived while waiting for something else, checked first by later waits.
    backlog: Vec<Element>,
}

/// Starts a server with alice, bob and carol.
pub async fn server_with(tweak: impl FnOnce(&mut tern_server::Config)) -> TestServer {
    let s = TestServer::start_with(tweak).await.unwrap();
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, "pw").await.unwrap();
    }
    s
}

/// The disco#info of a client with these +notify interests.
fn disco(notify: &[&str]) -> Element {
    let mut x = format!(
        "<query xmlns='{NS_INFO}'><identity category='client' type='pc' name='tern-test'/>\
         <feature var='{NS_INFO}'/>"
    );
    for n in notify {
        x.push_str(&format!("<feature var='{n}+notify'/>"));
    }
    x.push_str("</query>");
    x.parse().unwrap()
}

impl Peer {
    /// Logs in (no presence sent yet).
    pub async fn login(s: &TestServer, user: &str, res: &str, notify: &[&str]) -> Peer {
        let c = RawClient::login(s, user, "pw", res).await.unwrap();
        Peer {
            c,
            jid: format!("{user}@localhost/{res}"),
            disco: disco(notify),
            next_id: 0,
            backlog: Vec::new(),
        }
    }

    /// Sends available presence with caps.
    pub async fn online(&mut self) {
        let ver = compute_ver(&self.disco);
        self.send(&format!(
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='urn:tern:test' ver='{ver}'/></presence>"
        ))
        .await;
    }

    pub async fn send(&mut self, xml: &str) {
        self.c.send_str(xml).await.unwrap();
    }

    /// Answers a caps disco#info query; true if `e` was one.
    async fn answer(&mut self, e: &Element) -> bool {
        let Some(q) = e.get_child("query", NS_INFO) else {
            return false;
        };
        if e.name() != "iq" || e.attr("type") != Some("get") {
            return false;
        }
        let mut reply = self.disco.clone();
        if let Some(node) = q.attr("node") {
            tern_router::xml::set_attr(&mut reply, "node", Some(node));
        }
        let mut iq = Element::builder("iq", "jabber:client")
            .a("type", "result")
            .a("id", e.attr("id").unwrap_or(""))
            .a("to", e.attr("from").unwrap_or(""))
            .build();
        iq.append_child(reply);
        self.c.send(&iq).await.unwrap();
        true
    }

    /// Waits for an element matching `pred`, answering caps queries meanwhile.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Element) -> bool) -> Element {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        loop {
            let e = self
                .c
                .next()
                .await
                .unwrap_or_else(|err| panic!("{}: waiting for {what}: {err}", self.jid));
            if self.answer(&e).await {
                continue;
            }
            if pred(&e) {
                return e;
            }
            self.backlog.push(e);
        }
    }

    /// True if nothing matching arrives within `ms` (caps queries are answered meanwhile).
    pub async fn quiet(&mut self, ms: u64, pred: impl Fn(&Element) -> bool) -> bool {
        if self.backlog.iter().any(&pred) {
            return false;
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(ms);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return true;
            }
            match tokio::time::timeout(left, self.c.next()).await {
                Err(_) => return true,
                Ok(Err(e)) => panic!("{e}"),
                Ok(Ok(e)) => {
                    if self.answer(&e).await {
                        continue;
                    }
                    if pred(&e) {
                        return false;
                    }
                    self.backlog.push(e);
                }
            }
        }
    }

    /// Sends an IQ (`{id}` in `xml` is replaced by a fresh id) and returns its response.
    pub async fn iq(&mut self, xml: &str) -> Element {
        self.next_id += 1;
        let id = format!("t{}", self.next_id);
        self.send(&xml.replace("{id}", &id)).await;
        let want = id.clone();
        self.expect(&format!("response {id}"), move |e| {
            e.name() == "iq" && e.attr("id") == Some(want.as_str())
        })
        .await
    }

    /// Like [`Peer::iq`] but fails unless the response is a result.
    pub async fn ok(&mut self, xml: &str) -> Element {
        let r = self.iq(xml).await;
        assert_eq!(r.attr("type"), Some("result"), "{}", to_string(&r));
        r
    }
}

pub fn to_string(e: &Element) -> String {
    let mut v = Vec::new();
    e.write_to(&mut v).unwrap();
    String::from_utf8(v).unwrap()
}

/// The stanza error condition and pubsub application condition of an error response.
pub fn error_of(e: &Element) -> (String, Option<String>) {
    assert_eq!(e.attr("type"), Some("error"), "{}", to_string(e));
    let err = e.get_child("error", "jabber:client").expect("error child");
    let cond = err
        .children()
        .find(|c| c.ns() == NS_STANZAS && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_default();
    let app = err
        .children()
        .find(|c| c.ns() == NS_ERRORS)
        .map(|c| c.name().to_owned());
    (cond, app)
}

/// Whether `e` is a pubsub event message about `node`.
pub fn is_event(e: &Element, node: &str) -> bool {
    e.name() == "message"
        && e.get_child("event", NS_EVENT)
            .and_then(|ev| ev.children().next())
            .and_then(|c| c.attr("node"))
            == Some(node)
}

/// The `<items/>` of an event message.
pub fn event_items(e: &Element) -> &Element {
    e.get_child("event", NS_EVENT)
        .and_then(|ev| ev.get_child("items", NS_EVENT))
        .expect("items event")
}

/// Makes `a` and `b` subscribed to each other's presence, through two short-lived sessions
/// (subscription requests reach available resources only, RFC 6121 §3.1.3).
pub async fn befriend(s: &TestServer, a: &str, b: &str) {
    let mut x = Peer::login(s, a, "setup", &[]).await;
    let mut y = Peer::login(s, b, "setup", &[]).await;
    x.send("<presence/>").await;
    y.send("<presence/>").await;
    let (aj, bj) = (format!("{a}@localhost"), format!("{b}@localhost"));
    x.send(&format!("<presence to='{bj}' type='subscribe'/>"))
        .await;
    y.expect("subscribe", |e| {
        e.name() == "presence" && e.attr("type") == Some("subscribe")
    })
    .await;
    y.send(&format!("<presence to='{aj}' type='subscribed'/>"))
        .await;
    x.expect("subscribed", |e| {
        e.name() == "presence" && e.attr("type") == Some("subscribed")
    })
    .await;
    y.send(&format!("<presence to='{aj}' type='subscribe'/>"))
        .await;
    x.expect("subscribe", |e| {
        e.name() == "presence" && e.attr("type") == Some("subscribe")
    })
    .await;
    x.send(&format!("<presence to='{bj}' type='subscribed'/>"))
        .await;
    y.expect("subscribed", |e| {
        e.name() == "presence" && e.attr("type") == Some("subscribed")
    })
    .await;
    x.send("<presence type='unavailable'/>").await;
    y.send("<presence type='unavailable'/>").await;
    x.quiet(100, |_| false).await;
}

pub fn bare(full: &str) -> String {
    full.split('/').next().unwrap().to_owned()
}

/// A publish IQ with optional publish-options fields.
pub fn publish(node: &str, id: &str, payload: &str, options: &[(&str, &str)]) -> String {
    let mut x = format!(
        "<iq type='set' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'><item id='{id}'>{payload}</item></publish>"
    );
    if !options.is_empty() {
        x.push_str("<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>");
        for (k, v) in options {
            x.push_str(&format!("<field var='{k}'><value>{v}</value></field>"));
        }
        x.push_str("</x></publish-options>");
    }
    x.push_str("</pubsub></iq>");
    x
}
