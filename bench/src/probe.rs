//! Where an append's time goes: the costs under the writer task, measured one by one on the
//! real schema, with sqlx directly (the way `tern_storage::sqlite::writer` drives it).
//!
//! - one statement round trip (`SELECT 1`): sqlx runs each SQLite connection on a worker thread
//!   of its own, so every statement is a hand-off to that thread and back;
//! - one archive row inserted inside a batch transaction, as the writer does it (its own
//!   `SAVEPOINT`, the `INSERT`, `RELEASE`: three statements) and as a bare `INSERT`;
//! - a `COMMIT` of such a batch with `synchronous = full` and `normal`.

use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Executor, SqliteConnection};
use tern_storage::{SqliteBackend, SqliteOptions};

use crate::common::{self, ms, Stats, HOST, STORE};

const INSERT: &str = "INSERT INTO archive (host, store, user, id, \"when\", with_jid, data)
                      VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING";

async fn connect(path: &Path, sync: SqliteSynchronous) -> anyhow::Result<SqliteConnection> {
    Ok(SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sync)
        .connect()
        .await?)
}

/// Inserts `batches` batches of `batch` rows; returns the time per row (excluding COMMIT) and
/// the time per COMMIT.
async fn inserts(
    conn: &mut SqliteConnection,
    savepoints: bool,
    batches: usize,
    batch: usize,
    size: usize,
    n0: usize,
) -> anyhow::Result<(Stats, Stats)> {
    let mut rows = Vec::with_capacity(batches * batch);
    let mut commits = Vec::with_capacity(batches);
    let base = common::now_micros();
    for b in 0..batches {
        conn.execute("BEGIN IMMEDIATE").await?;
        for i in 0..batch {
            let n = n0 + b * batch + i;
            let user = format!("u{:04}", n % 100);
            let item = common::item(
                &format!("{user}@{HOST}"),
                &common::peer(n % 100),
                n,
                base + n as i64,
                size,
            );
            let t = Instant::now();
            if savepoints {
                conn.execute("SAVEPOINT op").await?;
            }
            let q = sqlx::query(INSERT)
                .bind(HOST)
                .bind(STORE)
                .bind(&user)
                .bind(&item.id)
                .bind(item.when)
                .bind(&item.with)
                .bind(&item.data);
            conn.execute(q).await?;
            if savepoints {
                conn.execute("RELEASE op").await?;
            }
            rows.push(t.elapsed());
        }
        let t = Instant::now();
        conn.execute("COMMIT").await?;
        commits.push(t.elapsed());
    }
    Ok((Stats::of(&mut rows), Stats::of(&mut commits)))
}

/// Runs the probes on a fresh database under `dir` and prints one line each.
pub async fn run(dir: &Path, size: usize) -> anyhow::Result<serde_json::Value> {
    let tmp = tempfile::Builder::new()
        .prefix("tern-bench-probe-")
        .tempdir_in(dir)?;
    let path = tmp.path().join("archive.db");
    // The backend creates and migrates the schema; then it steps aside.
    SqliteBackend::open(SqliteOptions::new(&path))
        .await?
        .close()
        .await;

    let fsync = common::fsync_probe(dir, 200)?;
    println!(
        "{:<52} p50 {:>8.3} ms  p95 {:>8.3} ms",
        "4 KiB file append + fdatasync",
        ms(fsync.p50),
        ms(fsync.p95)
    );

    let mut conn = connect(&path, SqliteSynchronous::Normal).await?;
    let mut trips = Vec::with_capacity(2000);
    let stop = Instant::now() + Duration::from_secs(5);
    while trips.len() < 2000 && Instant::now() < stop {
        let t = Instant::now();
        conn.execute("SELECT 1").await?;
        trips.push(t.elapsed());
    }
    let trip = Stats::of(&mut trips);
    println!(
        "{:<52} p50 {:>8.3} ms  p95 {:>8.3} ms",
        "sqlx statement round trip (SELECT 1)",
        ms(trip.p50),
        ms(trip.p95)
    );

    const BATCHES: usize = 40;
    const BATCH: usize = 32;
    let mut out = serde_json::json!({
        "scenario": "probe",
        "dir": dir.display().to_string(),
        "fs": common::fs_type(dir),
        "fsync_4k": fsync.json(),
        "sqlx_round_trip": trip.json(),
    });
    let mut n0 = 0;
    for (sync, name) in [
        (SqliteSynchronous::Normal, "normal"),
        (SqliteSynchronous::Full, "full"),
    ] {
        conn.close().await?;
        conn = connect(&path, sync).await?;
        for savepoints in [true, false] {
            let (row, commit) = inserts(&mut conn, savepoints, BATCHES, BATCH, size, n0).await?;
            n0 += BATCHES * BATCH;
            let how = if savepoints {
                "SAVEPOINT+INSERT+RELEASE (writer today)"
            } else {
                "bare INSERT"
            };
            println!(
                "{:<52} p50 {:>8.3} ms  p95 {:>8.3} ms",
                format!("row: {how}"),
                ms(row.p50),
                ms(row.p95)
            );
            println!(
                "{:<52} p50 {:>8.3} ms  p95 {:>8.3} ms",
                format!("COMMIT of {BATCH} rows, synchronous = {name}"),
                ms(commit.p50),
                ms(commit.p95)
            );
            let key = format!("{name}_{}", if savepoints { "savepoints" } else { "bare" });
            out[key] = serde_json::json!({ "row": row.json(), "commit": commit.json() });
        }
    }
    conn.close().await?;
    Ok(out)
}
