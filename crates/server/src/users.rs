//! Account administration for the CLI (`tern user add|remove|passwd|list`).

use anyhow::{bail, Context, Result};
use tern_router::BareJid;
use tern_storage::{Storage, StoreError};

use crate::Config;

fn split(jid: &str, config: &Config) -> Result<(String, String)> {
    let j = BareJid::new(jid).with_context(|| format!("{jid:?} is not a valid JID"))?;
    let Some(node) = j.node() else {
        bail!("{jid:?}: expected user@domain")
    };
    let host = j.domain().to_string();
    if !config
        .host_list()
        .iter()
        .any(|h| h.domain.eq_ignore_ascii_case(&host))
    {
        bail!(
            "{host:?} is not a host of this server (configured: {:?})",
            config
                .host_list()
                .iter()
                .map(|h| h.domain.clone())
                .collect::<Vec<_>>()
        );
    }
    Ok((host, node.to_string()))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Creates an account.
pub async fn add(storage: &Storage, config: &Config, jid: &str, password: &str) -> Result<()> {
    let (host, user) = split(jid, config)?;
    let record = tern_sasl::new_account_record(password, tern_sasl::DEFAULT_ITERATIONS, now())
        .map_err(|e| anyhow::anyhow!("password rejected: {e}"))?;
    match storage.accounts.create(&host, &user, &record).await {
        Ok(()) => Ok(()),
        Err(StoreError::Conflict) => bail!("{user}@{host} exists already"),
        Err(e) => Err(e.into()),
    }
}

/// Changes an account's password.
pub async fn passwd(storage: &Storage, config: &Config, jid: &str, password: &str) -> Result<()> {
    let (host, user) = split(jid, config)?;
    let record = tern_sasl::new_account_record(password, tern_sasl::DEFAULT_ITERATIONS, now())
        .map_err(|e| anyhow::anyhow!("password rejected: {e}"))?;
    match storage.accounts.update(&host, &user, &record).await {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound) => bail!("{user}@{host} does not exist"),
        Err(e) => Err(e.into()),
    }
}

/// Deletes an account and all its data.
pub async fn remove(storage: &Storage, config: &Config, jid: &str) -> Result<()> {
    let (host, user) = split(jid, config)?;
    if !storage.accounts.delete(&host, &user).await? {
        bail!("{user}@{host} does not exist");
    }
    Ok(())
}

/// Lists the accounts of one host, or of all.
pub async fn list(storage: &Storage, config: &Config, host: Option<&str>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for h in config.host_list() {
        if host.is_some_and(|x| !x.eq_ignore_ascii_case(&h.domain)) {
            continue;
        }
        for u in storage.accounts.list(&h.domain).await? {
            out.push(format!("{u}@{}", h.domain));
        }
    }
    Ok(out)
}
