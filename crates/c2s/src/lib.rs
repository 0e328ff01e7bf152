//! Tern c2s: the client-to-server listener (RFC 6120).
//!
//! Layout: [`serve`] accepts connections on a STARTTLS port (5222) or a direct-TLS port
//! (XEP-0368, 5223) and runs one task per connection. `negotiate` walks the stream through
//! header, STARTTLS, SASL (`auth`) and resource binding (`bind`), one restart at a time;
//! `session` then runs the bound session loop: stanzas from the client are checked, stamped
//! and handed to the router, and the session's queue is coalesced into one write per wakeup.
//! All of it runs over a [`Link`] (`link`): an element transport that TCP implements with the
//! stream framer (`tcp`, over `transport`, the plain-or-TLS byte stream) and that `tern-http`
//! implements for WebSocket and BOSH; [`C2s::run_link`] is its entry point. `conn` is the
//! stream during negotiation.
//! SASL and resource binding are separate steps so that SASL2 (XEP-0388), Bind2 (XEP-0386)
//! and FAST (XEP-0484) can be added beside them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::distributions::Alphanumeric;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{info, warn, Instrument};

use tern_router::Router;
use tern_stream::Limits;

mod auth;
mod bind;
mod conn;
mod csi;
mod inbound;
mod item;
pub mod link;
mod negotiate;
mod rate;
mod session;
mod sm;
mod tcp;
mod transport;

pub use link::{FrameKind, Framing, Header, Link, LinkError, Outbox};

/// What to do when a client binds a resource that is already bound (RFC 6120 §7.7.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictPolicy {
    /// End the older session with a `<conflict/>` stream error and bind the new one.
    #[default]
    KickOld,
    /// Refuse the new binding with a `<conflict/>` stanza error.
    Reject,
    /// Bind the new session under a server-generated resource instead.
    Rename,
}

/// Settings of the client listener; every limit has a default here and a key in the config file.
#[derive(Debug, Clone)]
pub struct C2sConfig {
    /// Parser limits (stanza size, depth, attributes).
    pub limits: Limits,
    /// Refuse to authenticate or bind before TLS (RFC 6120 §5.3.1: mandatory-to-negotiate).
    pub require_encryption: bool,
    /// Longest silence allowed before authentication, per read.
    pub preauth_timeout: Duration,
    /// Longest silence allowed from an authenticated client.
    pub idle_timeout: Duration,
    /// Interval of whitespace keepalives sent to a silent client (RFC 6120 §4.6.1).
    pub keepalive_interval: Duration,
    /// Longest time a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// Outbound queue length per session; senders to a session whose queue is full wait (see
    /// the router's delivery wait).
    pub queue_size: usize,
    /// Longest time one write to the client may take; a client that stops reading for longer
    /// loses its connection (a XEP-0198 session waits for resumption).
    pub write_timeout: Duration,
    /// Resource conflict policy.
    pub resource_conflict: ConflictPolicy,
    /// Simultaneous client connections accepted across all c2s listeners.
    pub max_connections: usize,
    /// Failed SASL attempts allowed on one stream before it is closed.
    pub max_auth_failures: u32,
    /// Average bytes per second an authenticated client may send; reading pauses beyond it.
    pub max_bytes_per_second: u64,
    /// Longest time a stream-management session waits to be resumed (XEP-0198).
    pub sm_resume_timeout: Duration,
    /// Most stanzas kept unacknowledged for one session before it is closed.
    pub sm_max_unacked: usize,
}

impl Default for C2sConfig {
    fn default() -> Self {
        C2sConfig {
            limits: Limits::default(),
            require_encryption: true,
            preauth_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(900),
            keepalive_interval: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(15),
            queue_size: 512,
            write_timeout: Duration::from_secs(60),
            resource_conflict: ConflictPolicy::KickOld,
            max_connections: 10_000,
            max_auth_failures: 3,
            max_bytes_per_second: 64 * 1024,
            sm_resume_timeout: Duration::from_secs(300),
            sm_max_unacked: 5000,
        }
    }
}

/// Computes the tls-server-end-point channel binding (RFC 5929) for the certificate chosen
/// for an SNI name.
pub type EndPointHash = dyn Fn(Option<&str>) -> Option<Vec<u8>> + Send + Sync;

/// TLS material of the listener.
#[derive(Clone)]
pub struct TlsSettings {
    /// rustls configuration, with a certificate resolver that picks the host's certificate by SNI.
    pub config: Arc<rustls::ServerConfig>,
    /// tls-server-end-point data for TLS 1.2 connections.
    pub end_point_hash: Arc<EndPointHash>,
}

/// Which kind of port a listener is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Plain TCP with STARTTLS (RFC 6120 §5), usually 5222.
    StartTls,
    /// TLS from the first byte (XEP-0368), usually 5223.
    DirectTls,
}

/// Everything a connection task needs, shared by all listeners.
pub struct C2s {
    /// The stanza router.
    pub router: Arc<Router>,
    /// Listener settings.
    pub config: C2sConfig,
    /// TLS material; `None` only in tests that run without encryption.
    pub tls: Option<TlsSettings>,
    shutdown: watch::Receiver<bool>,
    connections: Arc<Semaphore>,
    resumable: std::sync::Mutex<std::collections::HashMap<String, sm::ResumeSlot>>,
}

impl C2s {
    /// Creates the shared listener state; flipping `shutdown` to true ends every session with
    /// `<system-shutdown/>`.
    pub fn new(
        router: Arc<Router>,
        config: C2sConfig,
        tls: Option<TlsSettings>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let connections = Arc::new(Semaphore::new(config.max_connections));
        Arc::new(C2s {
            router,
            config,
            tls,
            shutdown,
            connections,
            resumable: Default::default(),
        })
    }

    /// Accepts connections until shutdown; each runs in its own task.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, kind: ListenerKind) {
        let mut shutdown = self.shutdown.clone();
        let local = listener.local_addr().ok();
        info!(addr = ?local, ?kind, "c2s listener ready");
        loop {
            // Waiting for a permit before accept() makes the kernel backlog absorb bursts
            // instead of accepting connections we would have to drop.
            let permit = tokio::select! {
                p = self.connections.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = shutdown.changed() => return,
            };
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let this = self.clone();
            let span = tracing::info_span!("c2s", %peer, stream = tracing::field::Empty, jid = tracing::field::Empty);
            tokio::spawn(
                async move {
                    negotiate::run(this, tcp, peer, kind).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }

    /// Runs a client connection that arrived over another transport (WebSocket, BOSH) through
    /// the same negotiation, SASL, binding, stream management and routing as TCP clients.
    /// `peer` is the client's address, for logs and pre-authentication policies. Holds one of
    /// the `max_connections` permits for its lifetime; returns at once, without running the
    /// link, when none is free.
    pub async fn run_link(
        self: Arc<Self>,
        link: Box<dyn Link>,
        peer: SocketAddr,
        transport: &'static str,
    ) {
        let Ok(permit) = self.connections.clone().try_acquire_owned() else {
            warn!(%peer, transport, "connection limit reached; refusing a client");
            return;
        };
        let span = tracing::info_span!("c2s", %peer, transport, stream = tracing::field::Empty, jid = tracing::field::Empty);
        negotiate::run_link(self, link, peer).instrument(span).await;
        drop(permit);
    }

    /// The shutdown signal every session selects on.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    fn resumable_map(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, sm::ResumeSlot>> {
        self.resumable.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn resumable_insert(&self, id: String, slot: sm::ResumeSlot) {
        self.resumable_map().insert(id, slot);
    }

    pub(crate) fn resumable_remove(&self, id: &str) {
        self.resumable_map().remove(id);
    }

    pub(crate) fn resumable_get(&self, id: &str) -> Option<sm::ResumeSlot> {
        self.resumable_map().get(id).cloned()
    }
}

/// A random alphanumeric id (stream ids, generated resources).
pub(crate) fn random_id(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// The peer address type used in logs and pre-auth policies.
pub type Peer = SocketAddr;
