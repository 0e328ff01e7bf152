//! XEP-0045 core use cases end to end: creation, entering, messages, private messages, nick
//! changes, subject, leaving, history on join, discovery.

mod common;

use common::*;
use std::time::Duration;
use tern_testkit::TestServer;

#[tokio::test]
async fn create_configure_join_talk_leave() {
    let s = TestServer::start().await.unwrap();
    let mut alice = user(&s, "alice").await;
    let mut bob = user(&s, "bob").await;

    // §10.1.1: a MUC client creates a locked room and is told so (201, 110).
    let p = join(&mut alice, "coven", "Alice", "").await;
    let c = codes(&p);
    assert!(c.contains(&201) && c.contains(&110), "{p:?}");
    let it = item(&p).unwrap();
    assert_eq!(
        (it.attr("affiliation"), it.attr("role")),
        (Some("owner"), Some("moderator"))
    );
    assert!(p
        .get_child("occupant-id", "urn:xmpp:occupant-id:0")
        .is_some());
    subject(&mut alice, "coven").await;

    // Locked until configured: others are refused with item-not-found.
    let e = join(&mut bob, "coven", "Bob", "").await;
    assert_eq!(condition(&e).as_deref(), Some("item-not-found"), "{e:?}");

    // §10.1.2: the owner accepts the defaults (instant room).
    let r = configure(&mut alice, "coven", "").await;
    assert_eq!(r.attr("type"), Some("result"));

    // Bob enters: he gets Alice's presence, then his own with 110, then the (empty) subject.
    bob.send_str(&format!(
        "<presence to='coven@{ROOMS}/Bob'><x xmlns='{MUC}'/></presence>"
    ))
    .await
    .unwrap();
    let first = bob
        .expect("alice's presence", |e| e.name() == "presence")
        .await
        .unwrap();
    assert_eq!(first.attr("from"), Some("coven@conference.localhost/Alice"));
    // Semi-anonymous: Bob, a participant, does not see Alice's real JID.
    assert_eq!(item(&first).unwrap().attr("jid"), None);
    let own = bob
        .expect("own presence", |e| e.name() == "presence")
        .await
        .unwrap();
    assert!(codes(&own).contains(&110), "{own:?}");
    assert!(
        codes(&own).contains(&170),
        "logging is on by default: {own:?}"
    );
    let subj = subject(&mut bob, "coven").await;
    assert_eq!(
        subj.get_child("subject", "jabber:client").unwrap().text(),
        ""
    );
    // Alice (a moderator) sees Bob enter, with his real JID.
    let p = alice
        .expect("bob enters", |e| {
            e.name() == "presence" && e.attr("from") == Some("coven@conference.localhost/Bob")
        })
        .await
        .unwrap();
    assert_eq!(item(&p).unwrap().attr("jid"), Some("bob@localhost/r"));
    assert_eq!(item(&p).unwrap().attr("role"), Some("participant"));

    // §7.4: a message reaches everyone, sender included, with a stanza id and an occupant id.
    say(&mut bob, "coven", "hello witches").await;
    for c in [&mut alice, &mut bob] {
        let m = heard(c, "hello witches").await;
        assert_eq!(m.attr("from"), Some("coven@conference.localhost/Bob"));
        assert_eq!(m.attr("type"), Some("groupchat"));
        let sid = m.get_child("stanza-id", "urn:xmpp:sid:0").unwrap();
        assert_eq!(sid.attr("by"), Some("coven@conference.localhost"));
        assert!(m
            .get_child("occupant-id", "urn:xmpp:occupant-id:0")
            .is_some());
    }

    // §7.5: a private message, marked with muc#user, from Bob's occupant JID.
    bob.send_str(&format!(
        "<message to='coven@{ROOMS}/Alice' type='chat' id='pm1'><body>psst</body></message>"
    ))
    .await
    .unwrap();
    let pm = heard(&mut alice, "psst").await;
    assert_eq!(pm.attr("from"), Some("coven@conference.localhost/Bob"));
    assert!(pm.has_child("x", USER));
    // To a nick that is not there: item-not-found.
    bob.send_str(&format!(
        "<message to='coven@{ROOMS}/Nobody' type='chat' id='pm2'><body>?</body></message>"
    ))
    .await
    .unwrap();
    let e = bob
        .expect("pm error", |e| e.attr("id") == Some("pm2"))
        .await
        .unwrap();
    assert_eq!(condition(&e).as_deref(), Some("item-not-found"));

    // §7.6: nick change; 409 on a taken nick.
    bob.send_str(&format!("<presence to='coven@{ROOMS}/Alice'/>"))
        .await
        .unwrap();
    let e = bob
        .expect("conflict", |e| e.attr("type") == Some("error"))
        .await
        .unwrap();
    assert_eq!(condition(&e).as_deref(), Some("conflict"));
    bob.send_str(&format!("<presence to='coven@{ROOMS}/Robert'/>"))
        .await
        .unwrap();
    let gone = alice
        .expect("303", |e| {
            e.attr("from") == Some("coven@conference.localhost/Bob")
                && e.attr("type") == Some("unavailable")
        })
        .await
        .unwrap();
    assert!(codes(&gone).contains(&303));
    assert_eq!(item(&gone).unwrap().attr("nick"), Some("Robert"));
    alice
        .expect("new nick", |e| {
            e.attr("from") == Some("coven@conference.localhost/Robert") && e.attr("type").is_none()
        })
        .await
        .unwrap();
    let own = bob
        .expect("own 303", |e| codes(e).contains(&303))
        .await
        .unwrap();
    assert!(codes(&own).contains(&110));

    // §8.1: a participant may not change the subject by default; a moderator may.
    bob.send_str(&format!(
        "<message to='coven@{ROOMS}' type='groupchat' id='s1'><subject>mine</subject></message>"
    ))
    .await
    .unwrap();
    let e = bob
        .expect("subject refused", |e| e.attr("id") == Some("s1"))
        .await
        .unwrap();
    assert_eq!(condition(&e).as_deref(), Some("forbidden"));
    alice.send_str(&format!("<message to='coven@{ROOMS}' type='groupchat' id='s2'><subject>Fire Burn</subject></message>")).await.unwrap();
    let m = subject(&mut bob, "coven").await;
    assert_eq!(
        m.get_child("subject", "jabber:client").unwrap().text(),
        "Fire Burn"
    );
    assert_eq!(m.attr("from"), Some("coven@conference.localhost/Alice"));

    // Not an occupant: not-acceptable (§7.4).
    let mut carol = user(&s, "carol").await;
    say(&mut carol, "coven", "let me in").await;
    let e = carol
        .expect("refused", |e| e.name() == "message")
        .await
        .unwrap();
    assert_eq!(condition(&e).as_deref(), Some("not-acceptable"));

    // §7.14: leaving.
    bob.send_str(&format!(
        "<presence to='coven@{ROOMS}/Robert' type='unavailable'><status>bye</status></presence>"
    ))
    .await
    .unwrap();
    let own = bob
        .expect("own exit", |e| e.attr("type") == Some("unavailable"))
        .await
        .unwrap();
    assert!(codes(&own).contains(&110));
    let p = alice
        .expect("bob left", |e| {
            e.attr("from") == Some("coven@conference.localhost/Robert")
                && e.attr("type") == Some("unavailable")
        })
        .await
        .unwrap();
    assert_eq!(
        p.get_child("status", "jabber:client")
            .map(|s| s.text())
            .as_deref(),
        Some("bye")
    );
}

#[tokio::test]
async fn history_on_join_with_limits() {
    let s = TestServer::start().await.unwrap();
    let mut alice = user(&s, "alice").await;
    create(&mut alice, "hist", "Alice").await;
    for i in 0..5 {
        say(&mut alice, "hist", &format!("m{i}")).await;
        heard(&mut alice, &format!("m{i}")).await;
    }
    let mut bob = user(&s, "bob").await;
    bob.send_str(&format!(
        "<presence to='hist@{ROOMS}/Bob'><x xmlns='{MUC}'><history maxstanzas='2'/></x></presence>"
    ))
    .await
    .unwrap();
    let mut got = Vec::new();
    loop {
        let e = bob.next().await.unwrap();
        if e.has_child("subject", "jabber:client") {
            break;
        }
        if let Some(b) = e.get_child("body", "jabber:client") {
            let d = e
                .get_child("delay", "urn:xmpp:delay")
                .expect("history has a delay stamp");
            assert_eq!(d.attr("from"), Some("hist@conference.localhost"));
            assert!(e.get_child("stanza-id", "urn:xmpp:sid:0").is_some());
            got.push(b.text());
        }
    }
    assert_eq!(got, ["m3", "m4"]);
    // maxchars='0': no history at all.
    let mut carol = user(&s, "carol").await;
    carol.send_str(&format!("<presence to='hist@{ROOMS}/Carol'><x xmlns='{MUC}'><history maxchars='0'/></x></presence>")).await.unwrap();
    loop {
        let e = carol.next().await.unwrap();
        assert!(
            !e.has_child("body", "jabber:client"),
            "no history expected: {e:?}"
        );
        if e.has_child("subject", "jabber:client") {
            break;
        }
    }
}

#[tokio::test]
async fn closed_session_leaves_the_room() {
    let s = TestServer::start().await.unwrap();
    let mut alice = user(&s, "alice").await;
    create(&mut alice, "ghosts", "Alice").await;
    let mut bob = user(&s, "bob").await;
    join(&mut bob, "ghosts", "Bob", "").await;
    alice
        .expect("bob in", |e| {
            e.attr("from") == Some("ghosts@conference.localhost/Bob")
        })
        .await
        .unwrap();
    // Bob's connection ends without a word: the presence module's unavailable reaches the room.
    drop(bob);
    let p = alice
        .expect("bob out", |e| {
            e.attr("from") == Some("ghosts@conference.localhost/Bob")
                && e.attr("type") == Some("unavailable")
        })
        .await
        .unwrap();
    assert_eq!(item(&p).unwrap().attr("role"), Some("none"));
    // A session that never sent initial presence leaves too (the module's fallback).
    s.add_user("dave", "pw").await.unwrap();
    let mut dave = tern_testkit::RawClient::login(&s, "dave", "pw", "d")
        .await
        .unwrap();
    join(&mut dave, "ghosts", "Dave", "").await;
    alice
        .expect("dave in", |e| {
            e.attr("from") == Some("ghosts@conference.localhost/Dave")
        })
        .await
        .unwrap();
    drop(dave);
    alice
        .expect("dave out", |e| {
            e.attr("from") == Some("ghosts@conference.localhost/Dave")
                && e.attr("type") == Some("unavailable")
        })
        .await
        .unwrap();
    assert!(
        alice
            .silent_for(Duration::from_millis(300), |e| e.attr("from")
                == Some("ghosts@conference.localhost/Dave"))
            .await
            .unwrap(),
        "left once"
    );
}

#[tokio::test]
async fn discovery_of_service_and_rooms() {
    let s = TestServer::start().await.unwrap();
    let mut alice = user(&s, "alice").await;
    let r = iq(
        &mut alice,
        "get",
        "localhost",
        "<query xmlns='http://jabber.org/protocol/disco#items'/>",
    )
    .await;
    assert!(format!("{r:?}").contains("conference.localhost"), "{r:?}");
    let r = iq(
        &mut alice,
        "get",
        ROOMS,
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await;
    let q = r
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    let id = q
        .get_child("identity", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert_eq!(
        (id.attr("category"), id.attr("type")),
        (Some("conference"), Some("text"))
    );
    assert!(q.children().any(|f| f.attr("var") == Some(MUC)));

    create(&mut alice, "public", "Alice").await;
    configure(
        &mut alice,
        "public",
        &format!(
            "{}{}",
            field("FORM_TYPE", "http://jabber.org/protocol/muc#roomconfig"),
            field("muc#roomconfig_roomname", "The Public")
        ),
    )
    .await;
    create(&mut alice, "hidden", "Alice").await;
    configure(
        &mut alice,
        "hidden",
        &field("muc#roomconfig_publicroom", "0"),
    )
    .await;
    let r = iq(
        &mut alice,
        "get",
        ROOMS,
        "<query xmlns='http://jabber.org/protocol/disco#items'/>",
    )
    .await;
    let items: Vec<(String, String)> = r
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap()
        .children()
        .map(|i| {
            (
                i.attr("jid").unwrap().to_owned(),
                i.attr("name").unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        items,
        [(
            "public@conference.localhost".to_owned(),
            "The Public".to_owned()
        )]
    );

    let r = iq(
        &mut alice,
        "get",
        &format!("public@{ROOMS}"),
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await;
    let q = r
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    let vars: Vec<&str> = q.children().filter_map(|f| f.attr("var")).collect();
    for f in [
        "muc_public",
        "muc_temporary",
        "muc_open",
        "muc_unmoderated",
        "muc_semianonymous",
        "muc_unsecured",
        "urn:xmpp:mam:2",
        "urn:xmpp:occupant-id:0",
        "http://jabber.org/protocol/muc#self-ping-optimization",
    ] {
        assert!(vars.contains(&f), "{f} missing: {vars:?}");
    }
    let form = q.get_child("x", "jabber:x:data").unwrap();
    let s_form = format!("{form:?}");
    assert!(
        s_form.contains("muc#roominfo") && s_form.contains("muc#roominfo_occupants"),
        "{s_form}"
    );

    // A room that does not exist.
    let r = iq(
        &mut alice,
        "get",
        &format!("nothere@{ROOMS}"),
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await;
    assert_eq!(condition(&r).as_deref(), Some("item-not-found"));
    // Entering needs a nick.
    alice
        .send_str(&format!(
            "<presence to='public@{ROOMS}' id='nonick'><x xmlns='{MUC}'/></presence>"
        ))
        .await
        .unwrap();
    let e = alice
        .expect("jid-malformed", |e| e.attr("id") == Some("nonick"))
        .await
        .unwrap();
    assert_eq!(condition(&e).as_deref(), Some("jid-malformed"));
}

#[tokio::test]
async fn server_shutdown_tells_occupants() {
    let s = TestServer::start().await.unwrap();
    let mut alice = user(&s, "alice").await;
    create(&mut alice, "bye", "Alice").await;
    s.stop().await;
    let p = alice
        .expect("332", |e| {
            e.name() == "presence" && e.attr("type") == Some("unavailable")
        })
        .await
        .unwrap();
    assert!(codes(&p).contains(&332), "{p:?}");
}

#[tokio::test]
async fn iqs_between_occupants_are_forwarded() {
    let s = TestServer::start().await.unwrap();
    let mut alice = user(&s, "alice").await;
    let mut bob = user(&s, "bob").await;
    create(&mut alice, "vcards", "Alice").await;
    join(&mut bob, "vcards", "Bob", "").await;
    bob.send_str(&format!(
        "<iq type='get' id='v1' to='vcards@{ROOMS}/Alice'><vCard xmlns='vcard-temp'/></iq>"
    ))
    .await
    .unwrap();
    // Alice gets it from Bob's occupant JID, never his real one.
    let req = alice
        .expect("forwarded iq", |e| {
            e.name() == "iq" && e.attr("id") == Some("v1")
        })
        .await
        .unwrap();
    assert_eq!(req.attr("from"), Some("vcards@conference.localhost/Bob"));
    alice
        .send_str(&format!("<iq type='result' id='v1' to='vcards@{ROOMS}/Bob'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>"))
        .await
        .unwrap();
    let res = bob
        .expect("answer", |e| e.name() == "iq" && e.attr("id") == Some("v1"))
        .await
        .unwrap();
    assert_eq!(res.attr("type"), Some("result"));
    assert_eq!(res.attr("from"), Some("vcards@conference.localhost/Alice"));
    assert!(format!("{res:?}").contains("Alice"));
}
