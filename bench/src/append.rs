//! Figure 1: archived messages per second with durable group commit.
//!
//! For each `synchronous` setting and each number of concurrent writers, a fresh SQLite
//! database takes `items` appends through `ArchiveStore::append`, each writer waiting for its
//! append to be acknowledged (committed) before it sends the next, as a session does.
//! Reported: items/s, the writer's commits (`SqliteBackend::commit_count`), items per commit
//! and the acknowledgement latency one append sees.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_storage::{ArchiveStore, SqliteBackend, SqliteOptions, Synchronous};

use crate::common::{self, ms, Stats, HOST, STORE};

/// One scenario's parameters.
pub struct Params<'a> {
    pub dir: &'a Path,
    pub sync: Synchronous,
    pub writers: usize,
    pub items: usize,
    pub size: usize,
    pub users: usize,
    pub max_batch: usize,
    pub max_time: Duration,
}

/// One scenario's outcome.
pub struct Outcome {
    pub items: usize,
    pub elapsed: Duration,
    pub commits: u64,
    pub latency: Stats,
    pub db_bytes: u64,
    /// Bytes written (write/pwrite) during the run.
    pub written: u64,
    /// Write system calls during the run.
    pub write_calls: u64,
    pub timed_out: bool,
}

impl Outcome {
    pub fn per_sec(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64()
    }
}

pub fn sync_name(s: Synchronous) -> &'static str {
    match s {
        Synchronous::Full => "full",
        Synchronous::Normal => "normal",
    }
}

/// Runs one scenario on a fresh database in a temporary directory under `p.dir`.
pub async fn run(p: &Params<'_>) -> anyhow::Result<Outcome> {
    let tmp = tempfile::Builder::new()
        .prefix("tern-bench-append-")
        .tempdir_in(p.dir)?;
    let path = tmp.path().join("archive.db");
    let backend = Arc::new(
        SqliteBackend::open(SqliteOptions {
            synchronous: p.sync,
            max_batch: p.max_batch,
            ..SqliteOptions::new(&path)
        })
        .await?,
    );
    let users: Arc<Vec<String>> =
        Arc::new((0..p.users.max(1)).map(|u| format!("u{u:04}")).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let base = common::now_micros();
    let commits_before = backend.commit_count();
    let io_before = common::io_written();
    let start = Instant::now();
    let deadline = start + p.max_time;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..p.writers {
        let (backend, users, next) = (backend.clone(), users.clone(), next.clone());
        let (total, size) = (p.items, p.size);
        tasks.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total || Instant::now() >= deadline {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let user = &users[n % users.len()];
                let owner = format!("{user}@{HOST}");
                let item = common::item(&owner, &common::peer(n % 100), n, base + n as i64, size);
                let t = Instant::now();
                backend.append(HOST, STORE, user, &item).await?;
                lat.push(t.elapsed());
            }
        });
    }
    let mut samples = Vec::with_capacity(p.items);
    while let Some(r) = tasks.join_next().await {
        samples.extend(r??);
    }
    let elapsed = start.elapsed();
    let commits = backend.commit_count() - commits_before;
    let io_after = common::io_written();
    backend.close().await;
    let db_bytes = ["archive.db", "archive.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(tmp.path().join(f)).ok())
        .map(|m| m.len())
        .sum();
    let items = samples.len();
    Ok(Outcome {
        items,
        elapsed,
        commits,
        latency: Stats::of(&mut samples),
        db_bytes,
        written: io_after.0.saturating_sub(io_before.0),
        write_calls: io_after.1.saturating_sub(io_before.1),
        timed_out: items < p.items,
    })
}

/// Table header.
pub fn header() {
    println!(
        "{:<7} {:>7} {:>7} {:>8} {:>9} {:>8} {:>10} {:>9} {:>9} {:>9}",
        "sync",
        "writers",
        "items",
        "secs",
        "items/s",
        "commits",
        "items/cmt",
        "ack p50",
        "ack p99",
        "ack max"
    );
}

/// One table row.
pub fn row(p: &Params<'_>, o: &Outcome) {
    println!(
        "{:<7} {:>7} {:>7} {:>8.2} {:>9.0} {:>8} {:>10.1} {:>7.2}ms {:>7.2}ms {:>7.1}ms {:>9.1}{}",
        sync_name(p.sync),
        p.writers,
        o.items,
        o.elapsed.as_secs_f64(),
        o.per_sec(),
        o.commits,
        o.items as f64 / o.commits.max(1) as f64,
        ms(o.latency.p50),
        ms(o.latency.p99),
        ms(o.latency.max),
        o.written as f64 / 1024.0 / o.items.max(1) as f64,
        if o.timed_out {
            "  (time limit hit)"
        } else {
            ""
        },
    );
}

pub fn json(p: &Params<'_>, o: &Outcome) -> serde_json::Value {
    serde_json::json!({
        "scenario": "append",
        "dir": p.dir.display().to_string(),
        "fs": common::fs_type(p.dir),
        "sync": sync_name(p.sync),
        "writers": p.writers,
        "items": o.items,
        "item_bytes": p.size,
        "users": p.users,
        "max_batch": p.max_batch,
        "secs": o.elapsed.as_secs_f64(),
        "items_per_sec": o.per_sec(),
        "commits": o.commits,
        "items_per_commit": o.items as f64 / o.commits.max(1) as f64,
        "db_bytes": o.db_bytes,
        "written_bytes": o.written,
        "write_calls": o.write_calls,
        "timed_out": o.timed_out,
        "ack_latency": o.latency.json(),
    })
}
