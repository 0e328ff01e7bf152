//! Persistence of rosters on the `Map` store, with the roster version kept in the same map so
//! an item change and its version bump are one atomic write (XEP-0237).

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use tokio::sync::{Mutex, MutexGuard};

use tern_storage::{MapStore, Result, StoreError};

use crate::item::RosterItem;

/// Store name of rosters.
const STORE: &str = "roster";
/// Reserved key of the version counter. No JID starts with '@' (the localpart would be empty),
/// and the key stays plain text so every backend (PostgreSQL rejects NUL) can hold it.
const VERSION_KEY: &str = "@version";

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

/// A stored version counter (0 if unreadable, as for a roster never written).
fn parse_version(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
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

    /// The current version and the items a client sees, from one read (the version is kept
    /// in the same map): a roster get without a cached version costs one statement.
    pub async fn listed_with_version(&self) -> Result<(u64, Vec<RosterItem>)> {
        let rows = self.map.all(self.host, STORE, self.user).await?;
        let mut ver = 0;
        let mut items = Vec::with_capacity(rows.len());
        for (k, v) in &rows {
            if k == VERSION_KEY {
                ver = parse_version(v);
            } else {
                let item = decode(v)?;
                if item.listed {
                    items.push(item);
                }
            }
        }
        Ok((ver, items))
    }

    /// The items a client sees (RFC 6121 §2.1.4), sorted by JID.
    pub async fn listed(&self) -> Result<Vec<RosterItem>> {
        let mut items = self.all().await?;
        items.retain(|i| i.listed);
        Ok(items)
    }

    /// One item, hidden or not.
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
            .map(|v| parse_version(&v))
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
        let mut item = self
            .get(jid)
            .await?
            .unwrap_or_else(|| RosterItem::hidden(jid));
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
        let v = next_version(self.version().await?);
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

/// The version after `current`. A roster's first write starts from the clock rather than 1, so
/// an account deleted and created again does not replay version numbers a client cached for
/// the old roster (XEP-0237 §4: a version must identify one roster state).
fn next_version(current: u64) -> u64 {
    if current == 0 {
        u64::try_from(tern_router::time::now_micros())
            .unwrap_or(1)
            .max(1)
    } else {
        current + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_storage::Storage;

    #[tokio::test]
    async fn change_and_version_bump_together() {
        let storage = Storage::memory();
        let store = RosterStore::new(storage.map.as_ref(), "example.com", "alice");
        assert_eq!(store.version().await.unwrap(), 0);
        let v1 = store
            .put(&RosterItem::new("bob@example.com"))
            .await
            .unwrap();
        assert!(v1 > 0);
        let (item, v2) = store
            .update("bob@example.com", |i| {
                i.name = Some("Bob".into());
                true
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!((item.name.as_deref(), v2), (Some("Bob"), v1 + 1));
        assert!(store
            .update("bob@example.com", |_| false)
            .await
            .unwrap()
            .is_none());
        assert_eq!(store.version().await.unwrap(), v2);
        assert_eq!(
            store.all().await.unwrap().len(),
            1,
            "version key is not an item"
        );
        let v3 = store.remove("bob@example.com").await.unwrap();
        assert_eq!((v3, store.all().await.unwrap().len()), (v2 + 1, 0));
    }

    #[tokio::test]
    async fn empty_hidden_items_are_not_kept() {
        let storage = Storage::memory();
        let store = RosterStore::new(storage.map.as_ref(), "example.com", "alice");
        store
            .update("eve@example.com", |i| {
                i.pending_in = true;
                true
            })
            .await
            .unwrap();
        assert_eq!(store.all().await.unwrap().len(), 1);
        assert!(store.listed().await.unwrap().is_empty());
        store
            .update("eve@example.com", |i| {
                i.clear_pending_request();
                true
            })
            .await
            .unwrap();
        assert!(store.get("eve@example.com").await.unwrap().is_none());
    }
}
