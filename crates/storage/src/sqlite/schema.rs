//! Versioned schema migrations, applied by the writer connection at open.
//!
//! `schema_version` holds one row per applied migration; the current version is the highest.
//! Each migration runs in its own `BEGIN IMMEDIATE` transaction together with its version row,
//! so a crash mid-upgrade leaves the previous version intact. A database whose version is
//! higher than [`MIGRATIONS`] knows was written by a newer Tern: it is refused rather than used
//! with a schema this code does not understand.

use sqlx::SqliteConnection;

use crate::{Result, StoreError};

/// The schema, in order: entry `i` upgrades version `i` to `i + 1`. Never edit a released entry;
/// append a new one.
const MIGRATIONS: &[&str] = &[include_str!("migrations/0001_initial.sql")];

/// The schema version this code reads and writes.
pub(crate) const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`CURRENT_VERSION`], or refuses a newer one.
pub(crate) async fn migrate(conn: &mut SqliteConnection) -> Result<()> {
    loop {
        exec(conn, "BEGIN IMMEDIATE").await?;
        match step(conn).await {
            Ok(true) => exec(conn, "COMMIT").await?,
            Ok(false) => {
                exec(conn, "COMMIT").await?;
                return Ok(());
            }
            Err(e) => {
                // Best effort: the error we report is the one that made us roll back.
                let _ = exec(conn, "ROLLBACK").await;
                return Err(e);
            }
        }
    }
}

/// Applies the next migration inside the open transaction; false when already current.
async fn step(conn: &mut SqliteConnection) -> Result<bool> {
    exec(
        conn,
        "CREATE TABLE IF NOT EXISTS schema_version (
            version INTEGER PRIMARY KEY,
            applied INTEGER NOT NULL -- Unix seconds
        )",
    )
    .await?;
    let version: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
    if version > CURRENT_VERSION {
        return Err(StoreError::Backend(format!(
            "database schema version {version} is newer than this Tern supports \
             ({CURRENT_VERSION}); run the newer Tern or restore a backup"
        )));
    }
    if version == CURRENT_VERSION {
        return Ok(false);
    }
    let next = version + 1;
    tracing::info!(version = next, "applying storage schema migration");
    sqlx::raw_sql(MIGRATIONS[version as usize])
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    sqlx::query("INSERT INTO schema_version (version, applied) VALUES (?, unixepoch())")
        .bind(next)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(true)
}

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> Result<()> {
    sqlx::raw_sql(sql)
        .execute(conn)
        .await
        .map(drop)
        .map_err(backend)
}

/// Every SQL failure is a backend failure: the operation did not happen.
pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}
