//! The write operations the writer task runs, and their SQL.
//!
//! Each op runs inside the writer's batch transaction (under its own savepoint) and reports a
//! count whose meaning depends on the op: rows deleted, 1/0 for "account existed", else 0.
//! Outcomes callers must see as errors (`Conflict`, `NotFound`) are returned as `Err`, so the
//! writer rolls back that op's savepoint.

use sqlx::{Executor, QueryBuilder, Sqlite, SqliteConnection};

use super::schema::backend;
use crate::{ArchiveItem, Result, StoreError};

/// Coordinates of one user's items in one store.
#[derive(Debug)]
pub(crate) struct Slot {
    pub host: String,
    pub store: String,
    pub user: String,
}

impl Slot {
    pub fn new(host: &str, store: &str, user: &str) -> Self {
        Slot {
            host: host.to_owned(),
            store: store.to_owned(),
            user: user.to_owned(),
        }
    }
}

/// One write, owned so it can cross the channel to the writer task.
#[derive(Debug)]
pub(crate) enum WriteOp {
    CreateAccount {
        host: String,
        user: String,
        record: String,
        created: i64,
    },
    UpdateAccount {
        host: String,
        user: String,
        record: String,
        created: i64,
    },
    DeleteAccount {
        host: String,
        user: String,
    },
    SetKeyVal {
        slot: Slot,
        value: Option<Vec<u8>>,
    },
    SetMap {
        slot: Slot,
        items: Vec<(String, Option<Vec<u8>>)>,
    },
    ClearMap {
        slot: Slot,
    },
    Append {
        slot: Slot,
        item: ArchiveItem,
    },
    DeleteArchive {
        slot: Slot,
        ids: Option<Vec<String>>,
    },
    Expire {
        store: String,
        before: i64,
    },
}

impl WriteOp {
    /// Runs the op on the writer connection, inside a transaction the caller owns.
    pub async fn apply(&self, conn: &mut SqliteConnection) -> Result<u64> {
        match self {
            WriteOp::CreateAccount {
                host,
                user,
                record,
                created,
            } => {
                // DO NOTHING instead of catching the constraint error: a conflict is an answer,
                // not a failure, and this keeps it independent of SQLite error codes.
                let q = sqlx::query(
                    "INSERT INTO accounts (host, user, record, created) VALUES (?, ?, ?, ?)
                     ON CONFLICT DO NOTHING",
                );
                let n = exec(conn, q.bind(host).bind(user).bind(record).bind(created)).await?;
                if n == 0 {
                    return Err(StoreError::Conflict);
                }
                Ok(0)
            }
            WriteOp::UpdateAccount {
                host,
                user,
                record,
                created,
            } => {
                let q = sqlx::query(
                    "UPDATE accounts SET record = ?, created = ? WHERE host = ? AND user = ?",
                );
                let n = exec(conn, q.bind(record).bind(created).bind(host).bind(user)).await?;
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(0)
            }
            WriteOp::DeleteAccount { host, user } => {
                let q = sqlx::query("DELETE FROM accounts WHERE host = ? AND user = ?");
                let existed = exec(conn, q.bind(host).bind(user)).await?;
                // Orphaned items are removed even when the account row is already gone.
                for sql in [
                    "DELETE FROM keyval WHERE host = ? AND user = ?",
                    "DELETE FROM map WHERE host = ? AND user = ?",
                    "DELETE FROM archive WHERE host = ? AND user = ?",
                ] {
                    exec(conn, sqlx::query(sql).bind(host).bind(user)).await?;
                }
                Ok(existed)
            }
            WriteOp::SetKeyVal {
                slot,
                value: Some(value),
            } => {
                let q = sqlx::query(
                    "INSERT INTO keyval (host, store, user, value) VALUES (?, ?, ?, ?)
                     ON CONFLICT (host, store, user) DO UPDATE SET value = excluded.value",
                );
                exec(conn, bind_slot(q, slot).bind(value)).await.map(|_| 0)
            }
            WriteOp::SetKeyVal { slot, value: None } => {
                let q = sqlx::query("DELETE FROM keyval WHERE host = ? AND store = ? AND user = ?");
                exec(conn, bind_slot(q, slot)).await.map(|_| 0)
            }
            WriteOp::SetMap { slot, items } => {
                // Applied in order, so a key listed twice ends with its last value.
                for (key, value) in items {
                    let q = match value {
                        Some(value) => bind_slot(
                            sqlx::query(
                                "INSERT INTO map (host, store, user, \"key\", value)
                                 VALUES (?, ?, ?, ?, ?)
                                 ON CONFLICT (host, store, user, \"key\")
                                 DO UPDATE SET value = excluded.value",
                            ),
                            slot,
                        )
                        .bind(key)
                        .bind(value),
                        None => bind_slot(
                            sqlx::query(
                                "DELETE FROM map
                                 WHERE host = ? AND store = ? AND user = ? AND \"key\" = ?",
                            ),
                            slot,
                        )
                        .bind(key),
                    };
                    exec(conn, q).await?;
                }
                Ok(0)
            }
            WriteOp::ClearMap { slot } => {
                let q = sqlx::query("DELETE FROM map WHERE host = ? AND store = ? AND user = ?");
                exec(conn, bind_slot(q, slot)).await.map(|_| 0)
            }
            WriteOp::Append { slot, item } => {
                let q = sqlx::query(
                    "INSERT INTO archive (host, store, user, id, \"when\", with_jid, data)
                     VALUES (?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT DO NOTHING",
                );
                let q = bind_slot(q, slot)
                    .bind(&item.id)
                    .bind(item.when)
                    .bind(&item.with);
                if exec(conn, q.bind(&item.data)).await? == 0 {
                    return Err(StoreError::Conflict);
                }
                Ok(0)
            }
            WriteOp::DeleteArchive { slot, ids } => {
                let mut qb = QueryBuilder::<Sqlite>::new("DELETE FROM archive WHERE host = ");
                qb.push_bind(&slot.host)
                    .push(" AND store = ")
                    .push_bind(&slot.store);
                qb.push(" AND user = ").push_bind(&slot.user);
                if let Some(ids) = ids {
                    if ids.is_empty() {
                        return Ok(0);
                    }
                    qb.push(" AND id IN (");
                    let mut list = qb.separated(", ");
                    for id in ids {
                        list.push_bind(id);
                    }
                    qb.push(")");
                }
                exec(conn, qb.build()).await
            }
            WriteOp::Expire { store, before } => {
                let q = sqlx::query("DELETE FROM archive WHERE store = ? AND \"when\" < ?");
                exec(conn, q.bind(store).bind(before)).await
            }
        }
    }
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

fn bind_slot<'q>(q: Query<'q>, slot: &'q Slot) -> Query<'q> {
    q.bind(&slot.host).bind(&slot.store).bind(&slot.user)
}

async fn exec(conn: &mut SqliteConnection, q: Query<'_>) -> Result<u64> {
    // Through `Executor` for a boxed future: see `writer::exec`.
    Ok(conn.execute(q).await.map_err(backend)?.rows_affected())
}
