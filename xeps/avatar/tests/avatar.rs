//! XEP-0398 end to end over real client connections: a XEP-0084 avatar published on PEP shows
//! up as the vCard photo and as the XEP-0153 hash in presence; a vCard photo shows up as the
//! PEP avatar with notifications; removal and bad data; the disco feature; the switch.

use base64::Engine;
use minidom::Element;
use tern_avatar::photo::sha1_hex;
use tern_testkit::{RawClient, TestServer};

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const NS_VCARD: &str = "vcard-temp";
const NS_UPDATE: &str = "vcard-temp:x:update";
const NS_DATA: &str = "urn:xmpp:avatar:data";
const NS_META: &str = "urn:xmpp:avatar:metadata";
const FEATURE: &str = "urn:xmpp:pep-vcard-conversion:0";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A small "PNG": the signature and an IHDR of 16×8, enough for type and size sniffing.
fn image(seed: u8) -> Vec<u8> {
    let mut b = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13];
    b.extend_from_slice(b"IHDR");
    b.extend_from_slice(&16u32.to_be_bytes());
    b.extend_from_slice(&8u32.to_be_bytes());
    b.extend_from_slice(&[8, 6, 0, 0, 0, seed, seed, seed]);
    b
}

async fn setup() -> (TestServer, RawClient, RawClient) {
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
    (s, a, b)
}

async fn ok(c: &mut RawClient, id: &str, xml: &str) -> Element {
    let r = c.iq(id, xml).await.unwrap();
    assert_eq!(r.attr("type"), Some("result"), "{id}: {}", String::from(&r));
    r
}

/// An IQ (id `iq`) publishing `payload` as item `id` of alice's `node`.
fn publish(iq: &str, node: &str, id: &str, payload: &str) -> String {
    format!(
        "<iq type='set' id='{iq}'><pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'>\
         <item id='{id}'>{payload}</item></publish></pubsub></iq>"
    )
}

/// alice's vCard as bob reads it.
async fn vcard_of_alice(b: &mut RawClient, id: &str) -> Element {
    let r = ok(
        b,
        id,
        &format!("<iq type='get' id='{id}' to='alice@localhost'><vCard xmlns='{NS_VCARD}'/></iq>"),
    )
    .await;
    r.get_child("vCard", NS_VCARD).unwrap().clone()
}

fn photo_bytes(v: &Element) -> Option<(String, Vec<u8>)> {
    let p = v.get_child("PHOTO", NS_VCARD)?;
    let t = p.get_child("TYPE", NS_VCARD).map(|t| t.text())?;
    let b = B64.decode(p.get_child("BINVAL", NS_VCARD)?.text()).ok()?;
    Some((t, b))
}

/// alice sends an available presence with `inner` children; returns the `<photo/>` text of
/// that presence as bob receives it (`None`: no update element or no photo).
async fn photo_seen(
    a: &mut RawClient,
    b: &mut RawClient,
    inner: &str,
    tag: &str,
) -> Option<String> {
    a.send_str(&format!(
        "<presence>{inner}<status>{tag}</status></presence>"
    ))
    .await
    .unwrap();
    let p = b
        .expect(&format!("presence {tag} from alice"), |e| {
            e.name() == "presence"
                && e.attr("from") == Some("alice@localhost/a")
                && e.get_child("status", "jabber:client")
                    .map(|s| s.text())
                    .as_deref()
                    == Some(tag)
        })
        .await
        .unwrap();
    let xs: Vec<&Element> = p.children().filter(|c| c.is("x", NS_UPDATE)).collect();
    assert!(
        xs.len() <= 1,
        "one update element at most: {}",
        String::from(&p)
    );
    xs.first()
        .and_then(|x| x.get_child("photo", NS_UPDATE))
        .map(|p| p.text())
}

/// The metadata payload bob reads on alice's PEP.
async fn metadata_of_alice(b: &mut RawClient, id: &str) -> Option<Element> {
    let r = ok(
        b,
        id,
        &format!(
            "<iq type='get' id='{id}' to='alice@localhost'><pubsub xmlns='{NS_PUBSUB}'>\
             <items node='{NS_META}' max_items='1'/></pubsub></iq>"
        ),
    )
    .await;
    r.get_child("pubsub", NS_PUBSUB)?
        .get_child("items", NS_PUBSUB)?
        .get_child("item", NS_PUBSUB)?
        .get_child("metadata", NS_META)
        .cloned()
}

#[tokio::test]
async fn pep_avatar_becomes_vcard_photo_and_presence_hash() {
    let (_s, mut a, mut b) = setup().await;

    let r = ok(
        &mut a,
        "d1",
        "<iq type='get' id='d1' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    )
    .await;
    assert!(
        String::from(&r).contains(FEATURE),
        "account advertises XEP-0398: {}",
        String::from(&r)
    );

    // Before any avatar: presence says "no avatar" with an empty photo (XEP-0153 §3.2).
    assert_eq!(
        photo_seen(&mut a, &mut b, "", "p1").await.as_deref(),
        Some("")
    );

    ok(
        &mut a,
        "v1",
        "<iq type='set' id='v1'><vCard xmlns='vcard-temp'><FN>Alice</FN><NICKNAME>al</NICKNAME></vCard></iq>",
    )
    .await;
    let img = image(1);
    let id = sha1_hex(&img);
    ok(
        &mut a,
        "pub-data1",
        &publish(
            "pub-data1",
            NS_DATA,
            &id,
            &format!("<data xmlns='{NS_DATA}'>{}</data>", B64.encode(&img)),
        ),
    )
    .await;
    // Metadata with an external image first: the server must pick the one without url.
    let meta = format!(
        "<metadata xmlns='{NS_META}'>\
         <info id='0000' type='image/gif' bytes='10' url='https://example.org/a.gif'/>\
         <info id='{id}' type='image/png' bytes='{}' width='16' height='8'/></metadata>",
        img.len()
    );
    ok(
        &mut a,
        "pub-meta1",
        &publish("pub-meta1", NS_META, &id, &meta),
    )
    .await;

    let v = vcard_of_alice(&mut b, "g1").await;
    assert_eq!(photo_bytes(&v), Some(("image/png".into(), img.clone())));
    assert_eq!(v.get_child("FN", NS_VCARD).unwrap().text(), "Alice");
    assert_eq!(v.get_child("NICKNAME", NS_VCARD).unwrap().text(), "al");

    // The hash goes into every available presence; an empty <photo/> from the client is kept.
    let seen = photo_seen(&mut a, &mut b, "", "p2").await;
    assert_eq!(seen.as_deref(), Some(id.as_str()));
    let seen = photo_seen(&mut a, &mut b, "<x xmlns='vcard-temp:x:update'/>", "p3").await;
    assert_eq!(seen.as_deref(), Some(id.as_str()));
    let stale = "<x xmlns='vcard-temp:x:update'><photo>ffff</photo></x>";
    let seen = photo_seen(&mut a, &mut b, stale, "p4").await;
    assert_eq!(seen.as_deref(), Some(id.as_str()));
    // Directed presence too (XEP-0398 §4: "such as MUC joins").
    a.send_str("<presence to='bob@localhost/b'><status>direct</status></presence>")
        .await
        .unwrap();
    let p = b
        .expect("directed presence", |e| {
            e.name() == "presence"
                && e.get_child("status", "jabber:client")
                    .map(|s| s.text())
                    .as_deref()
                    == Some("direct")
        })
        .await
        .unwrap();
    let photo = p
        .get_child("x", NS_UPDATE)
        .and_then(|x| x.get_child("photo", NS_UPDATE))
        .map(|p| p.text());
    assert_eq!(photo.as_deref(), Some(id.as_str()), "{}", String::from(&p));
    let empty = "<x xmlns='vcard-temp:x:update'><photo/></x>";
    assert_eq!(
        photo_seen(&mut a, &mut b, empty, "p5").await.as_deref(),
        Some("")
    );

    // The conversion did not echo back: PEP still holds alice's own metadata item.
    let md = metadata_of_alice(&mut b, "m1").await.unwrap();
    assert_eq!(md.children().count(), 2, "{}", String::from(&md));

    // Disabling the PEP avatar removes the vCard photo, and presence follows.
    ok(
        &mut a,
        "pub-off",
        &format!(
            "<iq type='set' id='pub-off'><pubsub xmlns='{NS_PUBSUB}'><publish node='{NS_META}'>\
             <item><metadata xmlns='{NS_META}'/></item></publish></pubsub></iq>"
        ),
    )
    .await;
    let v = vcard_of_alice(&mut b, "g2").await;
    assert!(
        v.get_child("PHOTO", NS_VCARD).is_none(),
        "{}",
        String::from(&v)
    );
    assert_eq!(v.get_child("FN", NS_VCARD).unwrap().text(), "Alice");
    assert_eq!(
        photo_seen(&mut a, &mut b, "", "p6").await.as_deref(),
        Some("")
    );
}

/// alice sets a vCard with `img` as its photo.
async fn set_vcard_photo(a: &mut RawClient, iq: &str, img: Option<&[u8]>) {
    let photo = img
        .map(|i| {
            format!(
                "<PHOTO><TYPE>image/png</TYPE><BINVAL>{}</BINVAL></PHOTO>",
                B64.encode(i)
            )
        })
        .unwrap_or_default();
    ok(
        a,
        iq,
        &format!(
            "<iq type='set' id='{iq}'><vCard xmlns='vcard-temp'><FN>Alice</FN>{photo}</vCard></iq>"
        ),
    )
    .await;
}

/// The avatar id announced by a metadata payload (its one `<info/>`).
fn info_id(md: &Element) -> Option<String> {
    md.get_child("info", NS_META)?.attr("id").map(str::to_owned)
}

#[tokio::test]
async fn vcard_photo_becomes_pep_avatar_with_notification() {
    let (_s, mut a, mut b) = setup().await;
    let first = image(2);
    set_vcard_photo(&mut a, "v1", Some(&first)).await;
    let md = metadata_of_alice(&mut b, "m1")
        .await
        .expect("metadata published");
    let info = md.get_child("info", NS_META).unwrap();
    assert_eq!(info.attr("id"), Some(sha1_hex(&first).as_str()));
    assert_eq!(info.attr("type"), Some("image/png"));
    assert_eq!(info.attr("bytes"), Some(first.len().to_string().as_str()));
    assert_eq!(
        (info.attr("width"), info.attr("height")),
        (Some("16"), Some("8"))
    );
    let r = ok(
        &mut b,
        "d1",
        &format!(
            "<iq type='get' id='d1' to='alice@localhost'><pubsub xmlns='{NS_PUBSUB}'>\
             <items node='{NS_DATA}'><item id='{}'/></items></pubsub></iq>",
            sha1_hex(&first)
        ),
    )
    .await;
    let data = r
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .and_then(|i| i.get_child("item", NS_PUBSUB))
        .and_then(|i| i.get_child("data", NS_DATA))
        .map(|d| B64.decode(d.text()).unwrap());
    assert_eq!(data.as_deref(), Some(first.as_slice()));
    // The vCard is untouched by the round trip (no second write with another encoding).
    let v = vcard_of_alice(&mut b, "g1").await;
    assert_eq!(photo_bytes(&v), Some(("image/png".into(), first.clone())));

    // bob subscribes to the metadata node and hears about the next change (XEP-0398 §3.2).
    ok(
        &mut b,
        "sub",
        &format!(
            "<iq type='set' id='sub' to='alice@localhost'><pubsub xmlns='{NS_PUBSUB}'>\
             <subscribe node='{NS_META}' jid='bob@localhost/b'/></pubsub></iq>"
        ),
    )
    .await;
    let second = image(3);
    set_vcard_photo(&mut a, "v2", Some(&second)).await;
    let m = b
        .expect("metadata notification", |e| {
            e.name() == "message"
                && e.get_child("event", NS_EVENT)
                    .and_then(|ev| ev.get_child("items", NS_EVENT))
                    .is_some_and(|i| i.attr("node") == Some(NS_META))
        })
        .await
        .unwrap();
    assert_eq!(m.attr("from"), Some("alice@localhost"));
    let md = m
        .get_child("event", NS_EVENT)
        .and_then(|ev| ev.get_child("items", NS_EVENT))
        .and_then(|i| i.get_child("item", NS_EVENT))
        .and_then(|i| i.get_child("metadata", NS_META))
        .unwrap();
    assert_eq!(info_id(md), Some(sha1_hex(&second)));
    assert_eq!(
        photo_seen(&mut a, &mut b, "", "p1").await,
        Some(sha1_hex(&second)),
        "presence carries the new hash"
    );

    // A vCard without photo disables the PEP avatar (empty metadata, XEP-0084 §4.5).
    set_vcard_photo(&mut a, "v3", None).await;
    let md = metadata_of_alice(&mut b, "m2")
        .await
        .expect("metadata item");
    assert_eq!(md.children().count(), 0, "{}", String::from(&md));
    assert_eq!(
        photo_seen(&mut a, &mut b, "", "p2").await.as_deref(),
        Some("")
    );
}

#[tokio::test]
async fn metadata_whose_data_does_not_match_leaves_the_vcard_alone() {
    let (_s, mut a, mut b) = setup().await;
    let img = image(4);
    set_vcard_photo(&mut a, "v1", Some(&img)).await;
    // Data published under an id that is not its hash, then announced.
    let bogus = "0123456789abcdef0123456789abcdef01234567";
    ok(
        &mut a,
        "pd",
        &publish(
            "pd",
            NS_DATA,
            bogus,
            &format!("<data xmlns='{NS_DATA}'>{}</data>", B64.encode(image(5))),
        ),
    )
    .await;
    ok(
        &mut a,
        "pm",
        &publish(
            "pm",
            NS_META,
            bogus,
            &format!("<metadata xmlns='{NS_META}'><info id='{bogus}' type='image/png' bytes='10'/></metadata>"),
        ),
    )
    .await;
    let v = vcard_of_alice(&mut b, "g1").await;
    assert_eq!(photo_bytes(&v), Some(("image/png".into(), img.clone())));
}

#[tokio::test]
async fn conversion_can_be_switched_off() {
    let s = TestServer::start_with(|c| c.avatar.pep_vcard_conversion = false)
        .await
        .unwrap();
    s.add_user("alice", "pw").await.unwrap();
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    let r = ok(
        &mut a,
        "d1",
        "<iq type='get' id='d1' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    )
    .await;
    assert!(!String::from(&r).contains(FEATURE), "{}", String::from(&r));
    set_vcard_photo(&mut a, "v1", Some(&image(6))).await;
    let r = a
        .iq(
            "m1",
            &format!(
                "<iq type='get' id='m1' to='alice@localhost'><pubsub xmlns='{NS_PUBSUB}'>\
                 <items node='{NS_META}'/></pubsub></iq>"
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        r.attr("type"),
        Some("error"),
        "no avatar node: {}",
        String::from(&r)
    );
}
