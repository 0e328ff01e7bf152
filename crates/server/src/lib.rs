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
mod services;
pub mod tls;
pub mod users;

pub use config::{Config, Registration};

/// XEPs implemented by the core rather than by a module (the c2s listener's stream features)
/// and those the router carries untouched between clients; with every module's and
/// service's [`tern_router::Module::specs`] they make the protocol support table.
pub const CORE_SPECS: &[tern_router::Spec] = &[
    // crates/c2s: stream management, client state indication, direct TLS, channel-binding
    // capability.
    tern_router::Spec::xep(198, "1.6.3"),
    tern_router::Spec::xep(352, "1.0.0"),
    tern_router::Spec::xep(368, "1.1.0"),
    tern_router::Spec::xep(440, "1.0.0"),
    // crates/http: BOSH, XMPP over BOSH, connection discovery via host-meta.
    tern_router::Spec::xep(124, "1.11.2"),
    tern_router::Spec::xep(206, "1.4"),
    tern_router::Spec::xep(156, "1.4.0"),
    // crates/s2s: SASL EXTERNAL between servers, dialback; crates/component: XEP-0114.
    tern_router::Spec::xep(178, "1.2"),
    tern_router::Spec::xep(220, "1.1.1"),
    tern_router::Spec::xep(114, "1.6"),
    // Routed between full JIDs, proven by the conformance suite: in-band bytestreams.
    tern_router::Spec::xep(47, "2.0.1"),
];

/// A started server.
pub struct Running {
    /// Bound STARTTLS listener addresses (useful when configured with port 0).
    pub c2s_addrs: Vec<SocketAddr>,
    /// Bound direct-TLS listener addresses.
    pub tls_addrs: Vec<SocketAddr>,
    /// Bound SOCKS5 proxy listener (XEP-0065), if enabled.
    pub proxy65_addr: Option<SocketAddr>,
    /// Bound HTTP listeners (plain and HTTPS): WebSocket, BOSH, host-meta.
    pub http: tern_http::Bound,
    /// Bound federation listener addresses (STARTTLS, then direct TLS).
    pub s2s_addrs: Vec<SocketAddr>,
    /// Bound XEP-0114 component listener addresses.
    pub component_addrs: Vec<SocketAddr>,
    /// Federation, when enabled (for tests and status).
    pub s2s: Option<Arc<tern_s2s::S2s>>,
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
    let (tls, sni) = tls::load_with_resolver(&hosts, &config.server.data_dir)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

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
    let mut builder = Router::builder(storage, Arc::new(LocalRegistry::default()))
        .delivery_wait(std::time::Duration::from_millis(config.c2s.queue_wait_ms));
    for h in &hosts {
        builder = builder.host(&h.domain);
    }
    let mut tasks = JoinSet::new();
    let (builder, proxy65_addr) = services::proxy65(config, &hosts, builder, &mut tasks).await?;
    let (mut builder, upload) = services::upload(config, &hosts, builder, &mut tasks)?;
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
    let s2s = if config.s2s.enabled {
        let certs = tern_s2s::LocalCerts {
            resolver: sni.clone(),
            lookup: Arc::new(move |d: &str| sni.key_for(d)),
        };
        let s2s = tern_s2s::S2s::new(config.s2s.clone(), certs, shutdown_rx.clone())?;
        builder = builder.remote(s2s.clone());
        Some(s2s)
    } else {
        None
    };
    for m in &muc {
        builder = builder.service(m.domain(), Arc::new(m.clone()));
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
        // After presence: its unavailable reaches rooms before this module's fallback.
        .module(Arc::new(tern_muc::MucModule::new(muc.clone())))
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

    let c2s = C2s::new(
        router.clone(),
        config.c2s_config()?,
        Some(tls),
        shutdown_rx.clone(),
    );
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
    // Other crates add their HTTP routes here with `.mount(router)` (docs/hooks.md).
    let mut http = tern_http::Http::new(config.http.clone(), c2s.clone());
    if let Some(u) = &upload {
        http = http.mount(u.routes.clone());
    }
    let http = http.start(&mut tasks).await?;
    if let (Some(u), Some(a)) = (&upload, http.tls.first()) {
        u.https_port.set(a.port()).ok();
    }
    let (s2s_addrs, component_addrs) =
        start_s2s_and_components(config, &router, s2s.as_ref(), &shutdown_rx, &mut tasks).await?;
    info!(hosts = ?hosts.iter().map(|h| h.domain.as_str()).collect::<Vec<_>>(), c2s = ?c2s_addrs, direct_tls = ?tls_addrs, s2s = ?s2s_addrs, components = ?component_addrs, http = ?http.plain, https = ?http.tls, "tern is running");
    Ok(Running {
        c2s_addrs,
        tls_addrs,
        proxy65_addr,
        http,
        s2s_addrs,
        component_addrs,
        s2s,
        router,
        muc,
        shutdown: shutdown_tx,
        tasks,
    })
}

/// Binds the federation and component listeners. The default federation port may be taken
/// (another XMPP server on a development machine): that is a warning, and the server runs
/// without incoming federation; an explicitly configured address that cannot be bound is an
/// error.
async fn start_s2s_and_components(
    config: &Config,
    router: &Arc<Router>,
    s2s: Option<&Arc<tern_s2s::S2s>>,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
) -> Result<(Vec<SocketAddr>, Vec<SocketAddr>)> {
    let mut s2s_addrs = Vec::new();
    if let Some(s2s) = s2s {
        s2s.set_router(router);
        let default = config.s2s.listen_is_default();
        for (list, kind) in [
            (&config.s2s.listen, tern_s2s::ListenerKind::StartTls),
            (&config.s2s.listen_tls, tern_s2s::ListenerKind::DirectTls),
        ] {
            for addr in list {
                match bind(addr).await {
                    Ok(l) => {
                        s2s_addrs.push(l.local_addr()?);
                        tasks.spawn(s2s.clone().serve(l, kind));
                    }
                    Err(e) if default && kind == tern_s2s::ListenerKind::StartTls => warn!(
                        "cannot listen for federation on {addr} ({e:#}); other servers cannot \
                         connect to this one (set s2s.listen to choose another address)"
                    ),
                    Err(e) => return Err(e.context("s2s.listen")),
                }
            }
        }
    }
    let mut component_addrs = Vec::new();
    if !config.component.is_empty() {
        let components = tern_component::Components::start(
            router.clone(),
            &config.component,
            config.component_listener.clone(),
            shutdown.clone(),
        );
        for addr in &config.component_listener.listen {
            let l = bind(addr).await.context("component_listener.listen")?;
            component_addrs.push(l.local_addr()?);
            tasks.spawn(components.clone().serve(l));
        }
    }
    Ok((s2s_addrs, component_addrs))
}

/// Binds a listener; an IPv6 wildcard falls back to the IPv4 one on hosts without IPv6.
pub(crate) async fn bind(addr: &str) -> Result<TcpListener> {
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
