//! The `tern` server: configuration, TLS material, storage and modules wired into listeners.
//!
//! Layout: [`config`] parses and validates the TOML file; [`tls`] loads or generates
//! certificates and picks one per host by SNI; [`start`] builds storage, router and modules,
//! binds the listeners and returns a [`Running`] handle (used by `main` and by the testkit);
//! [`users`] holds the account commands of the CLI.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use tern_c2s::{C2s, ListenerKind};
use tern_router::{LocalRegistry, Router};
use tern_storage::Storage;

pub mod config;
pub mod tls;
pub mod users;

pub use config::{Config, Registration};

/// A started server.
pub struct Running {
    /// Bound STARTTLS listener addresses (useful when configured with port 0).
    pub c2s_addrs: Vec<SocketAddr>,
    /// Bound direct-TLS listener addresses.
    pub tls_addrs: Vec<SocketAddr>,
    /// The router, for in-process tests and metrics.
    pub router: Arc<Router>,
    muc: Vec<tern_muc::MucService>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Running {
    /// Ends every session with `<system-shutdown/>` and waits (up to 10 s) for them to close.
    pub async fn shutdown(mut self) {
        // Rooms tell their occupants first (XEP-0045 status 332), while sessions still run.
        for m in &self.muc {
            m.shutdown().await;
        }
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline && self.router.sessions().count() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Opens the configured store.
pub async fn open_storage(config: &Config) -> Result<Storage> {
    match config.storage.backend.as_str() {
        "memory" => {
            warn!("storage.backend = \"memory\": accounts and messages are lost when the server stops");
            Ok(Storage::memory())
        }
        _ => {
            let path = config.server.data_dir.join(&config.storage.path);
            let synchronous = match config.storage.synchronous.as_str() {
                "normal" => tern_storage::sqlite::Synchronous::Normal,
                _ => tern_storage::sqlite::Synchronous::Full,
            };
            let opts = tern_storage::sqlite::SqliteOptions {
                synchronous,
                ..tern_storage::sqlite::SqliteOptions::new(&path)
            };
            Storage::sqlite(opts)
                .await
                .with_context(|| format!("opening database {}", path.display()))
        }
    }
}

/// Starts the server described by `config` and returns once every listener is bound.
pub async fn start(config: &Config) -> Result<Running> {
    let hosts = config.host_list();
    let storage = open_storage(config).await?;
    let tls = tls::load(&hosts, &config.server.data_dir)?;

    let mut policies = std::collections::HashMap::new();
    for h in &hosts {
        let policy = config.registration_for(h);
        if policy == Registration::Loopback {
            warn!(host = %h.domain, "in-band registration is open to clients on loopback addresses only");
        } else if policy == Registration::Open {
            warn!(host = %h.domain, "in-band registration is open to everyone");
        }
        policies.insert(h.domain.to_ascii_lowercase(), policy.into());
    }
    let mut muc = Vec::new();
    if config.muc.enabled {
        for h in &hosts {
            let svc = tern_muc::MucService::new(config.muc.clone(), &h.domain, storage.clone())
                .await
                .with_context(|| format!("loading the rooms of {}", h.domain))?;
            muc.push(svc);
        }
    }
    let mut builder = Router::builder(storage, Arc::new(LocalRegistry::default()));
    for h in &hosts {
        builder = builder.host(&h.domain);
    }
    for m in &muc {
        builder = builder.service(m.domain(), Arc::new(m.clone()));
    }
    let router = builder
        .module(Arc::new(tern_roster::RosterModule::new(
            tern_roster::RosterConfig {
                max_items: config.server.roster_max_items,
                ..Default::default()
            },
        )))
        .module(Arc::new(tern_presence::PresenceModule))
        // After presence: its unavailable reaches rooms before this module's fallback.
        .module(Arc::new(tern_muc::MucModule::new(muc.clone())))
        .module(Arc::new(tern_router::disco::DiscoModule))
        .module(Arc::new(tern_receipts::ReceiptsModule))
        .module(Arc::new(tern_ping_time_version::PingTimeVersion {
            show_os: false,
        }))
        .module(Arc::new(tern_carbons::CarbonsModule::default()))
        .module(Arc::new(tern_mam::MamModule::new(config.mam_config())))
        .module(Arc::new(tern_offline::OfflineModule::new(
            tern_offline::OfflineConfig {
                max_per_user: config.server.offline_max_per_user,
            },
        )))
        .module(Arc::new(tern_register::RegisterModule::new(
            policies,
            config.server.registration_per_ip_per_hour,
        )))
        .build();

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let c2s = C2s::new(router.clone(), config.c2s_config()?, Some(tls), shutdown_rx);
    let mut tasks = JoinSet::new();
    let mut c2s_addrs = Vec::new();
    let mut tls_addrs = Vec::new();
    for (list, kind, out) in [
        (&config.c2s.listen, ListenerKind::StartTls, &mut c2s_addrs),
        (
            &config.c2s.listen_tls,
            ListenerKind::DirectTls,
            &mut tls_addrs,
        ),
    ] {
        for addr in list {
            let l = bind(addr).await?;
            out.push(l.local_addr()?);
            tasks.spawn(c2s.clone().serve(l, kind));
        }
    }
    info!(hosts = ?hosts.iter().map(|h| h.domain.as_str()).collect::<Vec<_>>(), c2s = ?c2s_addrs, direct_tls = ?tls_addrs, "tern is running");
    Ok(Running {
        c2s_addrs,
        tls_addrs,
        router,
        muc,
        shutdown: shutdown_tx,
        tasks,
    })
}

/// Binds a listener; an IPv6 wildcard falls back to the IPv4 one on hosts without IPv6.
async fn bind(addr: &str) -> Result<TcpListener> {
    let sa: SocketAddr = addr
        .parse()
        .with_context(|| format!("listen address {addr:?}"))?;
    match TcpListener::bind(sa).await {
        Ok(l) => Ok(l),
        Err(e) if sa.ip().is_unspecified() && sa.is_ipv6() => {
            let v4 = SocketAddr::from(([0, 0, 0, 0], sa.port()));
            warn!("cannot listen on {sa} ({e}); using {v4}");
            TcpListener::bind(v4)
                .await
                .with_context(|| format!("listening on {v4}"))
        }
        Err(e) => Err(e).with_context(|| format!("listening on {sa}")),
    }
}
