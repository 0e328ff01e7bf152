//! The receiving side of federation against a raw peer that presents a.test's certificate:
//! STARTTLS is required before anything else, SASL EXTERNAL checks the authorization identity
//! and the certificate, stanzas are routed once authenticated, and a `from` outside the
//! authenticated domain ends the stream with `<invalid-from/>` (RFC 6120 §4.9.3.9).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use minidom::Element;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use tern_stream::{StreamEvent, StreamReader, NS_SERVER};
use tern_testkit::{Io, RawClient, TestServer};

const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const HEADER: &str = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='a.test' to='b.test' version='1.0'>";

struct Peer {
    io: Box<dyn Io>,
    reader: StreamReader,
    buf: Vec<u8>,
}

impl Peer {
    fn over(io: Box<dyn Io>) -> Peer {
        Peer {
            io,
            reader: StreamReader::new(Default::default(), NS_SERVER),
            buf: vec![0; 8192],
        }
    }

    async fn send(&mut self, s: &str) {
        self.io.write_all(s.as_bytes()).await.unwrap();
        self.io.flush().await.unwrap();
    }

    async fn next(&mut self) -> StreamEvent {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(ev) = self.reader.next_event().unwrap() {
                    return ev;
                }
                let n = self.io.read(&mut self.buf).await.unwrap();
                assert!(n > 0, "connection closed");
                self.reader.feed(&self.buf[..n]).unwrap();
            }
        })
        .await
        .expect("timed out waiting for the server")
    }

    async fn element(&mut self) -> Element {
        match self.next().await {
            StreamEvent::Element(e) => e,
            other => panic!("expected an element, got {other:?}"),
        }
    }

    /// Sends our header; returns the server's features.
    async fn open(&mut self) -> Element {
        self.send(HEADER).await;
        assert!(matches!(self.next().await, StreamEvent::Header(_)));
        let f = self.element().await;
        assert!(f.is("features", NS_STREAMS), "{f:?}");
        f
    }
}

fn stream_error(e: &Element) -> Option<&str> {
    e.is("error", NS_STREAMS)
        .then(|| e.children().find(|c| c.name() != "text").map(|c| c.name()))
        .flatten()
}

/// TLS trusting `ca` and presenting the certificate of `domain` from `dir`.
fn tls_config(ca: &Path, dir: &Path, domain: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join(format!("{domain}.crt")))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{domain}.key"))).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap(),
    )
}

#[tokio::test]
async fn sasl_external_inbound_and_from_checking() {
    let dir_a = TestServer::prepare("a.test").unwrap();
    let a_ca = dir_a.join("ca.crt");
    let b = TestServer::start_for("b.test", |c| c.s2s.ca_files = vec![a_ca])
        .await
        .unwrap();
    let addr = b.running.as_ref().unwrap().s2s_addrs[0];
    b.add_user("bob", "pw").await.unwrap();
    let mut bob = RawClient::login(&b, "bob", "pw", "r").await.unwrap();
    bob.send_str("<presence/>").await.unwrap();

    // Before TLS, nothing but STARTTLS (and dialback verification) is accepted.
    let mut plain = Peer::over(Box::new(TcpStream::connect(addr).await.unwrap()));
    let f = plain.open().await;
    assert!(f
        .get_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
        .is_some());
    assert!(f.get_child("mechanisms", NS_SASL).is_none());
    plain
        .send("<message from='alice@a.test' to='bob@b.test'><body>plain</body></message>")
        .await;
    assert_eq!(
        stream_error(&plain.element().await),
        Some("policy-violation")
    );

    // A stream to a domain the server does not serve.
    let mut wrong = Peer::over(Box::new(TcpStream::connect(addr).await.unwrap()));
    wrong
        .send(&HEADER.replace("to='b.test'", "to='c.test'"))
        .await;
    assert!(matches!(wrong.next().await, StreamEvent::Header(_)));
    assert_eq!(stream_error(&wrong.element().await), Some("host-unknown"));

    let mut p = Peer::over(Box::new(TcpStream::connect(addr).await.unwrap()));
    p.open().await;
    p.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await;
    assert_eq!(p.element().await.name(), "proceed");
    let connector = tokio_rustls::TlsConnector::from(tls_config(&b.ca_path(), &dir_a, "a.test"));
    let tls = connector
        .connect(ServerName::try_from("b.test").unwrap(), p.io)
        .await
        .unwrap();
    let mut p = Peer::over(Box::new(tls));
    let f = p.open().await;
    let mechs: Vec<String> = f
        .get_child("mechanisms", NS_SASL)
        .expect("EXTERNAL offered to a peer with a valid certificate")
        .children()
        .map(|m| m.text())
        .collect();
    assert_eq!(mechs, ["EXTERNAL"]);

    // XEP-0178: an authorization identity other than the stream's `from` is refused.
    let evil = base64::engine::general_purpose::STANDARD.encode("evil.test");
    p.send(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{evil}</auth>"
    ))
    .await;
    let fail = p.element().await;
    assert!(
        fail.is("failure", NS_SASL) && fail.get_child("invalid-authzid", NS_SASL).is_some(),
        "{fail:?}"
    );
    p.send(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>=</auth>"
    ))
    .await;
    assert!(p.element().await.is("success", NS_SASL));
    p.reader.restart();
    p.open().await;

    p.send("<message from='alice@a.test/x' to='bob@b.test/r' type='chat' id='s1'><body>over sasl</body></message>")
        .await;
    let m = bob
        .expect("message from a.test", |e| e.attr("id") == Some("s1"))
        .await
        .unwrap();
    assert_eq!(m.attr("from"), Some("alice@a.test/x"));
    assert_eq!(
        m.get_child("body", "jabber:client")
            .map(|b| b.text())
            .as_deref(),
        Some("over sasl")
    );

    p.send("<message from='mallory@evil.test' to='bob@b.test/r' type='chat' id='s2'><body>spoof</body></message>")
        .await;
    assert_eq!(stream_error(&p.element().await), Some("invalid-from"));
    assert!(bob
        .silent_for(Duration::from_millis(300), |e| e.attr("id") == Some("s2"))
        .await
        .unwrap());
    let _ = std::fs::remove_dir_all(&dir_a);
}

#[tokio::test]
async fn direct_tls_listener_offers_external_at_once() {
    let dir_a = TestServer::prepare("a.test").unwrap();
    let a_ca = dir_a.join("ca.crt");
    let mut b = TestServer::start_for("b.test", |c| {
        c.s2s.ca_files = vec![a_ca];
        c.s2s.listen_tls = vec!["127.0.0.1:0".into()];
    })
    .await
    .unwrap();
    // s2s_addrs lists the STARTTLS listeners first, then the direct-TLS ones.
    let addr = b.running.as_ref().unwrap().s2s_addrs[1];
    let mut config = (*tls_config(&b.ca_path(), &dir_a, "a.test")).clone();
    config.alpn_protocols = vec![b"xmpp-server".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("b.test").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"xmpp-server"[..]));
    let mut p = Peer::over(Box::new(tls));
    let f = p.open().await;
    assert!(
        f.get_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
            .is_none(),
        "{f:?}"
    );
    assert!(f.get_child("mechanisms", NS_SASL).is_some(), "{f:?}");
    // Server shutdown ends incoming streams with <system-shutdown/>.
    b.running.take().unwrap().shutdown().await;
    assert_eq!(stream_error(&p.element().await), Some("system-shutdown"));
    let _ = std::fs::remove_dir_all(&dir_a);
}

#[tokio::test]
async fn untrusted_peer_gets_no_external_and_dialback_is_refused_by_default() {
    // b.test does not trust a.test's CA and requires verified certificates.
    let dir_a = TestServer::prepare("a.test").unwrap();
    let b = TestServer::start_for("b.test", |_| {}).await.unwrap();
    let addr = b.running.as_ref().unwrap().s2s_addrs[0];
    let mut p = Peer::over(Box::new(TcpStream::connect(addr).await.unwrap()));
    p.open().await;
    p.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await;
    assert_eq!(p.element().await.name(), "proceed");
    let connector = tokio_rustls::TlsConnector::from(tls_config(&b.ca_path(), &dir_a, "a.test"));
    let tls = connector
        .connect(ServerName::try_from("b.test").unwrap(), p.io)
        .await
        .unwrap();
    let mut p = Peer::over(Box::new(tls));
    let f = p.open().await;
    assert!(f.get_child("mechanisms", NS_SASL).is_none(), "{f:?}");
    p.send("<db:result from='a.test' to='b.test'>0123abcd</db:result>")
        .await;
    let r = p.element().await;
    assert!(r.is("result", "jabber:server:dialback"), "{r:?}");
    assert_eq!(r.attr("type"), Some("error"));
    let cond = r
        .get_child("error", "jabber:server")
        .and_then(|e| e.children().find(|c| c.name() != "text"))
        .map(|c| c.name().to_owned());
    assert_eq!(cond.as_deref(), Some("not-authorized"), "{r:?}");
    // Still unauthenticated: stanzas are refused.
    p.send("<message from='alice@a.test' to='bob@b.test'/>")
        .await;
    assert_eq!(stream_error(&p.element().await), Some("not-authorized"));
    let _ = std::fs::remove_dir_all(&dir_a);
}
