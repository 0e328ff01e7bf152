//! The single writer task: every write of the backend goes through it, with group commit.
//!
//! SQLite allows one writer at a time, and with `synchronous=FULL` each commit costs an fsync.
//! Funnelling writes through one task that owns one connection removes `SQLITE_BUSY` between our
//! own writers and lets us pay one fsync per *batch*: the task takes every op already queued (up
//! to `max_batch`), runs them in one transaction, commits, and only then answers each op. Each op
//! runs under its own `SAVEPOINT`, so one failing op (a duplicate archive id, say) is rolled back
//! alone and the rest of the batch still commits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::{Connection, Executor, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::counts::ArchiveCounts;
use super::ops::{Slot, WriteOp};
use crate::{Result, StoreError};

/// What the writer task receives.
enum Msg {
    Write {
        op: WriteOp,
        reply: oneshot::Sender<Result<u64>>,
    },
    /// Finish what was received so far, close the connection, then answer.
    /// The size of an archive not in `counts` yet: counted here, between batches, so that no
    /// commit can fall between the count and keeping it.
    Count {
        slot: Slot,
        reply: oneshot::Sender<Result<u64>>,
    },
    Close(oneshot::Sender<()>),
}

/// The backend's handle on its writer task; cheap to share.
pub(crate) struct Writer {
    tx: mpsc::Sender<Msg>,
    commits: Arc<AtomicU64>,
    counts: Arc<ArchiveCounts>,
}

impl Writer {
    /// Starts the writer task on `conn`, which must already be migrated.
    pub fn spawn(conn: SqliteConnection, max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        // Room for one batch waiting while another commits; beyond that, senders wait: a full
        // queue is back-pressure, not unbounded memory.
        let (tx, rx) = mpsc::channel(max_batch * 2);
        let commits = Arc::new(AtomicU64::new(0));
        let counts = Arc::new(ArchiveCounts::default());
        tokio::spawn(run(conn, rx, max_batch, commits.clone(), counts.clone()));
        Writer {
            tx,
            commits,
            counts,
        }
    }

    /// The number of items in one user's archive of one store, as of the last commit.
    pub async fn archive_count(&self, slot: Slot) -> Result<u64> {
        if let Some(n) = self.counts.get(&slot) {
            return Ok(n);
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Count { slot, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Queues `op` and waits until its batch has committed (or failed).
    ///
    /// If the caller's future is dropped after the op was queued, the op may still be applied.
    pub async fn write(&self, op: WriteOp) -> Result<u64> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Write { op, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Number of batch transactions committed.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Lets queued writes finish, then closes the connection; later writes fail.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.tx.send(Msg::Close(done)).await.is_ok() {
            // An error only means the task is gone already, which is what we want.
            let _ = closed.await;
        }
    }
}

fn gone() -> StoreError {
    StoreError::Backend("sqlite writer task has stopped".into())
}

async fn run(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<Msg>,
    max_batch: usize,
    commits: Arc<AtomicU64>,
    counts: Arc<ArchiveCounts>,
) {
    let mut inbox = Vec::with_capacity(max_batch);
    let mut batch = Vec::with_capacity(max_batch);
    let mut to_count = Vec::new();
    // The loop ends when every sender is gone (backend dropped) or on an explicit close.
    let closer = loop {
        if rx.recv_many(&mut inbox, max_batch).await == 0 {
            break None;
        }
        let mut closer = None;
        for msg in inbox.drain(..) {
            match msg {
                Msg::Write { op, reply } => batch.push((op, reply)),
                Msg::Count { slot, reply } => to_count.push((slot, reply)),
                Msg::Close(done) => closer = Some(done),
            }
        }
        if !batch.is_empty() {
            commit_batch(&mut conn, &mut batch, &commits, &counts).await;
        }
        for (slot, reply) in to_count.drain(..) {
            let _ = reply.send(count(&mut conn, &slot, &counts).await);
        }
        if closer.is_some() {
            break closer;
        }
    };
    // Ops still queued are dropped with their reply senders, so their callers get an error.
    rx.close();
    if let Err(e) = conn.close().await {
        tracing::warn!(error = %e, "closing the sqlite writer connection failed");
    }
    if let Some(done) = closer {
        let _ = done.send(());
    }
}

/// Runs one batch in one transaction and answers every op after COMMIT has returned.
async fn commit_batch(
    conn: &mut SqliteConnection,
    batch: &mut Vec<(WriteOp, oneshot::Sender<Result<u64>>)>,
    commits: &AtomicU64,
    counts: &ArchiveCounts,
) {
    let outcome = run_batch(conn, batch).await;
    let results = match outcome {
        Ok(results) => {
            commits.fetch_add(1, Ordering::Relaxed);
            for ((op, _), result) in batch.iter().zip(&results) {
                counts.apply(op, result);
            }
            results
        }
        Err(e) => {
            tracing::error!(error = %e, ops = batch.len(), "sqlite write batch failed");
            // SQLite may already have rolled back on its own (e.g. disk full); ignore that.
            let _ = exec(conn, "ROLLBACK").await;
            batch
                .iter()
                .map(|_| Err(StoreError::Backend(e.to_string())))
                .collect()
        }
    };
    for ((_, reply), result) in batch.drain(..).zip(results) {
        // The caller may have given up waiting; its op is committed all the same.
        let _ = reply.send(result);
    }
}

/// The batch transaction; `Err` means nothing of the batch was committed.
/// Counts an archive on the writer connection (no write can be in progress) and keeps the size.
async fn count(conn: &mut SqliteConnection, slot: &Slot, counts: &ArchiveCounts) -> Result<u64> {
    if let Some(n) = counts.get(slot) {
        return Ok(n);
    }
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM archive WHERE host = ? AND store = ? AND user = ?",
    )
    .bind(&slot.host)
    .bind(&slot.store)
    .bind(&slot.user)
    .fetch_one(&mut *conn)
    .await
    .map_err(super::schema::backend)?;
    let n = n.unsigned_abs();
    counts.insert(slot, n);
    Ok(n)
}

async fn run_batch(
    conn: &mut SqliteConnection,
    batch: &[(WriteOp, oneshot::Sender<Result<u64>>)],
) -> std::result::Result<Vec<Result<u64>>, sqlx::Error> {
    // IMMEDIATE takes the write lock now, so no statement of the batch can hit SQLITE_BUSY
    // halfway through (another process may still hold the lock: busy_timeout covers that).
    exec(conn, "BEGIN IMMEDIATE").await?;
    let mut results = Vec::with_capacity(batch.len());
    for (op, _) in batch {
        exec(conn, "SAVEPOINT op").await?;
        let result = op.apply(conn).await;
        if result.is_err() {
            exec(conn, "ROLLBACK TO op").await?;
        }
        exec(conn, "RELEASE op").await?;
        results.push(result);
    }
    exec(conn, "COMMIT").await?;
    Ok(results)
}

async fn exec(
    conn: &mut SqliteConnection,
    sql: &'static str,
) -> std::result::Result<(), sqlx::Error> {
    // `Executor::execute` returns a boxed future; sqlx's generic `async fn execute` helpers
    // make rustc fail to prove the spawned writer future `Send` ("not general enough").
    conn.execute(sql).await.map(drop)
}
