//! XEP-0163 PEP end to end: notifications between contacts filtered by capabilities, last item
//! on presence, access models, publish-options preconditions, max_items, retraction, node
//! configuration, disco, avatars (XEP-0084), OMEMO node shapes (XEP-0384) and persistence.

mod common;

use common::*;

const TUNE: &str = "http://jabber.org/protocol/tune";

#[tokio::test]
async fn notifications_between_contacts_filtered_by_caps() {
    let s = server_with(|_| {}).await;
    befriend(&s, "alice", "bob").await;
    let mut a = Peer::login(&s, "alice", "a", &[TUNE]).await;
    let mut b = Peer::login(&s, "bob", "b", &[TUNE]).await;
    let mut b2 = Peer::login(&s, "bob", "b2", &["urn:other"]).await;
    a.online().await;
    b.online().await;
    b2.online().await;
    // Let presence and caps queries settle (each peer answers while waiting).
    a.quiet(300, |_| false).await;
    b.quiet(300, |_| false).await;
    b2.quiet(300, |_| false).await;

    let r = a
        .ok(&publish(
            TUNE,
            "t1",
            "<tune xmlns='http://jabber.org/protocol/tune'><title>Song</title></tune>",
            &[],
        ))
        .await;
    let item = r
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("publish", NS_PUBSUB))
        .and_then(|p| p.get_child("item", NS_PUBSUB))
        .unwrap();
    assert_eq!(item.attr("id"), Some("t1"));

    let m = b.expect("tune event", |e| is_event(e, TUNE)).await;
    assert_eq!(m.attr("from"), Some("alice@localhost"));
    let it = event_items(&m).children().next().unwrap();
    assert_eq!(it.attr("id"), Some("t1"));
    assert!(it.get_child("tune", TUNE).is_some());
    // The publisher's own resource asked for +notify too.
    a.expect("own tune event", |e| is_event(e, TUNE)).await;
    // bob/b2 did not ask for tune notifications.
    assert!(b2.quiet(500, |e| is_event(e, TUNE)).await);

    // Retraction with notify reaches bob.
    a.ok(&format!(
        "<iq type='set' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><retract node='{TUNE}' notify='true'><item id='t1'/></retract></pubsub></iq>"
    ))
    .await;
    let m = b.expect("retract event", |e| is_event(e, TUNE)).await;
    assert_eq!(
        event_items(&m)
            .children()
            .next()
            .map(|r| (r.name().to_owned(), r.attr("id").map(str::to_owned))),
        Some(("retract".to_owned(), Some("t1".to_owned())))
    );
    // Retracting what is gone: item-not-found.
    let r = a
        .iq(&format!(
            "<iq type='set' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><retract node='{TUNE}'><item id='t1'/></retract></pubsub></iq>"
        ))
        .await;
    assert_eq!(error_of(&r).0, "item-not-found");
    // Only the account publishes to its PEP nodes.
    let r = b
        .iq(&publish(
            TUNE,
            "x",
            "<tune xmlns='http://jabber.org/protocol/tune'/>",
            &[],
        )
        .replace("<iq ", "<iq to='alice@localhost' "))
        .await;
    assert_eq!(error_of(&r).0, "forbidden");
}

#[tokio::test]
async fn last_item_delivered_when_contact_comes_online() {
    let s = server_with(|_| {}).await;
    befriend(&s, "alice", "bob").await;
    let mut a = Peer::login(&s, "alice", "a", &[]).await;
    let mut b = Peer::login(&s, "bob", "b", &[TUNE]).await;
    a.online().await;
    a.ok(&publish(
        TUNE,
        "t1",
        "<tune xmlns='http://jabber.org/protocol/tune'><title>Old</title></tune>",
        &[],
    ))
    .await;
    a.ok(&publish(
        TUNE,
        "t2",
        "<tune xmlns='http://jabber.org/protocol/tune'><title>New</title></tune>",
        &[],
    ))
    .await;
    // bob comes online now: alice's PEP hears his presence, learns his caps, sends the last item.
    b.online().await;
    let m = b.expect("last tune", |e| is_event(e, TUNE)).await;
    let it = event_items(&m).children().next().unwrap();
    assert_eq!(it.attr("id"), Some("t2"));
    assert!(m.get_child("delay", "urn:xmpp:delay").is_some());
}

#[tokio::test]
async fn access_models_and_affiliations() {
    let s = server_with(|_| {}).await;
    befriend(&s, "alice", "bob").await;
    let mut a = Peer::login(&s, "alice", "a", &[]).await;
    let mut b = Peer::login(&s, "bob", "b", &[]).await;
    let mut c = Peer::login(&s, "carol", "c", &[]).await;
    let get = |node: &str| {
        format!("<iq type='get' to='alice@localhost' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><items node='{node}'/></pubsub></iq>")
    };
    // presence (the default): contacts yes, strangers not-authorized.
    a.ok(&publish("urn:p", "1", "<p xmlns='urn:p'/>", &[]))
        .await;
    b.ok(&get("urn:p")).await;
    let r = c.iq(&get("urn:p")).await;
    assert_eq!(
        error_of(&r),
        (
            "not-authorized".into(),
            Some("presence-subscription-required".into())
        )
    );
    // open.
    a.ok(&publish(
        "urn:o",
        "1",
        "<o xmlns='urn:o'/>",
        &[("pubsub#access_model", "open")],
    ))
    .await;
    let r = c.ok(&get("urn:o")).await;
    let items = r
        .get_child("pubsub", NS_PUBSUB)
        .unwrap()
        .get_child("items", NS_PUBSUB)
        .unwrap();
    assert_eq!(items.children().count(), 1);
    // whitelist: closed until alice makes carol a member.
    a.ok(&publish(
        "urn:w",
        "1",
        "<w xmlns='urn:w'/>",
        &[("pubsub#access_model", "whitelist")],
    ))
    .await;
    let r = b.iq(&get("urn:w")).await;
    assert_eq!(
        error_of(&r),
        ("not-allowed".into(), Some("closed-node".into()))
    );
    a.ok(&format!(
        "<iq type='set' id='{{id}}'><pubsub xmlns='{NS_OWNER}'><affiliations node='urn:w'><affiliation jid='carol@localhost' affiliation='member'/></affiliations></pubsub></iq>"
    ))
    .await;
    c.ok(&get("urn:w")).await;
    let r = a
        .ok(&format!("<iq type='get' id='{{id}}'><pubsub xmlns='{NS_OWNER}'><affiliations node='urn:w'/></pubsub></iq>"))
        .await;
    let affs: Vec<_> = r
        .get_child("pubsub", NS_OWNER)
        .unwrap()
        .get_child("affiliations", NS_OWNER)
        .unwrap()
        .children()
        .map(|a| {
            (
                a.attr("jid").unwrap().to_owned(),
                a.attr("affiliation").unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        affs.contains(&("carol@localhost".into(), "member".into())),
        "{affs:?}"
    );
    // Outcast: forbidden even on an open node.
    a.ok(&format!(
        "<iq type='set' id='{{id}}'><pubsub xmlns='{NS_OWNER}'><affiliations node='urn:o'><affiliation jid='carol@localhost' affiliation='outcast'/></affiliations></pubsub></iq>"
    ))
    .await;
    assert_eq!(error_of(&c.iq(&get("urn:o")).await).0, "forbidden");
    // roster: bob in group "friends" only once alice allows that group.
    a.ok("<iq type='set' id='{id}'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'><group>friends</group></item></query></iq>")
        .await;
    a.ok(&publish(
        "urn:r",
        "1",
        "<r xmlns='urn:r'/>",
        &[("pubsub#access_model", "roster")],
    ))
    .await;
    let r = b.iq(&get("urn:r")).await;
    assert_eq!(
        error_of(&r),
        ("not-authorized".into(), Some("not-in-roster-group".into()))
    );
    a.ok(&format!(
        "<iq type='set' id='{{id}}'><pubsub xmlns='{NS_OWNER}'><configure node='urn:r'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
         <field var='pubsub#roster_groups_allowed'><value>friends</value></field></x></configure></pubsub></iq>"
    ))
    .await;
    b.ok(&get("urn:r")).await;
    // Unknown node.
    assert_eq!(error_of(&b.iq(&get("urn:none")).await).0, "item-not-found");
}

#[tokio::test]
async fn publish_options_preconditions_and_max_items() {
    let s = server_with(|_| {}).await;
    befriend(&s, "alice", "bob").await;
    let mut a = Peer::login(&s, "alice", "a", &[]).await;
    let opts = [("pubsub#access_model", "open"), ("pubsub#max_items", "2")];
    a.ok(&publish("urn:n", "1", "<n xmlns='urn:n'/>", &opts))
        .await;
    a.ok(&publish("urn:n", "2", "<n xmlns='urn:n'/>", &opts))
        .await;
    a.ok(&publish("urn:n", "3", "<n xmlns='urn:n'/>", &opts))
        .await;
    // Mismatch: conflict + precondition-not-met, nothing published.
    let r = a
        .iq(&publish(
            "urn:n",
            "4",
            "<n xmlns='urn:n'/>",
            &[("pubsub#access_model", "presence")],
        ))
        .await;
    assert_eq!(
        error_of(&r),
        ("conflict".into(), Some("precondition-not-met".into()))
    );
    let r = a
        .iq(&publish(
            "urn:n",
            "4",
            "<n xmlns='urn:n'/>",
            &[("pubsub#unknown_field", "x")],
        ))
        .await;
    assert_eq!(
        error_of(&r),
        ("conflict".into(), Some("precondition-not-met".into()))
    );
    let r = a
        .ok(&format!("<iq type='get' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><items node='urn:n'/></pubsub></iq>"))
        .await;
    let ids: Vec<_> = r
        .get_child("pubsub", NS_PUBSUB)
        .unwrap()
        .get_child("items", NS_PUBSUB)
        .unwrap()
        .children()
        .map(|i| i.attr("id").unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec!["2", "3"]);
    // max_items attribute on retrieval.
    let r = a
        .ok(&format!("<iq type='get' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><items node='urn:n' max_items='1'/></pubsub></iq>"))
        .await;
    let items = r
        .get_child("pubsub", NS_PUBSUB)
        .unwrap()
        .get_child("items", NS_PUBSUB)
        .unwrap();
    assert_eq!(
        items
            .children()
            .map(|i| i.attr("id").unwrap())
            .collect::<Vec<_>>(),
        vec!["3"]
    );
    // max: accepted as a value and as a precondition once configured.
    a.ok(&publish(
        "urn:m",
        "1",
        "<m xmlns='urn:m'/>",
        &[("pubsub#max_items", "max")],
    ))
    .await;
    a.ok(&publish(
        "urn:m",
        "2",
        "<m xmlns='urn:m'/>",
        &[("pubsub#max_items", "max")],
    ))
    .await;
    // Payload rules.
    let r = a.iq(&publish("urn:m", "3", "", &[])).await;
    assert_eq!(
        error_of(&r),
        ("bad-request".into(), Some("payload-required".into()))
    );
    let r = a
        .iq(&publish(
            "urn:m",
            "3",
            "<a xmlns='urn:m'/><b xmlns='urn:m'/>",
            &[],
        ))
        .await;
    assert_eq!(
        error_of(&r),
        ("bad-request".into(), Some("invalid-payload".into()))
    );
    // Configuration form round trip.
    let r = a
        .ok(&format!("<iq type='get' id='{{id}}'><pubsub xmlns='{NS_OWNER}'><configure node='urn:n'/></pubsub></iq>"))
        .await;
    let x = r
        .get_child("pubsub", NS_OWNER)
        .and_then(|p| p.get_child("configure", NS_OWNER))
        .and_then(|c| c.get_child("x", "jabber:x:data"))
        .unwrap();
    let value = |var: &str| {
        x.children()
            .find(|f| f.attr("var") == Some(var))
            .and_then(|f| f.get_child("value", "jabber:x:data"))
            .map(|v| v.text())
    };
    assert_eq!(value("pubsub#access_model").as_deref(), Some("open"));
    assert_eq!(value("pubsub#max_items").as_deref(), Some("2"));
    let r = a
        .iq(&format!(
            "<iq type='set' id='{{id}}'><pubsub xmlns='{NS_OWNER}'><configure node='urn:n'><x xmlns='jabber:x:data' type='submit'>\
             <field var='pubsub#access_model'><value>bogus</value></field></x></configure></pubsub></iq>"
        ))
        .await;
    assert_eq!(error_of(&r).0, "not-acceptable");
}

#[tokio::test]
async fn disco_of_account_and_nodes() {
    let s = server_with(|_| {}).await;
    befriend(&s, "alice", "bob").await;
    let mut a = Peer::login(&s, "alice", "a", &[]).await;
    a.ok(&publish("urn:d", "i1", "<d xmlns='urn:d'/>", &[]))
        .await;
    let r = a
        .ok("<iq type='get' to='alice@localhost' id='{id}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    let q = r
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert!(q.children().any(|i| i.name() == "identity"
        && i.attr("category") == Some("pubsub")
        && i.attr("type") == Some("pep")));
    let feats: Vec<_> = q.children().filter_map(|f| f.attr("var")).collect();
    for f in [
        "http://jabber.org/protocol/pubsub#publish-options",
        "http://jabber.org/protocol/pubsub#auto-create",
        "http://jabber.org/protocol/pubsub#access-presence",
        "urn:xmpp:bookmarks:1#compat",
        "urn:xmpp:bookmarks:1#compat-pep",
    ] {
        assert!(feats.contains(&f), "{f} missing from {feats:?}");
    }
    let r = a
        .ok("<iq type='get' to='alice@localhost' id='{id}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await;
    let q = r
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap();
    assert!(
        q.children().any(|i| i.attr("node") == Some("urn:d")),
        "{}",
        to_string(&r)
    );
    let r = a
        .ok("<iq type='get' to='alice@localhost' id='{id}'><query xmlns='http://jabber.org/protocol/disco#items' node='urn:d'/></iq>")
        .await;
    let q = r
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap();
    assert_eq!(
        q.children()
            .filter_map(|i| i.attr("name"))
            .collect::<Vec<_>>(),
        vec!["i1"]
    );
    let r = a
        .ok("<iq type='get' to='alice@localhost' id='{id}'><query xmlns='http://jabber.org/protocol/disco#info' node='urn:d'/></iq>")
        .await;
    let q = r
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert!(q.children().any(|i| i.attr("type") == Some("leaf")));
    let r = a
        .iq("<iq type='get' to='alice@localhost' id='{id}'><query xmlns='http://jabber.org/protocol/disco#info' node='urn:nope'/></iq>")
        .await;
    assert_eq!(error_of(&r).0, "item-not-found");
}

#[tokio::test]
async fn avatar_and_omemo_nodes_as_clients_publish_them() {
    let s = server_with(|_| {}).await;
    befriend(&s, "alice", "bob").await;
    let mut a = Peer::login(&s, "alice", "a", &[]).await;
    let meta = "urn:xmpp:avatar:metadata";
    let devices = "eu.siacs.conversations.axolotl.devicelist";
    let mut b = Peer::login(&s, "bob", "b", &[meta, devices]).await;
    a.online().await;
    b.online().await;
    b.quiet(300, |_| false).await;
    a.quiet(100, |_| false).await;

    // XEP-0084: data first, then metadata (which is what contacts are notified about).
    a.ok(&publish(
        "urn:xmpp:avatar:data",
        "abc123",
        "<data xmlns='urn:xmpp:avatar:data'>aGVsbG8=</data>",
        &[],
    ))
    .await;
    a.ok(&publish(
        meta,
        "abc123",
        "<metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='5' id='abc123' type='image/png' height='1' width='1'/></metadata>",
        &[],
    ))
    .await;
    let m = b.expect("avatar metadata", |e| is_event(e, meta)).await;
    let it = event_items(&m).children().next().unwrap();
    assert_eq!(it.attr("id"), Some("abc123"));
    let r = b
        .ok("<iq type='get' to='alice@localhost' id='{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:data'><item id='abc123'/></items></pubsub></iq>")
        .await;
    let data = r
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .and_then(|i| i.get_child("item", NS_PUBSUB))
        .and_then(|i| i.get_child("data", "urn:xmpp:avatar:data"))
        .unwrap();
    assert_eq!(data.text(), "aGVsbG8=");

    // XEP-0384 (siacs): device list and a bundle, open to everyone as Conversations publishes.
    let open = [("pubsub#access_model", "open")];
    a.ok(&publish(
        devices,
        "current",
        "<list xmlns='eu.siacs.conversations.axolotl'><device id='1234'/></list>",
        &open,
    ))
    .await;
    let m = b.expect("devicelist", |e| is_event(e, devices)).await;
    assert!(to_string(&m).contains("1234"));
    a.ok(&publish(
        "eu.siacs.conversations.axolotl.bundles:1234",
        "current",
        "<bundle xmlns='eu.siacs.conversations.axolotl'><signedPreKeyPublic signedPreKeyId='1'>AA==</signedPreKeyPublic><signedPreKeySignature>AA==</signedPreKeySignature><identityKey>AA==</identityKey><prekeys><preKeyPublic preKeyId='1'>AA==</preKeyPublic></prekeys></bundle>",
        &open,
    ))
    .await;
    // OMEMO 2: devices with open access, bundles with max_items=max, keyed by device id.
    a.ok(&publish(
        "urn:xmpp:omemo:2:devices",
        "current",
        "<devices xmlns='urn:xmpp:omemo:2'><device id='1234'/></devices>",
        &open,
    ))
    .await;
    let two = [("pubsub#access_model", "open"), ("pubsub#max_items", "max")];
    a.ok(&publish("urn:xmpp:omemo:2:bundles", "1234", "<bundle xmlns='urn:xmpp:omemo:2'><spk id='1'>AA==</spk><spks>AA==</spks><ik>AA==</ik><prekeys><pk id='1'>AA==</pk></prekeys></bundle>", &two))
        .await;
    a.ok(&publish(
        "urn:xmpp:omemo:2:bundles",
        "5678",
        "<bundle xmlns='urn:xmpp:omemo:2'><ik>AA==</ik></bundle>",
        &two,
    ))
    .await;
    // A stranger (carol) fetches both bundles of the open node.
    let mut c = Peer::login(&s, "carol", "c", &[]).await;
    let r = c
        .ok("<iq type='get' to='alice@localhost' id='{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:omemo:2:bundles'/></pubsub></iq>")
        .await;
    let ids: Vec<_> = r
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .unwrap()
        .children()
        .filter_map(|i| i.attr("id"))
        .map(str::to_owned)
        .collect();
    assert_eq!(ids, vec!["1234", "5678"]);
    let r = c
        .ok("<iq type='get' to='alice@localhost' id='{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='eu.siacs.conversations.axolotl.bundles:1234'/></pubsub></iq>")
        .await;
    assert!(to_string(&r).contains("identityKey"));
}

#[tokio::test]
async fn nodes_and_items_survive_restart_on_sqlite() {
    let mut s = server_with(|c| c.storage.backend = "sqlite".into()).await;
    {
        befriend(&s, "alice", "bob").await;
        let mut a = Peer::login(&s, "alice", "a", &[]).await;
        a.ok(&publish(
            "urn:keep",
            "k1",
            "<k xmlns='urn:keep'>v</k>",
            &[("pubsub#access_model", "open")],
        ))
        .await;
    }
    s.restart().await.unwrap();
    let mut c = Peer::login(&s, "carol", "c", &[]).await;
    let r = c
        .ok("<iq type='get' to='alice@localhost' id='{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:keep'/></pubsub></iq>")
        .await;
    assert!(to_string(&r).contains("k1"), "{}", to_string(&r));
}
