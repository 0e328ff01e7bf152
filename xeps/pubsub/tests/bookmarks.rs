//! XEP-0049 private storage and the XEP-0402 ⇄ XEP-0048 bookmark synchronization end to end.

mod common;

use common::*;

const PRIV: &str = "jabber:iq:private";
const B2: &str = "urn:xmpp:bookmarks:1";

fn private_get(inner: &str) -> String {
    format!("<iq type='get' id='{{id}}'><query xmlns='{PRIV}'>{inner}</query></iq>")
}

fn private_set(inner: &str) -> String {
    format!("<iq type='set' id='{{id}}'><query xmlns='{PRIV}'>{inner}</query></iq>")
}

#[tokio::test]
async fn private_storage_round_trip_and_errors() {
    let s = server_with(|_| {}).await;
    let mut a = Peer::login(&s, "alice", "a", &[]).await;
    // Nothing stored yet: the empty element comes back.
    let r = a
        .ok(&private_get("<prefs xmlns='urn:example:prefs'/>"))
        .await;
    let q = r.get_child("query", PRIV).unwrap();
    let p = q.get_child("prefs", "urn:example:prefs").unwrap();
    assert_eq!(p.children().count(), 0);
    a.ok(&private_set(
        "<prefs xmlns='urn:example:prefs'><colour>blue</colour></prefs>",
    ))
    .await;
    let r = a
        .ok(&private_get("<prefs xmlns='urn:example:prefs'/>"))
        .await;
    assert!(to_string(&r).contains("blue"));
    // Another user's data: forbidden.
    let mut b = Peer::login(&s, "bob", "b", &[]).await;
    let r = b
        .iq(&private_get("<prefs xmlns='urn:example:prefs'/>")
            .replace("<iq ", "<iq to='alice@localhost' "))
        .await;
    assert_eq!(error_of(&r).0, "forbidden");
    // No child on get: bad-request; the reserved namespace: not-acceptable.
    assert_eq!(error_of(&a.iq(&private_get("")).await).0, "bad-request");
    let r = a.iq(&private_set(&format!("<x xmlns='{PRIV}'/>"))).await;
    assert_eq!(error_of(&r).0, "not-acceptable");
}

#[tokio::test]
async fn private_bookmarks_become_pep_items_and_back() {
    let s = server_with(|_| {}).await;
    let mut a = Peer::login(&s, "alice", "a", &[B2]).await;
    a.online().await;
    a.quiet(200, |_| false).await;
    // XEP-0048 via private storage → XEP-0402 items (with a notification to +notify clients).
    a.ok(&private_set(
        "<storage xmlns='storage:bookmarks'>\
           <conference jid='council@conference.localhost' name='Council' autojoin='true'><nick>Al</nick></conference>\
           <url name='Site' url='https://example.org/'/></storage>",
    ))
    .await;
    let m = a.expect("bookmark event", |e| is_event(e, B2)).await;
    assert!(to_string(&m).contains("council@conference.localhost"));
    let r = a
        .ok(&format!("<iq type='get' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><items node='{B2}'/></pubsub></iq>"))
        .await;
    let item = r
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .and_then(|i| i.get_child("item", NS_PUBSUB))
        .unwrap();
    assert_eq!(item.attr("id"), Some("council@conference.localhost"));
    let conf = item.get_child("conference", B2).unwrap();
    assert_eq!(conf.attr("autojoin"), Some("true"));
    assert_eq!(conf.get_child("nick", B2).unwrap().text(), "Al");
    // The node got the XEP-0402 configuration: whitelist.
    let r = a
        .ok(&format!("<iq type='get' id='{{id}}'><pubsub xmlns='{NS_OWNER}'><configure node='{B2}'/></pubsub></iq>"))
        .await;
    assert!(
        to_string(&r).contains("<value>whitelist</value>"),
        "{}",
        to_string(&r)
    );

    // XEP-0402 publish → visible through private storage (the url bookmark kept).
    a.ok(&publish(
        B2,
        "orchard@conference.localhost",
        "<conference xmlns='urn:xmpp:bookmarks:1' name='Orchard' autojoin='false'/>",
        &[
            ("pubsub#persist_items", "true"),
            ("pubsub#max_items", "max"),
            ("pubsub#send_last_published_item", "never"),
            ("pubsub#access_model", "whitelist"),
        ],
    ))
    .await;
    let r = a
        .ok(&private_get("<storage xmlns='storage:bookmarks'/>"))
        .await;
    let x = to_string(&r);
    assert!(x.contains("orchard@conference.localhost"), "{x}");
    assert!(x.contains("council@conference.localhost"), "{x}");
    assert!(x.contains("https://example.org/"), "{x}");
    // …and through the XEP-0048 PEP node (#compat-pep).
    let r = a
        .ok(&format!("<iq type='get' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><items node='storage:bookmarks'/></pubsub></iq>"))
        .await;
    assert!(to_string(&r).contains("orchard@conference.localhost"));

    // Retracting via XEP-0402 removes it from private storage.
    a.ok(&format!(
        "<iq type='set' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><retract node='{B2}' notify='true'><item id='orchard@conference.localhost'/></retract></pubsub></iq>"
    ))
    .await;
    let r = a
        .ok(&private_get("<storage xmlns='storage:bookmarks'/>"))
        .await;
    assert!(!to_string(&r).contains("orchard"));

    // A legacy PEP client replaces the list: the XEP-0402 items follow (council removed).
    a.ok(&publish(
        "storage:bookmarks",
        "current",
        "<storage xmlns='storage:bookmarks'><conference jid='garden@conference.localhost' autojoin='1'/></storage>",
        &[],
    ))
    .await;
    let r = a
        .ok(&format!("<iq type='get' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><items node='{B2}'/></pubsub></iq>"))
        .await;
    let x = to_string(&r);
    assert!(
        x.contains("garden@conference.localhost") && !x.contains("council"),
        "{x}"
    );
}
