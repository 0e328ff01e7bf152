//! Persistence across a restart (SQLite), the room archive (XEP-0313 on the room JID), self-ping
//! (XEP-0410) and moderation (XEP-0425 with XEP-0424 tombstones).

mod common;

use common::*;
use tern_testkit::{RawClient, TestServer};

const MAM: &str = "urn:xmpp:mam:2";

async fn sqlite_server() -> TestServer {
    TestServer::start_with(|c| c.storage.backend = "sqlite".into())
        .await
        .unwrap()
}

#[tokio::test]
async fn persistent_room_survives_restart() {
    let mut s = sqlite_server().await;
    let mut alice = user(&s, "alice").await;
    s.add_user("bob", "pw").await.unwrap();
    create(&mut alice, "keep", "Alice").await;
    let r = configure(
        &mut alice,
        "keep",
        &format!(
            "{}{}{}",
            field("muc#roomconfig_persistentroom", "1"),
            field("muc#roomconfig_roomname", "Kept"),
            field("muc#roomconfig_membersonly", "1")
        ),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    iq(
        &mut alice,
        "set",
        &format!("keep@{ROOMS}"),
        &format!("<query xmlns='{ADMIN}'><item jid='bob@localhost' affiliation='member'/></query>"),
    )
    .await;
    alice
        .send_str(&format!(
            "<message to='keep@{ROOMS}' type='groupchat'><subject>Kept subject</subject></message>"
        ))
        .await
        .unwrap();
    subject(&mut alice, "keep").await;
    say(&mut alice, "keep", "before the restart").await;
    heard(&mut alice, "before the restart").await;
    drop(alice);
    s.restart().await.unwrap();

    // Listed again, with its name, and its configuration, members, subject and history hold.
    let mut bob = RawClient::login(&s, "bob", "pw", "r").await.unwrap();
    let r = iq(
        &mut bob,
        "get",
        ROOMS,
        "<query xmlns='http://jabber.org/protocol/disco#items'/>",
    )
    .await;
    assert!(
        format!("{r:?}").contains("keep@conference.localhost"),
        "{r:?}"
    );
    let r = iq(
        &mut bob,
        "get",
        &format!("keep@{ROOMS}"),
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await;
    let info = format!("{r:?}");
    assert!(
        info.contains("muc_persistent")
            && info.contains("muc_membersonly")
            && info.contains("Kept"),
        "{info}"
    );
    bob.send_str(&format!(
        "<presence to='keep@{ROOMS}/Bob'><x xmlns='{MUC}'/></presence>"
    ))
    .await
    .unwrap();
    let mut history = Vec::new();
    let subj = loop {
        let e = bob.next().await.unwrap();
        assert_ne!(e.attr("type"), Some("error"), "{e:?}");
        if let Some(b) = e.get_child("body", "jabber:client") {
            history.push(b.text());
        }
        if e.has_child("subject", "jabber:client") {
            break e;
        }
    };
    assert_eq!(history, ["before the restart"]);
    assert_eq!(
        subj.get_child("subject", "jabber:client").unwrap().text(),
        "Kept subject"
    );
    // The owner is still owner.
    let mut alice = RawClient::login(&s, "alice", "pw", "r").await.unwrap();
    let p = join(&mut alice, "keep", "Alice", "").await;
    assert_eq!(item(&p).unwrap().attr("affiliation"), Some("owner"));
    assert!(!codes(&p).contains(&201));
}

#[tokio::test]
async fn room_archive_paging_self_ping_and_moderation() {
    let s = TestServer::start().await.unwrap();
    let mut alice = user(&s, "alice").await;
    let mut bob = user(&s, "bob").await;
    create(&mut alice, "log", "Alice").await;
    join(&mut bob, "log", "Bob", "").await;
    let room = format!("log@{ROOMS}");
    let mut ids = Vec::new();
    for i in 0..7 {
        say(&mut bob, "log", &format!("n{i}")).await;
        let m = heard(&mut alice, &format!("n{i}")).await;
        ids.push(
            m.get_child("stanza-id", "urn:xmpp:sid:0")
                .unwrap()
                .attr("id")
                .unwrap()
                .to_owned(),
        );
    }

    // XEP-0313 on the room: pages of 3 from the end, walking back with RSM <before/>.
    let mut got: Vec<String> = Vec::new();
    let mut before = String::new();
    loop {
        let qid = format!("q{}", got.len());
        alice
            .send_str(&format!(
                "<iq type='set' id='{qid}' to='{room}'><query xmlns='{MAM}' queryid='{qid}'><set xmlns='http://jabber.org/protocol/rsm'><max>3</max><before>{before}</before></set></query></iq>"
            ))
            .await
            .unwrap();
        let mut page = Vec::new();
        let fin = loop {
            let e = alice.next().await.unwrap();
            if let Some(r) = e.get_child("result", MAM) {
                assert_eq!(r.attr("queryid"), Some(qid.as_str()));
                assert_eq!(e.attr("from"), Some("log@conference.localhost"));
                let m = r
                    .get_child("forwarded", "urn:xmpp:forward:0")
                    .unwrap()
                    .get_child("message", "jabber:client")
                    .unwrap();
                assert_eq!(m.attr("from"), Some("log@conference.localhost/Bob"));
                page.push((
                    r.attr("id").unwrap().to_owned(),
                    m.get_child("body", "jabber:client").unwrap().text(),
                ));
            } else if e.attr("id") == Some(qid.as_str()) {
                break e;
            }
        };
        let fin = fin.get_child("fin", MAM).unwrap().clone();
        page.reverse();
        got.extend(page.iter().map(|(_, b)| b.clone()));
        before = page.last().map(|(id, _)| id.clone()).unwrap_or_default();
        if fin.attr("complete") == Some("true") {
            break;
        }
    }
    got.reverse();
    assert_eq!(got, (0..7).map(|i| format!("n{i}")).collect::<Vec<_>>());

    // XEP-0410: a joined client's self-ping is answered by the room; elsewhere not-acceptable.
    let r = iq(
        &mut bob,
        "get",
        &format!("{room}/Bob"),
        "<ping xmlns='urn:xmpp:ping'/>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    assert_eq!(r.attr("from"), Some("log@conference.localhost/Bob"));
    let mut carol = user(&s, "carol").await;
    let r = iq(
        &mut carol,
        "get",
        &format!("{room}/Bob"),
        "<ping xmlns='urn:xmpp:ping'/>",
    )
    .await;
    assert_eq!(condition(&r).as_deref(), Some("not-acceptable"));

    // XEP-0425: Bob may not moderate; Alice retracts n3, everyone is told, the archive keeps
    // a tombstone in its place.
    let moderate = format!(
        "<moderate xmlns='urn:xmpp:message-moderate:1' id='{}'><retract xmlns='urn:xmpp:message-retract:1'/><reason>Spam</reason></moderate>",
        ids[3]
    );
    let r = iq(&mut bob, "set", &room, &moderate).await;
    assert_eq!(condition(&r).as_deref(), Some("forbidden"));
    let r = iq(&mut alice, "set", &room, &moderate).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let m = bob
        .expect("retraction", |e| {
            e.has_child("retract", "urn:xmpp:message-retract:1")
        })
        .await
        .unwrap();
    let rt = m
        .get_child("retract", "urn:xmpp:message-retract:1")
        .unwrap();
    assert_eq!(rt.attr("id"), Some(ids[3].as_str()));
    let md = rt
        .get_child("moderated", "urn:xmpp:message-moderate:1")
        .unwrap();
    assert_eq!(md.attr("by"), Some("log@conference.localhost/Alice"));
    let r = iq(
        &mut alice,
        "set",
        &room,
        "<moderate xmlns='urn:xmpp:message-moderate:1' id='nosuchid'><retract xmlns='urn:xmpp:message-retract:1'/></moderate>",
    )
    .await;
    assert_eq!(condition(&r).as_deref(), Some("item-not-found"));
    alice
        .send_str(&format!(
            "<iq type='set' id='t1' to='{room}'><query xmlns='{MAM}' queryid='t1'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>{MAM}</value></field><field var='ids'><value>{}</value></field></x></query></iq>",
            ids[3]
        ))
        .await
        .unwrap();
    let r = alice
        .expect("tombstone", |e| e.get_child("result", MAM).is_some())
        .await
        .unwrap();
    let m = r
        .get_child("result", MAM)
        .unwrap()
        .get_child("forwarded", "urn:xmpp:forward:0")
        .unwrap()
        .get_child("message", "jabber:client")
        .unwrap();
    assert!(m.get_child("body", "jabber:client").is_none(), "{m:?}");
    assert!(
        m.has_child("retracted", "urn:xmpp:message-retract:1"),
        "{m:?}"
    );
    alice
        .expect("fin", |e| e.attr("id") == Some("t1"))
        .await
        .unwrap();

    // Banned users may not read the archive.
    iq(
        &mut alice,
        "set",
        &room,
        &format!(
            "<query xmlns='{ADMIN}'><item jid='carol@localhost' affiliation='outcast'/></query>"
        ),
    )
    .await;
    let r = iq(&mut carol, "set", &room, &format!("<query xmlns='{MAM}'/>")).await;
    assert_eq!(condition(&r).as_deref(), Some("forbidden"));
}
