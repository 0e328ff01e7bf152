//! The behaviour every backend must share, written once against [`Storage`].
//!
//! `tests/backends.rs` runs each function on the memory and the SQLite backend, so the two
//! cannot drift apart: same orders, same errors, same cascades.

use tern_storage::{ArchivePage, ArchiveQuery, Storage, StoreError};

use crate::fixtures::{item, record};

const HOST: &str = "example.org";
const OTHER_HOST: &str = "example.net";

fn ids(page: &ArchivePage) -> Vec<&str> {
    page.items.iter().map(|i| i.id.as_str()).collect()
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i:02}")).collect()
}

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

/// 50 items m00..m49, 10 µs apart, alternating between two peers.
async fn fill(s: &Storage, user: &str) {
    for i in 0..50 {
        let with = if i % 2 == 0 {
            "romeo@example.org"
        } else {
            "nurse@example.org"
        };
        s.archive
            .append(
                HOST,
                "mam",
                user,
                &item(&format!("m{i:02}"), 1000 + 10 * i, with),
            )
            .await
            .unwrap();
    }
}

pub async fn archive_filters(s: &Storage) {
    let ar = &s.archive;
    fill(s, "juliet").await;
    let dup = ar
        .append(HOST, "mam", "juliet", &item("m07", 5, "x@example.org"))
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict)));
    ar.append(HOST, "mam", "romeo", &item("m07", 5, "x@example.org"))
        .await
        .unwrap(); // ids are per user
    assert_eq!(ar.count(HOST, "mam", "juliet").await.unwrap(), 50);
    assert_eq!(ar.count(HOST, "mam", "nobody").await.unwrap(), 0);

    let q = |q: ArchiveQuery| async move { ar.query(HOST, "mam", "juliet", &q).await.unwrap() };
    let all = q(ArchiveQuery::default()).await;
    assert!(all.complete);
    assert_eq!(ids(&all), names(0..50));
    assert_eq!(
        all.items[7],
        item("m07", 1070, "nurse@example.org"),
        "items round-trip intact"
    );

    let with = q(ArchiveQuery {
        with: Some("romeo@example.org".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        ids(&with),
        names(0..50).into_iter().step_by(2).collect::<Vec<_>>()
    );
    let range = q(ArchiveQuery {
        start: Some(1100),
        end: Some(1200),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&range), names(10..21));
    let some = q(ArchiveQuery {
        ids: vec!["m31".into(), "m03".into(), "nope".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&some), ["m03", "m31"]);
    let between = q(ArchiveQuery {
        after_id: Some("m10".into()),
        before_id: Some("m15".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&between), names(11..15));
    let combined = ArchiveQuery {
        with: Some("nurse@example.org".into()),
        start: Some(1200),
        limit: Some(3),
        ..Default::default()
    };
    let page = q(combined).await;
    assert_eq!(
        (ids(&page), page.complete),
        (vec!["m21", "m23", "m25"], false)
    );
    let empty = q(ArchiveQuery {
        limit: Some(0),
        ..Default::default()
    })
    .await;
    assert!(empty.items.is_empty() && !empty.complete);
    let back_all = q(ArchiveQuery {
        from_end: true,
        ..Default::default()
    })
    .await;
    assert_eq!(
        back_all, all,
        "from_end without a limit is everything, oldest first"
    );
    let none = ar
        .query(
            HOST,
            "mam",
            "nobody",
            &ArchiveQuery {
                limit: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(none.items.is_empty() && none.complete);

    for bad in [
        ArchiveQuery {
            after_id: Some("nope".into()),
            ..Default::default()
        },
        ArchiveQuery {
            before_id: Some("nope".into()),
            from_end: true,
            ..Default::default()
        },
    ] {
        assert!(matches!(
            ar.query(HOST, "mam", "juliet", &bad).await,
            Err(StoreError::NotFound)
        ));
    }
    // An id of another user's archive is unknown here.
    let foreign = ArchiveQuery {
        after_id: Some("m07".into()),
        ..Default::default()
    };
    assert!(matches!(
        ar.query(HOST, "mam", "nobody", &foreign).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn archive_paging(s: &Storage) {
    fill(s, "juliet").await;
    let run =
        |q: ArchiveQuery| async move { s.archive.query(HOST, "mam", "juliet", &q).await.unwrap() };

    // Forward: first page, then after the last item of each page.
    let (mut seen, mut after, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = run(ArchiveQuery {
            after_id: after,
            limit: Some(10),
            ..Default::default()
        })
        .await;
        pages += 1;
        assert_eq!(page.items.len(), 10);
        assert_eq!(
            page.complete,
            pages == 5,
            "only the last forward page is complete"
        );
        after = page.items.last().map(|i| i.id.clone());
        seen.extend(page.items.iter().map(|i| i.id.clone()));
        if page.complete {
            break;
        }
    }
    assert_eq!(seen, names(0..50));
    let past_end = run(ArchiveQuery {
        after_id: Some("m49".into()),
        limit: Some(10),
        ..Default::default()
    })
    .await;
    assert!(past_end.items.is_empty() && past_end.complete);

    // Backward: last page, then before the first item of each page; pages stay oldest first.
    let (mut seen, mut before, mut pages) = (Vec::new(), None, 0);
    loop {
        let q = ArchiveQuery {
            before_id: before,
            limit: Some(10),
            from_end: true,
            ..Default::default()
        };
        let page = run(q).await;
        pages += 1;
        assert_eq!(ids(&page), names(50 - 10 * pages..60 - 10 * pages));
        assert_eq!(
            page.complete,
            pages == 5,
            "only the first page, reached last, is complete"
        );
        before = page.items.first().map(|i| i.id.clone());
        seen.splice(0..0, page.items.iter().map(|i| i.id.clone()));
        if page.complete {
            break;
        }
    }
    assert_eq!(seen, names(0..50));

    // A partial last page backward: 5 items before m05 fit a limit of 10.
    let q = ArchiveQuery {
        before_id: Some("m05".into()),
        limit: Some(10),
        from_end: true,
        ..Default::default()
    };
    let head = run(q).await;
    assert_eq!(
        (ids(&head), head.complete),
        (names(0..5).iter().map(String::as_str).collect(), true)
    );
}

pub async fn archive_order(s: &Storage) {
    let ar = &s.archive;
    // Equal times keep insertion order; a late item with an earlier time sorts by time.
    for (id, when) in [("z", 20), ("a", 20), ("m", 20), ("early", 10), ("late", 30)] {
        ar.append(HOST, "muc", "room", &item(id, when, ""))
            .await
            .unwrap();
    }
    let all = ar
        .query(HOST, "muc", "room", &ArchiveQuery::default())
        .await
        .unwrap();
    assert_eq!(ids(&all), ["early", "z", "a", "m", "late"]);
    let after = ArchiveQuery {
        after_id: Some("z".into()),
        limit: Some(2),
        ..Default::default()
    };
    let page = ar.query(HOST, "muc", "room", &after).await.unwrap();
    assert_eq!((ids(&page), page.complete), (vec!["a", "m"], false));
    let before = ArchiveQuery {
        before_id: Some("m".into()),
        limit: Some(2),
        from_end: true,
        ..Default::default()
    };
    let page = ar.query(HOST, "muc", "room", &before).await.unwrap();
    assert_eq!((ids(&page), page.complete), (vec!["z", "a"], false));
}

pub async fn archive_expire_and_delete(s: &Storage) {
    let ar = &s.archive;
    for (host, user) in [(HOST, "juliet"), (HOST, "romeo"), (OTHER_HOST, "juliet")] {
        for (id, when) in [("old1", 100), ("old2", 199), ("edge", 200), ("new", 300)] {
            ar.append(host, "offline", user, &item(id, when, "nurse@example.org"))
                .await
                .unwrap();
            ar.append(host, "mam", user, &item(id, when, "nurse@example.org"))
                .await
                .unwrap();
        }
    }
    assert_eq!(
        ar.expire("offline", 200).await.unwrap(),
        6,
        "strictly older, every host and user"
    );
    assert_eq!(ar.expire("offline", 200).await.unwrap(), 0);
    let left = ar
        .query(OTHER_HOST, "offline", "juliet", &ArchiveQuery::default())
        .await
        .unwrap();
    assert_eq!(ids(&left), ["edge", "new"]);
    assert_eq!(
        ar.count(HOST, "mam", "juliet").await.unwrap(),
        4,
        "other stores untouched"
    );

    let wanted: Vec<String> = ["old1", "new", "nope", "new"].map(String::from).to_vec();
    assert_eq!(
        ar.delete(HOST, "mam", "juliet", Some(&wanted))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        ar.delete(HOST, "mam", "juliet", Some(&[])).await.unwrap(),
        0
    );
    let left = ar
        .query(HOST, "mam", "juliet", &ArchiveQuery::default())
        .await
        .unwrap();
    assert_eq!(ids(&left), ["old2", "edge"]);
    assert_eq!(ar.delete(HOST, "mam", "juliet", None).await.unwrap(), 2);
    assert_eq!(ar.count(HOST, "mam", "juliet").await.unwrap(), 0);
    assert_eq!(ar.delete(HOST, "mam", "juliet", None).await.unwrap(), 0);
    assert_eq!(ar.count(HOST, "mam", "romeo").await.unwrap(), 4);
    // A deleted id may be used again.
    ar.append(
        HOST,
        "mam",
        "juliet",
        &item("new", 400, "nurse@example.org"),
    )
    .await
    .unwrap();
}
