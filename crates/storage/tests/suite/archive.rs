//! The archive part of the shared suite: filters, RSM-style paging, order, expiry.

use tern_storage::{ArchivePage, ArchiveQuery, Storage, StoreError};

use super::{HOST, OTHER_HOST};
use crate::fixtures::item;

fn ids(page: &ArchivePage) -> Vec<&str> {
    page.items.iter().map(|i| i.id.as_str()).collect()
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i:02}")).collect()
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
