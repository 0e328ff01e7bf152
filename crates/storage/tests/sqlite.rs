//! SQLite-only behaviour: persistence, group commit, savepoint isolation, schema versioning.

mod fixtures;

use std::sync::Arc;

use sqlx::{ConnectOptions, Connection};
use tern_storage::sqlite::{self, SqliteBackend};
use tern_storage::{
    AccountStore, ArchiveQuery, ArchiveStore, KeyValStore, MapStore, SqliteOptions, Storage,
    StoreError, Synchronous,
};

const HOST: &str = "example.org";

async fn open(dir: &tempfile::TempDir) -> Arc<SqliteBackend> {
    sqlite::open(SqliteOptions::new(dir.path().join("tern.db")))
        .await
        .unwrap()
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/data/tern.db");
    let options = SqliteOptions {
        synchronous: Synchronous::Normal,
        ..SqliteOptions::new(&path)
    };
    let db = sqlite::open(options).await.unwrap();
    let s = Storage::from_backend(db.clone());
    s.accounts
        .create(HOST, "juliet", &fixtures::record(1))
        .await
        .unwrap();
    s.keyval
        .set(HOST, "roster", "juliet", Some(b"ver1"))
        .await
        .unwrap();
    s.map
        .set_many(
            HOST,
            "private",
            "juliet",
            &[("k".into(), Some(b"v".to_vec()))],
        )
        .await
        .unwrap();
    s.archive
        .append(
            HOST,
            "mam",
            "juliet",
            &fixtures::item("a1", 7, "romeo@example.org"),
        )
        .await
        .unwrap();
    db.close().await;
    let after_close = s.keyval.set(HOST, "roster", "juliet", Some(b"ver2")).await;
    assert!(
        matches!(after_close, Err(StoreError::Backend(_))),
        "{after_close:?}"
    );
    drop((s, db));

    let db = sqlite::open(SqliteOptions::new(&path)).await.unwrap();
    assert_eq!(
        AccountStore::get(&*db, HOST, "juliet").await.unwrap(),
        Some(fixtures::record(1))
    );
    assert_eq!(
        KeyValStore::get(&*db, HOST, "roster", "juliet")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"ver1"[..])
    );
    assert_eq!(
        MapStore::get(&*db, HOST, "private", "juliet", "k")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"v"[..])
    );
    let page = db
        .query(HOST, "mam", "juliet", &ArchiveQuery::default())
        .await
        .unwrap();
    assert_eq!(page.items, [fixtures::item("a1", 7, "romeo@example.org")]);
    // Ids stay unique across restarts.
    let dup = db
        .append(
            HOST,
            "mam",
            "juliet",
            &fixtures::item("a1", 8, "x@example.org"),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict)));
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..20 {
        let db = db.clone();
        tasks.spawn(async move {
            for i in 0..10 {
                let item = fixtures::item(&format!("t{t}-{i}"), i, "romeo@example.org");
                db.append(HOST, "mam", "juliet", &item).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(db.count(HOST, "mam", "juliet").await.unwrap(), 200);
    let commits = db.commit_count();
    assert!(
        commits < 200,
        "200 writes took {commits} commits: no batching"
    );
    assert!(commits > 0);
}

/// On one thread every append below is queued before the writer runs, so they share a batch:
/// the conflicting ones must fail alone while the others commit.
#[tokio::test(flavor = "current_thread")]
async fn a_failing_op_does_not_fail_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    db.append(HOST, "mam", "juliet", &fixtures::item("taken", 1, ""))
        .await
        .unwrap();
    let before = db.commit_count();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let db = db.clone();
        let id = if i % 3 == 0 {
            "taken".to_owned()
        } else {
            format!("new{i}")
        };
        tasks.spawn(async move {
            (
                i,
                db.append(HOST, "mam", "juliet", &fixtures::item(&id, 2, ""))
                    .await,
            )
        });
    }
    let mut conflicts = 0;
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            (i, Ok(())) => assert_ne!(i % 3, 0),
            (i, Err(StoreError::Conflict)) => {
                assert_eq!(i % 3, 0);
                conflicts += 1;
            }
            (_, Err(e)) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(conflicts, 10);
    assert_eq!(db.count(HOST, "mam", "juliet").await.unwrap(), 21);
    assert_eq!(
        db.commit_count() - before,
        1,
        "all 30 appends should have shared one commit"
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.db");
    let db = sqlite::open(SqliteOptions::new(&path)).await.unwrap();
    db.append(HOST, "mam", "juliet", &fixtures::item("a1", 7, ""))
        .await
        .unwrap();
    db.close().await;
    drop(db);

    // Pretend a future Tern migrated this file.
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    sqlx::query("INSERT INTO schema_version (version, applied) VALUES (9999, 0)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    match sqlite::open(SqliteOptions::new(&path)).await {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("newer"), "{msg}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a database from a newer schema was opened"),
    }
    // Refusing must not have touched it.
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM archive")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 1);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn reopening_a_current_schema_does_not_migrate_again() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        open(&dir).await.close().await;
    }
    let path = dir.path().join("tern.db");
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_version")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(versions, [1]);
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    conn.close().await.unwrap();
}

/// The writer keeps an archive's size once it has been counted (RSM `<count/>` on every MAM
/// query would otherwise scan the index): every later write must keep it exact.
#[tokio::test]
async fn archive_count_stays_exact_after_it_was_counted() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let s = Storage::from_backend(db.clone());
    s.accounts
        .create(HOST, "juliet", &fixtures::record(1))
        .await
        .unwrap();
    let ar = &s.archive;
    for i in 0..10 {
        let it = fixtures::item(&format!("m{i}"), 100 + i, "romeo@example.net");
        ar.append(HOST, "mam", "juliet", &it).await.unwrap();
    }
    // Counted once: from here on the size comes from the writer's table.
    assert_eq!(ar.count(HOST, "mam", "juliet").await.unwrap(), 10);
    assert_eq!(ar.count(HOST, "mam", "nobody").await.unwrap(), 0);
    for i in 10..15 {
        let it = fixtures::item(&format!("m{i}"), 100 + i, "romeo@example.net");
        ar.append(HOST, "mam", "juliet", &it).await.unwrap();
    }
    assert_eq!(ar.count(HOST, "mam", "juliet").await.unwrap(), 15);
    // A refused duplicate changes nothing.
    let dup = fixtures::item("m3", 999, "romeo@example.net");
    assert!(matches!(
        ar.append(HOST, "mam", "juliet", &dup).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(ar.count(HOST, "mam", "juliet").await.unwrap(), 15);
    // Other archives are not touched by these writes.
    ar.append(HOST, "mam", "nobody", &fixtures::item("x", 1, "a@b"))
        .await
        .unwrap();
    assert_eq!(ar.count(HOST, "mam", "nobody").await.unwrap(), 1);
    let gone: Vec<String> = ["m0", "m1", "missing"].map(String::from).to_vec();
    assert_eq!(
        ar.delete(HOST, "mam", "juliet", Some(&gone)).await.unwrap(),
        2
    );
    assert_eq!(ar.count(HOST, "mam", "juliet").await.unwrap(), 13);
    // Expiry removes items of every user of the store: the size is counted again.
    assert_eq!(ar.expire("mam", 105).await.unwrap(), 4);
    assert_eq!(ar.count(HOST, "mam", "juliet").await.unwrap(), 10);
    assert_eq!(ar.count(HOST, "mam", "nobody").await.unwrap(), 0);
    // So does account deletion, and so does the restart of the process.
    drop(s);
    db.close().await;
    let db = open(&dir).await;
    let s = Storage::from_backend(db.clone());
    assert_eq!(s.archive.count(HOST, "mam", "juliet").await.unwrap(), 10);
    assert!(s.accounts.delete(HOST, "juliet").await.unwrap());
    assert_eq!(s.archive.count(HOST, "mam", "juliet").await.unwrap(), 0);
}
