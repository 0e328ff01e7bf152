//! SQLite backend: the embedded default (DESIGN.md §4).
//!
//! One database file, WAL journal mode. Reads go through a small pool of `query_only`
//! connections; every write goes through one writer task (`writer`) that owns the only
//! writing connection and commits queued writes together (group commit). The schema is
//! versioned (`schema`) and migrated at open; a newer schema than this code knows is refused.
//! `ops` holds the SQL of each write, `stores` the trait impls and the read queries.
//!
//! # Durability
//!
//! A write's future resolves only after the COMMIT of the batch holding it has returned.
//!
//! | [`Synchronous`]  | process crash (`kill -9`) | OS crash, power loss           | fsync      |
//! |------------------|---------------------------|--------------------------------|------------|
//! | `Full` (default) | acknowledged writes kept  | acknowledged writes kept       | each batch |
//! | `Normal`         | acknowledged writes kept  | last batches may roll back     | checkpoint |
//!
//! With `Normal` in WAL mode the commit is in the WAL file in the OS page cache when COMMIT
//! returns: a killed process loses nothing, but the kernel may not have written it to disk yet.
//! DESIGN.md requires that an acknowledged message survives `kill -9`; both settings meet that,
//! only `Full` also survives power loss.

mod counts;
mod ops;
mod schema;
mod stores;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions;

use crate::{Result, Storage, StoreError};
use schema::backend;
use writer::Writer;

/// How long a connection waits for a lock held by another process before failing. Our own
/// writes never contend (one writer task); this covers external tools and checkpoints.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read connections: WAL lets readers run beside the writer, and a few cover a small server's
/// concurrent archive and roster queries without holding many file handles.
const READERS: u32 = 4;

/// When a commit is flushed to disk; see the durability table in the module docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync on every commit: acknowledged writes survive power loss.
    #[default]
    Full,
    /// fsync only at checkpoints: acknowledged writes survive a process crash, not power loss.
    Normal,
}

/// Where and how to open the SQLite database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// The database file; created (with its parent directory) if missing.
    pub path: PathBuf,
    /// Flush policy for commits.
    pub synchronous: Synchronous,
    /// Most writes committed in one transaction.
    pub max_batch: usize,
}

impl SqliteOptions {
    /// Options for `path` with the defaults: `Synchronous::Full`, batches of up to 256 writes.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteOptions {
            path: path.into(),
            synchronous: Synchronous::Full,
            max_batch: 256,
        }
    }
}

/// The SQLite backend; implements every store trait.
pub struct SqliteBackend {
    reads: SqlitePool,
    writer: Writer,
}

/// Opens (creating and migrating if needed) the database described by `opts`.
pub async fn open(opts: SqliteOptions) -> Result<Arc<SqliteBackend>> {
    SqliteBackend::open(opts).await.map(Arc::new)
}

impl SqliteBackend {
    /// Opens the database; see [`open`].
    pub async fn open(opts: SqliteOptions) -> Result<Self> {
        if let Some(dir) = opts.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display())))?;
        }
        let base = SqliteConnectOptions::new()
            .filename(&opts.path)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);

        // The writer connects first: it creates the file, switches it to WAL (a persistent
        // setting of the file) and migrates, so readers never see a half-built schema.
        let mut conn = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match opts.synchronous {
                Synchronous::Full => SqliteSynchronous::Full,
                Synchronous::Normal => SqliteSynchronous::Normal,
            })
            .connect()
            .await
            .map_err(|e| StoreError::Backend(format!("opening {}: {e}", opts.path.display())))?;
        if let Err(e) = schema::migrate(&mut conn).await {
            let _ = sqlx::Connection::close(conn).await;
            return Err(e);
        }

        // query_only makes an accidental write on the read side fail instead of racing the
        // writer task for the lock.
        let reads = SqlitePoolOptions::new()
            .max_connections(READERS)
            .min_connections(0)
            .connect_with(base.pragma("query_only", "ON"))
            .await
            .map_err(backend)?;

        tracing::info!(path = %opts.path.display(), "sqlite storage open");
        Ok(SqliteBackend {
            reads,
            writer: Writer::spawn(conn, opts.max_batch),
        })
    }

    /// Batch transactions committed since open; fewer than writes when group commit batches.
    pub fn commit_count(&self) -> u64 {
        self.writer.commits()
    }

    /// Lets queued writes commit, then closes every connection. Later calls fail with
    /// `StoreError::Backend`. Dropping the backend also stops the writer, without waiting.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reads.close().await;
    }
}

impl Storage {
    /// The SQLite backend: the embedded default; see [`sqlite`](crate::sqlite) for durability.
    pub async fn sqlite(opts: SqliteOptions) -> Result<Storage> {
        Ok(Storage::from_backend(open(opts).await?))
    }
}
