//! The server's and an account's disco#info with the zero-config services: exactly the
//! features that are built, nothing more (issue 4). Adding or removing a feature means
//! changing this list on purpose, next to docs/xep-support.md.

use tern_testkit::{RawClient, TestServer};

const HOST: &[&str] = &[
    "http://jabber.org/protocol/caps",
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "jabber:iq:last",
    "jabber:iq:private",
    "jabber:iq:register",
    "jabber:iq:roster",
    "jabber:iq:version",
    "msgoffline",
    "urn:xmpp:blocking",
    "urn:xmpp:carbons:2",
    "urn:xmpp:carbons:rules:0",
    "urn:xmpp:ping",
    "urn:xmpp:sid:0",
    "urn:xmpp:time",
    "vcard-temp",
];

const PUBSUB: &[&str] = &[
    "access-open",
    "access-presence",
    "access-roster",
    "access-whitelist",
    "auto-create",
    "auto-subscribe",
    "config-node",
    "create-and-configure",
    "create-nodes",
    "delete-items",
    "delete-nodes",
    "filtered-notifications",
    "item-ids",
    "last-published",
    "manage-subscriptions",
    "member-affiliation",
    "modify-affiliations",
    "outcast-affiliation",
    "persistent-items",
    "presence-notifications",
    "publish",
    "publish-options",
    "publisher-affiliation",
    "purge-nodes",
    "retract-items",
    "retrieve-affiliations",
    "retrieve-default",
    "retrieve-items",
    "retrieve-subscriptions",
    "subscribe",
    "subscription-options",
];

const ACCOUNT: &[&str] = &[
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "http://jabber.org/protocol/pubsub",
    "jabber:iq:last",
    "urn:xmpp:bookmarks:1#compat",
    "urn:xmpp:bookmarks:1#compat-pep",
    "urn:xmpp:mam:2",
    "urn:xmpp:mam:2#extended",
    "urn:xmpp:pep-vcard-conversion:0",
    "urn:xmpp:push:0",
    "urn:xmpp:sid:0",
];

async fn info(c: &mut RawClient, to: &str) -> (Vec<String>, Vec<String>) {
    let r = c
        .iq("d", &format!("<iq type='get' id='d' to='{to}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"))
        .await
        .unwrap();
    let q = r
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    let mut features: Vec<String> = q
        .children()
        .filter(|c| c.name() == "feature")
        .map(|c| c.attr("var").unwrap().to_owned())
        .collect();
    features.sort();
    let identities = q
        .children()
        .filter(|c| c.name() == "identity")
        .map(|c| {
            format!(
                "{}/{}",
                c.attr("category").unwrap(),
                c.attr("type").unwrap()
            )
        })
        .collect();
    (features, identities)
}

#[tokio::test]
async fn host_and_account_advertise_exactly_what_is_built() {
    let s = TestServer::start().await.unwrap();
    s.add_user("alice", "pw").await.unwrap();
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();

    let (features, ids) = info(&mut a, "localhost").await;
    assert_eq!(features, HOST);
    assert_eq!(ids, vec!["server/im"]);

    let (features, ids) = info(&mut a, "alice@localhost").await;
    let mut want: Vec<String> = ACCOUNT.iter().map(|f| f.to_string()).collect();
    want.extend(
        PUBSUB
            .iter()
            .map(|f| format!("http://jabber.org/protocol/pubsub#{f}")),
    );
    want.sort();
    assert_eq!(features, want);
    assert_eq!(ids, vec!["account/registered", "pubsub/pep"]);

    // The services the zero-config start enables are all listed under the host.
    let r = a
        .iq("i", "<iq type='get' id='i' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await
        .unwrap();
    let mut items: Vec<String> = r
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap()
        .children()
        .map(|i| i.attr("jid").unwrap().to_owned())
        .collect();
    items.sort();
    assert_eq!(
        items,
        vec![
            "conference.localhost",
            "proxy.localhost",
            "pubsub.localhost",
            "upload.localhost"
        ]
    );
}
