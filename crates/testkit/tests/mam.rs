//! XEP-0313 message archive end to end: XEP-0359 stanza ids on delivery, XEP-0059 paging in
//! both directions, the filters of §4.1, preferences (XEP-0441), XEP-0334 hints, access
//! control, and persistence across a restart on SQLite.

use std::time::{Duration, Instant};

use minidom::Element;
use tern_router::time::{format_micros, parse_datetime};
use tern_testkit::{RawClient, TestServer};

const MAM: &str = "urn:xmpp:mam:2";
const SID: &str = "urn:xmpp:sid:0";
const RSM: &str = "http://jabber.org/protocol/rsm";
const FWD: &str = "urn:xmpp:forward:0";
const DELAY: &str = "urn:xmpp:delay";
const CLIENT: &str = "jabber:client";
const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// One answered query: the results in the order received, and the `<fin/>`.
struct Page {
    results: Vec<Element>,
    fin: Element,
}

impl Page {
    fn ids(&self) -> Vec<String> {
        self.results
            .iter()
            .map(|m| {
                m.get_child("result", MAM)
                    .unwrap()
                    .attr("id")
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }
    fn inner(m: &Element) -> &Element {
        m.get_child("result", MAM)
            .and_then(|r| r.get_child("forwarded", FWD))
            .and_then(|f| f.get_child("message", CLIENT))
            .expect("forwarded message")
    }
    fn bodies(&self) -> Vec<String> {
        self.results
            .iter()
            .map(|m| {
                Self::inner(m)
                    .get_child("body", CLIENT)
                    .map(|b| b.text())
                    .unwrap_or_default()
            })
            .collect()
    }
    fn stamps(&self) -> Vec<i64> {
        self.results
            .iter()
            .map(|m| {
                let d = m
                    .get_child("result", MAM)
                    .and_then(|r| r.get_child("forwarded", FWD))
                    .and_then(|f| f.get_child("delay", DELAY))
                    .expect("delay");
                parse_datetime(d.attr("stamp").unwrap()).expect("XEP-0082 stamp")
            })
            .collect()
    }
    fn complete(&self) -> bool {
        self.fin.attr("complete") == Some("true")
    }
    fn set(&self, name: &str) -> Option<Element> {
        self.fin
            .get_child("set", RSM)?
            .get_child(name, RSM)
            .cloned()
    }
    fn first(&self) -> Option<String> {
        self.set("first").map(|e| e.text())
    }
    fn last(&self) -> Option<String> {
        self.set("last").map(|e| e.text())
    }
}

fn field(var: &str, values: &[&str]) -> String {
    let v: String = values
        .iter()
        .map(|v| format!("<value>{v}</value>"))
        .collect();
    format!("<field var='{var}'>{v}</field>")
}

fn form(fields: &[String]) -> String {
    if fields.is_empty() {
        return String::new();
    }
    format!(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>{}</x>",
        fields.concat()
    )
}

/// Sends an IQ and waits for its answer, skipping everything else.
async fn iq(c: &mut RawClient, id: &str, xml: &str) -> Element {
    c.send_str(xml).await.unwrap();
    c.expect(&format!("iq {id}"), |e| {
        e.name() == "iq" && e.attr("id") == Some(id)
    })
    .await
    .unwrap()
}

/// The defined condition of an error reply.
fn condition(e: &Element) -> String {
    assert_eq!(e.attr("type"), Some("error"), "{e:?}");
    e.get_child("error", CLIENT)
        .and_then(|er| {
            er.children()
                .find(|c| c.ns() == STANZAS && c.name() != "text")
        })
        .map(|c| c.name().to_owned())
        .unwrap_or_default()
}

/// Runs a query (`to` None: the own archive) and returns the raw IQ answer with the results.
async fn query_raw(
    c: &mut RawClient,
    id: &str,
    to: Option<&str>,
    inner: &str,
) -> (Vec<Element>, Element) {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    c.send_str(&format!(
        "<iq type='set' id='{id}'{to}><query xmlns='{MAM}' queryid='q-{id}'>{inner}</query></iq>"
    ))
    .await
    .unwrap();
    let mut results = Vec::new();
    loop {
        let e = c.next().await.unwrap();
        if e.name() == "iq" && e.attr("id") == Some(id) {
            return (results, e);
        }
        if let Some(r) = e.get_child("result", MAM) {
            assert_eq!(r.attr("queryid"), Some(format!("q-{id}").as_str()));
            assert_eq!(
                e.attr("to"),
                c.jid.as_deref(),
                "results go to the requesting resource"
            );
            results.push(e);
        }
    }
}

/// Runs a query on the own archive that must succeed.
async fn query(c: &mut RawClient, id: &str, fields: &[String], rsm: &str, extra: &str) -> Page {
    let set = if rsm.is_empty() {
        String::new()
    } else {
        format!("<set xmlns='{RSM}'>{rsm}</set>")
    };
    let (results, iq) = query_raw(c, id, None, &format!("{}{set}{extra}", form(fields))).await;
    assert_eq!(iq.attr("type"), Some("result"), "{iq:?}");
    let fin = iq.get_child("fin", MAM).expect("fin").clone();
    Page { results, fin }
}

fn stanza_ids(m: &Element, by: &str) -> Vec<String> {
    m.children()
        .filter(|c| c.is("stanza-id", SID) && c.attr("by") == Some(by))
        .map(|c| c.attr("id").unwrap().to_owned())
        .collect()
}

async fn users(s: &TestServer, names: &[&str]) {
    for n in names {
        s.add_user(n, "pw").await.unwrap();
    }
}

async fn online(s: &TestServer, user: &str) -> RawClient {
    online_as(s, user, "r").await
}

async fn online_as(s: &TestServer, user: &str, resource: &str) -> RawClient {
    let mut c = RawClient::login(s, user, "pw", resource).await.unwrap();
    c.send_str("<presence/>").await.unwrap();
    // The session handles stanzas in order: once this ping is answered, it is available.
    let r = iq(
        &mut c,
        "sync",
        "<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    c
}

#[tokio::test]
async fn stanza_id_equals_archive_id_and_discovery() {
    let s = TestServer::start().await.unwrap();
    users(&s, &["alice", "bob"]).await;
    let mut bob = online(&s, "bob").await;
    let mut alice = RawClient::login(&s, "alice", "pw", "a").await.unwrap();

    let info = iq(&mut alice, "d1", "<iq type='get' id='d1' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let vars: Vec<_> = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap()
        .children()
        .filter_map(|f| f.attr("var"))
        .collect();
    for f in [MAM, "urn:xmpp:mam:2#extended", SID] {
        assert!(vars.contains(&f), "{f} missing from {vars:?}");
    }
    let md = iq(
        &mut alice,
        "md0",
        &format!("<iq type='get' id='md0'><metadata xmlns='{MAM}'/></iq>"),
    )
    .await;
    let md = md.get_child("metadata", MAM).expect("metadata");
    assert!(
        md.children().next().is_none(),
        "empty archive: empty metadata"
    );
    let f = iq(
        &mut alice,
        "f1",
        &format!("<iq type='get' id='f1'><query xmlns='{MAM}'/></iq>"),
    )
    .await;
    let x = f
        .get_child("query", MAM)
        .and_then(|q| q.get_child("x", "jabber:x:data"))
        .expect("form");
    let fields: Vec<_> = x.children().filter_map(|c| c.attr("var")).collect();
    for v in [
        "FORM_TYPE",
        "with",
        "start",
        "end",
        "before-id",
        "after-id",
        "ids",
    ] {
        assert!(fields.contains(&v), "{v} missing from {fields:?}");
    }

    // A forged stanza-id claiming bob's archive is replaced (XEP-0359 §5).
    alice
        .send_str(&format!("<message to='bob@localhost' type='chat' id='m1'><body>hello</body><stanza-id xmlns='{SID}' by='bob@localhost' id='forged'/></message>"))
        .await
        .unwrap();
    let m = bob
        .expect("message", |e| e.name() == "message")
        .await
        .unwrap();
    let sid = stanza_ids(&m, "bob@localhost");
    assert_eq!(sid.len(), 1, "{m:?}");
    assert_ne!(sid[0], "forged");
    assert!(
        stanza_ids(&m, "alice@localhost").is_empty(),
        "the sender's archive id is not shown to the contact"
    );

    let p = query(&mut bob, "b1", &[], "", "").await;
    assert_eq!(p.ids(), sid, "the stanza-id is the archive id");
    assert_eq!(p.bodies(), ["hello"]);
    assert_eq!(
        Page::inner(&p.results[0]).attr("from"),
        Some("alice@localhost/a")
    );
    assert!(p.complete());
    assert_eq!(
        (p.first(), p.last()),
        (Some(sid[0].clone()), Some(sid[0].clone()))
    );
    assert_eq!(p.set("count").map(|c| c.text()).as_deref(), Some("1"));

    // A note to oneself is archived once, and found with `with` = own JID.
    alice
        .send_str("<message to='alice@localhost' type='chat' id='n1'><body>note</body></message>")
        .await
        .unwrap();
    let p = query(&mut alice, "a1", &[], "", "").await;
    assert_eq!(p.bodies(), ["hello", "note"]);
    let p = query(
        &mut alice,
        "a2",
        &[field("with", &["alice@localhost"])],
        "",
        "",
    )
    .await;
    assert_eq!(p.bodies(), ["note"]);
    let p = query(
        &mut alice,
        "a3",
        &[field("with", &["bob@localhost"])],
        "",
        "",
    )
    .await;
    assert_eq!(p.bodies(), ["hello"]);
    let all = query(&mut alice, "a4", &[], "", "").await.ids();

    let md = iq(
        &mut alice,
        "md1",
        &format!("<iq type='get' id='md1'><metadata xmlns='{MAM}'/></iq>"),
    )
    .await;
    let md = md.get_child("metadata", MAM).unwrap();
    assert_eq!(
        md.get_child("start", MAM).unwrap().attr("id"),
        Some(all[0].as_str())
    );
    assert_eq!(
        md.get_child("end", MAM).unwrap().attr("id"),
        Some(all[1].as_str())
    );
    assert!(md
        .get_child("end", MAM)
        .unwrap()
        .attr("timestamp")
        .is_some_and(|t| parse_datetime(t).is_some()));
    s.stop().await;
}

#[tokio::test]
async fn received_carbon_carries_the_archive_id() {
    let s = TestServer::start().await.unwrap();
    users(&s, &["alice", "bob"]).await;
    let mut phone = online_as(&s, "bob", "phone").await;
    let mut laptop = online_as(&s, "bob", "laptop").await;
    let r = iq(
        &mut laptop,
        "c1",
        "<iq type='set' id='c1'><enable xmlns='urn:xmpp:carbons:2'/></iq>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    let mut alice = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    alice
        .send_str("<message to='bob@localhost/phone' type='chat' id='c'><body>hi</body></message>")
        .await
        .unwrap();
    let m = phone
        .expect("message", |e| e.attr("id") == Some("c"))
        .await
        .unwrap();
    let sid = stanza_ids(&m, "bob@localhost");
    assert_eq!(sid.len(), 1);
    // The archive id is stamped before carbons copies the message (XEP-0313 §3.5).
    let copy = laptop
        .expect("carbon", |e| e.has_child("received", "urn:xmpp:carbons:2"))
        .await
        .unwrap();
    let inner = copy
        .get_child("received", "urn:xmpp:carbons:2")
        .and_then(|r| r.get_child("forwarded", FWD))
        .and_then(|f| f.get_child("message", CLIENT))
        .expect("forwarded message");
    assert_eq!(stanza_ids(inner, "bob@localhost"), sid);
    s.stop().await;
}

#[tokio::test]
async fn thousand_messages_paged_forward_and_backward_on_sqlite() {
    let s = TestServer::start_with(|c| {
        c.storage.backend = "sqlite".into();
        c.storage.synchronous = "normal".into();
        c.c2s.max_bytes_per_second = 100_000_000;
    })
    .await
    .unwrap();
    users(&s, &["alice", "bob"]).await;
    let mut bob = online(&s, "bob").await;
    let mut alice = RawClient::login(&s, "alice", "pw", "a").await.unwrap();

    // 1,000 messages in 10 batches of 100; bob drains each batch, so no queue overflows.
    let t0 = Instant::now();
    let mut seen = Vec::new();
    for batch in 0..10 {
        let xml: String = (0..100)
            .map(|i| {
                format!(
                    "<message to='bob@localhost' type='chat' id='m{}'><body>n{}</body></message>",
                    batch * 100 + i,
                    batch * 100 + i
                )
            })
            .collect();
        alice.send_str(&xml).await.unwrap();
        for i in 0..100 {
            let m = bob
                .expect("message", |e| e.name() == "message")
                .await
                .unwrap();
            assert_eq!(m.attr("id"), Some(format!("m{}", batch * 100 + i).as_str()));
            let sid = stanza_ids(&m, "bob@localhost");
            assert_eq!(sid.len(), 1);
            seen.push(sid[0].clone());
        }
    }
    let inserted = t0.elapsed();

    // Forward, 100 at a time: complete only on the tenth page.
    let t1 = Instant::now();
    let mut forward = Vec::new();
    let mut after = String::new();
    for page in 0..10 {
        let p = query(
            &mut bob,
            &format!("f{page}"),
            &[],
            &format!("<max>100</max>{after}"),
            "",
        )
        .await;
        assert_eq!(p.results.len(), 100);
        assert_eq!(p.complete(), page == 9, "page {page}");
        let ids = p.ids();
        assert_eq!(
            (p.first(), p.last()),
            (Some(ids[0].clone()), Some(ids[99].clone()))
        );
        assert_eq!(p.set("count").map(|c| c.text()).as_deref(), Some("1000"));
        if page == 0 {
            assert_eq!(p.set("first").unwrap().attr("index"), Some("0"));
        }
        assert_eq!(p.bodies()[0], format!("n{}", page * 100));
        after = format!("<after>{}</after>", p.last().unwrap());
        forward.extend(ids);
    }
    assert_eq!(
        forward, seen,
        "forward pages are the archive in arrival order"
    );
    let p = query(&mut bob, "f10", &[], &format!("<max>100</max>{after}"), "").await;
    assert!(p.results.is_empty() && p.complete() && p.first().is_none() && p.last().is_none());

    // Backward from the end (empty <before/>): complete only on the page reaching the start.
    let mut backward: Vec<String> = Vec::new();
    let mut before = "<before/>".to_owned();
    for page in 0..10 {
        let p = query(
            &mut bob,
            &format!("b{page}"),
            &[],
            &format!("<max>100</max>{before}"),
            "",
        )
        .await;
        assert_eq!(p.results.len(), 100);
        assert_eq!(p.complete(), page == 9, "page {page}");
        if page == 0 {
            assert_eq!(p.set("first").unwrap().attr("index"), Some("900"));
        }
        let mut ids = p.ids();
        assert_eq!(
            p.first(),
            Some(ids[0].clone()),
            "results stay oldest first within a page"
        );
        before = format!("<before>{}</before>", p.first().unwrap());
        ids.extend(backward);
        backward = ids;
    }
    assert_eq!(backward, seen);
    let queried = t1.elapsed();

    // A flipped page: the same ten items, newest first.
    let p = query(
        &mut bob,
        "flip",
        &[],
        "<max>10</max><before/>",
        "<flip-page/>",
    )
    .await;
    let mut expect: Vec<String> = seen[990..].to_vec();
    expect.reverse();
    assert_eq!(p.ids(), expect);
    // Asking for more than the server's page limit (250) is clamped.
    let p = query(&mut bob, "big", &[], "<max>1000</max>", "").await;
    assert_eq!(p.results.len(), 250);
    assert!(!p.complete());
    // The sender's archive holds the same thousand messages under its own ids.
    let p = query(
        &mut alice,
        "alice",
        &[field("with", &["bob@localhost"])],
        "<max>100</max><before/>",
        "",
    )
    .await;
    assert_eq!(p.bodies().last().map(String::as_str), Some("n999"));
    eprintln!(
        "mam: 1000 messages sent, archived twice and delivered in {inserted:?}; 20 pages of 100 queried in {queried:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn filters_by_with_time_and_ids_and_errors() {
    let s = TestServer::start().await.unwrap();
    users(&s, &["alice", "bob", "carol"]).await;
    let mut alice = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    for (i, to) in [
        "bob@localhost",
        "carol@localhost",
        "bob@localhost/phone",
        "bob@localhost",
    ]
    .iter()
    .enumerate()
    {
        alice
            .send_str(&format!(
                "<message to='{to}' type='chat'><body>m{}</body></message>",
                i + 1
            ))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let all = query(&mut alice, "all", &[], "", "").await;
    assert_eq!(all.bodies(), ["m1", "m2", "m3", "m4"]);
    let id = all.ids();
    let t = all.stamps();

    let p = query(
        &mut alice,
        "w1",
        &[field("with", &["bob@localhost"])],
        "",
        "",
    )
    .await;
    assert_eq!(p.bodies(), ["m1", "m3", "m4"]);
    let p = query(
        &mut alice,
        "w2",
        &[field("with", &["carol@localhost"])],
        "",
        "",
    )
    .await;
    assert_eq!(p.bodies(), ["m2"]);
    // A full JID matches only messages to or from exactly it (§4.1.1).
    let p = query(
        &mut alice,
        "w3",
        &[field("with", &["bob@localhost/phone"])],
        "",
        "",
    )
    .await;
    assert_eq!(p.bodies(), ["m3"]);
    assert!(p.complete());

    // start/end are inclusive; stamps have millisecond precision, so end is the next millisecond.
    let ms = |micros: i64| format_micros(micros);
    let p = query(&mut alice, "t1", &[field("start", &[&ms(t[1])])], "", "").await;
    assert_eq!(p.bodies(), ["m2", "m3", "m4"]);
    let p = query(
        &mut alice,
        "t2",
        &[field("end", &[&ms(t[1] + 1000)])],
        "",
        "",
    )
    .await;
    assert_eq!(p.bodies(), ["m1", "m2"]);
    let p = query(
        &mut alice,
        "t3",
        &[
            field("start", &[&ms(t[1])]),
            field("end", &[&ms(t[2] + 1000)]),
        ],
        "",
        "",
    )
    .await;
    assert_eq!(p.bodies(), ["m2", "m3"]);
    // An offset in the timestamp is the same instant (XEP-0082).
    let shifted = ms(t[3] + 2 * 3_600_000_000).replace('Z', "+02:00");
    let p = query(&mut alice, "t4", &[field("start", &[&shifted])], "", "").await;
    assert_eq!(p.bodies(), ["m4"]);

    // The #extended fields.
    let p = query(&mut alice, "i1", &[field("ids", &[&id[0], &id[2]])], "", "").await;
    assert_eq!(p.bodies(), ["m1", "m3"]);
    let p = query(
        &mut alice,
        "i2",
        &[field("after-id", &[&id[0]]), field("before-id", &[&id[3]])],
        "",
        "",
    )
    .await;
    assert_eq!(p.bodies(), ["m2", "m3"]);
    let p = query(&mut alice, "i3", &[field("after-id", &[&id[1]])], "", "").await;
    assert_eq!(p.bodies(), ["m3", "m4"]);
    // A form id and an RSM id on the same side: the narrower one applies.
    let p = query(
        &mut alice,
        "i4",
        &[field("after-id", &[&id[0]])],
        &format!("<after>{}</after>", id[1]),
        "",
    )
    .await;
    assert_eq!(p.bodies(), ["m3", "m4"]);
    // Backward paging inside a filter.
    let p = query(
        &mut alice,
        "i5",
        &[field("with", &["bob@localhost"])],
        "<max>2</max><before/>",
        "",
    )
    .await;
    assert_eq!(p.bodies(), ["m3", "m4"]);
    assert!(!p.complete());
    let p = query(
        &mut alice,
        "i6",
        &[field("with", &["bob@localhost"])],
        &format!("<max>2</max><before>{}</before>", id[2]),
        "",
    )
    .await;
    assert_eq!(p.bodies(), ["m1"]);
    assert!(p.complete());

    // Errors.
    let cases = [
        (form(&[field("after-id", &["nope"])]), "item-not-found"),
        (form(&[field("before-id", &["nope"])]), "item-not-found"),
        (form(&[field("ids", &[&id[0], "nope"])]), "item-not-found"),
        (
            format!("<set xmlns='{RSM}'><after>nope</after></set>"),
            "item-not-found",
        ),
        (
            format!("<set xmlns='{RSM}'><before>nope</before></set>"),
            "item-not-found",
        ),
        (
            form(&[field("start", &["2010-02-30T00:00:00Z"])]),
            "bad-request",
        ),
        (form(&[field("end", &["last tuesday"])]), "bad-request"),
        (form(&[field("with", &["@bad"])]), "bad-request"),
        (
            format!("<set xmlns='{RSM}'><max>many</max></set>"),
            "bad-request",
        ),
        (
            form(&[field("include-groupchat", &["true"])]),
            "feature-not-implemented",
        ),
    ];
    for (n, (inner, want)) in cases.into_iter().enumerate() {
        let (results, reply) = query_raw(&mut alice, &format!("e{n}"), None, &inner).await;
        assert!(results.is_empty(), "no results before an error");
        assert_eq!(condition(&reply), want, "{inner}");
    }

    // Only the owner reads an archive.
    let mut bob = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
    let (results, reply) = query_raw(&mut bob, "x1", Some("alice@localhost"), "").await;
    assert!(results.is_empty());
    assert_eq!(condition(&reply), "forbidden");
    let r = iq(
        &mut bob,
        "x2",
        &format!("<iq type='get' id='x2' to='alice@localhost'><prefs xmlns='{MAM}'/></iq>"),
    )
    .await;
    assert_eq!(condition(&r), "forbidden");
    // bob's own archive holds what he received while offline.
    let p = query(&mut bob, "own", &[], "", "").await;
    assert_eq!(p.bodies(), ["m1", "m3", "m4"]);
    s.stop().await;
}

async fn set_prefs(c: &mut RawClient, id: &str, prefs: &str) -> Element {
    let r = iq(c, id, &format!("<iq type='set' id='{id}'>{prefs}</iq>")).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    r.get_child("prefs", MAM).expect("applied prefs").clone()
}

fn jids(prefs: &Element, list: &str) -> Vec<String> {
    prefs
        .get_child(list, MAM)
        .expect("list present")
        .children()
        .map(|j| j.text())
        .collect()
}

#[tokio::test]
async fn preferences_never_always_roster() {
    let s = TestServer::start().await.unwrap();
    users(&s, &["alice", "bob", "carol", "dave"]).await;
    let mut alice = online(&s, "alice").await;

    let r = iq(
        &mut alice,
        "p0",
        &format!("<iq type='get' id='p0'><prefs xmlns='{MAM}'/></iq>"),
    )
    .await;
    let p = r.get_child("prefs", MAM).unwrap();
    assert_eq!(p.attr("default"), Some("always"), "the configured default");
    assert!(jids(p, "always").is_empty() && jids(p, "never").is_empty());

    // never, except carol.
    let p = set_prefs(&mut alice, "p1", &format!("<prefs xmlns='{MAM}' default='never'><always><jid>carol@localhost</jid></always><never/></prefs>")).await;
    assert_eq!(p.attr("default"), Some("never"));
    assert_eq!(jids(&p, "always"), ["carol@localhost"]);
    alice.send_str("<message to='bob@localhost' type='chat'><body>p-bob</body></message><message to='carol@localhost/x' type='chat'><body>p-carol</body></message>").await.unwrap();

    // roster: bob is on alice's roster, dave is not.
    let r = iq(&mut alice, "r1", "<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'/></query></iq>").await;
    assert_eq!(r.attr("type"), Some("result"));
    let p = set_prefs(
        &mut alice,
        "p2",
        &format!("<prefs xmlns='{MAM}' default='roster'/>"),
    )
    .await;
    assert_eq!(
        (p.attr("default"), jids(&p, "always").len()),
        (Some("roster"), 0)
    );
    alice.send_str("<message to='bob@localhost' type='chat'><body>r-bob</body></message><message to='dave@localhost' type='chat'><body>r-dave</body></message>").await.unwrap();

    // always, but never bob, in either direction.
    set_prefs(
        &mut alice,
        "p3",
        &format!(
            "<prefs xmlns='{MAM}' default='always'><never><jid>bob@localhost</jid></never></prefs>"
        ),
    )
    .await;
    alice
        .send_str("<message to='bob@localhost' type='chat'><body>a-bob</body></message>")
        .await
        .unwrap();
    let mut bob = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
    bob.send_str(
        "<message to='alice@localhost' type='chat' id='from-bob'><body>bob-in</body></message>",
    )
    .await
    .unwrap();
    let m = alice
        .expect("bob's message", |e| e.attr("id") == Some("from-bob"))
        .await
        .unwrap();
    assert!(
        stanza_ids(&m, "alice@localhost").is_empty(),
        "not archived, so no stanza-id: {m:?}"
    );
    let mut dave = RawClient::login(&s, "dave", "pw", "d").await.unwrap();
    dave.send_str(
        "<message to='alice@localhost' type='chat' id='from-dave'><body>dave-in</body></message>",
    )
    .await
    .unwrap();
    let m = alice
        .expect("dave's message", |e| e.attr("id") == Some("from-dave"))
        .await
        .unwrap();
    assert_eq!(stanza_ids(&m, "alice@localhost").len(), 1);

    let p = query(&mut alice, "q", &[], "", "").await;
    assert_eq!(p.bodies(), ["p-carol", "r-bob", "dave-in"]);

    // Bad preferences are refused and change nothing.
    let r = iq(
        &mut alice,
        "p4",
        &format!("<iq type='set' id='p4'><prefs xmlns='{MAM}' default='sometimes'/></iq>"),
    )
    .await;
    assert_eq!(condition(&r), "bad-request");
    let r = iq(
        &mut alice,
        "p5",
        &format!("<iq type='get' id='p5'><prefs xmlns='{MAM}'/></iq>"),
    )
    .await;
    let p = r.get_child("prefs", MAM).unwrap();
    assert_eq!(
        (p.attr("default"), jids(p, "never")),
        (Some("always"), vec!["bob@localhost".to_owned()])
    );
    s.stop().await;
}

#[tokio::test]
async fn hints_chat_states_and_types() {
    let s = TestServer::start().await.unwrap();
    users(&s, &["alice", "bob"]).await;
    let mut bob = online(&s, "bob").await;
    let mut alice = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    let sent = [
        (
            "h1",
            "chat",
            "<body>secret</body><no-store xmlns='urn:xmpp:hints'/>",
            false,
        ),
        (
            "h2",
            "chat",
            "<composing xmlns='http://jabber.org/protocol/chatstates'/>",
            false,
        ),
        ("h3", "chat", "<body>plain</body>", true),
        (
            "h4",
            "chat",
            "<store xmlns='urn:xmpp:hints'/><x xmlns='urn:example:payload'/>",
            true,
        ),
        ("h5", "headline", "<body>news</body>", false),
        (
            "h6",
            "normal",
            "<body>ephemeral</body><no-permanent-store xmlns='urn:xmpp:hints'/>",
            false,
        ),
        ("h7", "normal", "<body>normal</body>", true),
    ];
    for (id, type_, payload, _) in sent {
        alice
            .send_str(&format!(
                "<message to='bob@localhost' type='{type_}' id='{id}'>{payload}</message>"
            ))
            .await
            .unwrap();
    }
    for (id, _, _, archived) in sent {
        let m = bob
            .expect(id, |e| e.name() == "message" && e.attr("id") == Some(id))
            .await
            .unwrap();
        assert_eq!(
            stanza_ids(&m, "bob@localhost").len(),
            usize::from(archived),
            "{id}: {m:?}"
        );
    }
    let want: Vec<String> = sent
        .iter()
        .filter(|s| s.3)
        .map(|s| s.0.to_owned())
        .collect();
    for c in [&mut bob, &mut alice] {
        let p = query(c, "q", &[], "", "").await;
        let got: Vec<String> = p
            .results
            .iter()
            .map(|m| Page::inner(m).attr("id").unwrap().to_owned())
            .collect();
        assert_eq!(got, want);
    }
    s.stop().await;
}

#[tokio::test]
async fn archive_and_prefs_survive_restart_on_sqlite() {
    let mut s = TestServer::start_with(|c| c.storage.backend = "sqlite".into())
        .await
        .unwrap();
    users(&s, &["alice", "bob"]).await;
    let mut alice = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    for i in 1..=3 {
        alice
            .send_str(&format!(
                "<message to='bob@localhost' type='chat'><body>k{i}</body></message>"
            ))
            .await
            .unwrap();
    }
    let before = query(&mut alice, "q1", &[], "", "").await;
    assert_eq!(before.bodies(), ["k1", "k2", "k3"]);
    set_prefs(&mut alice, "p", &format!("<prefs xmlns='{MAM}' default='roster'><always><jid>bob@localhost</jid></always></prefs>")).await;
    drop(alice);

    s.restart().await.unwrap();

    let mut alice = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    let after = query(&mut alice, "q2", &[], "", "").await;
    assert_eq!(after.ids(), before.ids());
    assert_eq!(after.bodies(), ["k1", "k2", "k3"]);
    assert_eq!(after.stamps(), before.stamps());
    let r = iq(
        &mut alice,
        "g",
        &format!("<iq type='get' id='g'><prefs xmlns='{MAM}'/></iq>"),
    )
    .await;
    let p = r.get_child("prefs", MAM).unwrap();
    assert_eq!(
        (p.attr("default"), jids(p, "always")),
        (Some("roster"), vec!["bob@localhost".to_owned()])
    );
    let mut bob = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
    let p = query(&mut bob, "q3", &[], "", "").await;
    assert_eq!(p.bodies(), ["k1", "k2", "k3"]);
    s.stop().await;
}
