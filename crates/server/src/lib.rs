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
    /// Bound SOCKS5 proxy listener (XEP-0065), if enabled.
    pub proxy65_addr: Option<SocketAddr>,
    /// The router, for in-process tests and metrics.
    pub router: Arc<Router>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Running {
    /// Ends every session with `<system-shutdown/>` and waits (up to 10 s) for them to close.
    pub async fn shutdown(mut self) {
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
    let mut builder = Router::builder(storage, Arc::new(LocalRegistry::default()));
    for h in &hosts {
        builder = builder.host(&h.domain);
    }
    let mut tasks = JoinSet::new();
    let (mut builder, proxy65_addr) = proxy65(config, &hosts, builder, &mut tasks).await?;
    let (pep, private) = tern_pubsub::modules(&config.pubsub);
    if config.pubsub.service {
        let cfg = Arc::new(config.pubsub.clone());
        for h in &hosts {
            let domain = config.pubsub.service_domain_for(&h.domain);
            builder = builder.service(
                &domain,
                Arc::new(tern_pubsub::PubSubService::new(&domain, cfg.clone())),
            );
        }
    }
    if config.avatar.pep_vcard_conversion {
        builder = builder.module(Arc::new(tern_avatar::AvatarModule::new(&config.avatar)));
    }
    let router = builder
        .module(Arc::new(tern_roster::RosterModule::new(
            tern_roster::RosterConfig {
                max_items: config.server.roster_max_items,
                ..Default::default()
            },
        )))
        .module(Arc::new(tern_presence::PresenceModule))
        .module(Arc::new(tern_blocking::BlockingModule::new(
            tern_blocking::BlockingConfig {
                max_items: config.server.blocklist_max_items,
            },
        )))
        .module(Arc::new(tern_router::disco::DiscoModule::new(
            &config.contact.fields(),
        )))
        .module(Arc::new(tern_push::PushModule::new(
            tern_push::PushConfig {
                include_body: config.push.include_body,
                include_sender: config.push.include_sender,
                max_per_user: config.push.max_per_user,
            },
        )))
        .module(Arc::new(tern_extdisco::ExtDiscoModule::new(
            config.external_services.clone(),
        )))
        .module(Arc::new(tern_receipts::ReceiptsModule))
        .module(Arc::new(tern_vcard::VcardModule {
            max_bytes: config.server.vcard_max_bytes,
        }))
        .module(Arc::new(tern_ping_time_version::PingTimeVersion {
            disclosure: config.version_disclosure()?,
        }))
        .module(Arc::new(
            tern_ping_time_version::last::LastActivity::default(),
        ))
        .module(Arc::new(tern_carbons::CarbonsModule::default()))
        .module(Arc::new(tern_mam::MamModule::new(config.mam_config())))
        .module(Arc::new(tern_offline::OfflineModule::new(
            tern_offline::OfflineConfig {
                max_per_user: config.server.offline_max_per_user,
            },
        )))
        .module(pep)
        .module(private)
        .module(Arc::new(tern_register::RegisterModule::new(
            policies,
            config.server.registration_per_ip_per_hour,
        )))
        .build();

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let c2s = C2s::new(router.clone(), config.c2s_config()?, Some(tls), shutdown_rx);
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
        proxy65_addr,
        router,
        shutdown: shutdown_tx,
        tasks,
    })
}

/// Binds the XEP-0065 proxy's SOCKS5 listener and attaches its service to every host.
async fn proxy65(
    config: &Config,
    hosts: &[config::HostSection],
    mut builder: tern_router::RouterBuilder,
    tasks: &mut JoinSet<()>,
) -> Result<(tern_router::RouterBuilder, Option<SocketAddr>)> {
    use tern_file_transfer::proxy65::{serve, Pending, Proxy65, ProxyConfig};
    let c = &config.proxy65;
    if !c.enabled {
        return Ok((builder, None));
    }
    let listener = bind(&c.listen).await.context("proxy65.listen")?;
    let addr = listener.local_addr()?;
    let pending = Arc::new(Pending::default());
    let mut base = ProxyConfig {
        advertised_host: String::new(),
        advertised_port: c.advertised_port.unwrap_or(addr.port()),
        max_connections: c.max_connections,
        unpaired_timeout: std::time::Duration::from_secs(c.unpaired_timeout_secs),
        max_bytes_per_second: c.max_bytes_per_second,
    };
    for h in hosts {
        let domain = c.domain.replace("{host}", &h.domain);
        base.advertised_host = c
            .advertised_host
            .clone()
            .unwrap_or_else(|| h.domain.clone());
        info!(service = %domain, advertised = %format!("{}:{}", base.advertised_host, base.advertised_port), "SOCKS5 bytestreams proxy");
        builder = builder.service(
            &domain,
            Arc::new(Proxy65::new(base.clone(), pending.clone())),
        );
    }
    tasks.spawn(serve(listener, base, pending));
    Ok((builder, Some(addr)))
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
