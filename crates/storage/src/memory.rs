//! In-memory backend for tests: the same semantics as SQLite (orders, errors, cascades),
//! nothing persisted.
//!
//! One mutex guards all maps so that multi-store operations (account deletion) are atomic, as
//! they are in one SQLite transaction. No method awaits while holding it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::{
    AccountRecord, AccountStore, ArchiveItem, ArchivePage, ArchiveQuery, ArchiveStore, KeyValStore,
    MapStore, Result, StoreError,
};

/// (host, store, user): the key of every per-user collection.
type Slot = (String, String, String);

fn slot(host: &str, store: &str, user: &str) -> Slot {
    (host.to_owned(), store.to_owned(), user.to_owned())
}

/// Everything stored; see the module docs for why it is one struct behind one lock.
#[derive(Default)]
struct Inner {
    /// (host, user) → record; a BTreeMap so `list` comes out sorted.
    accounts: BTreeMap<(String, String), AccountRecord>,
    keyval: HashMap<Slot, Vec<u8>>,
    map: HashMap<Slot, BTreeMap<String, Vec<u8>>>,
    /// Items with their insertion sequence number, in insertion order.
    archive: HashMap<Slot, Vec<(u64, ArchiveItem)>>,
    /// Next archive sequence number; shared by all users like SQLite's AUTOINCREMENT.
    next_seq: u64,
}

/// The in-memory backend; implements every store trait.
#[derive(Default)]
pub struct MemoryBackend {
    inner: Mutex<Inner>,
}

impl MemoryBackend {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves plain data, still consistent enough
        // for tests; do not turn one failed test into a cascade.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl AccountStore for MemoryBackend {
    async fn get(&self, host: &str, user: &str) -> Result<Option<AccountRecord>> {
        Ok(self
            .lock()
            .accounts
            .get(&(host.to_owned(), user.to_owned()))
            .cloned())
    }

    async fn create(&self, host: &str, user: &str, record: &AccountRecord) -> Result<()> {
        let mut inner = self.lock();
        let key = (host.to_owned(), user.to_owned());
        if inner.accounts.contains_key(&key) {
            return Err(StoreError::Conflict);
        }
        inner.accounts.insert(key, record.clone());
        Ok(())
    }

    async fn update(&self, host: &str, user: &str, record: &AccountRecord) -> Result<()> {
        let mut inner = self.lock();
        let existing = inner.accounts.get_mut(&(host.to_owned(), user.to_owned()));
        *existing.ok_or(StoreError::NotFound)? = record.clone();
        Ok(())
    }

    async fn delete(&self, host: &str, user: &str) -> Result<bool> {
        let mut inner = self.lock();
        let existed = inner
            .accounts
            .remove(&(host.to_owned(), user.to_owned()))
            .is_some();
        // Like SQLite, remove the user's items even if the account row was already gone.
        let owned = |(h, _, u): &Slot| h == host && u == user;
        inner.keyval.retain(|k, _| !owned(k));
        inner.map.retain(|k, _| !owned(k));
        inner.archive.retain(|k, _| !owned(k));
        Ok(existed)
    }

    async fn list(&self, host: &str) -> Result<Vec<String>> {
        let inner = self.lock();
        Ok(inner
            .accounts
            .keys()
            .filter(|(h, _)| h == host)
            .map(|(_, u)| u.clone())
            .collect())
    }
}

#[async_trait]
impl KeyValStore for MemoryBackend {
    async fn get(&self, host: &str, store: &str, user: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.lock().keyval.get(&slot(host, store, user)).cloned())
    }

    async fn set(&self, host: &str, store: &str, user: &str, value: Option<&[u8]>) -> Result<()> {
        let mut inner = self.lock();
        match value {
            Some(v) => inner.keyval.insert(slot(host, store, user), v.to_vec()),
            None => inner.keyval.remove(&slot(host, store, user)),
        };
        Ok(())
    }
}

#[async_trait]
impl MapStore for MemoryBackend {
    async fn get(&self, host: &str, store: &str, user: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let inner = self.lock();
        Ok(inner
            .map
            .get(&slot(host, store, user))
            .and_then(|m| m.get(key))
            .cloned())
    }

    async fn set_many(
        &self,
        host: &str,
        store: &str,
        user: &str,
        items: &[(String, Option<Vec<u8>>)],
    ) -> Result<()> {
        // Nothing here can fail halfway, so applying in order under the lock is all-or-nothing;
        // in order also means a key listed twice ends with its last value, as in SQLite.
        let mut inner = self.lock();
        let map = inner.map.entry(slot(host, store, user)).or_default();
        for (key, value) in items {
            match value {
                Some(v) => map.insert(key.clone(), v.clone()),
                None => map.remove(key),
            };
        }
        if map.is_empty() {
            inner.map.remove(&slot(host, store, user));
        }
        Ok(())
    }

    async fn all(&self, host: &str, store: &str, user: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let inner = self.lock();
        let items = inner.map.get(&slot(host, store, user));
        Ok(items
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn clear(&self, host: &str, store: &str, user: &str) -> Result<()> {
        self.lock().map.remove(&slot(host, store, user));
        Ok(())
    }
}

#[async_trait]
impl ArchiveStore for MemoryBackend {
    async fn append(&self, host: &str, store: &str, user: &str, item: &ArchiveItem) -> Result<()> {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        let items = inner.archive.entry(slot(host, store, user)).or_default();
        if items.iter().any(|(_, it)| it.id == item.id) {
            return Err(StoreError::Conflict);
        }
        items.push((seq, item.clone()));
        inner.next_seq += 1;
        Ok(())
    }

    async fn query(
        &self,
        host: &str,
        store: &str,
        user: &str,
        q: &ArchiveQuery,
    ) -> Result<ArchivePage> {
        let inner = self.lock();
        let items = inner
            .archive
            .get(&slot(host, store, user))
            .map_or(&[][..], Vec::as_slice);
        page(items, q)
    }

    async fn delete(
        &self,
        host: &str,
        store: &str,
        user: &str,
        ids: Option<&[String]>,
    ) -> Result<u64> {
        let mut inner = self.lock();
        let Some(items) = inner.archive.get_mut(&slot(host, store, user)) else {
            return Ok(0);
        };
        let before = items.len();
        match ids {
            Some(ids) => items.retain(|(_, it)| !ids.contains(&it.id)),
            None => items.clear(),
        }
        Ok((before - items.len()) as u64)
    }

    async fn expire(&self, store: &str, before: i64) -> Result<u64> {
        let mut inner = self.lock();
        let mut removed = 0;
        for ((_, s, _), items) in inner.archive.iter_mut() {
            if s != store {
                continue;
            }
            let len = items.len();
            items.retain(|(_, it)| it.when >= before);
            removed += (len - items.len()) as u64;
        }
        Ok(removed)
    }

    async fn count(&self, host: &str, store: &str, user: &str) -> Result<u64> {
        let inner = self.lock();
        Ok(inner
            .archive
            .get(&slot(host, store, user))
            .map_or(0, |items| items.len() as u64))
    }
}

/// Runs `q` over one user's items: the in-memory twin of the SQLite query.
fn page(items: &[(u64, ArchiveItem)], q: &ArchiveQuery) -> Result<ArchivePage> {
    // Results are ordered by (when, seq); after/before compare on that same key.
    let position = |id: &Option<String>| -> Result<Option<(i64, u64)>> {
        let Some(id) = id else { return Ok(None) };
        let found = items.iter().find(|(_, it)| it.id == *id);
        found
            .map(|(seq, it)| Some((it.when, *seq)))
            .ok_or(StoreError::NotFound)
    };
    let after = position(&q.after_id)?;
    let before = position(&q.before_id)?;

    let mut hits: Vec<(i64, u64, &ArchiveItem)> = items
        .iter()
        .filter(|(_, it)| q.with.as_ref().is_none_or(|w| *w == it.with))
        .filter(|(_, it)| q.start.is_none_or(|s| it.when >= s))
        .filter(|(_, it)| q.end.is_none_or(|e| it.when <= e))
        .filter(|(_, it)| q.ids.is_empty() || q.ids.contains(&it.id))
        .filter(|(seq, it)| after.is_none_or(|a| (it.when, *seq) > a))
        .filter(|(seq, it)| before.is_none_or(|b| (it.when, *seq) < b))
        .map(|(seq, it)| (it.when, *seq, it))
        .collect();
    hits.sort_by_key(|&(when, seq, _)| (when, seq));
    if q.from_end {
        hits.reverse();
    }
    let limit = q.limit.unwrap_or(usize::MAX);
    let complete = hits.len() <= limit;
    hits.truncate(limit);
    if q.from_end {
        hits.reverse();
    }
    Ok(ArchivePage {
        items: hits.into_iter().map(|(_, _, it)| it.clone()).collect(),
        complete,
    })
}
