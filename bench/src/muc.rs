//! The MUC figures (issue 5): (a) how long the 1,000th occupant of one room waits for its
//! join presences, history and subject, and (b) room messages delivered per second with 10
//! rooms of 100 occupants. A real in-process server on SQLite (room archive on, as by
//! default), clients over STARTTLS in the same process; every client drains its stream in a
//! task of its own so no session queue overflows.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_testkit::{RawClient, TestServer};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::common::{self, Stats};

const MUC: &str = "http://jabber.org/protocol/muc";
const ROOMS: &str = "conference.localhost";

/// Parameters of the MUC benchmark.
pub struct Params<'a> {
    pub dir: &'a Path,
    /// Occupants of the one big room (scenario a).
    pub big: usize,
    /// Messages in that room before the joins, so joiners get history.
    pub history: usize,
    /// Rooms and occupants per room (scenario b).
    pub rooms: usize,
    pub per_room: usize,
    /// Senders per room and messages each (scenario b).
    pub senders: usize,
    pub messages: usize,
    pub max_time: Duration,
}

/// Logs in `n` accounts named `{prefix}{i}`, 32 at a time.
async fn login_many(s: &Arc<TestServer>, prefix: &str, n: usize) -> anyhow::Result<Vec<RawClient>> {
    for i in 0..n {
        s.add_user(&format!("{prefix}{i}"), "pw").await?;
    }
    let sem = Arc::new(Semaphore::new(32));
    let mut set = JoinSet::new();
    for i in 0..n {
        let (s, sem) = (s.clone(), sem.clone());
        let user = format!("{prefix}{i}");
        set.spawn(async move {
            let _p = sem.acquire().await;
            RawClient::login(&s, &user, "pw", "b").await.map(|c| (i, c))
        });
    }
    let mut out: Vec<Option<RawClient>> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, c) = r??;
        out[i] = Some(c);
    }
    Ok(out.into_iter().flatten().collect())
}

/// What one join brought: presences, history messages, and how long until the subject.
struct Joined {
    presences: usize,
    history: usize,
    took: Duration,
}

async fn join(c: &mut RawClient, room: &str, nick: &str) -> anyhow::Result<Joined> {
    let t = Instant::now();
    c.send_str(&format!(
        "<presence to='{room}@{ROOMS}/{nick}'><x xmlns='{MUC}'/></presence>"
    ))
    .await?;
    let (mut presences, mut history) = (0, 0);
    loop {
        let e = c.next().await?;
        anyhow::ensure!(e.attr("type") != Some("error"), "join refused: {e:?}");
        if e.name() == "presence" {
            presences += 1;
        } else if e.has_child("subject", "jabber:client") {
            return Ok(Joined {
                presences,
                history,
                took: t.elapsed(),
            });
        } else if e.has_child("body", "jabber:client") {
            history += 1;
        }
    }
}

/// Reads a client's stream until told to stop, counting groupchat bodies; a sender sends its
/// next message whenever its previous one comes back (so at most `senders` messages per room
/// are in flight and no queue overflows).
fn drain(
    set: &mut JoinSet<()>,
    mut c: RawClient,
    me: String,
    to_send: usize,
    room: String,
    delivered: Arc<AtomicU64>,
    mut start: watch::Receiver<bool>,
) {
    set.spawn(async move {
        let mut sent = 0;
        if to_send > 0 {
            if start.wait_for(|s| *s).await.is_err() {
                return;
            }
            let _ = c.send_str(&msg(&room, sent)).await;
            sent += 1;
        }
        loop {
            let Ok(e) = c.next().await else { continue };
            if e.name() != "message" || !e.has_child("body", "jabber:client") {
                continue;
            }
            delivered.fetch_add(1, Ordering::Relaxed);
            if sent < to_send && e.attr("from") == Some(me.as_str()) {
                let _ = c.send_str(&msg(&room, sent)).await;
                sent += 1;
            }
        }
    });
}

fn msg(room: &str, n: usize) -> String {
    format!(
        "<message to='{room}@{ROOMS}' type='groupchat'><body>message {n} with a little text in it, as people write</body></message>"
    )
}

pub async fn run(p: &Params<'_>) -> anyhow::Result<serde_json::Value> {
    let tmp = tempfile::Builder::new()
        .prefix("tern-bench-muc-")
        .tempdir_in(p.dir)?;
    let db = tmp.path().join("tern.db");
    let big = p.big.max(p.per_room);
    let server = Arc::new(
        TestServer::start_with(|c| {
            c.storage.backend = "sqlite".into();
            c.storage.path = db.clone();
            c.muc.max_occupants = big;
            c.muc.default_room.max_users = big;
            c.muc.message_rate = 0.0;
            c.muc.max_rooms_per_user = 0;
            c.c2s.max_connections = 2 * big + p.rooms * p.per_room + 100;
        })
        .await?,
    );
    println!(
        "server on sqlite ({}), clients over STARTTLS in the same process",
        db.display()
    );

    // (a) One room filling up to `big` occupants.
    let t = Instant::now();
    let mut clients = login_many(&server, "a", p.big).await?;
    println!(
        "(a) {} clients logged in in {:.1} s",
        p.big,
        t.elapsed().as_secs_f64()
    );
    let delivered = Arc::new(AtomicU64::new(0));
    let (_start_tx, start_rx) = watch::channel(false);
    let mut readers = JoinSet::new();
    let mut joins = Vec::with_capacity(p.big);
    let last = clients.pop().expect("at least one client");
    let fill = Instant::now();
    for (i, mut c) in clients.into_iter().enumerate() {
        let j = join(&mut c, "big", &format!("n{i}")).await?;
        if i == 0 {
            // Accept the default configuration, then leave some history for the joiners.
            c.send_str(&format!(
                "<iq type='set' id='cfg' to='big@{ROOMS}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
            ))
            .await?;
            c.expect("config", |e| e.attr("id") == Some("cfg")).await?;
            for k in 0..p.history {
                c.send_str(&msg("big", k)).await?;
                c.expect("echo", |e| e.has_child("body", "jabber:client"))
                    .await?;
            }
        }
        joins.push(j.took);
        drain(
            &mut readers,
            c,
            String::new(),
            0,
            "big".into(),
            delivered.clone(),
            start_rx.clone(),
        );
    }
    let mut last = last;
    let nth = join(&mut last, "big", "last").await?;
    let filled = fill.elapsed();
    anyhow::ensure!(
        nth.presences == p.big,
        "the last joiner got {} presences, expected {}",
        nth.presences,
        p.big
    );
    let mut tail: Vec<Duration> = joins.iter().rev().take(100).copied().collect();
    let tail = Stats::of(&mut tail);
    println!(
        "(a) the {}th occupant: {:.1} ms until its {} presences, {} history messages and the subject \
         (the 100 joins before it: p50 {:.1} ms, max {:.1} ms); room filled in {:.1} s",
        p.big,
        common::ms(nth.took),
        nth.presences,
        nth.history,
        common::ms(tail.p50),
        common::ms(tail.max),
        filled.as_secs_f64()
    );
    readers.abort_all();
    while readers.join_next().await.is_some() {}
    drop(last);

    // (b) `rooms` rooms of `per_room` occupants; `senders` per room send `messages` each.
    let t = Instant::now();
    let clients = login_many(&server, "b", p.rooms * p.per_room).await?;
    println!(
        "(b) {} clients logged in in {:.1} s",
        clients.len(),
        t.elapsed().as_secs_f64()
    );
    let delivered = Arc::new(AtomicU64::new(0));
    let (start_tx, start_rx) = watch::channel(false);
    let mut readers = JoinSet::new();
    let mut it = clients.into_iter();
    for r in 0..p.rooms {
        let room = format!("r{r}");
        for i in 0..p.per_room {
            let mut c = it.next().expect("enough clients");
            join(&mut c, &room, &format!("n{i}")).await?;
            if i == 0 {
                c.send_str(&format!(
                    "<iq type='set' id='cfg' to='{room}@{ROOMS}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
                ))
                .await?;
                c.expect("config", |e| e.attr("id") == Some("cfg")).await?;
            }
            let me = format!("{room}@{ROOMS}/n{i}");
            let to_send = if i < p.senders { p.messages } else { 0 };
            drain(
                &mut readers,
                c,
                me,
                to_send,
                room.clone(),
                delivered.clone(),
                start_rx.clone(),
            );
        }
    }
    let expected = (p.rooms * p.senders * p.messages * p.per_room) as u64;
    let t = Instant::now();
    start_tx.send(true)?;
    let deadline = t + p.max_time;
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = t.elapsed();
    let got = delivered.load(Ordering::Relaxed);
    readers.abort_all();
    while readers.join_next().await.is_some() {}
    let per_sec = got as f64 / took.as_secs_f64();
    let msgs = (p.rooms * p.senders * p.messages) as f64 * got as f64 / expected as f64;
    println!(
        "(b) {} rooms x {} occupants, {} senders per room x {} messages: {} of {} deliveries in {:.2} s: \
         {:.0} deliveries/s ({:.0} room messages/s){}",
        p.rooms,
        p.per_room,
        p.senders,
        p.messages,
        got,
        expected,
        took.as_secs_f64(),
        per_sec,
        msgs / took.as_secs_f64(),
        if got < expected { " (time limit reached)" } else { "" }
    );
    match Arc::try_unwrap(server) {
        Ok(s) => s.stop().await,
        Err(_) => anyhow::bail!("server still shared"),
    }
    Ok(serde_json::json!({
        "scenario": "muc-local",
        "big_room": { "occupants": p.big, "history": nth.history, "presences": nth.presences,
                      "last_join_ms": common::ms(nth.took), "previous_100_joins": tail.json(),
                      "fill_secs": filled.as_secs_f64() },
        "rooms": { "rooms": p.rooms, "per_room": p.per_room, "senders": p.senders, "messages": p.messages,
                   "deliveries": got, "expected": expected, "secs": took.as_secs_f64(),
                   "deliveries_per_sec": per_sec, "messages_per_sec": msgs / took.as_secs_f64() },
    }))
}
