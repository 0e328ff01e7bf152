//! XEP-0065 through Tern's proxy end to end: discovery, the streamhost query, two SOCKS5
//! connections paired by the SHA-1 destination, activation errors, and a relayed transfer
//! delivering identical bytes both ways.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use tern_file_transfer::proxy65::dst_hash;
use tern_testkit::{error_condition as condition, RawClient, TestServer};

const BS: &str = "http://jabber.org/protocol/bytestreams";

async fn socks_connect(addr: &str, hash: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).await.unwrap();
    assert_eq!(m, [5, 0]);
    let mut req = vec![5, 1, 0, 3, hash.len() as u8];
    req.extend_from_slice(hash.as_bytes());
    req.extend_from_slice(&[0, 0]);
    s.write_all(&req).await.unwrap();
    let mut rep = vec![0u8; 5 + hash.len() + 2];
    s.read_exact(&mut rep).await.unwrap();
    assert_eq!(&rep[..2], &[5, 0], "SOCKS5 reply {rep:?}");
    s
}

#[tokio::test]
async fn socks5_transfer_through_the_proxy() {
    let s = TestServer::start().await.unwrap();
    s.add_user("alice", "pw").await.unwrap();
    s.add_user("bob", "pw").await.unwrap();
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();

    let items = a.iq("i", "<iq type='get' id='i' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>").await.unwrap();
    assert!(items
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap()
        .children()
        .any(|i| i.attr("jid") == Some("proxy.localhost")));
    let info = a.iq("f", "<iq type='get' id='f' to='proxy.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await.unwrap();
    let q = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    let id = q.children().find(|c| c.name() == "identity").unwrap();
    assert_eq!(
        (id.attr("category"), id.attr("type")),
        (Some("proxy"), Some("bytestreams"))
    );
    assert!(q.children().any(|f| f.attr("var") == Some(BS)));

    let r = a.iq("h", "<iq type='get' id='h' to='proxy.localhost'><query xmlns='http://jabber.org/protocol/bytestreams'/></iq>").await.unwrap();
    let sh = r
        .get_child("query", BS)
        .unwrap()
        .get_child("streamhost", BS)
        .unwrap()
        .clone();
    assert_eq!(sh.attr("jid"), Some("proxy.localhost"));
    let addr = format!("{}:{}", sh.attr("host").unwrap(), sh.attr("port").unwrap());

    // Activation before anyone connected, and with only one party.
    let sid = "s5b-test-1";
    let act = |id: &str, sid: &str| {
        format!("<iq type='set' id='{id}' to='proxy.localhost'><query xmlns='{BS}' sid='{sid}'><activate>bob@localhost/b</activate></query></iq>")
    };
    let r = a.iq("a0", &act("a0", sid)).await.unwrap();
    assert_eq!(condition(&r).as_deref(), Some("item-not-found"));
    let hash = dst_hash(sid, "alice@localhost/a", "bob@localhost/b");
    let mut target = socks_connect(&addr, &hash).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = a.iq("a1", &act("a1", sid)).await.unwrap();
    assert_eq!(condition(&r).as_deref(), Some("not-acceptable"));
    let r = a.iq("a2", &format!("<iq type='set' id='a2' to='proxy.localhost'><query xmlns='{BS}'><activate>bob@localhost/b</activate></query></iq>")).await.unwrap();
    assert_eq!(condition(&r).as_deref(), Some("bad-request"));

    let mut initiator = socks_connect(&addr, &hash).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = a.iq("a3", &act("a3", sid)).await.unwrap();
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");

    // 3 MB one way, 100 kB back, concurrently.
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let back: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (d2, b2) = (data.clone(), back.clone());
    let send = tokio::spawn(async move {
        initiator.write_all(&d2).await.unwrap();
        initiator.shutdown().await.unwrap();
        let mut got = Vec::new();
        initiator.read_to_end(&mut got).await.unwrap();
        got
    });
    let mut got = vec![0u8; data.len()];
    target.read_exact(&mut got).await.unwrap();
    target.write_all(&b2).await.unwrap();
    target.shutdown().await.unwrap();
    let mut rest = Vec::new();
    target.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    assert!(got == data, "relayed bytes differ");
    let returned = tokio::time::timeout(Duration::from_secs(10), send)
        .await
        .unwrap()
        .unwrap();
    assert!(returned == back, "bytes sent back differ");
}
