//! Figure 2: MAM query latency on a large archive.
//!
//! One account's archive is seeded with `items` messages through `ArchiveStore::append`
//! (many concurrent appends, so group commit makes it quick), one message every
//! `SEED_INTERVAL` with `peers` peers taking turns, so each peer has 1/`peers` of the items.
//! Then the queries a MAM client typically makes run through `ArchiveStore::query`, one at a
//! time, `runs` times each (after a short warm-up), and their latency is summarized.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tern_storage::{ArchiveQuery, ArchiveStore, SqliteBackend, SqliteOptions, Synchronous};

use crate::common::{self, ms, Stats, HOST, STORE};

/// The account whose archive is queried.
pub const USER: &str = "alice";
/// Time between two seeded messages: 100,000 messages span about 35 days.
pub const SEED_INTERVAL: i64 = 30_000_000;
/// Page size of every query, what clients commonly ask for.
pub const PAGE: usize = 50;
/// The peer used by `with` queries (modulo the number of peers).
pub const WITH_PEER: usize = 7;
/// Length of the `start`/`end` window.
pub const WINDOW: i64 = 86_400 * 1_000_000;
/// Untimed runs before each timed scenario.
pub const WARMUP: usize = 5;

/// How the archive was seeded.
pub struct Seeded {
    /// Archive ids in time order.
    pub ids: Vec<String>,
    /// Time of the first item.
    pub base: i64,
    /// Peers taking turns.
    pub peers: usize,
    pub elapsed: Duration,
}

impl Seeded {
    pub fn when(&self, n: usize) -> i64 {
        self.base + n as i64 * SEED_INTERVAL
    }

    /// The peer of `with` queries.
    pub fn with_peer(&self) -> usize {
        WITH_PEER % self.peers
    }
}

/// Appends `items` messages to `USER`'s archive with `seeders` concurrent appenders. The newest
/// message is about now, the oldest `items * SEED_INTERVAL` earlier. Fails if it takes longer
/// than `max_time` (a slow disk: use fewer items or a longer limit).
pub async fn seed(
    store: Arc<dyn ArchiveStore>,
    items: usize,
    peers: usize,
    size: usize,
    seeders: usize,
    max_time: Duration,
) -> anyhow::Result<Seeded> {
    let base = common::now_micros() - items as i64 * SEED_INTERVAL;
    let next = Arc::new(AtomicUsize::new(0));
    let owner = format!("{USER}@{HOST}");
    let start = Instant::now();
    let deadline = start + max_time;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..seeders.max(1) {
        let (store, next, owner) = (store.clone(), next.clone(), owner.clone());
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= items {
                    return Ok::<_, anyhow::Error>(done);
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "seeding {items} items took longer than {max_time:?}"
                );
                if n > 0 && items >= 100_000 && n % (items / 10) == 0 {
                    eprintln!(
                        "  seeded {n}/{items} in {:.1} s (load {})",
                        start.elapsed().as_secs_f64(),
                        common::loadavg()
                    );
                }
                let peer = common::peer(n % peers.max(1));
                let item = common::item(&owner, &peer, n, base + n as i64 * SEED_INTERVAL, size);
                store.append(HOST, STORE, USER, &item).await?;
                done.push((n, item.id));
            }
        });
    }
    let mut ids = vec![String::new(); items];
    while let Some(r) = tasks.join_next().await {
        for (n, id) in r?? {
            ids[n] = id;
        }
    }
    Ok(Seeded {
        ids,
        base,
        peers: peers.max(1),
        elapsed: start.elapsed(),
    })
}

/// The query shapes measured; each one builds a fresh query per run (random cursors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The newest page: what a client fetches on login (`<before/>` with max 50).
    LastPage,
    /// `count(*)` of the whole archive: the MAM module adds it (RSM `<count/>`) to every
    /// unfiltered query, so a client's last-page query pays it too.
    Count,
    /// Paging forward from a random id in the middle (catching up after a known id).
    AfterId,
    /// Paging backward from a random id in the middle (scrolling back in history).
    BeforeId,
    /// The newest page of one conversation: `with` a peer holding 1 % of the archive.
    With,
    /// The first page inside a one-day `start`/`end` window somewhere in the middle.
    Window,
}

impl Shape {
    pub const ALL: [Shape; 6] = [
        Shape::LastPage,
        Shape::Count,
        Shape::AfterId,
        Shape::BeforeId,
        Shape::With,
        Shape::Window,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Shape::LastPage => "last page (from_end, 50)",
            Shape::Count => "count (RSM <count/>)",
            Shape::AfterId => "after_id in middle (50)",
            Shape::BeforeId => "before_id in middle (from_end, 50)",
            Shape::With => "with peer holding 1% (from_end, 50)",
            Shape::Window => "start/end 1-day window (50)",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Shape::LastPage => "last_page",
            Shape::Count => "count",
            Shape::AfterId => "after_id",
            Shape::BeforeId => "before_id",
            Shape::With => "with",
            Shape::Window => "window",
        }
    }

    /// The store query for one run (None for `Count`) and how many items it must return,
    /// known from how the archive was seeded.
    pub fn query(self, s: &Seeded, rng: &mut StdRng) -> Option<(ArchiveQuery, usize)> {
        let n = s.ids.len();
        let middle = rng.gen_range(n / 10..(n * 9 / 10).max(n / 10 + 1));
        let page = ArchiveQuery {
            limit: Some(PAGE),
            ..ArchiveQuery::default()
        };
        let expect = match self {
            Shape::Count => return None,
            Shape::LastPage => n,
            Shape::AfterId => n - middle - 1,
            Shape::BeforeId => middle,
            Shape::With => (0..n).filter(|k| k % s.peers == s.with_peer()).count(),
            Shape::Window => (n - middle).min((WINDOW / SEED_INTERVAL) as usize + 1),
        };
        let q = match self {
            Shape::Count => return None,
            Shape::LastPage => ArchiveQuery {
                from_end: true,
                ..page
            },
            Shape::AfterId => ArchiveQuery {
                after_id: Some(s.ids[middle].clone()),
                ..page
            },
            Shape::BeforeId => ArchiveQuery {
                before_id: Some(s.ids[middle].clone()),
                from_end: true,
                ..page
            },
            Shape::With => ArchiveQuery {
                with: Some(common::peer(s.with_peer())),
                from_end: true,
                ..page
            },
            Shape::Window => ArchiveQuery {
                start: Some(s.when(middle)),
                end: Some(s.when(middle) + WINDOW),
                ..page
            },
        };
        Some((q, expect.min(PAGE)))
    }
}

/// Runs `shape` `runs` times (bounded by `max_time`) and returns the latencies.
pub async fn measure(
    store: &dyn ArchiveStore,
    seeded: &Seeded,
    shape: Shape,
    runs: usize,
    max_time: Duration,
) -> anyhow::Result<Stats> {
    let mut rng = StdRng::seed_from_u64(0x7e54);
    let mut samples = Vec::with_capacity(runs);
    let stop = Instant::now() + max_time;
    for i in 0..WARMUP + runs {
        if Instant::now() >= stop {
            break;
        }
        let q = shape.query(seeded, &mut rng);
        let t = Instant::now();
        let got = match &q {
            Some((q, _)) => store.query(HOST, STORE, USER, q).await?.items.len(),
            None => store.count(HOST, STORE, USER).await? as usize,
        };
        let took = t.elapsed();
        let want = q.map_or(seeded.ids.len(), |(_, want)| want);
        anyhow::ensure!(
            got == want,
            "{}: got {got} items, expected {want}",
            shape.label()
        );
        if i >= WARMUP {
            samples.push(took);
        }
    }
    Ok(Stats::of(&mut samples))
}

/// Table header for latency rows.
pub fn header() {
    println!(
        "{:<38} {:>5} {:>9} {:>9} {:>9} {:>9}",
        "query", "runs", "p50", "p95", "max", "mean"
    );
}

/// One latency row.
pub fn row(label: &str, s: &Stats) {
    println!(
        "{:<38} {:>5} {:>7.3}ms {:>7.3}ms {:>7.3}ms {:>7.3}ms",
        label,
        s.n,
        ms(s.p50),
        ms(s.p95),
        ms(s.max),
        ms(s.mean)
    );
}

/// Parameters of the storage-level query benchmark.
pub struct Params<'a> {
    pub dir: &'a Path,
    pub sync: Synchronous,
    pub items: usize,
    pub peers: usize,
    pub size: usize,
    pub seeders: usize,
    pub runs: usize,
    pub max_time: Duration,
}

/// Seeds a fresh database and measures every shape through the store API.
pub async fn run(p: &Params<'_>) -> anyhow::Result<serde_json::Value> {
    let tmp = tempfile::Builder::new()
        .prefix("tern-bench-query-")
        .tempdir_in(p.dir)?;
    let backend = Arc::new(
        SqliteBackend::open(SqliteOptions {
            synchronous: p.sync,
            ..SqliteOptions::new(tmp.path().join("archive.db"))
        })
        .await?,
    );
    let seeded = seed(
        backend.clone(),
        p.items,
        p.peers,
        p.size,
        p.seeders,
        p.max_time,
    )
    .await?;
    let commits = backend.commit_count();
    println!(
        "seeded {} items ({} B each, {} peers) with {} concurrent appends in {:.1} s: {:.0} items/s, {} commits",
        p.items,
        p.size,
        p.peers,
        p.seeders,
        seeded.elapsed.as_secs_f64(),
        p.items as f64 / seeded.elapsed.as_secs_f64(),
        commits
    );
    header();
    let mut rows = Vec::new();
    for shape in Shape::ALL {
        let s = measure(backend.as_ref(), &seeded, shape, p.runs, p.max_time).await?;
        row(shape.label(), &s);
        rows.push(serde_json::json!({ "query": shape.key(), "latency": s.json() }));
    }
    backend.close().await;
    Ok(serde_json::json!({
        "scenario": "query",
        "dir": p.dir.display().to_string(),
        "fs": common::fs_type(p.dir),
        "items": p.items,
        "item_bytes": p.size,
        "peers": p.peers,
        "seed_secs": seeded.elapsed.as_secs_f64(),
        "seed_commits": commits,
        "queries": rows,
    }))
}
