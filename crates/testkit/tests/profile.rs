//! XEP-0054 vcard-temp, XEP-0012 last activity and XEP-0092 disclosure end to end.

use minidom::Element;
use tern_testkit::{error_condition as condition, RawClient, TestServer};

#[tokio::test]
async fn vcard_set_get_limits_and_permissions() {
    let s = TestServer::start_with(|c| c.server.vcard_max_bytes = 2048)
        .await
        .unwrap();
    s.add_user("alice", "pw").await.unwrap();
    s.add_user("bob", "pw").await.unwrap();
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    let mut b = RawClient::login(&s, "bob", "pw", "b").await.unwrap();

    // Nothing stored: the owner gets an empty vCard, others item-not-found.
    let r = a
        .iq(
            "g0",
            "<iq type='get' id='g0'><vCard xmlns='vcard-temp'/></iq>",
        )
        .await
        .unwrap();
    assert_eq!(r.attr("type"), Some("result"));
    assert_eq!(
        r.get_child("vCard", "vcard-temp")
            .unwrap()
            .children()
            .count(),
        0
    );
    let r = b
        .iq(
            "g1",
            "<iq type='get' id='g1' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
        )
        .await
        .unwrap();
    assert_eq!(condition(&r).as_deref(), Some("item-not-found"));

    let r = a.iq("s1", "<iq type='set' id='s1'><vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><NICKNAME>al</NICKNAME></vCard></iq>").await.unwrap();
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let r = b
        .iq(
            "g2",
            "<iq type='get' id='g2' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
        )
        .await
        .unwrap();
    let v = r.get_child("vCard", "vcard-temp").unwrap();
    assert_eq!(
        v.get_child("FN", "vcard-temp").unwrap().text(),
        "Alice Liddell"
    );
    assert_eq!(r.attr("from"), Some("alice@localhost"));

    // Bob cannot change Alice's card; an oversized card is refused and the old one kept.
    let r = b.iq("s2", "<iq type='set' id='s2' to='alice@localhost'><vCard xmlns='vcard-temp'><FN>Mallory</FN></vCard></iq>").await.unwrap();
    assert_eq!(condition(&r).as_deref(), Some("forbidden"));
    let big = "x".repeat(4000);
    let r = a
        .iq(
            "s3",
            &format!(
                "<iq type='set' id='s3'><vCard xmlns='vcard-temp'><DESC>{big}</DESC></vCard></iq>"
            ),
        )
        .await
        .unwrap();
    assert_eq!(condition(&r).as_deref(), Some("not-acceptable"));
    let r = a
        .iq(
            "g3",
            "<iq type='get' id='g3'><vCard xmlns='vcard-temp'/></iq>",
        )
        .await
        .unwrap();
    assert_eq!(
        r.get_child("vCard", "vcard-temp")
            .unwrap()
            .get_child("FN", "vcard-temp")
            .unwrap()
            .text(),
        "Alice Liddell"
    );

    // An empty vCard removes it.
    let r = a
        .iq(
            "s4",
            "<iq type='set' id='s4'><vCard xmlns='vcard-temp'/></iq>",
        )
        .await
        .unwrap();
    assert_eq!(r.attr("type"), Some("result"));
    let r = b
        .iq(
            "g4",
            "<iq type='get' id='g4' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
        )
        .await
        .unwrap();
    assert_eq!(condition(&r).as_deref(), Some("item-not-found"));
}

#[tokio::test]
async fn last_activity_for_server_and_accounts() {
    let s = TestServer::start().await.unwrap();
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, "pw").await.unwrap();
    }
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    let mut b = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
    let mut c = RawClient::login(&s, "carol", "pw", "c").await.unwrap();
    a.send_str("<presence/>").await.unwrap();
    b.send_str("<presence/>").await.unwrap();
    a.befriend("alice@localhost", &mut b, "bob@localhost")
        .await
        .unwrap();

    let r = c
        .iq(
            "u",
            "<iq type='get' id='u' to='localhost'><query xmlns='jabber:iq:last'/></iq>",
        )
        .await
        .unwrap();
    assert!(r
        .get_child("query", "jabber:iq:last")
        .unwrap()
        .attr("seconds")
        .is_some());

    // Online: 0 seconds for a contact; a stranger is forbidden.
    let r = b
        .iq(
            "l1",
            "<iq type='get' id='l1' to='alice@localhost'><query xmlns='jabber:iq:last'/></iq>",
        )
        .await
        .unwrap();
    assert_eq!(
        r.get_child("query", "jabber:iq:last")
            .unwrap()
            .attr("seconds"),
        Some("0"),
        "{r:?}"
    );
    let r = c
        .iq(
            "l2",
            "<iq type='get' id='l2' to='alice@localhost'><query xmlns='jabber:iq:last'/></iq>",
        )
        .await
        .unwrap();
    assert_eq!(condition(&r).as_deref(), Some("forbidden"));

    // Alice leaves with a status: Bob sees it with the time since.
    a.send_str("<presence type='unavailable'><status>Heading home</status></presence>")
        .await
        .unwrap();
    a.send_str("</stream:stream>").await.unwrap();
    b.expect("alice gone", |e| {
        e.name() == "presence"
            && e.attr("from") == Some("alice@localhost/a")
            && e.attr("type") == Some("unavailable")
    })
    .await
    .unwrap();
    let mut answer = None;
    for i in 0..50 {
        let id = format!("l3-{i}");
        let r = b.iq(&id, &format!("<iq type='get' id='{id}' to='alice@localhost'><query xmlns='jabber:iq:last'/></iq>")).await.unwrap();
        // Until the session's end is recorded the answer is still "online" (0, no text).
        let text = r
            .get_child("query", "jabber:iq:last")
            .map(|q| q.text())
            .unwrap_or_default();
        if r.attr("type") == Some("result") && !text.is_empty() {
            answer = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = answer.expect("last activity recorded after logout");
    let q = r.get_child("query", "jabber:iq:last").unwrap();
    assert_eq!(q.text(), "Heading home");
    assert!(q.attr("seconds").unwrap().parse::<u64>().unwrap() < 10);

    // Version disclosure default: name and version, no OS.
    let r = c
        .iq(
            "v",
            "<iq type='get' id='v' to='localhost'><query xmlns='jabber:iq:version'/></iq>",
        )
        .await
        .unwrap();
    let q = r.get_child("query", "jabber:iq:version").unwrap();
    assert_eq!(
        q.get_child("name", "jabber:iq:version").unwrap().text(),
        "Tern"
    );
    assert!(q.get_child("os", "jabber:iq:version").is_none());
}

#[tokio::test]
async fn version_can_be_hidden() {
    let s = TestServer::start_with(|c| c.server.version_disclosure = "none".into())
        .await
        .unwrap();
    s.add_user("alice", "pw").await.unwrap();
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    let r = a
        .iq(
            "v",
            "<iq type='get' id='v' to='localhost'><query xmlns='jabber:iq:version'/></iq>",
        )
        .await
        .unwrap();
    assert_eq!(condition(&r).as_deref(), Some("service-unavailable"));
    let d = a.iq("d", "<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await.unwrap();
    let feats: Vec<_> = d
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap()
        .children()
        .filter_map(|f| f.attr("var"))
        .map(str::to_owned)
        .collect();
    assert!(!feats.iter().any(|f| f == "jabber:iq:version"));
    assert!(feats.iter().any(|f| f == "jabber:iq:last"));
    assert!(feats.iter().any(|f| f == "vcard-temp"));
}

#[tokio::test]
async fn contact_addresses_and_external_services() {
    let extra = tern_server::Config::parse(
        "[contact]\nabuse = [\"mailto:abuse@localhost\"]\nadmin = [\"xmpp:admin@localhost\", \"mailto:root@localhost\"]\n\
         [[external_service]]\ntype = \"stun\"\nhost = \"stun.localhost\"\n\
         [[external_service]]\ntype = \"turn\"\nhost = \"turn.localhost\"\ntransport = \"udp\"\nsecret = \"north\"\nttl_secs = 600\n",
    )
    .unwrap();
    let s = TestServer::start_with(|c| {
        c.contact = extra.contact.clone();
        c.external_services = extra.external_services.clone();
    })
    .await
    .unwrap();
    s.add_user("alice", "pw").await.unwrap();
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();

    // XEP-0157: the serverinfo form in the host's disco#info.
    let d = a.iq("d", "<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await.unwrap();
    let q = d
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert!(q
        .children()
        .any(|f| f.attr("var") == Some("urn:xmpp:extdisco:2")));
    let x = q.get_child("x", "jabber:x:data").expect("serverinfo form");
    let values = |var: &str| -> Vec<String> {
        x.children()
            .filter(|f| f.attr("var") == Some(var))
            .flat_map(|f| f.children().map(|v| v.text()))
            .collect()
    };
    assert_eq!(
        values("FORM_TYPE"),
        vec!["http://jabber.org/network/serverinfo"]
    );
    assert_eq!(values("abuse-addresses"), vec!["mailto:abuse@localhost"]);
    assert_eq!(
        values("admin-addresses"),
        vec!["xmpp:admin@localhost", "mailto:root@localhost"]
    );
    assert!(values("sales-addresses").is_empty());

    // XEP-0215: both services; the TURN one restricted, with REST credentials that verify.
    let r = a
        .iq(
            "s",
            "<iq type='get' id='s' to='localhost'><services xmlns='urn:xmpp:extdisco:2'/></iq>",
        )
        .await
        .unwrap();
    let services: Vec<&Element> = r
        .get_child("services", "urn:xmpp:extdisco:2")
        .unwrap()
        .children()
        .collect();
    assert_eq!(services.len(), 2);
    assert_eq!(
        (services[0].attr("type"), services[0].attr("port")),
        (Some("stun"), Some("3478"))
    );
    assert!(services[0].attr("password").is_none());
    let turn = services[1];
    assert_eq!(turn.attr("restricted"), Some("1"));
    let user = turn.attr("username").unwrap();
    let (expiry, jid) = user.split_once(':').unwrap();
    assert_eq!(jid, "alice@localhost");
    let expiry: u64 = expiry.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        expiry > now + 590 && expiry <= now + 601,
        "{expiry} vs {now}"
    );
    assert_eq!(
        turn.attr("password").unwrap(),
        tern_extdisco::turn_credentials("north", expiry, jid).1
    );
    assert!(turn.attr("expires").is_some());

    let r = a.iq("t", "<iq type='get' id='t' to='localhost'><services xmlns='urn:xmpp:extdisco:2' type='turn'/></iq>").await.unwrap();
    assert_eq!(
        r.get_child("services", "urn:xmpp:extdisco:2")
            .unwrap()
            .children()
            .count(),
        1
    );
    let r = a.iq("c", "<iq type='get' id='c' to='localhost'><credentials xmlns='urn:xmpp:extdisco:2'><service host='turn.localhost' type='turn'/></credentials></iq>").await.unwrap();
    assert!(r
        .get_child("credentials", "urn:xmpp:extdisco:2")
        .unwrap()
        .get_child("service", "urn:xmpp:extdisco:2")
        .unwrap()
        .attr("password")
        .is_some());
    let r = a.iq("c2", "<iq type='get' id='c2' to='localhost'><credentials xmlns='urn:xmpp:extdisco:2'><service host='stun.localhost' type='stun'/></credentials></iq>").await.unwrap();
    assert_eq!(condition(&r).as_deref(), Some("item-not-found"));
}

/// RFC 6121 §4.3.2: a probe to an offline contact is answered with its last unavailable
/// presence, status included, with a XEP-0203 delay stamp.
#[tokio::test]
async fn probe_of_offline_contact_gets_last_unavailable_with_delay() {
    let s = TestServer::start().await.unwrap();
    s.add_user("alice", "pw").await.unwrap();
    s.add_user("bob", "pw").await.unwrap();
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    let mut b = RawClient::login(&s, "bob", "pw", "b").await.unwrap();
    a.send_str("<presence/>").await.unwrap();
    b.send_str("<presence/>").await.unwrap();
    a.befriend("alice@localhost", &mut b, "bob@localhost")
        .await
        .unwrap();
    a.send_str("<presence type='unavailable'><status>gone fishing</status></presence>")
        .await
        .unwrap();
    b.expect("unavailable", |e| {
        e.name() == "presence" && e.attr("type") == Some("unavailable")
    })
    .await
    .unwrap();
    drop(b);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let mut b = RawClient::login(&s, "bob", "pw", "b2").await.unwrap();
    b.send_str("<presence/>").await.unwrap();
    let p = b
        .expect("probe answer", |e| {
            e.name() == "presence" && e.attr("from").is_some_and(|f| f.starts_with("alice@"))
        })
        .await
        .unwrap();
    assert_eq!(p.attr("type"), Some("unavailable"));
    assert_eq!(p.attr("from"), Some("alice@localhost/a"));
    assert_eq!(
        p.get_child("status", "jabber:client").map(|s| s.text()),
        Some("gone fishing".into())
    );
    let delay = p.get_child("delay", "urn:xmpp:delay").expect("delay stamp");
    assert_eq!(delay.attr("from"), Some("localhost"));
    assert!(delay.attr("stamp").is_some());
}
