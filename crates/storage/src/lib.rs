//! Tern storage: the store traits every module persists through, and their backends.
//!
//! Layout (DESIGN.md §4): three store kinds keyed by host, store name and user —
//! [`KeyValStore`] (one document per user), [`MapStore`] (keyed items per user) and
//! [`ArchiveStore`] (append-only, time-ordered) — plus [`AccountStore`], which holds SCRAM
//! salt, iteration count, StoredKey and ServerKey, never a password. Values are opaque bytes:
//! each module owns its serialization. Backends: `sqlite` (embedded default, WAL, one writer
//! task with group commit; its module docs tabulate the durability guarantees) and `memory`
//! (tests; same semantics, nothing survives exit). Sessions, routes and presence never come here.

use std::sync::Arc;

use async_trait::async_trait;

pub mod memory;
pub mod sqlite;

pub use memory::MemoryBackend;
pub use sqlite::{SqliteBackend, SqliteOptions, Synchronous};

/// Errors a store can report; callers map them to `internal-server-error` on the wire.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The item to create exists already (e.g. an account).
    #[error("already exists")]
    Conflict,
    /// The item to update does not exist.
    #[error("not found")]
    NotFound,
    /// The backend failed (I/O, SQL, closed writer); the write did not happen.
    #[error("storage backend: {0}")]
    Backend(String),
}

/// Result alias for store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// SCRAM credentials for one hash function (RFC 5802 §3): enough to verify a login, useless to
/// log in with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScramCredentials {
    /// Random salt used for PBKDF2.
    pub salt: Vec<u8>,
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

/// An account as stored: SCRAM keys for SHA-1 and SHA-256, never a plaintext password.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountRecord {
    /// Keys for SCRAM-SHA-1(-PLUS).
    pub scram_sha1: ScramCredentials,
    /// Keys for SCRAM-SHA-256(-PLUS).
    pub scram_sha256: ScramCredentials,
    /// Creation time, Unix seconds.
    pub created: i64,
}

/// Accounts of each virtual host.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// The account's record, if it exists.
    async fn get(&self, host: &str, user: &str) -> Result<Option<AccountRecord>>;
    /// Creates an account; `Err(Conflict)` if it exists.
    async fn create(&self, host: &str, user: &str, record: &AccountRecord) -> Result<()>;
    /// Replaces an account's credentials; `Err(NotFound)` if it does not exist.
    async fn update(&self, host: &str, user: &str, record: &AccountRecord) -> Result<()>;
    /// Deletes the account and every item of every store kept for it; false if it did not exist.
    async fn delete(&self, host: &str, user: &str) -> Result<bool>;
    /// Usernames of a host, sorted.
    async fn list(&self, host: &str) -> Result<Vec<String>>;
}

/// One document per (host, store, user): roster version, vCard, preferences.
#[async_trait]
pub trait KeyValStore: Send + Sync {
    /// The stored document.
    async fn get(&self, host: &str, store: &str, user: &str) -> Result<Option<Vec<u8>>>;
    /// Stores the document; `None` deletes it.
    async fn set(&self, host: &str, store: &str, user: &str, value: Option<&[u8]>) -> Result<()>;
}

/// Keyed items per (host, store, user): roster items, private XML, pubsub items.
#[async_trait]
pub trait MapStore: Send + Sync {
    /// One item.
    async fn get(&self, host: &str, store: &str, user: &str, key: &str) -> Result<Option<Vec<u8>>>;
    /// Sets (or with `None` deletes) several items atomically: all or none are written.
    async fn set_many(
        &self,
        host: &str,
        store: &str,
        user: &str,
        items: &[(String, Option<Vec<u8>>)],
    ) -> Result<()>;
    /// All items of the user in this store, sorted by key.
    async fn all(&self, host: &str, store: &str, user: &str) -> Result<Vec<(String, Vec<u8>)>>;
    /// Deletes all items of the user in this store.
    async fn clear(&self, host: &str, store: &str, user: &str) -> Result<()>;
}

/// One archived item (a message in MAM, offline storage or MUC history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveItem {
    /// Unique id within (host, store, user); the XEP-0359 stanza id for MAM.
    pub id: String,
    /// Time, Unix microseconds.
    pub when: i64,
    /// The peer (bare JID as a string) used by `with` filters.
    pub with: String,
    /// The serialized payload.
    pub data: Vec<u8>,
}

/// A query over an archive; all filters combine with AND. Results are in time order
/// (insertion order for equal times).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// Only items whose `with` equals this.
    pub with: Option<String>,
    /// Only items with `when >= start`.
    pub start: Option<i64>,
    /// Only items with `when <= end`.
    pub end: Option<i64>,
    /// Only items after the item with this id in result order (time, then insertion); exclusive.
    pub after_id: Option<String>,
    /// Only items before the item with this id in result order; exclusive.
    pub before_id: Option<String>,
    /// Only items with these ids (empty: no filter).
    pub ids: Vec<String>,
    /// At most this many items.
    pub limit: Option<usize>,
    /// Take the *last* `limit` matching items instead of the first (still returned oldest first).
    pub from_end: bool,
}

/// A page of archive results.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivePage {
    /// The items, oldest first.
    pub items: Vec<ArchiveItem>,
    /// True when no further matching item exists in the paging direction: after the last item,
    /// or before the first one with `from_end`.
    pub complete: bool,
}

/// Append-only, time-ordered items per (host, store, user).
#[async_trait]
pub trait ArchiveStore: Send + Sync {
    /// Appends an item; returns once it is durable. `Err(Conflict)` if the id exists.
    async fn append(&self, host: &str, store: &str, user: &str, item: &ArchiveItem) -> Result<()>;
    /// Runs a query. An unknown `after_id`/`before_id` yields `Err(NotFound)`.
    async fn query(
        &self,
        host: &str,
        store: &str,
        user: &str,
        q: &ArchiveQuery,
    ) -> Result<ArchivePage>;
    /// Deletes the given ids, or all items of the user when `ids` is `None`; returns how many.
    async fn delete(
        &self,
        host: &str,
        store: &str,
        user: &str,
        ids: Option<&[String]>,
    ) -> Result<u64>;
    /// Deletes items older than `before` (Unix microseconds) in this store for every user.
    async fn expire(&self, store: &str, before: i64) -> Result<u64>;
    /// Number of items of the user.
    async fn count(&self, host: &str, store: &str, user: &str) -> Result<u64>;
}

/// All stores of one backend, shared by every module.
#[derive(Clone)]
pub struct Storage {
    /// Accounts and their SCRAM keys.
    pub accounts: Arc<dyn AccountStore>,
    /// One document per user.
    pub keyval: Arc<dyn KeyValStore>,
    /// Keyed items per user.
    pub map: Arc<dyn MapStore>,
    /// Append-only items per user.
    pub archive: Arc<dyn ArchiveStore>,
}

impl Storage {
    /// An in-memory backend: for tests; everything is lost at exit.
    pub fn memory() -> Self {
        Storage::from_backend(Arc::new(memory::MemoryBackend::default()))
    }

    /// All four stores served by one backend (which keeps its concrete handle usable).
    pub fn from_backend<B>(backend: Arc<B>) -> Self
    where
        B: AccountStore + KeyValStore + MapStore + ArchiveStore + 'static,
    {
        Storage {
            accounts: backend.clone(),
            keyval: backend.clone(),
            map: backend.clone(),
            archive: backend,
        }
    }
}
