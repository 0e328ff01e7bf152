//! XEP-0363 end to end: discovery with the size limit, slots, an upload over Tern's HTTPS
//! listener streamed to disk and downloaded back identical, and every refusal: too large
//! (with the limit), quota, tampered and expired URLs, size mismatch, a reused slot.

use std::time::Duration;

use minidom::Element;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use tern_testkit::{client_tls, error_condition as condition, RawClient, TestServer};

const UP: &str = "urn:xmpp:http:upload:0";

/// One HTTP/1.1 request over TLS to the test server; returns (status, headers, body).
async fn https(
    s: &TestServer,
    method: &str,
    url: &str,
    ctype: Option<&str>,
    body: &[u8],
    length: Option<usize>,
) -> (u16, String, Vec<u8>) {
    let path = url.split_once("://").unwrap().1;
    let path = &path[path.find('/').unwrap()..];
    let tcp = TcpStream::connect(s.https).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_tls(&s.ca_path()).unwrap());
    let mut tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n", length.unwrap_or(body.len()));
    if let Some(t) = ctype {
        head.push_str(&format!("Content-Type: {t}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    // The server may refuse before reading the whole body; that is fine.
    let _ = tls.write_all(body).await;
    let _ = tls.flush().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut out)).await;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP response head");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, out[split + 4..].to_vec())
}

async fn slot(c: &mut RawClient, id: &str, name: &str, size: usize, ctype: &str) -> Element {
    c.iq(id, &format!("<iq type='get' id='{id}' to='upload.localhost'><request xmlns='{UP}' filename='{name}' size='{size}' content-type='{ctype}'/></iq>")).await.unwrap()
}

fn urls(r: &Element) -> (String, String) {
    let s = r
        .get_child("slot", UP)
        .unwrap_or_else(|| panic!("no slot: {r:?}"));
    (
        s.get_child("put", UP)
            .unwrap()
            .attr("url")
            .unwrap()
            .to_owned(),
        s.get_child("get", UP)
            .unwrap()
            .attr("url")
            .unwrap()
            .to_owned(),
    )
}

#[tokio::test]
async fn upload_download_and_every_refusal() {
    let s = TestServer::start_with(|c| {
        c.upload.max_file_size = 8_000_000;
        c.upload.quota_per_user = 9_000_000;
    })
    .await
    .unwrap();
    s.add_user("alice", "pw").await.unwrap();
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();

    let items = a.iq("i", "<iq type='get' id='i' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>").await.unwrap();
    assert!(items
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap()
        .children()
        .any(|i| i.attr("jid") == Some("upload.localhost")));
    let info = a.iq("f", "<iq type='get' id='f' to='upload.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await.unwrap();
    let q = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert!(q.children().any(|f| f.attr("var") == Some(UP)));
    let max = q
        .get_child("x", "jabber:x:data")
        .unwrap()
        .children()
        .find(|f| f.attr("var") == Some("max-file-size"))
        .unwrap()
        .children()
        .next()
        .unwrap()
        .text();
    assert_eq!(max, "8000000");

    // Too large: not-acceptable with the limit.
    let r = slot(
        &mut a,
        "big",
        "big.bin",
        8_000_001,
        "application/octet-stream",
    )
    .await;
    assert_eq!(condition(&r).as_deref(), Some("not-acceptable"));
    let ftl = r
        .get_child("error", "jabber:client")
        .unwrap()
        .get_child("file-too-large", UP)
        .expect("file-too-large");
    assert_eq!(
        ftl.get_child("max-file-size", UP).unwrap().text(),
        "8000000"
    );
    let r = a.iq("nf", &format!("<iq type='get' id='nf' to='upload.localhost'><request xmlns='{UP}' size='10'/></iq>")).await.unwrap();
    assert_eq!(condition(&r).as_deref(), Some("bad-request"));

    // A 6 MB file: uploaded, downloaded identical with the right headers.
    let data: Vec<u8> = (0..6_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let r = slot(&mut a, "s1", "holiday photo.jpg", data.len(), "image/jpeg").await;
    let (put, get) = urls(&r);
    assert!(
        put.starts_with(&format!("https://localhost:{}/upload/", s.https.port())),
        "{put}"
    );
    assert!(get.ends_with("/holiday%20photo.jpg"), "{get}");
    // Tampered (another size in the URL) and mismatched requests are refused first.
    let tampered = put.replace("&s=6000000&", "&s=6000001&");
    assert_eq!(
        https(
            &s,
            "PUT",
            &tampered,
            Some("image/jpeg"),
            &data[..10],
            Some(6_000_001)
        )
        .await
        .0,
        403
    );
    assert_eq!(
        https(&s, "PUT", &put, Some("image/jpeg"), &data[..10], None)
            .await
            .0,
        400
    );
    assert_eq!(
        https(&s, "PUT", &put, Some("text/html"), &data, None)
            .await
            .0,
        400
    );
    let (st, _, _) = https(&s, "PUT", &put, Some("image/jpeg"), &data, None).await;
    assert_eq!(st, 201);
    assert_eq!(
        https(&s, "PUT", &put, Some("image/jpeg"), &data, None)
            .await
            .0,
        409
    );
    let (st, head, body) = https(&s, "GET", &get, None, b"", Some(0)).await;
    assert_eq!(st, 200);
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: image/jpeg"), "{head}");
    assert!(head.contains("content-length: 6000000"), "{head}");
    assert!(
        head.contains("cache-control: public, max-age=31536000, immutable"),
        "{head}"
    );
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert_eq!(Sha256::digest(&body), Sha256::digest(&data));
    assert_eq!(
        https(
            &s,
            "GET",
            &get.replace("photo.jpg", "photo.png"),
            None,
            b"",
            Some(0)
        )
        .await
        .0,
        404
    );

    // Quota: 6 MB stored of 9 MB; 4 MB more is refused.
    let r = slot(
        &mut a,
        "q",
        "more.bin",
        4_000_000,
        "application/octet-stream",
    )
    .await;
    assert_eq!(
        condition(&r).as_deref(),
        Some("resource-constraint"),
        "{r:?}"
    );
    assert_eq!(
        r.get_child("error", "jabber:client").unwrap().attr("type"),
        Some("wait")
    );
}

#[tokio::test]
async fn expired_upload_url_is_refused() {
    let s = TestServer::start_with(|c| c.upload.slot_ttl_secs = 1)
        .await
        .unwrap();
    s.add_user("alice", "pw").await.unwrap();
    let mut a = RawClient::login(&s, "alice", "pw", "a").await.unwrap();
    let r = slot(&mut a, "s", "note.txt", 5, "text/plain").await;
    let (put, get) = urls(&r);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        https(&s, "PUT", &put, Some("text/plain"), b"hello", None)
            .await
            .0,
        403
    );
    assert_eq!(https(&s, "GET", &get, None, b"", Some(0)).await.0, 404);
}
