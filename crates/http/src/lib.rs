//! Tern's HTTP listener: one axum application served on the plain-HTTP and HTTPS ports, with
//! the web-client transports and the routes other crates contribute.
//!
//! Layout: [`Http`] collects the configuration and the extra routes (`Http::mount`, e.g.
//! HTTP File Upload) and binds the listeners; `listener` is the accept loop (TLS with the
//! hosts' certificates by SNI, connection limits, header timeouts) that hands each request
//! to the application with its [`ConnInfo`]. The transports run the c2s session machinery
//! through [`tern_c2s::Link`]: `websocket` is RFC 7395 at `/xmpp-websocket`, `bosh` is
//! XEP-0124/0206 at `/http-bind`; `hostmeta` answers XEP-0156 discovery and `cors` holds the
//! Origin rules they share.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::task::JoinSet;

use tern_c2s::C2s;

mod bosh;
pub mod config;
mod cors;
mod hostmeta;
mod listener;
mod websocket;

pub use config::{HttpConfig, PlainSecure};

/// Path of the WebSocket endpoint (RFC 7395).
pub const WEBSOCKET_PATH: &str = "/xmpp-websocket";
/// Path of the BOSH endpoint (XEP-0206).
pub const BOSH_PATH: &str = "/http-bind";

/// How a request reached us; every request carries one as an extension.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether the request came over TLS.
    pub tls: bool,
    /// Whether XMPP streams on this connection count as encrypted (TLS, or plain HTTP
    /// trusted by `http.plain_is_secure`).
    pub secure: bool,
}

/// Failure to start the HTTP listeners.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Shared by every handler of the built-in endpoints.
#[derive(Clone)]
pub(crate) struct AppState {
    pub c2s: Arc<C2s>,
    pub config: Arc<HttpConfig>,
    pub bosh: Arc<bosh::Sessions>,
}

/// The bound listeners.
#[derive(Debug, Default, Clone)]
pub struct Bound {
    /// Plain-HTTP addresses.
    pub plain: Vec<SocketAddr>,
    /// HTTPS addresses.
    pub tls: Vec<SocketAddr>,
}

/// The HTTP server being assembled.
pub struct Http {
    config: HttpConfig,
    c2s: Arc<C2s>,
    extra: Vec<Router>,
}

impl Http {
    /// The listener for `c2s`'s clients; TLS material is taken from `c2s.tls`.
    pub fn new(config: HttpConfig, c2s: Arc<C2s>) -> Self {
        Http {
            config,
            c2s,
            extra: Vec::new(),
        }
    }

    /// Adds routes served on both listeners beside the built-in ones (docs/hooks.md). Each
    /// request carries a [`ConnInfo`] extension.
    pub fn mount(mut self, routes: Router) -> Self {
        self.extra.push(routes);
        self
    }

    /// Binds every configured listener and spawns their accept loops into `tasks`; they stop
    /// accepting when the c2s shutdown signal fires.
    pub async fn start(self, tasks: &mut JoinSet<()>) -> Result<Bound, HttpError> {
        self.config.validate().map_err(HttpError::Config)?;
        let config = Arc::new(self.config);
        let state = AppState {
            c2s: self.c2s.clone(),
            config: config.clone(),
            bosh: bosh::Sessions::new(),
        };
        tasks.spawn(bosh::reaper(state.bosh.clone(), self.c2s.shutdown_signal()));
        let mut app = Router::new()
            .merge(websocket::routes())
            .merge(bosh::routes())
            .merge(hostmeta::routes())
            .with_state(state);
        for r in self.extra {
            app = app.merge(r);
        }
        let tls = self.c2s.tls.as_ref().map(|t| {
            // HTTP/1.1 only: WebSocket over HTTP/2 (RFC 8441) is not offered.
            let mut cfg = (*t.config).clone();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
        });
        let limit = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
        let mut bound = Bound::default();
        for (list, use_tls) in [(&config.listen, false), (&config.listen_tls, true)] {
            for addr in list {
                let l = listener::bind(addr).await?;
                let local = l.local_addr().map_err(|source| HttpError::Bind {
                    addr: addr.clone(),
                    source,
                })?;
                let acceptor = if use_tls {
                    match &tls {
                        Some(t) => Some(t.clone()),
                        None => {
                            tracing::warn!(%addr, "no TLS material: HTTPS listener not started");
                            continue;
                        }
                    }
                } else {
                    None
                };
                if use_tls {
                    bound.tls.push(local);
                } else {
                    bound.plain.push(local);
                }
                let serve = listener::Serve {
                    app: app.clone(),
                    tls: acceptor,
                    config: config.clone(),
                    limit: limit.clone(),
                    shutdown: self.c2s.shutdown_signal(),
                };
                tasks.spawn(serve.run(l));
            }
        }
        tracing::info!(http = ?bound.plain, https = ?bound.tls, "HTTP listeners ready");
        Ok(bound)
    }
}
