//! XEP-0065 SOCKS5 bytestreams proxy (§6 "mediated connection").
//!
//! The service on `proxy.<host>` answers disco and the streamhost query with the address of
//! Tern's SOCKS5 listener. Both parties connect there with the same destination
//! address, SHA-1(SID + requester JID + target JID); the requester then asks the service to
//! activate the stream, and the proxy relays bytes between the two connections until either
//! closes. Connections not activated within the timeout are dropped. Limits: concurrent
//! connections, relay bandwidth per stream, who may use the proxy (local accounts).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use minidom::Element;
use sha1::{Digest, Sha1};
use tern_router::Spec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use tern_router::xml::BuilderExt;
use tern_router::{Condition, Jid, Kind, Origin, Router, Service, Stanza, StanzaError};

use crate::socks5;

/// XEP-0065 namespace.
pub const NS_BYTESTREAMS: &str = "http://jabber.org/protocol/bytestreams";
const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";

/// Proxy limits and addresses.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Host name or address advertised to clients for the SOCKS5 listener.
    pub advertised_host: String,
    /// Port advertised (the listener's bound port).
    pub advertised_port: u16,
    /// Simultaneous SOCKS5 connections (each stream uses two).
    pub max_connections: usize,
    /// How long a connection may wait for its partner and activation.
    pub unpaired_timeout: Duration,
    /// Relay bandwidth per stream and direction, bytes per second (0: unlimited).
    pub max_bytes_per_second: u64,
}

/// A connection and its slot under the connection limit, held until it closes.
type Conn = (TcpStream, OwnedSemaphorePermit);

struct Waiting {
    conns: Vec<Conn>,
    since: Instant,
}

/// Connections waiting for activation, by destination hash; shared by the listener and the
/// service.
#[derive(Default)]
pub struct Pending {
    map: Mutex<HashMap<String, Waiting>>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, hash: String, conn: Conn) -> Result<(), &'static str> {
        let mut map = self.lock();
        let w = map.entry(hash).or_insert_with(|| Waiting {
            conns: Vec::new(),
            since: Instant::now(),
        });
        if w.conns.len() >= 2 {
            return Err("a third connection for the same stream");
        }
        w.conns.push(conn);
        Ok(())
    }

    /// Drops connections older than `max_age`; returns how many streams were dropped.
    fn expire(&self, max_age: Duration) -> usize {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, w| w.since.elapsed() < max_age);
        before - map.len()
    }
}

/// The destination address of a stream (§5.3.2): hex SHA-1 of SID, requester and target.
pub fn dst_hash(sid: &str, requester: &str, target: &str) -> String {
    let mut h = Sha1::new();
    h.update(sid.as_bytes());
    h.update(requester.as_bytes());
    h.update(target.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The proxy's XMPP side, attached on `proxy.<host>`.
pub struct Proxy65 {
    config: ProxyConfig,
    pending: Arc<Pending>,
}

impl Proxy65 {
    /// A service advertising `config`'s address, activating streams held in `pending`.
    pub fn new(config: ProxyConfig, pending: Arc<Pending>) -> Self {
        Proxy65 { config, pending }
    }

    fn info(&self) -> Element {
        Element::builder("query", NS_DISCO_INFO)
            .append(
                Element::builder("identity", NS_DISCO_INFO)
                    .a("category", "proxy")
                    .a("type", "bytestreams")
                    .a("name", "SOCKS5 Bytestreams Service")
                    .build(),
            )
            .append(
                Element::builder("feature", NS_DISCO_INFO)
                    .a("var", NS_DISCO_INFO)
                    .build(),
            )
            .append(
                Element::builder("feature", NS_DISCO_INFO)
                    .a("var", NS_BYTESTREAMS)
                    .build(),
            )
            .build()
    }

    fn handle_iq(&self, router: &Router, st: &Stanza) -> Result<Option<Element>, StanzaError> {
        let q = st
            .iq_payload()
            .ok_or_else(|| StanzaError::new(Condition::BadRequest))?;
        let ns = q.ns();
        if st.to.as_ref().is_some_and(|t| t.node().is_some()) {
            return Err(StanzaError::new(Condition::ServiceUnavailable));
        }
        match (st.type_(), ns.as_str()) {
            ("get", NS_DISCO_INFO) if q.attr("node").is_none() => Ok(Some(self.info())),
            ("get", NS_DISCO_ITEMS) if q.attr("node").is_none() => {
                Ok(Some(Element::bare("query", NS_DISCO_ITEMS)))
            }
            (_, NS_DISCO_INFO | NS_DISCO_ITEMS) => Err(StanzaError::new(Condition::ItemNotFound)),
            _ if !router.is_local(st.from.domain().as_str()) => {
                Err(StanzaError::new(Condition::Forbidden)
                    .with_text("this proxy serves the server's own users"))
            }
            ("get", NS_BYTESTREAMS) => {
                // §6.3.1: the network address of the proxy.
                let sh = Element::builder("streamhost", NS_BYTESTREAMS)
                    .a(
                        "jid",
                        st.to.as_ref().map(|t| t.to_string()).unwrap_or_default(),
                    )
                    .a("host", self.config.advertised_host.as_str())
                    .a("port", self.config.advertised_port.to_string())
                    .build();
                Ok(Some(
                    Element::builder("query", NS_BYTESTREAMS).append(sh).build(),
                ))
            }
            ("set", NS_BYTESTREAMS) => self.activate(st, q).map(|()| None),
            _ => Err(StanzaError::new(Condition::FeatureNotImplemented)),
        }
    }

    /// §6.3.3: the requester asks for activation; both connections must be there.
    fn activate(&self, st: &Stanza, q: &Element) -> Result<(), StanzaError> {
        let sid = q.attr("sid").ok_or_else(|| {
            StanzaError::new(Condition::BadRequest).with_text("the query needs a 'sid'")
        })?;
        let target = q
            .get_child("activate", NS_BYTESTREAMS)
            .map(|a| a.text())
            .and_then(|t| Jid::new(t.trim()).ok())
            .ok_or_else(|| {
                StanzaError::new(Condition::BadRequest)
                    .with_text("<activate/> needs the target's JID")
            })?;
        let hash = dst_hash(sid, &st.from.to_string(), &target.to_string());
        let waiting = self.pending.lock().remove(&hash);
        let Some(mut w) = waiting else {
            return Err(StanzaError::new(Condition::ItemNotFound)
                .with_text("no connection for this stream is waiting at the proxy"));
        };
        if w.conns.len() < 2 {
            // Put it back: the other party may still connect.
            self.pending.lock().insert(hash, w);
            return Err(StanzaError::new(Condition::NotAcceptable)
                .with_text("only one party has connected to the proxy"));
        }
        let b = w.conns.pop().expect("two connections");
        let a = w.conns.pop().expect("two connections");
        let limit = self.config.max_bytes_per_second;
        info!(requester = %st.from, target = %target, "bytestream activated");
        tokio::spawn(relay(a, b, limit));
        Ok(())
    }
}

#[async_trait]
impl Service for Proxy65 {
    fn name(&self) -> &'static str {
        "proxy65"
    }

    fn specs(&self) -> Vec<Spec> {
        vec![Spec::xep(65, "1.8.2")]
    }

    fn item_name(&self) -> Option<String> {
        Some("SOCKS5 Bytestreams Service".into())
    }

    async fn handle(&self, router: &Arc<Router>, _origin: &Origin, st: Stanza) {
        match st.kind {
            Kind::Iq if st.is_iq_request() => match self.handle_iq(router, &st) {
                Ok(payload) => router.reply_result(&st, payload).await,
                Err(e) => router.bounce(&st, e).await,
            },
            Kind::Message => {
                router
                    .bounce(&st, StanzaError::new(Condition::ServiceUnavailable))
                    .await
            }
            _ => {}
        }
    }
}

/// Accepts SOCKS5 connections, sweeping pairs never activated; runs until its task is
/// aborted (server shutdown).
pub async fn serve(listener: TcpListener, config: ProxyConfig, pending: Arc<Pending>) {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let mut sweep = tokio::time::interval(config.unpaired_timeout.min(Duration::from_secs(5)));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = sweep.tick() => {
                let n = pending.expire(config.unpaired_timeout);
                if n > 0 {
                    debug!(streams = n, "dropped bytestream connections never activated");
                }
                continue;
            }
        };
        let (sock, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!("SOCKS5 accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            warn!(%peer, "SOCKS5 proxy at its connection limit; refusing");
            continue;
        };
        let pending = pending.clone();
        let timeout = config.unpaired_timeout;
        tokio::spawn(handshake(sock, permit, peer, pending, timeout));
    }
}

async fn handshake(
    mut sock: TcpStream,
    permit: OwnedSemaphorePermit,
    peer: SocketAddr,
    pending: Arc<Pending>,
    timeout: Duration,
) {
    let _ = sock.set_nodelay(true);
    match tokio::time::timeout(timeout, socks5::accept(&mut sock)).await {
        Ok(Ok(hash)) => {
            if let Err(e) = pending.add(hash, (sock, permit)) {
                debug!(%peer, "SOCKS5 connection refused: {e}");
            }
        }
        Ok(Err(e)) => debug!(%peer, "SOCKS5 handshake failed: {e}"),
        Err(_) => debug!(%peer, "SOCKS5 handshake timed out"),
    }
}

/// Copies both ways until either side closes.
async fn relay((a, _pa): Conn, (b, _pb): Conn, limit: u64) {
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    let (x, y) = tokio::join!(copy_limited(ar, bw, limit), copy_limited(br, aw, limit));
    debug!(
        a_to_b = x.unwrap_or(0),
        b_to_a = y.unwrap_or(0),
        "bytestream closed"
    );
}

/// Copies with a per-direction rate limit (a token bucket refilled each second's worth).
async fn copy_limited<R, W>(mut r: R, mut w: W, limit: u64) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            w.shutdown().await.ok();
            return Ok(total);
        }
        w.write_all(&buf[..n]).await?;
        total += n as u64;
        if limit > 0 {
            // Ahead of the allowed rate: wait until the average is back at the limit.
            let allowed_at = Duration::from_secs_f64(total as f64 / limit as f64);
            let elapsed = start.elapsed();
            if allowed_at > elapsed {
                tokio::time::sleep(allowed_at - elapsed).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_the_hex_sha1_of_sid_requester_target() {
        // XEP-0065 §5.3.2's inputs; checked against python3 hashlib.sha1.
        let h = dst_hash(
            "vxf9n471bn46",
            "requester@example.com/foo",
            "target@example.org/bar",
        );
        assert_eq!(h.len(), 40);
        assert_eq!(h, "98b8d688d0f5d895fd41c5e7309a2e9e33ba32ff");
    }
}
