//! The XEP-0060 service on pubsub.localhost end to end: discovery, node lifecycle (instant and
//! named creation, configuration, purge, deletion), subscriptions with options, affiliations,
//! publish/retract/items with notifications carrying the publisher, and the error cases.

mod common;

use common::*;

const SVC: &str = "pubsub.localhost";

fn ps(body: &str) -> String {
    format!(
        "<iq type='set' to='{SVC}' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'>{body}</pubsub></iq>"
    )
}

fn owner(type_: &str, body: &str) -> String {
    format!(
        "<iq type='{type_}' to='{SVC}' id='{{id}}'><pubsub xmlns='{NS_OWNER}'>{body}</pubsub></iq>"
    )
}

fn publish_to(node: &str, id: &str, payload: &str) -> String {
    ps(&format!(
        "<publish node='{node}'><item id='{id}'>{payload}</item></publish>"
    ))
}

#[tokio::test]
async fn service_discovery() {
    let s = server_with(|_| {}).await;
    let mut a = Peer::login(&s, "alice", "a", &[]).await;
    let r = a
        .ok("<iq type='get' to='localhost' id='{id}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await;
    assert!(
        to_string(&r).contains("jid='pubsub.localhost'"),
        "{}",
        to_string(&r)
    );
    let r = a
        .ok(&format!("<iq type='get' to='{SVC}' id='{{id}}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"))
        .await;
    let q = r
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert!(q
        .children()
        .any(|i| i.attr("category") == Some("pubsub") && i.attr("type") == Some("service")));
    let feats: Vec<_> = q.children().filter_map(|f| f.attr("var")).collect();
    assert!(feats.contains(&"http://jabber.org/protocol/pubsub#instant-nodes"));
    assert!(feats.contains(&"http://jabber.org/protocol/pubsub#create-nodes"));
    // Unknown namespaces and messages are refused.
    let r = a
        .iq(&format!(
            "<iq type='get' to='{SVC}' id='{{id}}'><query xmlns='jabber:iq:version'/></iq>"
        ))
        .await;
    assert_eq!(error_of(&r).0, "service-unavailable");
}

#[tokio::test]
async fn node_lifecycle_and_notifications() {
    let s = server_with(|_| {}).await;
    let mut a = Peer::login(&s, "alice", "a", &[]).await;
    let mut b = Peer::login(&s, "bob", "b", &[]).await;

    // Instant node: the service names it.
    let r = a.ok(&ps("<create/>")).await;
    let instant = r
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("create", NS_PUBSUB))
        .and_then(|c| c.attr("node"))
        .unwrap()
        .to_owned();
    assert!(!instant.is_empty());
    // Named node with a configuration: publisher shown in notifications.
    a.ok(&ps("<create node='news'/><configure><x xmlns='jabber:x:data' type='submit'>\
        <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
        <field var='pubsub#itemreply'><value>publisher</value></field>\
        <field var='pubsub#title'><value>News</value></field></x></configure>"))
        .await;
    let r = a.iq(&ps("<create node='news'/>")).await;
    assert_eq!(error_of(&r).0, "conflict");
    let r = a
        .ok(&format!("<iq type='get' to='{SVC}' id='{{id}}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"))
        .await;
    assert!(to_string(&r).contains("node='news'"));
    assert!(to_string(&r).contains("name='News'"));

    // bob subscribes (to his own JID only).
    let r = b
        .iq(&ps("<subscribe node='news' jid='alice@localhost'/>"))
        .await;
    assert_eq!(
        error_of(&r),
        ("bad-request".into(), Some("invalid-jid".into()))
    );
    let r = b
        .ok(&ps("<subscribe node='news' jid='bob@localhost/b'/>"))
        .await;
    let sub = r
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("subscription", NS_PUBSUB))
        .unwrap();
    assert_eq!(sub.attr("subscription"), Some("subscribed"));
    assert!(sub.attr("subid").is_some());
    let r = b
        .iq(&ps("<subscribe node='nope' jid='bob@localhost/b'/>"))
        .await;
    assert_eq!(error_of(&r).0, "item-not-found");

    // Subscription options.
    let r = b
        .ok(&format!("<iq type='get' to='{SVC}' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><options node='news' jid='bob@localhost/b'/></pubsub></iq>"))
        .await;
    assert!(to_string(&r).contains("pubsub#deliver"));

    // Only owners and publishers publish by default.
    let r = b
        .iq(&publish_to("news", "x", "<entry xmlns='urn:n'/>"))
        .await;
    assert_eq!(error_of(&r).0, "forbidden");
    a.ok(&publish_to(
        "news",
        "n1",
        "<entry xmlns='urn:n'>hello</entry>",
    ))
    .await;
    let m = b.expect("news event", |e| is_event(e, "news")).await;
    assert_eq!(m.attr("from"), Some(SVC));
    let it = event_items(&m).children().next().unwrap();
    assert_eq!(it.attr("id"), Some("n1"));
    assert_eq!(it.attr("publisher"), Some("alice@localhost/a"));

    // Affiliations: bob becomes a publisher, then publishes; carol is an outcast.
    a.ok(&owner("set", "<affiliations node='news'><affiliation jid='bob@localhost' affiliation='publisher'/><affiliation jid='carol@localhost' affiliation='outcast'/></affiliations>"))
        .await;
    b.ok(&publish_to(
        "news",
        "n2",
        "<entry xmlns='urn:n'>from bob</entry>",
    ))
    .await;
    b.expect("own publish event", |e| is_event(e, "news")).await;
    let r = b.iq(&owner("get", "<affiliations node='news'/>")).await;
    assert_eq!(error_of(&r).0, "forbidden");
    let mut c = Peer::login(&s, "carol", "c", &[]).await;
    let r = c
        .iq(&ps("<subscribe node='news' jid='carol@localhost'/>"))
        .await;
    assert_eq!(error_of(&r).0, "forbidden");

    // Items retrieval with max_items and by id.
    let r = b
        .ok(&format!("<iq type='get' to='{SVC}' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><items node='news' max_items='1'/></pubsub></iq>"))
        .await;
    assert!(to_string(&r).contains("n2") && !to_string(&r).contains("'n1'"));
    let r = b
        .ok(&format!("<iq type='get' to='{SVC}' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><items node='news'><item id='n1'/></items></pubsub></iq>"))
        .await;
    assert!(to_string(&r).contains("hello"));

    // Retract: bob may retract his own item; with notify, subscribers hear of it.
    b.ok(&ps(
        "<retract node='news' notify='1'><item id='n2'/></retract>",
    ))
    .await;
    let m = b.expect("retract", |e| is_event(e, "news")).await;
    assert!(to_string(&m).contains("retract"));

    // Subscriptions lists.
    let r = b
        .ok(&format!("<iq type='get' to='{SVC}' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><subscriptions/></pubsub></iq>"))
        .await;
    assert!(to_string(&r).contains("node='news'"));
    let r = a.ok(&owner("get", "<subscriptions node='news'/>")).await;
    assert!(to_string(&r).contains("bob@localhost/b"));

    // Configure: get, set, and notify_config.
    let r = a.ok(&owner("get", "<configure node='news'/>")).await;
    assert!(to_string(&r).contains("pubsub#access_model"));
    let r = a.iq(&owner("get", "<configure node='nope'/>")).await;
    assert_eq!(error_of(&r).0, "item-not-found");
    let r = a
        .iq(&ps("<create node='coll'/><configure><x xmlns='jabber:x:data' type='submit'><field var='pubsub#node_type'><value>collection</value></field></x></configure>"))
        .await;
    assert_eq!(
        error_of(&r),
        ("feature-not-implemented".into(), Some("unsupported".into()))
    );
    assert!(to_string(&r).contains("feature='collections'"));

    // Purge, then delete with notifications; the node is gone afterwards.
    a.ok(&owner("set", "<purge node='news'/>")).await;
    b.expect("purge", |e| {
        e.name() == "message" && to_string(e).contains("purge")
    })
    .await;
    a.ok(&owner("set", "<delete node='news'/>")).await;
    b.expect("delete", |e| {
        e.name() == "message" && to_string(e).contains("delete")
    })
    .await;
    let r = b
        .iq(&publish_to("news", "z", "<entry xmlns='urn:n'/>"))
        .await;
    assert_eq!(error_of(&r).0, "item-not-found");

    // Unsubscribe from the instant node we were never subscribed to.
    let r = b
        .iq(&ps(&format!(
            "<unsubscribe node='{instant}' jid='bob@localhost/b'/>"
        )))
        .await;
    assert_eq!(
        error_of(&r),
        ("unexpected-request".into(), Some("not-subscribed".into()))
    );
}

#[tokio::test]
async fn creation_policy_from_config() {
    let s = server_with(|c| c.pubsub.create_nodes = tern_pubsub::CreatePolicy::Nobody).await;
    let mut a = Peer::login(&s, "alice", "a", &[]).await;
    let r = a.iq(&ps("<create node='x'/>")).await;
    assert_eq!(error_of(&r).0, "forbidden");
}

#[tokio::test]
async fn service_nodes_survive_restart_on_sqlite() {
    let mut s = server_with(|c| c.storage.backend = "sqlite".into()).await;
    {
        let mut a = Peer::login(&s, "alice", "a", &[]).await;
        a.ok(&ps("<create node='keep'/>")).await;
        a.ok(&publish_to(
            "keep",
            "k1",
            "<entry xmlns='urn:n'>kept</entry>",
        ))
        .await;
        a.ok(&ps("<subscribe node='keep' jid='alice@localhost'/>"))
            .await;
    }
    s.restart().await.unwrap();
    let mut a = Peer::login(&s, "alice", "a", &[]).await;
    let r = a
        .ok(&format!("<iq type='get' to='{SVC}' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><items node='keep'/></pubsub></iq>"))
        .await;
    assert!(to_string(&r).contains("kept"));
    let r = a.ok(&owner("get", "<subscriptions node='keep'/>")).await;
    assert!(to_string(&r).contains("alice@localhost"));
}
