//! XEP-0114 external components end to end: handshake, routing both ways, `from` checking,
//! `service-unavailable` while disconnected, `<conflict/>` for a second connection and
//! `<not-authorized/>` for a wrong secret.

use std::net::SocketAddr;
use std::time::Duration;

use minidom::Element;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use tern_stream::{StreamEvent, StreamReader};
use tern_testkit::{RawClient, TestServer};

const NS: &str = "jabber:component:accept";
const DOMAIN: &str = "bot.localhost";
const SECRET: &str = "s3cret-for-tests";

/// A raw component connection.
struct Component {
    tcp: TcpStream,
    reader: StreamReader,
    buf: Vec<u8>,
}

impl Component {
    async fn open(addr: SocketAddr, domain: &str) -> (Component, Option<String>) {
        let mut c = Component {
            tcp: TcpStream::connect(addr).await.unwrap(),
            reader: StreamReader::new(Default::default(), NS),
            buf: vec![0; 8192],
        };
        c.send(&format!(
            "<stream:stream xmlns='{NS}' xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
        ))
        .await;
        let StreamEvent::Header(h) = c.next().await else {
            panic!("expected a stream header")
        };
        assert_eq!(h.version, None, "XEP-0114 streams carry no version");
        (c, h.id)
    }

    async fn send(&mut self, s: &str) {
        self.tcp.write_all(s.as_bytes()).await.unwrap();
    }

    async fn next(&mut self) -> StreamEvent {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(ev) = self.reader.next_event().unwrap() {
                    return ev;
                }
                let n = self.tcp.read(&mut self.buf).await.unwrap();
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

    /// Connects and performs the handshake; returns the connection and the server's answer.
    async fn handshake(addr: SocketAddr, secret: &str) -> (Component, Element) {
        let (mut c, id) = Component::open(addr, DOMAIN).await;
        let digest = hex(&Sha1::digest(format!("{}{secret}", id.unwrap()).as_bytes()));
        c.send(&format!("<handshake>{digest}</handshake>")).await;
        let answer = c.element().await;
        (c, answer)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn stream_error(e: &Element) -> Option<&str> {
    e.is("error", "http://etherx.jabber.org/streams").then(|| {
        e.children()
            .find(|c| c.name() != "text")
            .map(|c| c.name())
            .unwrap_or("")
    })
}

fn stanza_error(e: &Element) -> Option<String> {
    e.get_child("error", "jabber:client")?
        .children()
        .find(|c| c.name() != "text")
        .map(|c| c.name().to_owned())
}

#[tokio::test]
async fn component_handshake_routing_and_errors() {
    let s = TestServer::start_with(|c| {
        c.component = vec![tern_component::ComponentEntry {
            domain: DOMAIN.into(),
            secret: SECRET.into(),
        }];
        c.component_listener.listen = vec!["127.0.0.1:0".into()];
    })
    .await
    .unwrap();
    let addr = s.running.as_ref().unwrap().component_addrs[0];
    s.add_user("alice", "pw").await.unwrap();
    let mut alice = RawClient::login(&s, "alice", "pw", "r").await.unwrap();

    // Not connected yet: the placeholder answers.
    alice
        .send_str(
            "<message to='echo@bot.localhost' type='chat' id='c0'><body>anyone?</body></message>",
        )
        .await
        .unwrap();
    let e = alice
        .expect("bounce", |e| e.attr("id") == Some("c0"))
        .await
        .unwrap();
    assert_eq!(stanza_error(&e).as_deref(), Some("service-unavailable"));

    // A wrong secret, and a domain nobody configured.
    let (_bad, answer) = Component::handshake(addr, "wrong").await;
    assert_eq!(stream_error(&answer), Some("not-authorized"));
    let (mut unknown, _) = Component::open(addr, "other.localhost").await;
    let e = unknown.element().await;
    assert_eq!(stream_error(&e), Some("host-unknown"));

    let (mut bot, answer) = Component::handshake(addr, SECRET).await;
    assert!(
        answer.is("handshake", NS) && answer.nodes().next().is_none(),
        "{answer:?}"
    );

    // A second connection for the same domain is refused; the first keeps working.
    let (_dup, answer) = Component::handshake(addr, SECRET).await;
    assert_eq!(stream_error(&answer), Some("conflict"));

    alice
        .send_str(
            "<message to='echo@bot.localhost' type='chat' id='c1'><body>ping</body></message>",
        )
        .await
        .unwrap();
    let m = bot.element().await;
    assert!(m.is("message", NS), "{m:?}");
    assert_eq!(m.attr("from"), Some("alice@localhost/r"));
    assert_eq!(
        m.get_child("body", NS).map(|b| b.text()).as_deref(),
        Some("ping")
    );

    bot.send("<message from='echo@bot.localhost' to='alice@localhost/r' type='chat' id='c2'><body>pong</body></message>")
        .await;
    let m = alice
        .expect("reply", |e| e.attr("id") == Some("c2"))
        .await
        .unwrap();
    assert_eq!(m.attr("from"), Some("echo@bot.localhost"));
    assert_eq!(
        m.get_child("body", "jabber:client")
            .map(|b| b.text())
            .as_deref(),
        Some("pong")
    );

    // A `from` outside the component's domain ends its stream.
    bot.send("<message from='admin@localhost' to='alice@localhost/r'><body>spoof</body></message>")
        .await;
    let e = bot.element().await;
    assert_eq!(stream_error(&e), Some("invalid-from"));
    assert!(alice
        .silent_for(Duration::from_millis(300), |e| e.name() == "message")
        .await
        .unwrap());

    // Disconnected again: back to service-unavailable.
    tokio::time::sleep(Duration::from_millis(200)).await;
    alice
        .send_str("<message to='echo@bot.localhost' type='chat' id='c3'><body>still there?</body></message>")
        .await
        .unwrap();
    let e = alice
        .expect("bounce", |e| e.attr("id") == Some("c3"))
        .await
        .unwrap();
    assert_eq!(stanza_error(&e).as_deref(), Some("service-unavailable"));
}
