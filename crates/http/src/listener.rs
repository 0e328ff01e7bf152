//! The accept loop of one HTTP or HTTPS port: TLS handshake, HTTP/1.1 with upgrades (for
//! WebSocket), a per-request [`ConnInfo`], a connection limit shared by all ports, and a
//! header timeout against clients that connect and say nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::Service;
use tracing::{debug, info, warn};

use crate::config::{HttpConfig, PlainSecure};
use crate::{ConnInfo, HttpError};

/// Binds a listener; an IPv6 wildcard falls back to the IPv4 one on hosts without IPv6.
pub(crate) async fn bind(addr: &str) -> Result<TcpListener, HttpError> {
    let err = |source| HttpError::Bind {
        addr: addr.to_owned(),
        source,
    };
    let sa: SocketAddr = addr.parse().map_err(|_| {
        HttpError::Config(format!("http listen address {addr:?}: expected ip:port"))
    })?;
    match TcpListener::bind(sa).await {
        Ok(l) => Ok(l),
        Err(e) if sa.ip().is_unspecified() && sa.is_ipv6() => {
            let v4 = SocketAddr::from(([0, 0, 0, 0], sa.port()));
            warn!("cannot listen on {sa} ({e}); using {v4}");
            TcpListener::bind(v4).await.map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

/// One port's serving loop.
pub(crate) struct Serve {
    pub app: Router,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub config: Arc<HttpConfig>,
    pub limit: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
}

impl Serve {
    /// Accepts until shutdown, then waits for the open connections (WebSocket sessions end
    /// with `<system-shutdown/>` through c2s); whoever owns the task aborts what lingers.
    pub(crate) async fn run(mut self, listener: TcpListener) {
        let mut conns = JoinSet::new();
        loop {
            let permit = tokio::select! {
                p = self.limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = self.shutdown.changed() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            };
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        warn!("HTTP accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = self.shutdown.changed() => break,
            };
            let _ = tcp.set_nodelay(true);
            let secure = self.tls.is_some()
                || match self.config.plain_is_secure {
                    PlainSecure::Always => true,
                    PlainSecure::Never => false,
                    PlainSecure::Loopback => {
                        peer.ip().is_loopback() || peer.ip().to_canonical().is_loopback()
                    }
                };
            let info = ConnInfo {
                peer,
                tls: self.tls.is_some(),
                secure,
            };
            let app = self.app.clone();
            let tls = self.tls.clone();
            let timeout = self.config.header_timeout();
            conns.spawn(async move {
                match tls {
                    None => serve_conn(tcp, app, info, timeout).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => serve_conn(s, app, info, timeout).await,
                            Ok(Err(e)) => info!(%peer, "HTTPS: TLS handshake failed: {e}"),
                            Err(_) => info!(%peer, "HTTPS: TLS handshake timed out"),
                        }
                    }
                }
                drop(permit);
            });
        }
        while conns.join_next().await.is_some() {}
    }
}

async fn serve_conn<I>(io: I, app: Router, info: ConnInfo, timeout: std::time::Duration)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(info);
        let mut app = app.clone();
        async move { app.call(req).await }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        debug!(peer = %info.peer, "HTTP connection ended: {e}");
    }
}
