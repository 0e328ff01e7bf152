//! Tern s2s: federation with other XMPP servers (RFC 6120 server-to-server streams).
//!
//! Layout: [`S2s`] is both the router's [`RemoteRoute`] (outgoing stanzas) and the listener
//! for incoming server connections. `outbound` keeps one authenticated stream per
//! (local domain, remote domain) pair, with a bounded queue while it connects, bounded
//! retries, idle close, and bounces that say why; `connect` opens and authenticates such a
//! stream (`resolve` finds the peer: static route, SRV for direct TLS and STARTTLS, the
//! domain itself; `certs` judges certificates per RFC 6125 / XEP-0178; `dialback` holds the
//! XEP-0220 keys and elements). `inbound` is the receiving side: STARTTLS or direct TLS,
//! SASL EXTERNAL for peers with a valid certificate, dialback verified against the claimed
//! domain's authoritative server, and stanzas routed with [`Origin::Remote`] once their
//! `from` matches what the stream authenticated. `stream` is the XML stream over TCP/TLS.
//! Settings come from `[s2s]` ([`config::S2sSection`]).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use minidom::Element;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{info, warn, Instrument};

use tern_router::{Condition, Origin, RemoteRoute, Router, StanzaError};
use tern_stream::Limits;

pub mod certs;
pub mod config;
mod connect;
pub mod dialback;
mod error;
mod inbound;
mod outbound;
pub mod resolve;
mod stream;

pub use certs::{LocalCerts, Trust, TrustError};
pub use config::S2sSection;
pub use connect::AuthMethod;
pub use error::S2sError;

/// Federation: the outgoing connection pool and the incoming listener, sharing policy,
/// trust anchors, our certificates and the dialback secret.
pub struct S2s {
    inner: Arc<Inner>,
}

/// Which kind of port a listener is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Plain TCP with STARTTLS, usually 5269.
    StartTls,
    /// TLS from the first byte (XEP-0368), usually 5270.
    DirectTls,
}

pub(crate) struct Inner {
    pub config: S2sSection,
    pub trust: Trust,
    pub certs: LocalCerts,
    pub server_tls: Arc<rustls::ServerConfig>,
    pub resolver: resolve::Resolver,
    pub secret: dialback::Secret,
    pub limits: Limits,
    router: OnceLock<Weak<Router>>,
    pub links: Mutex<HashMap<(String, String), outbound::Link>>,
    pub next_link: AtomicU64,
    pub shutdown: watch::Receiver<bool>,
    incoming: Arc<Semaphore>,
}

impl Inner {
    /// The router, once [`S2s::set_router`] ran and while the server is up.
    pub fn router(&self) -> Option<Arc<Router>> {
        self.router.get().and_then(Weak::upgrade)
    }

    /// Whether stanzas to `domain` are ours to take (a host or an attached service).
    pub fn serves(&self, domain: &str) -> bool {
        self.router()
            .is_some_and(|r| r.is_local(domain) || r.services().get(domain).is_some())
    }
}

impl S2s {
    /// Builds the federation state; fails only on unreadable trust anchor files.
    pub fn new(
        config: S2sSection,
        certs: LocalCerts,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<S2s>, TrustError> {
        let trust = Trust::new(config.system_roots, &config.ca_files)?;
        let server_tls = trust.server_config(certs.resolver.clone());
        // DNS gets a share of the connect timeout, so a slow resolver is reported as such.
        let resolver = resolve::Resolver::new(config.routes.clone(), config.connect_timeout() / 4);
        let limits = Limits {
            max_stanza_bytes: config.max_stanza_bytes,
            ..Limits::default()
        };
        let incoming = Arc::new(Semaphore::new(config.max_incoming));
        Ok(Arc::new(S2s {
            inner: Arc::new(Inner {
                config,
                trust,
                certs,
                server_tls,
                resolver,
                secret: dialback::Secret::random(),
                limits,
                router: OnceLock::new(),
                links: Mutex::new(HashMap::new()),
                next_link: AtomicU64::new(0),
                shutdown,
                incoming,
            }),
        }))
    }

    /// Connects the router (built after this, since the router holds us as its remote route).
    pub fn set_router(&self, router: &Arc<Router>) {
        let _ = self.inner.router.set(Arc::downgrade(router));
    }

    /// Accepts server connections until shutdown; each runs in its own task.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, kind: ListenerKind) {
        let mut shutdown = self.inner.shutdown.clone();
        info!(addr = ?listener.local_addr().ok(), ?kind, "s2s listener ready");
        loop {
            let permit = tokio::select! {
                p = self.inner.incoming.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = shutdown.changed() => return,
            };
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        warn!("s2s accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let inner = self.inner.clone();
            let span = tracing::info_span!("s2s_in", %peer, from = tracing::field::Empty);
            tokio::spawn(
                async move {
                    inbound::run(inner, tcp, peer, kind).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }

    /// The authenticated outgoing streams: (local, remote, how), for tests and status.
    pub fn connected(&self) -> Vec<(String, String, AuthMethod)> {
        let links = self.inner.links.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = links
            .iter()
            .filter_map(|((l, r), link)| Some((l.clone(), r.clone(), link.method()?)))
            .collect();
        v.sort();
        v
    }
}

#[async_trait]
impl RemoteRoute for S2s {
    async fn send(&self, domain: &str, stanza: Element) -> Result<(), StanzaError> {
        let domain = domain.to_ascii_lowercase();
        if self.inner.config.is_blocked(&domain) {
            warn!(to = %domain, "not delivering to {domain}: the domain is blocked by s2s.blocked");
            return Err(
                StanzaError::new(Condition::RemoteServerNotFound).with_text(format!(
                    "federation with {domain} is blocked by this server's policy"
                )),
            );
        }
        let from = stanza
            .attr("from")
            .and_then(|f| jid::Jid::new(f).ok())
            .map(|j| j.domain().as_str().to_ascii_lowercase())
            .ok_or_else(|| StanzaError::new(Condition::BadRequest).with_text("no sender"))?;
        outbound::enqueue(&self.inner, from, domain, stanza)
    }
}

/// Tells the router that a stanza could not be delivered.
pub(crate) async fn bounce(inner: &Inner, el: Element, err: StanzaError) {
    let Some(router) = inner.router() else { return };
    let (Some(kind), Some(from), to) = (
        tern_router::Kind::of(&el),
        el.attr("from").and_then(|f| jid::Jid::new(f).ok()),
        el.attr("to").and_then(|t| jid::Jid::new(t).ok()),
    ) else {
        return;
    };
    let st = tern_router::Stanza { kind, from, to, el };
    router.bounce(&st, err).await;
}

/// Routes a stanza received from a remote server.
pub(crate) async fn route_remote(inner: &Inner, domain: &str, st: tern_router::Stanza) {
    if let Some(router) = inner.router() {
        router.route(Origin::Remote(domain.to_owned()), st).await;
    }
}
