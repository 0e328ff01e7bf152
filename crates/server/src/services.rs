//! Wiring of the services on their own subdomains that need more than a router module:
//! the XEP-0065 proxy (a SOCKS5 listener) and XEP-0363 upload (files on disk, HTTP routes).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use tokio::task::JoinSet;
use tracing::info;

use crate::{bind, config, Config};

/// Binds the XEP-0065 proxy's SOCKS5 listener and attaches its service to every host.
pub(crate) async fn proxy65(
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

/// What the HTTP listener needs from the upload service.
pub(crate) struct Upload {
    /// Routes to mount.
    pub routes: axum::Router,
    /// The HTTPS port, once bound, for `{https_port}` in `[upload] base_url`.
    pub https_port: Arc<OnceLock<u16>>,
}

/// Opens the upload store and attaches the XEP-0363 service to every host.
pub(crate) fn upload(
    config: &Config,
    hosts: &[config::HostSection],
    mut builder: tern_router::RouterBuilder,
    tasks: &mut JoinSet<()>,
) -> Result<(tern_router::RouterBuilder, Option<Upload>)> {
    use tern_file_transfer::upload::{routes, Files, UploadLimits, UploadService};
    let c = &config.upload;
    if !c.enabled {
        return Ok((builder, None));
    }
    let root = config.server.data_dir.join(&c.path);
    let limits = UploadLimits {
        max_file_size: c.max_file_size,
        quota_per_user: c.quota_per_user,
        global_quota: c.global_quota,
        allowed_types: c
            .allowed_content_types
            .iter()
            .map(|t| t.to_ascii_lowercase())
            .collect(),
        slot_ttl: std::time::Duration::from_secs(c.slot_ttl_secs),
        expire_after: (c.expire_after_days > 0)
            .then(|| std::time::Duration::from_secs(c.expire_after_days * 86_400)),
    };
    let files = Arc::new(
        Files::open(&root, limits).with_context(|| format!("upload store {}", root.display()))?,
    );
    let secret: Vec<u8> = match &c.secret {
        Some(s) => s.as_bytes().to_vec(),
        None => {
            use rand::RngCore;
            let mut k = vec![0u8; 32];
            rand::thread_rng().fill_bytes(&mut k);
            k
        }
    };
    let secret = Arc::new(secret);
    let https_port = Arc::new(OnceLock::new());
    for h in hosts {
        let domain = c.domain.replace("{host}", &h.domain);
        let base = c.base_url.replace("{host}", &h.domain);
        info!(service = %domain, base = %base, "HTTP file upload");
        builder = builder.service(
            &domain,
            Arc::new(UploadService::new(
                files.clone(),
                secret.clone(),
                &base,
                https_port.clone(),
            )),
        );
    }
    let sweep = files.clone();
    tasks.spawn(async move {
        loop {
            let n = sweep.purge_expired().await;
            if n > 0 {
                info!(files = n, "expired uploads deleted");
            }
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
    });
    Ok((
        builder,
        Some(Upload {
            routes: routes(files, secret),
            https_port,
        }),
    ))
}
