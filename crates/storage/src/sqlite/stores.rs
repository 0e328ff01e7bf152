//! The store traits on SQLite: reads query the read pool, writes go to the writer task.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::ops::{Slot, WriteOp};
use super::schema::backend;
use super::SqliteBackend;
use crate::{
    AccountRecord, AccountStore, ArchiveItem, ArchivePage, ArchiveQuery, ArchiveStore, KeyValStore,
    MapStore, Result, StoreError,
};

fn to_json(record: &AccountRecord) -> Result<String> {
    serde_json::to_string(record).map_err(|e| StoreError::Backend(e.to_string()))
}

#[async_trait]
impl AccountStore for SqliteBackend {
    async fn get(&self, host: &str, user: &str) -> Result<Option<AccountRecord>> {
        let row: Option<String> =
            sqlx::query_scalar("SELECT record FROM accounts WHERE host = ? AND user = ?")
                .bind(host)
                .bind(user)
                .fetch_optional(&self.reads)
                .await
                .map_err(backend)?;
        row.map(|json| {
            serde_json::from_str(&json)
                .map_err(|e| StoreError::Backend(format!("account {user}@{host}: {e}")))
        })
        .transpose()
    }

    async fn create(&self, host: &str, user: &str, record: &AccountRecord) -> Result<()> {
        let (host, user, record, created) = (
            host.to_owned(),
            user.to_owned(),
            to_json(record)?,
            record.created,
        );
        self.writer
            .write(WriteOp::CreateAccount {
                host,
                user,
                record,
                created,
            })
            .await
            .map(drop)
    }

    async fn update(&self, host: &str, user: &str, record: &AccountRecord) -> Result<()> {
        let (host, user, record, created) = (
            host.to_owned(),
            user.to_owned(),
            to_json(record)?,
            record.created,
        );
        self.writer
            .write(WriteOp::UpdateAccount {
                host,
                user,
                record,
                created,
            })
            .await
            .map(drop)
    }

    async fn delete(&self, host: &str, user: &str) -> Result<bool> {
        let op = WriteOp::DeleteAccount {
            host: host.to_owned(),
            user: user.to_owned(),
        };
        Ok(self.writer.write(op).await? > 0)
    }

    async fn list(&self, host: &str) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT user FROM accounts WHERE host = ? ORDER BY user")
            .bind(host)
            .fetch_all(&self.reads)
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl KeyValStore for SqliteBackend {
    async fn get(&self, host: &str, store: &str, user: &str) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT value FROM keyval WHERE host = ? AND store = ? AND user = ?")
            .bind(host)
            .bind(store)
            .bind(user)
            .fetch_optional(&self.reads)
            .await
            .map_err(backend)
    }

    async fn set(&self, host: &str, store: &str, user: &str, value: Option<&[u8]>) -> Result<()> {
        let op = WriteOp::SetKeyVal {
            slot: Slot::new(host, store, user),
            value: value.map(Vec::from),
        };
        self.writer.write(op).await.map(drop)
    }
}

#[async_trait]
impl MapStore for SqliteBackend {
    async fn get(&self, host: &str, store: &str, user: &str, key: &str) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar(
            "SELECT value FROM map WHERE host = ? AND store = ? AND user = ? AND \"key\" = ?",
        )
        .bind(host)
        .bind(store)
        .bind(user)
        .bind(key)
        .fetch_optional(&self.reads)
        .await
        .map_err(backend)
    }

    async fn set_many(
        &self,
        host: &str,
        store: &str,
        user: &str,
        items: &[(String, Option<Vec<u8>>)],
    ) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let op = WriteOp::SetMap {
            slot: Slot::new(host, store, user),
            items: items.to_vec(),
        };
        self.writer.write(op).await.map(drop)
    }

    async fn all(&self, host: &str, store: &str, user: &str) -> Result<Vec<(String, Vec<u8>)>> {
        // BINARY collation orders UTF-8 byte-wise, exactly like `String`'s `Ord`.
        let rows = sqlx::query(
            "SELECT \"key\", value FROM map WHERE host = ? AND store = ? AND user = ?
             ORDER BY \"key\"",
        )
        .bind(host)
        .bind(store)
        .bind(user)
        .fetch_all(&self.reads)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(backend)?,
                    r.try_get(1).map_err(backend)?,
                ))
            })
            .collect()
    }

    async fn clear(&self, host: &str, store: &str, user: &str) -> Result<()> {
        self.writer
            .write(WriteOp::ClearMap {
                slot: Slot::new(host, store, user),
            })
            .await
            .map(drop)
    }
}

#[async_trait]
impl ArchiveStore for SqliteBackend {
    async fn append(&self, host: &str, store: &str, user: &str, item: &ArchiveItem) -> Result<()> {
        let op = WriteOp::Append {
            slot: Slot::new(host, store, user),
            item: item.clone(),
        };
        self.writer.write(op).await.map(drop)
    }

    async fn query(
        &self,
        host: &str,
        store: &str,
        user: &str,
        q: &ArchiveQuery,
    ) -> Result<ArchivePage> {
        let after = self
            .position(host, store, user, q.after_id.as_deref())
            .await?;
        let before = self
            .position(host, store, user, q.before_id.as_deref())
            .await?;

        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT id, \"when\", with_jid, data FROM archive WHERE host = ",
        );
        qb.push_bind(host).push(" AND store = ").push_bind(store);
        qb.push(" AND user = ").push_bind(user);
        if let Some(with) = &q.with {
            qb.push(" AND with_jid = ").push_bind(with);
        }
        if let Some(start) = q.start {
            qb.push(" AND \"when\" >= ").push_bind(start);
        }
        if let Some(end) = q.end {
            qb.push(" AND \"when\" <= ").push_bind(end);
        }
        if !q.ids.is_empty() {
            qb.push(" AND id IN (");
            let mut list = qb.separated(", ");
            for id in &q.ids {
                list.push_bind(id);
            }
            qb.push(")");
        }
        // Row values compare lexicographically: exactly the (when, seq) result order.
        if let Some((when, seq)) = after {
            qb.push(" AND (\"when\", seq) > (")
                .push_bind(when)
                .push(", ")
                .push_bind(seq)
                .push(")");
        }
        if let Some((when, seq)) = before {
            qb.push(" AND (\"when\", seq) < (")
                .push_bind(when)
                .push(", ")
                .push_bind(seq)
                .push(")");
        }
        let dir = if q.from_end { "DESC" } else { "ASC" };
        qb.push(format_args!(" ORDER BY \"when\" {dir}, seq {dir}"));
        if let Some(limit) = q.limit {
            // One row more than asked tells whether the page is the last one.
            let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
            qb.push(" LIMIT ").push_bind(fetch);
        }

        let rows = qb.build().fetch_all(&self.reads).await.map_err(backend)?;
        let mut items = rows
            .iter()
            .map(|r| {
                Ok(ArchiveItem {
                    id: r.try_get(0).map_err(backend)?,
                    when: r.try_get(1).map_err(backend)?,
                    with: r.try_get(2).map_err(backend)?,
                    data: r.try_get(3).map_err(backend)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let limit = q.limit.unwrap_or(usize::MAX);
        let complete = items.len() <= limit;
        items.truncate(limit);
        if q.from_end {
            items.reverse();
        }
        Ok(ArchivePage { items, complete })
    }

    async fn delete(
        &self,
        host: &str,
        store: &str,
        user: &str,
        ids: Option<&[String]>,
    ) -> Result<u64> {
        if ids.is_some_and(<[String]>::is_empty) {
            return Ok(0);
        }
        let op = WriteOp::DeleteArchive {
            slot: Slot::new(host, store, user),
            ids: ids.map(<[String]>::to_vec),
        };
        self.writer.write(op).await
    }

    async fn expire(&self, store: &str, before: i64) -> Result<u64> {
        self.writer
            .write(WriteOp::Expire {
                store: store.to_owned(),
                before,
            })
            .await
    }

    async fn count(&self, host: &str, store: &str, user: &str) -> Result<u64> {
        // Kept by the writer (`counts.rs`): scanning the index costs ~150 ms at 1M items.
        self.writer
            .archive_count(Slot::new(host, store, user))
            .await
    }
}

impl SqliteBackend {
    /// The (when, seq) of an archive item, the key results are ordered by; `NotFound` if absent.
    async fn position(
        &self,
        host: &str,
        store: &str,
        user: &str,
        id: Option<&str>,
    ) -> Result<Option<(i64, i64)>> {
        let Some(id) = id else { return Ok(None) };
        let row = sqlx::query(
            "SELECT \"when\", seq FROM archive
             WHERE host = ? AND store = ? AND user = ? AND id = ?",
        )
        .bind(host)
        .bind(store)
        .bind(user)
        .bind(id)
        .fetch_optional(&self.reads)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound)?;
        Ok(Some((
            row.try_get(0).map_err(backend)?,
            row.try_get(1).map_err(backend)?,
        )))
    }
}
