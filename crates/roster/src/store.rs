//! Persistence of rosters on the `Map` store, with the roster version kept in the same map so
//! an item change and its version bump are one atomic write (XEP-0237).

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use tokio::sync::{Mutex, MutexGuard};

use tern_storage::{MapStore, Result, StoreError};

use crate::item::RosterItem;

/// Store name of rosters.
const STORE: &str = "roster";
/// Reserved key of the version counter; no JID starts with NUL.
const VERSION_KEY: &str = "\u{0}version";

/// A user's roster in storage.
pub struct RosterStore<'a> {
    map: &'a dyn MapStore,
    host: &'a str,
    user: &'a str,
}

/// Roster changes are read-modify-write; striped locks serialize them per account so two
/// sessions (or a session and an inbound subscription) cannot lose each other's update or reuse
/// a version number.
fn stripe(host: &str, user: &str) -> &'static Mutex<()> {
    static STRIPES: OnceLock<Vec<Mutex<()>>> = OnceLock::new();
    let stripes = STRIPES.get_or_init(|| (0..64).map(|_| Mutex::new(())).collect());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (host, user).hash(&mut h);
    &stripes[(h.finish() % 64) as usize]
}

fn decode(bytes: &[u8]) -> Result<RosterItem> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Backend(format!("corrupt roster item: {e}")))
}

impl<'a> RosterStore<'a> {
    /// The roster of `user@host`.
    pub fn new(map: &'a dyn MapStore, host: &'a str, user: &'a str) -> Self {
        RosterStore { map, host, user }
    }

    /// Every item, hidden ones included, sorted by JID.
    pub async fn all(&self) -> Result<Vec<RosterItem>> {
        let rows = self.map.all(self.host, STORE, self.user).await?;
        rows.iter()
            .filter(|(k, _)| k != VERSION_KEY)
            .map(|(_, v)| decode(v))
            .collect()
    }

    /// One item.
    pub async fn get(&self, jid: &str) -> Result<Option<RosterItem>> {
        match self.map.get(self.host, STORE, self.user, jid).await? {
            Some(v) => decode(&v).map(Some),
            None => Ok(None),
        }
    }

    /// The current version (0 for a roster never written).
    pub async fn version(&self) -> Result<u64> {
        Ok(self
            .map
            .get(self.host, STORE, self.user, VERSION_KEY)
            .await?
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
            .unwrap_or(0))
    }

    /// Serializes read-modify-write sequences on this roster; hold the guard across them.
    pub async fn lock(&self) -> MutexGuard<'static, ()> {
        stripe(self.host, self.user).lock().await
    }

    /// Applies `f` to the item for `jid` (a fresh hidden item if there is none) under the
    /// roster lock; when `f` reports a change, stores it and returns the item and new version.
    pub async fn update(
        &self,
        jid: &str,
        f: impl FnOnce(&mut RosterItem) -> bool,
    ) -> Result<Option<(RosterItem, u64)>> {
        let _guard = self.lock().await;
        let mut item = self.get(jid).await?.unwrap_or_else(|| RosterItem {
            listed: false,
            ..RosterItem::new(jid)
        });
        if !f(&mut item) {
            return Ok(None);
        }
        let v = self.put(&item).await?;
        Ok(Some((item, v)))
    }

    /// Writes an item (or deletes it when it holds no state) and bumps the version in the same
    /// transaction; returns the new version. Call under [`RosterStore::lock`].
    pub async fn put(&self, item: &RosterItem) -> Result<u64> {
        let value = if item.is_empty() {
            None
        } else {
            Some(serde_json::to_vec(item).map_err(|e| StoreError::Backend(e.to_string()))?)
        };
        self.write(&item.jid, value).await
    }

    /// Deletes an item and bumps the version; returns the new version. Call under
    /// [`RosterStore::lock`].
    pub async fn remove(&self, jid: &str) -> Result<u64> {
        self.write(jid, None).await
    }

    async fn write(&self, jid: &str, value: Option<Vec<u8>>) -> Result<u64> {
        let v = self.version().await? + 1;
        let items = vec![
            (jid.to_owned(), value),
            (VERSION_KEY.to_owned(), Some(v.to_string().into_bytes())),
        ];
        self.map
            .set_many(self.host, STORE, self.user, &items)
            .await?;
        Ok(v)
    }
}
