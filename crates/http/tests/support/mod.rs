//! Small real clients for the web transports: a WebSocket client (tokio-tungstenite, over the
//! test CA's TLS or plain TCP) and a raw HTTP/1.1 POST for BOSH.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use minidom::Element;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use tern_testkit::{Io, TestServer, WAIT};

pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
pub const NS_SM: &str = "urn:xmpp:sm:3";

pub fn plain_auth(user: &str, pw: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pw}"))
}

/// A WebSocket XMPP client that sees every message.
pub struct Ws {
    pub ws: WebSocketStream<Box<dyn Io>>,
}

impl Ws {
    /// Connects to `/xmpp-websocket` with the `xmpp` subprotocol; over TLS (wss) when `tls`.
    pub async fn connect(server: &TestServer, tls: bool) -> Result<Ws> {
        Self::connect_with(server, tls, Some("xmpp"), None)
            .await
            .map_err(|e| anyhow!("{e}"))
    }

    pub async fn connect_with(
        server: &TestServer,
        tls: bool,
        protocol: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let (addr, scheme) = if tls {
            (server.https, "wss")
        } else {
            (server.http, "ws")
        };
        let tcp = TcpStream::connect(addr).await?;
        let io: Box<dyn Io> = if tls {
            let connector = tokio_rustls::TlsConnector::from(
                tern_testkit::client_tls(&server.ca_path()).expect("ca"),
            );
            let name = ServerName::try_from("localhost".to_string()).expect("name");
            Box::new(connector.connect(name, tcp).await?)
        } else {
            Box::new(tcp)
        };
        let mut req =
            format!("{scheme}://localhost:{}/xmpp-websocket", addr.port()).into_client_request()?;
        if let Some(p) = protocol {
            req.headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
        }
        if let Some(o) = origin {
            req.headers_mut()
                .insert("Origin", HeaderValue::from_str(o).unwrap());
        }
        let (ws, resp) = tokio_tungstenite::client_async(req, io).await?;
        if protocol.is_some() {
            assert_eq!(
                resp.headers()
                    .get("Sec-WebSocket-Protocol")
                    .and_then(|v| v.to_str().ok()),
                Some("xmpp"),
                "RFC 7395 §3.1: the server selects the xmpp subprotocol"
            );
        }
        Ok(Ws { ws })
    }

    pub async fn send(&mut self, xml: &str) -> Result<()> {
        self.ws.send(Message::Text(xml.into())).await?;
        Ok(())
    }

    /// The next text message as an element (pings are skipped).
    pub async fn next(&mut self) -> Result<Element> {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .context("timed out waiting for a WebSocket message")?
                .ok_or_else(|| anyhow!("WebSocket closed"))??;
            match m {
                Message::Text(t) => {
                    return t
                        .as_str()
                        .parse::<Element>()
                        .map_err(|e| anyhow!("message {t:?} is not one element: {e}"))
                }
                Message::Close(_) => bail!("WebSocket closed"),
                _ => {}
            }
        }
    }

    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Element) -> bool) -> Result<Element> {
        loop {
            let e = self
                .next()
                .await
                .with_context(|| format!("waiting for {what}"))?;
            if pred(&e) {
                return Ok(e);
            }
        }
    }

    /// `<open/>` and the features that follow.
    pub async fn open(&mut self) -> Result<Element> {
        self.send(&format!(
            "<open xmlns='{NS_FRAMING}' to='localhost' version='1.0'/>"
        ))
        .await?;
        let open = self.next().await?;
        if !open.is("open", NS_FRAMING) {
            bail!("expected <open/>, got {open:?}");
        }
        assert_eq!(open.attr("from"), Some("localhost"));
        assert!(open.attr("id").is_some());
        self.next().await
    }

    /// Opens, authenticates with PLAIN, reopens and binds `resource`.
    pub async fn login(server: &TestServer, user: &str, pw: &str, resource: &str) -> Result<Ws> {
        let mut c = Ws::connect(server, true).await?;
        c.open().await?;
        c.send(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{}</auth>",
            plain_auth(user, pw)
        ))
        .await?;
        let r = c.next().await?;
        if !r.is("success", NS_SASL) {
            bail!("authentication failed: {r:?}");
        }
        c.open().await?;
        c.send(&format!(
            "<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='{NS_BIND}'><resource>{resource}</resource></bind></iq>"
        ))
        .await?;
        let b = c.next().await?;
        if b.attr("type") != Some("result") {
            bail!("bind failed: {b:?}");
        }
        Ok(c)
    }
}

/// A raw HTTP/1.1 response.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn element(&self) -> Result<Element> {
        self.body
            .parse::<Element>()
            .map_err(|e| anyhow!("response {:?} is not XML: {e}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<HttpResponse> {
    let mut tcp = TcpStream::connect(addr).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        addr.port(),
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    tcp.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(90), tcp.read_to_end(&mut raw))
        .await
        .context("timed out waiting for an HTTP response")??;
    let text = String::from_utf8(raw)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP header end in {text:?}"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line in {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// A BOSH client session on the plain (loopback) port.
pub struct Bosh {
    pub addr: SocketAddr,
    pub sid: String,
    pub rid: u64,
}

impl Bosh {
    /// POSTs a body with the given attributes and children (rid and sid filled in unless
    /// given) and returns the response `<body/>`.
    pub async fn post_raw(addr: SocketAddr, xml: impl AsRef<str>) -> Result<Element> {
        let r = http(
            addr,
            "POST",
            "/http-bind",
            &[("Content-Type", "text/xml; charset=utf-8")],
            xml.as_ref(),
        )
        .await?;
        if r.status != 200 {
            bail!("HTTP {} for BOSH request: {}", r.status, r.body);
        }
        let el = r.element()?;
        if !el.is("body", NS_HTTPBIND) {
            bail!("expected a <body/>, got {el:?}");
        }
        Ok(el)
    }

    /// Creates a session; returns the client and the creation response.
    pub async fn create(addr: SocketAddr, wait: u32) -> Result<(Bosh, Element)> {
        let rid = 1_000_000 + u64::from(rand_u16());
        let resp = Self::post_raw(
            addr,
            &format!(
                "<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh' content='text/xml; charset=utf-8' \
                 hold='1' rid='{rid}' to='localhost' wait='{wait}' ver='1.6' xml:lang='en' xmpp:version='1.0'/>"
            ),
        )
        .await?;
        let sid = resp
            .attr("sid")
            .ok_or_else(|| anyhow!("no sid in {resp:?}"))?
            .to_owned();
        Ok((Bosh { addr, sid, rid }, resp))
    }

    /// The body text for request `rid` with extra attributes and children.
    pub fn body(&self, rid: u64, attrs: &str, children: &str) -> String {
        format!(
            "<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh' sid='{}' rid='{rid}' {attrs}>{children}</body>",
            self.sid
        )
    }

    /// Sends the next request.
    pub async fn send(&mut self, attrs: &str, children: &str) -> Result<Element> {
        self.rid += 1;
        Self::post_raw(self.addr, &self.body(self.rid, attrs, children)).await
    }

    /// Authenticates with PLAIN, restarts and binds.
    pub async fn login(addr: SocketAddr, user: &str, pw: &str, resource: &str) -> Result<Bosh> {
        let (mut b, created) = Bosh::create(addr, 2).await?;
        assert!(
            created.children().any(|c| c.name() == "features"),
            "features in the creation response: {created:?}"
        );
        let r = b
            .send(
                "",
                &format!(
                    "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{}</auth>",
                    plain_auth(user, pw)
                ),
            )
            .await?;
        if !r.children().any(|c| c.is("success", NS_SASL)) {
            bail!("authentication failed: {r:?}");
        }
        let r = b.send("to='localhost' xmpp:restart='true'", "").await?;
        if !r.children().any(|c| c.name() == "features") {
            bail!("no features after restart: {r:?}");
        }
        let r = b
            .send("", &format!("<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='{NS_BIND}'><resource>{resource}</resource></bind></iq>"))
            .await?;
        if !r.children().any(|c| c.attr("type") == Some("result")) {
            bail!("bind failed: {r:?}");
        }
        Ok(b)
    }
}

fn rand_u16() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7)
        % 60_000) as u16
}
