//! A read cache of per-account module state that lives in storage (archiving preferences,
//! push registrations): the hot message path then costs no storage round trip, which on
//! SQLite is a hand-off to the database thread and back for every message.
//!
//! Only accounts with a bound session are cached, and an account leaves the cache when its
//! last session closes, so the cache holds roughly the online accounts (bounded by `max`
//! besides). Writers store first and then call [`AccountCache::invalidate`]; a load that
//! raced with a write is not cached, because [`AccountCache::fill`] only keeps values loaded
//! in the current generation.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use jid::BareJid;

use crate::Router;

/// Per-account values loaded from storage, kept while the account is online.
pub struct AccountCache<T> {
    inner: Mutex<Inner<T>>,
    max: usize,
}

struct Inner<T> {
    map: HashMap<BareJid, Arc<T>>,
    /// Bumped by every invalidation: a load that started before it is stale.
    generation: u64,
}

impl<T> AccountCache<T> {
    /// A cache holding at most `max` accounts (beyond it, it starts over).
    pub fn new(max: usize) -> Self {
        AccountCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                generation: 0,
            }),
            max: max.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // A cache only: a poisoned lock loses nothing the store does not have.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached value, or `load()`'s (cached if the account is online and no write
    /// invalidated it meanwhile).
    pub async fn get_or_load<F, Fut>(&self, router: &Router, owner: &BareJid, load: F) -> Arc<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let generation = {
            let inner = self.lock();
            if let Some(v) = inner.map.get(owner) {
                return v.clone();
            }
            inner.generation
        };
        let value = Arc::new(load().await);
        self.fill(router, owner, generation, value.clone());
        value
    }

    /// Keeps a value loaded in `generation`, if that is still current and the account has a
    /// session.
    pub fn fill(&self, router: &Router, owner: &BareJid, generation: u64, value: Arc<T>) {
        let online = !router.sessions().resources(owner).is_empty();
        let mut inner = self.lock();
        if !online || inner.generation != generation {
            return;
        }
        if inner.map.len() >= self.max {
            inner.map.clear();
        }
        inner.map.insert(owner.clone(), value);
    }

    /// Forgets the account's value; call after writing to the store.
    pub fn invalidate(&self, owner: &BareJid) {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        inner.map.remove(owner);
    }

    /// Drops the account's value if it has no session left (call on `SessionEvent::Closed`).
    pub fn session_closed(&self, router: &Router, owner: &BareJid) {
        if router.sessions().resources(owner).is_empty() {
            self.lock().map.remove(owner);
        }
    }

    /// Accounts cached now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
