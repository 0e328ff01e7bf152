//! XEP-0115 §6.3 server capabilities in stream features: the `<c/>` offered before and after
//! authentication carries the `ver` of exactly what a disco#info of the host returns
//! (recomputed here), and the host answers disco#info on the `node#ver` node (§6.2).

use minidom::Element;
use tern_router::caps::{ver, NS_CAPS};
use tern_router::disco::CAPS_NODE;
use tern_testkit::{RawClient, TestServer};

const NS_INFO: &str = "http://jabber.org/protocol/disco#info";

fn caps_of(features: &Element) -> Element {
    let cs: Vec<&Element> = features.children().filter(|c| c.is("c", NS_CAPS)).collect();
    assert_eq!(cs.len(), 1, "one <c/>: {}", String::from(features));
    let c = cs[0].clone();
    assert_eq!(c.attr("hash"), Some("sha-1"));
    assert_eq!(c.attr("node"), Some(CAPS_NODE));
    c
}

async fn host_info(c: &mut RawClient, id: &str, node: Option<&str>) -> Element {
    let node = node.map(|n| format!(" node='{n}'")).unwrap_or_default();
    let r = c
        .iq(
            id,
            &format!(
                "<iq type='get' id='{id}' to='localhost'><query xmlns='{NS_INFO}'{node}/></iq>"
            ),
        )
        .await
        .unwrap();
    assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
    r.get_child("query", NS_INFO).unwrap().clone()
}

async fn check(s: &TestServer) -> String {
    s.add_user("alice", "pw").await.unwrap();
    // Before authentication (after STARTTLS).
    let mut c = RawClient::connect(s.c2s, &s.domain).await.unwrap();
    c.open().await.unwrap();
    let (_c, pre) = c.starttls(&s.ca_path()).await.unwrap();
    let pre = caps_of(&pre);

    let (mut c, post) = RawClient::authenticate(s, "alice", "pw").await.unwrap();
    let post = caps_of(&post);
    assert_eq!(pre.attr("ver"), post.attr("ver"));
    let b = c.bind(Some("r")).await.unwrap();
    assert_eq!(b.attr("type"), Some("result"));

    let info = host_info(&mut c, "i1", None).await;
    let announced = post.attr("ver").unwrap().to_owned();
    assert_eq!(
        ver(&info),
        announced,
        "ver is the hash of the host's disco#info"
    );
    assert!(
        info.children()
            .any(|f| f.is("feature", NS_INFO) && f.attr("var") == Some(NS_CAPS)),
        "the server says it does XEP-0115"
    );

    // §6.2: the same information under node#ver, with the node echoed.
    let node = format!("{CAPS_NODE}#{announced}");
    let by_node = host_info(&mut c, "i2", Some(&node)).await;
    assert_eq!(by_node.attr("node"), Some(node.as_str()));
    assert_eq!(ver(&by_node), announced);
    // Any other node is still unknown.
    let r = c
        .iq(
            "i3",
            &format!("<iq type='get' id='i3' to='localhost'><query xmlns='{NS_INFO}' node='{CAPS_NODE}#stale'/></iq>"),
        )
        .await
        .unwrap();
    assert_eq!(r.attr("type"), Some("error"), "{}", String::from(&r));
    announced
}

#[tokio::test]
async fn stream_feature_caps_match_host_disco() {
    let plain = TestServer::start().await.unwrap();
    let v1 = check(&plain).await;

    // XEP-0128 forms count: contact addresses (XEP-0157) change the ver, which still matches.
    let with_contacts = TestServer::start_with(|c| {
        c.contact.abuse = vec!["mailto:abuse@localhost".into()];
    })
    .await
    .unwrap();
    let v2 = check(&with_contacts).await;
    assert_ne!(v1, v2, "the contact form is part of the hash");
}
