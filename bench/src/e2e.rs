//! Figure 2, end to end: the same MAM queries sent by a client over STARTTLS to a real
//! in-process server on the SQLite backend, timed from sending the `<iq/>` until its result
//! arrives after the 50 `<result/>` messages. The account's archive is seeded through the
//! server's own store before the client logs in.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tern_router::time::format_micros;
use tern_testkit::{RawClient, TestServer};

use crate::common::{self, Stats};
use crate::query::{self, Seeded, Shape, PAGE, USER};

const MAM: &str = "urn:xmpp:mam:2";
const RSM: &str = "http://jabber.org/protocol/rsm";

/// Parameters of the end-to-end benchmark.
pub struct Params<'a> {
    pub dir: &'a Path,
    pub sync: &'static str,
    pub items: usize,
    pub peers: usize,
    pub size: usize,
    pub seeders: usize,
    pub runs: usize,
    pub max_time: Duration,
}

fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

/// The `<query/>` payload for one run of `shape`, from the same store query the storage
/// benchmark runs (so cursors and windows are the same), and the number of results expected.
fn payload(shape: Shape, seeded: &Seeded, rng: &mut StdRng, qid: &str) -> Option<(String, usize)> {
    let (q, want) = shape.query(seeded, rng)?;
    let mut fields = Vec::new();
    if let Some(w) = &q.with {
        fields.push(field("with", w));
    }
    if let Some(s) = q.start {
        fields.push(field("start", &format_micros(s)));
    }
    if let Some(e) = q.end {
        fields.push(field("end", &format_micros(e)));
    }
    let form = if fields.is_empty() {
        String::new()
    } else {
        format!(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>\
             <value>{MAM}</value></field>{}</x>",
            fields.concat()
        )
    };
    let cursor = match (&q.after_id, &q.before_id, q.from_end) {
        (Some(a), _, _) => format!("<after>{a}</after>"),
        (_, Some(b), _) => format!("<before>{b}</before>"),
        (_, _, true) => "<before/>".into(),
        _ => String::new(),
    };
    let xml = format!(
        "<query xmlns='{MAM}' queryid='{qid}'>{form}<set xmlns='{RSM}'><max>{PAGE}</max>{cursor}</set></query>"
    );
    Some((xml, want))
}

/// Sends one query and waits for its IQ result; returns the number of results received and
/// when the first one arrived.
async fn roundtrip(
    c: &mut RawClient,
    id: &str,
    query: &str,
) -> anyhow::Result<(usize, Option<Duration>)> {
    let t = Instant::now();
    c.send_str(&format!("<iq type='set' id='{id}'>{query}</iq>"))
        .await?;
    let mut results = 0;
    let mut first = None;
    loop {
        let e = c.next().await?;
        if e.name() == "iq" && e.attr("id") == Some(id) {
            anyhow::ensure!(e.attr("type") == Some("result"), "query failed: {e:?}");
            return Ok((results, first));
        }
        if e.has_child("result", MAM) {
            first.get_or_insert_with(|| t.elapsed());
            results += 1;
        }
    }
}

/// Starts a server on SQLite, seeds the archive through its store, and measures the queries.
pub async fn run(p: &Params<'_>) -> anyhow::Result<serde_json::Value> {
    let tmp = tempfile::Builder::new()
        .prefix("tern-bench-e2e-")
        .tempdir_in(p.dir)?;
    let db = tmp.path().join("tern.db");
    let sync = p.sync;
    let server = TestServer::start_with(|c| {
        c.storage.backend = "sqlite".into();
        c.storage.synchronous = sync.into();
        // An absolute path replaces the test server's data_dir (a directory under /tmp).
        c.storage.path = db.clone();
    })
    .await?;
    server.add_user(USER, "pw").await?;
    let store = server
        .running
        .as_ref()
        .expect("running")
        .router
        .storage()
        .archive
        .clone();
    let seeded = query::seed(store, p.items, p.peers, p.size, p.seeders, p.max_time).await?;
    println!(
        "server on sqlite ({}), archive seeded with {} items in {:.1} s; client over STARTTLS",
        db.display(),
        p.items,
        seeded.elapsed.as_secs_f64()
    );
    let mut c = RawClient::login(&server, USER, "pw", "bench").await?;
    query::header();
    let mut rows = Vec::new();
    let mut seq = 0u64;
    for shape in Shape::ALL {
        if shape == Shape::Count {
            // Not a query of its own on the wire: the server adds it to unfiltered ones.
            continue;
        }
        let mut rng = StdRng::seed_from_u64(0x7e54);
        let mut samples = Vec::with_capacity(p.runs);
        let mut firsts = Vec::with_capacity(p.runs);
        let stop = Instant::now() + p.max_time;
        for i in 0..query::WARMUP + p.runs {
            if Instant::now() >= stop {
                break;
            }
            seq += 1;
            let id = format!("q{seq}");
            let Some((xml, want)) = payload(shape, &seeded, &mut rng, &id) else {
                break;
            };
            let t = Instant::now();
            let (got, first) = roundtrip(&mut c, &id, &xml).await?;
            let took = t.elapsed();
            anyhow::ensure!(
                got == want,
                "{}: {got} results, expected {want}",
                shape.label()
            );
            if i >= query::WARMUP {
                samples.push(took);
                firsts.extend(first);
            }
        }
        let s = Stats::of(&mut samples);
        let f = Stats::of(&mut firsts);
        query::row(shape.label(), &s);
        query::row("  ...until the first <result/>", &f);
        rows.push(serde_json::json!({
            "query": shape.key(),
            "latency": s.json(),
            "first_result": f.json(),
        }));
    }
    drop(c);
    server.stop().await;
    Ok(serde_json::json!({
        "scenario": "e2e",
        "dir": p.dir.display().to_string(),
        "fs": common::fs_type(p.dir),
        "sync": p.sync,
        "items": p.items,
        "item_bytes": p.size,
        "peers": p.peers,
        "seed_secs": seeded.elapsed.as_secs_f64(),
        "queries": rows,
    }))
}
