//! Roles, affiliations and owner use cases end to end (XEP-0045 §8-§10): kick, ban,
//! members-only and password refusals, voice, lists, invitations, destruction.

mod common;

use common::*;
use tern_testkit::TestServer;

fn admin_item(attrs: &str, reason: Option<&str>) -> String {
    let r = reason
        .map(|r| format!("<reason>{r}</reason>"))
        .unwrap_or_default();
    format!("<query xmlns='{ADMIN}'><item {attrs}>{r}</item></query>")
}

#[tokio::test]
async fn kick_ban_and_refusals() {
    let s = TestServer::start().await.unwrap();
    let mut alice = user(&s, "alice").await;
    let mut bob = user(&s, "bob").await;
    let mut carol = user(&s, "carol").await;
    create(&mut alice, "court", "Alice").await;
    join(&mut bob, "court", "Bob", "").await;
    join(&mut carol, "court", "Carol", "").await;
    let room = format!("court@{ROOMS}");

    // A participant may not kick (forbidden); a moderator may not kick the owner (not-allowed).
    let r = iq(
        &mut bob,
        "set",
        &room,
        &admin_item("nick='Carol' role='none'", None),
    )
    .await;
    assert_eq!(condition(&r).as_deref(), Some("forbidden"));

    // §8.2: the owner kicks Carol: 307 with actor and reason, 110 for her.
    let r = iq(
        &mut alice,
        "set",
        &room,
        &admin_item("nick='Carol' role='none'", Some("Avaunt")),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    let own = carol
        .expect("kicked", |e| e.attr("type") == Some("unavailable"))
        .await
        .unwrap();
    assert!(
        codes(&own).contains(&307) && codes(&own).contains(&110),
        "{own:?}"
    );
    let it = item(&own).unwrap();
    assert_eq!(it.attr("role"), Some("none"));
    assert_eq!(
        it.get_child("reason", USER).map(|r| r.text()).as_deref(),
        Some("Avaunt")
    );
    assert_eq!(
        it.get_child("actor", USER).and_then(|a| a.attr("nick")),
        Some("Alice")
    );
    let seen = bob
        .expect("kick seen", |e| {
            e.attr("from") == Some("court@conference.localhost/Carol")
                && e.attr("type") == Some("unavailable")
        })
        .await
        .unwrap();
    assert!(codes(&seen).contains(&307));

    // §9.1: ban Bob by JID: 301, and he cannot come back (forbidden).
    let r = iq(
        &mut alice,
        "set",
        &room,
        &admin_item("jid='bob@localhost' affiliation='outcast'", Some("Treason")),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    let own = bob
        .expect("banned", |e| e.attr("type") == Some("unavailable"))
        .await
        .unwrap();
    assert!(codes(&own).contains(&301), "{own:?}");
    assert_eq!(item(&own).unwrap().attr("affiliation"), Some("outcast"));
    let e = join(&mut bob, "court", "Bob", "").await;
    assert_eq!(condition(&e).as_deref(), Some("forbidden"));
    // The outcast list shows him with the reason.
    let r = iq(
        &mut alice,
        "get",
        &room,
        &format!("<query xmlns='{ADMIN}'><item affiliation='outcast'/></query>"),
    )
    .await;
    let q = r.get_child("query", ADMIN).unwrap();
    let it = q.get_child("item", ADMIN).unwrap();
    assert_eq!(it.attr("jid"), Some("bob@localhost"));
    assert_eq!(
        it.get_child("reason", ADMIN).map(|r| r.text()).as_deref(),
        Some("Treason")
    );
    // Carol (not an admin) may not read it.
    join(&mut carol, "court", "Carol", "").await;
    let r = iq(
        &mut carol,
        "get",
        &room,
        &format!("<query xmlns='{ADMIN}'><item affiliation='outcast'/></query>"),
    )
    .await;
    assert_eq!(condition(&r).as_deref(), Some("forbidden"));
    // The last owner cannot step down (conflict).
    let r = iq(
        &mut alice,
        "set",
        &room,
        &admin_item("jid='alice@localhost' affiliation='member'", None),
    )
    .await;
    assert_eq!(condition(&r).as_deref(), Some("conflict"));

    // Members-only: non-members are removed (322) and refused (registration-required);
    // members may enter.
    let r = configure(
        &mut alice,
        "court",
        &field("muc#roomconfig_membersonly", "1"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    let own = carol
        .expect("322", |e| e.attr("type") == Some("unavailable"))
        .await
        .unwrap();
    assert!(codes(&own).contains(&322), "{own:?}");
    let e = join(&mut carol, "court", "Carol", "").await;
    assert_eq!(condition(&e).as_deref(), Some("registration-required"));
    let r = iq(
        &mut alice,
        "set",
        &room,
        &admin_item("jid='carol@localhost' affiliation='member'", None),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    let p = join(&mut carol, "court", "Carol", "").await;
    assert_eq!(item(&p).unwrap().attr("affiliation"), Some("member"));
    // Removing her membership removes her (321).
    iq(
        &mut alice,
        "set",
        &room,
        &admin_item("jid='carol@localhost' affiliation='none'", None),
    )
    .await;
    let own = carol
        .expect("321", |e| e.attr("type") == Some("unavailable"))
        .await
        .unwrap();
    assert!(codes(&own).contains(&321), "{own:?}");

    // Password: missing or wrong is not-authorized; right is in.
    create(&mut alice, "secret", "Alice").await;
    configure(
        &mut alice,
        "secret",
        &format!(
            "{}{}",
            field("muc#roomconfig_passwordprotectedroom", "1"),
            field("muc#roomconfig_roomsecret", "cauldron")
        ),
    )
    .await;
    let e = join(&mut carol, "secret", "Carol", "").await;
    assert_eq!(condition(&e).as_deref(), Some("not-authorized"));
    let e = join(&mut carol, "secret", "Carol", "<password>kettle</password>").await;
    assert_eq!(condition(&e).as_deref(), Some("not-authorized"));
    let p = join(
        &mut carol,
        "secret",
        "Carol",
        "<password>cauldron</password>",
    )
    .await;
    assert!(codes(&p).contains(&110));

    // Full room: service-unavailable.
    create(&mut alice, "tiny", "Alice").await;
    configure(&mut alice, "tiny", &field("muc#roomconfig_maxusers", "1")).await;
    let e = join(&mut carol, "tiny", "Carol", "").await;
    assert_eq!(condition(&e).as_deref(), Some("service-unavailable"));
}

#[tokio::test]
async fn voice_moderation_lists_and_invitations() {
    let s = TestServer::start().await.unwrap();
    let mut alice = user(&s, "alice").await;
    let mut bob = user(&s, "bob").await;
    create(&mut alice, "stage", "Alice").await;
    configure(
        &mut alice,
        "stage",
        &field("muc#roomconfig_moderatedroom", "1"),
    )
    .await;
    let room = format!("stage@{ROOMS}");
    let p = join(&mut bob, "stage", "Bob", "").await;
    assert_eq!(item(&p).unwrap().attr("role"), Some("visitor"));
    subject(&mut bob, "stage").await;

    // A visitor may not speak.
    bob.send_str(&format!(
        "<message to='{room}' type='groupchat' id='v1'><body>hi</body></message>"
    ))
    .await
    .unwrap();
    let e = bob
        .expect("forbidden", |e| e.attr("id") == Some("v1"))
        .await
        .unwrap();
    assert_eq!(condition(&e).as_deref(), Some("forbidden"));

    // §7.13: he asks for voice; the moderator gets the form and approves it.
    bob.send_str(&format!(
        "<message to='{room}'><x xmlns='jabber:x:data' type='submit'>{}{}</x></message>",
        field("FORM_TYPE", "http://jabber.org/protocol/muc#request"),
        field("muc#role", "participant")
    ))
    .await
    .unwrap();
    let req = alice
        .expect("voice request", |e| {
            e.name() == "message" && e.has_child("x", "jabber:x:data")
        })
        .await
        .unwrap();
    assert!(format!("{req:?}").contains("bob@localhost/r"), "{req:?}");
    alice
        .send_str(&format!(
            "<message to='{room}'><x xmlns='jabber:x:data' type='submit'>{}{}{}{}</x></message>",
            field("FORM_TYPE", "http://jabber.org/protocol/muc#request"),
            field("muc#role", "participant"),
            field("muc#roomnick", "Bob"),
            field("muc#request_allow", "true")
        ))
        .await
        .unwrap();
    let p = bob
        .expect("voice", |e| {
            e.name() == "presence" && item(e).and_then(|i| i.attr("role")) == Some("participant")
        })
        .await
        .unwrap();
    assert!(codes(&p).contains(&110));

    // §8.4: revoke voice; the role list shows who is what.
    let r = iq(
        &mut alice,
        "set",
        &room,
        &admin_item("nick='Bob' role='visitor'", None),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    bob.expect("visitor again", |e| {
        item(e).and_then(|i| i.attr("role")) == Some("visitor")
    })
    .await
    .unwrap();
    let r = iq(
        &mut alice,
        "get",
        &room,
        &format!("<query xmlns='{ADMIN}'><item role='visitor'/></query>"),
    )
    .await;
    let items: Vec<_> = r
        .get_child("query", ADMIN)
        .unwrap()
        .children()
        .map(|i| i.attr("nick").unwrap().to_owned())
        .collect();
    assert_eq!(items, ["Bob"]);

    // §9.3 then §10.3: member, then admin (owner only); the admin list.
    let r = iq(
        &mut alice,
        "set",
        &room,
        &admin_item("jid='bob@localhost' affiliation='admin'", None),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    let p = bob
        .expect("admin", |e| {
            item(e).and_then(|i| i.attr("affiliation")) == Some("admin")
        })
        .await
        .unwrap();
    assert_eq!(item(&p).unwrap().attr("role"), Some("moderator"));
    let r = iq(
        &mut alice,
        "get",
        &room,
        &format!("<query xmlns='{ADMIN}'><item affiliation='admin'/></query>"),
    )
    .await;
    assert!(format!("{r:?}").contains("bob@localhost"));
    // An admin cannot demote the owner.
    let r = iq(
        &mut bob,
        "set",
        &room,
        &admin_item("jid='alice@localhost' affiliation='member'", None),
    )
    .await;
    assert_eq!(condition(&r).as_deref(), Some("not-allowed"));
    // Only owners read the owner configuration.
    let r = iq(&mut bob, "get", &room, &format!("<query xmlns='{OWNER}'/>")).await;
    assert_eq!(condition(&r).as_deref(), Some("forbidden"));

    // §7.8.2: a mediated invitation goes to Carol from the room, naming the inviter.
    let mut carol = user(&s, "carol").await;
    alice
        .send_str(&format!("<message to='{room}'><x xmlns='{USER}'><invite to='carol@localhost'><reason>Come</reason></invite></x></message>"))
        .await
        .unwrap();
    let inv = carol
        .expect("invitation", |e| e.name() == "message")
        .await
        .unwrap();
    assert_eq!(inv.attr("from"), Some("stage@conference.localhost"));
    let i = inv
        .get_child("x", USER)
        .unwrap()
        .get_child("invite", USER)
        .unwrap();
    assert_eq!(i.attr("from"), Some("alice@localhost/r"));
    // She declines; Alice hears of it.
    carol
        .send_str(&format!("<message to='{room}'><x xmlns='{USER}'><decline to='alice@localhost/r'><reason>Busy</reason></decline></x></message>"))
        .await
        .unwrap();
    let d = alice
        .expect("decline", |e| {
            e.name() == "message"
                && e.get_child("x", USER)
                    .is_some_and(|x| x.has_child("decline", USER))
        })
        .await
        .unwrap();
    assert_eq!(
        d.get_child("x", USER)
            .unwrap()
            .get_child("decline", USER)
            .unwrap()
            .attr("from"),
        Some("carol@localhost")
    );
}

#[tokio::test]
async fn destruction_with_alternate_venue() {
    let s = TestServer::start().await.unwrap();
    let mut alice = user(&s, "alice").await;
    let mut bob = user(&s, "bob").await;
    create(&mut alice, "doomed", "Alice").await;
    join(&mut bob, "doomed", "Bob", "").await;
    let room = format!("doomed@{ROOMS}");
    let r = iq(
        &mut bob,
        "set",
        &room,
        &format!("<query xmlns='{OWNER}'><destroy/></query>"),
    )
    .await;
    assert_eq!(condition(&r).as_deref(), Some("forbidden"));
    let r = iq(
        &mut alice,
        "set",
        &room,
        &format!("<query xmlns='{OWNER}'><destroy jid='newroom@{ROOMS}'><reason>Macbeth doth come.</reason></destroy></query>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    let p = bob
        .expect("destroyed", |e| e.attr("type") == Some("unavailable"))
        .await
        .unwrap();
    let d = p
        .get_child("x", USER)
        .unwrap()
        .get_child("destroy", USER)
        .unwrap();
    assert_eq!(d.attr("jid"), Some("newroom@conference.localhost"));
    assert_eq!(
        d.get_child("reason", USER).map(|r| r.text()).as_deref(),
        Some("Macbeth doth come.")
    );
    assert_eq!(item(&p).unwrap().attr("affiliation"), Some("none"));
    // The room is gone: disco says so, and joining creates a new one.
    let r = iq(
        &mut bob,
        "get",
        &room,
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await;
    assert_eq!(condition(&r).as_deref(), Some("item-not-found"));
    let p = join(&mut bob, "doomed", "Bob", "").await;
    assert!(codes(&p).contains(&201));
}
