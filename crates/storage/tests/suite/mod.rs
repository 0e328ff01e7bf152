//! The behaviour every backend must share, written once against [`Storage`].
//!
//! `tests/backends.rs` runs each function on the memory and the SQLite backend, so the two
//! cannot drift apart: same orders, same errors, same cascades.

use tern_storage::{Storage, StoreError};

use crate::fixtures::{item, record};

mod archive;
pub use archive::*;

const HOST: &str = "example.org";
const OTHER_HOST: &str = "example.net";

pub async fn accounts(s: &Storage) {
    let a = &s.accounts;
    assert_eq!(a.get(HOST, "juliet").await.unwrap(), None);
    for (i, user) in ["romeo", "juliet", "benvolio"].into_iter().enumerate() {
        a.create(HOST, user, &record(i as u8)).await.unwrap();
    }
    assert!(matches!(
        a.create(HOST, "juliet", &record(9)).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        a.get(HOST, "juliet").await.unwrap(),
        Some(record(1)),
        "conflict must not overwrite"
    );

    a.update(HOST, "juliet", &record(7)).await.unwrap();
    assert_eq!(a.get(HOST, "juliet").await.unwrap(), Some(record(7)));
    assert!(matches!(
        a.update(HOST, "nurse", &record(7)).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(a.get(HOST, "nurse").await.unwrap(), None);

    a.create(OTHER_HOST, "juliet", &record(3)).await.unwrap();
    assert_eq!(a.list(HOST).await.unwrap(), ["benvolio", "juliet", "romeo"]);
    assert_eq!(a.list(OTHER_HOST).await.unwrap(), ["juliet"]);
    assert!(a.list("nowhere.example").await.unwrap().is_empty());
}

pub async fn account_delete_cascades(s: &Storage) {
    for host in [HOST, OTHER_HOST] {
        for user in ["juliet", "romeo"] {
            s.accounts.create(host, user, &record(1)).await.unwrap();
            s.keyval
                .set(host, "roster", user, Some(b"v1"))
                .await
                .unwrap();
            s.keyval
                .set(host, "vcard", user, Some(b"card"))
                .await
                .unwrap();
            s.map
                .set_many(host, "private", user, &[("k".into(), Some(b"x".to_vec()))])
                .await
                .unwrap();
            s.archive
                .append(host, "mam", user, &item("a1", 10, "nurse@example.org"))
                .await
                .unwrap();
            s.archive
                .append(host, "offline", user, &item("o1", 10, "nurse@example.org"))
                .await
                .unwrap();
        }
    }
    assert!(s.accounts.delete(HOST, "juliet").await.unwrap());
    assert_eq!(s.accounts.get(HOST, "juliet").await.unwrap(), None);
    assert_eq!(s.keyval.get(HOST, "roster", "juliet").await.unwrap(), None);
    assert_eq!(s.keyval.get(HOST, "vcard", "juliet").await.unwrap(), None);
    assert!(s
        .map
        .all(HOST, "private", "juliet")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.archive.count(HOST, "mam", "juliet").await.unwrap(), 0);
    assert_eq!(s.archive.count(HOST, "offline", "juliet").await.unwrap(), 0);

    // Same user on another host and another user on this host are untouched.
    for (host, user) in [(OTHER_HOST, "juliet"), (HOST, "romeo")] {
        assert!(s.accounts.get(host, user).await.unwrap().is_some());
        assert_eq!(
            s.keyval.get(host, "roster", user).await.unwrap().as_deref(),
            Some(&b"v1"[..])
        );
        assert_eq!(s.map.all(host, "private", user).await.unwrap().len(), 1);
        assert_eq!(s.archive.count(host, "mam", user).await.unwrap(), 1);
    }
    assert!(!s.accounts.delete(HOST, "juliet").await.unwrap());
    // Items of a user without an account are still removed, and "did not exist" still holds.
    s.keyval
        .set(HOST, "roster", "ghost", Some(b"orphan"))
        .await
        .unwrap();
    assert!(!s.accounts.delete(HOST, "ghost").await.unwrap());
    assert_eq!(s.keyval.get(HOST, "roster", "ghost").await.unwrap(), None);
    assert_eq!(s.accounts.list(HOST).await.unwrap(), ["romeo"]);
}

pub async fn keyval(s: &Storage) {
    let kv = &s.keyval;
    assert_eq!(kv.get(HOST, "roster", "juliet").await.unwrap(), None);
    kv.set(HOST, "roster", "juliet", Some(b"one"))
        .await
        .unwrap();
    kv.set(HOST, "roster", "romeo", Some(b"other user"))
        .await
        .unwrap();
    kv.set(HOST, "vcard", "juliet", Some(b"other store"))
        .await
        .unwrap();
    assert_eq!(
        kv.get(HOST, "roster", "juliet").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    kv.set(HOST, "roster", "juliet", Some(b"two"))
        .await
        .unwrap();
    assert_eq!(
        kv.get(HOST, "roster", "juliet").await.unwrap().as_deref(),
        Some(&b"two"[..])
    );
    kv.set(HOST, "roster", "juliet", Some(b"")).await.unwrap();
    assert_eq!(
        kv.get(HOST, "roster", "juliet").await.unwrap().as_deref(),
        Some(&b""[..]),
        "empty is not absent"
    );
    kv.set(HOST, "roster", "juliet", None).await.unwrap();
    assert_eq!(kv.get(HOST, "roster", "juliet").await.unwrap(), None);
    kv.set(HOST, "roster", "juliet", None).await.unwrap(); // deleting nothing is fine
    assert_eq!(
        kv.get(HOST, "roster", "romeo").await.unwrap().as_deref(),
        Some(&b"other user"[..])
    );
    assert_eq!(
        kv.get(HOST, "vcard", "juliet").await.unwrap().as_deref(),
        Some(&b"other store"[..])
    );
    assert_eq!(kv.get(OTHER_HOST, "vcard", "juliet").await.unwrap(), None);
}

pub async fn map(s: &Storage) {
    let m = &s.map;
    let set = |k: &str, v: &str| (k.to_owned(), Some(v.as_bytes().to_vec()));
    let del = |k: &str| (k.to_owned(), None);
    m.set_many(
        HOST,
        "pep",
        "juliet",
        &[
            set("zeta", "1"),
            set("alpha", "2"),
            set("Mu", "3"),
            set("mu", "4"),
        ],
    )
    .await
    .unwrap();
    m.set_many(HOST, "pep", "romeo", &[set("alpha", "other user")])
        .await
        .unwrap();
    assert_eq!(
        m.get(HOST, "pep", "juliet", "alpha")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(m.get(HOST, "pep", "juliet", "missing").await.unwrap(), None);
    let keys = |all: Vec<(String, Vec<u8>)>| all.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    // Byte order: upper case sorts before lower case.
    assert_eq!(
        keys(m.all(HOST, "pep", "juliet").await.unwrap()),
        ["Mu", "alpha", "mu", "zeta"]
    );

    // One call mixing sets and deletes, with a key listed twice: applied in order, as a unit.
    m.set_many(
        HOST,
        "pep",
        "juliet",
        &[
            del("zeta"),
            set("beta", "5"),
            set("alpha", "6"),
            del("alpha"),
            set("alpha", "7"),
        ],
    )
    .await
    .unwrap();
    let all = m.all(HOST, "pep", "juliet").await.unwrap();
    assert_eq!(
        all,
        [
            ("Mu".into(), b"3".to_vec()),
            ("alpha".into(), b"7".to_vec()),
            ("beta".into(), b"5".to_vec()),
            ("mu".into(), b"4".to_vec())
        ]
    );
    m.set_many(HOST, "pep", "juliet", &[]).await.unwrap();
    m.set_many(HOST, "pep", "juliet", &[del("never-there")])
        .await
        .unwrap();
    assert_eq!(m.all(HOST, "pep", "juliet").await.unwrap(), all);

    m.clear(HOST, "pep", "juliet").await.unwrap();
    assert!(m.all(HOST, "pep", "juliet").await.unwrap().is_empty());
    assert_eq!(m.get(HOST, "pep", "juliet", "alpha").await.unwrap(), None);
    m.clear(HOST, "pep", "juliet").await.unwrap();
    assert_eq!(m.all(HOST, "pep", "romeo").await.unwrap().len(), 1);
}
