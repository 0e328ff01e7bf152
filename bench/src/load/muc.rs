//! `muc`: multi-user chat fan-out over the network, against any server (XEP-0045).
//!
//! R rooms of N occupants each: the first occupant of a room creates it (and, on status 201,
//! accepts the default configuration with an empty `muc#owner` form, which unlocks the room
//! on every server), then the others enter at once; a join ends with the occupant's own
//! presence (status 110). Once every room is full and the join floods are over, S occupants
//! per room send M messages each, keeping `--window` messages in flight (the next one goes
//! when one of its own comes back, so no server queue overflows). Every occupant counts the
//! room messages it receives: the figures are deliveries per second, deliveries per server
//! CPU-second (the server's utime + stime over the phase), the latency from send to each
//! delivery (the send time travels in the body), and losses (every occupant must receive
//! every message, its own included).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use tokio::sync::watch;

use super::client::Conn;
use super::{now_ns, sys, user, xml, LoadArgs};

const NS_MUC: &str = "http://jabber.org/protocol/muc";
const NS_OWNER: &str = "http://jabber.org/protocol/muc#owner";

/// `tern-bench muc`.
#[derive(Args, Clone, Debug)]
pub struct MucLoadArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Rooms.
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Occupants per room (accounts PREFIX0 .. PREFIX(rooms*occupants-1)).
    #[arg(long, default_value_t = 50)]
    pub occupants: usize,
    /// Account name prefix.
    #[arg(long, default_value = "u")]
    pub prefix: String,
    /// Occupants per room that send.
    #[arg(long, default_value_t = 5)]
    pub senders: usize,
    /// Messages each sender sends (the default keeps the slowest peer here under two minutes).
    #[arg(long, default_value_t = 60)]
    pub messages: usize,
    /// Messages each sender keeps in flight (sent, not yet reflected to it).
    #[arg(long, default_value_t = 2)]
    pub window: usize,
    /// Bytes of padding in each message body (after the send time).
    #[arg(long, default_value_t = 100)]
    pub body: usize,
    /// The MUC service (default: conference.DOMAIN).
    #[arg(long)]
    pub service: Option<String>,
}

/// What the main task tells the occupants to do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    Wait,
    Join,
    Send,
    Quit,
}

#[derive(Default)]
struct Shared {
    joined: AtomicUsize,
    join_us: Mutex<Vec<u32>>,
    delivered: AtomicU64,
    last_ns: AtomicU64,
    /// Every element received by anyone: silence here means the server is quiet.
    activity: AtomicU64,
    errors: AtomicU64,
    failure: Mutex<Option<String>>,
}

/// One occupant's part.
struct Occupant {
    room: String,
    /// The occupant JID, `room@service/nick`.
    me: String,
    creator: bool,
    to_send: usize,
    window: usize,
    padding: Arc<str>,
}

/// What an occupant saw, for the loss check.
struct Seen {
    got: u64,
    latencies: Vec<u32>,
}

fn message(room: &str, padding: &str) -> String {
    format!(
        "<message to='{room}' type='groupchat'><body>b {} {padding}</body></message>",
        now_ns()
    )
}

async fn occupant(
    mut c: Conn,
    o: Occupant,
    mut steps: watch::Receiver<Step>,
    ready_tx: Option<watch::Sender<bool>>,
    mut ready_rx: watch::Receiver<bool>,
    shared: Arc<Shared>,
) -> Result<Seen> {
    let mut step = Step::Wait;
    let mut seen = Seen {
        got: 0,
        latencies: Vec::new(),
    };
    let mut join_sent: Option<Instant> = None;
    let mut joined = false;
    let mut sent = 0usize;
    let mut out = Vec::<u8>::new();
    let me = o.me.as_bytes().to_vec();
    let room = o.room.as_bytes().to_vec();
    let join = format!(
        "<presence to='{}'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>",
        o.me
    );
    loop {
        let waiting_room = step == Step::Join && join_sent.is_none() && !o.creator;
        tokio::select! {
            r = c.read_batch(|e| {
                shared.activity.fetch_add(1, Ordering::Relaxed);
                let name = xml::name(e);
                let from = xml::attr(e, "from").unwrap_or_default();
                let ty = xml::attr(e, "type");
                if name == b"message" {
                    if ty == Some(b"error") {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    if ty != Some(b"groupchat") || !from.starts_with(&room) {
                        return;
                    }
                    let Some(ts) = xml::text_of(e, "body")
                        .and_then(|b| b.strip_prefix(b"b "))
                        .and_then(|b| b.split(|&c| c == b' ').next())
                        .and_then(|t| std::str::from_utf8(t).ok()?.parse::<u64>().ok())
                    else {
                        return;
                    };
                    let now = now_ns();
                    seen.got += 1;
                    seen.latencies.push((now.saturating_sub(ts) / 1000) as u32);
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                    shared.last_ns.fetch_max(now, Ordering::Relaxed);
                    if from == me.as_slice() && sent < o.to_send {
                        out.extend_from_slice(message(&o.room, &o.padding).as_bytes());
                        sent += 1;
                    }
                } else if name == b"presence" && from == me.as_slice() {
                    if ty == Some(b"error") {
                        *shared.failure.lock().expect("not poisoned") = Some(format!(
                            "{}: join refused: {}", o.me, String::from_utf8_lossy(e)));
                        return;
                    }
                    let status = |code: &[u8]| {
                        xml::contains(e, &[b"code='", code, b"'"].concat())
                            || xml::contains(e, &[b"code=\"", code, b"\""].concat())
                    };
                    if !joined && status(b"110") {
                        joined = true;
                        if let Some(t) = join_sent {
                            shared.join_us.lock().expect("not poisoned")
                                .push(t.elapsed().as_micros() as u32);
                        }
                        shared.joined.fetch_add(1, Ordering::Relaxed);
                        if o.creator {
                            if status(b"201") {
                                // A new room is locked until its owner configures it
                                // (XEP-0045 §10.1.2); an empty submitted form takes the defaults.
                                out.extend_from_slice(format!(
                                    "<iq type='set' id='cfg' to='{}'><query xmlns='{NS_OWNER}'>\
                                     <x xmlns='jabber:x:data' type='submit'/></query></iq>",
                                    o.room).as_bytes());
                            } else if let Some(r) = &ready_tx {
                                // The room was there already (unlocked).
                                let _ = r.send(true);
                            }
                        }
                    }
                } else if name == b"iq" {
                    if xml::attr(e, "id") == Some(b"cfg") {
                        if ty == Some(b"result") {
                            if let Some(r) = &ready_tx {
                                let _ = r.send(true);
                            }
                        } else {
                            *shared.failure.lock().expect("not poisoned") = Some(format!(
                                "{}: room configuration refused: {}", o.room, String::from_utf8_lossy(e)));
                        }
                    } else if matches!(ty, Some(b"get") | Some(b"set")) {
                        // Roster pushes, pings: acknowledge (RFC 6120 §8.2.3 wants an answer).
                        let id = xml::attr(e, "id").unwrap_or_default();
                        out.extend_from_slice(b"<iq type='result' id='");
                        out.extend_from_slice(id);
                        out.extend_from_slice(b"'/>");
                    }
                }
            }) => {
                if !r? {
                    bail!("{}: the server closed the stream", o.me);
                }
                if !out.is_empty() {
                    c.send(&out).await?;
                    out.clear();
                }
            }
            r = async { ready_rx.wait_for(|r| *r).await.map(|_| ()) }, if waiting_room => {
                r?;
                join_sent = Some(Instant::now());
                c.send(join.as_bytes()).await?;
            }
            ch = steps.changed() => {
                if ch.is_err() {
                    break;
                }
                let s = *steps.borrow_and_update();
                if s == step {
                    continue;
                }
                step = s;
                match step {
                    Step::Join if o.creator => {
                        join_sent = Some(Instant::now());
                        c.send(join.as_bytes()).await?;
                    }
                    Step::Send => {
                        let n = o.window.min(o.to_send);
                        for _ in 0..n {
                            out.extend_from_slice(message(&o.room, &o.padding).as_bytes());
                        }
                        sent += n;
                        if !out.is_empty() {
                            c.send(&out).await?;
                            out.clear();
                        }
                    }
                    Step::Quit => break,
                    Step::Wait | Step::Join => {}
                }
            }
        }
    }
    c.close(Duration::from_secs(2)).await;
    Ok(seen)
}

/// Waits until `done()`, a task failed, or nothing arrived for `quiet`; at most `max`.
async fn settle(
    shared: &Shared,
    quiet: Duration,
    max: Duration,
    done: impl Fn() -> bool,
) -> Result<()> {
    let t0 = Instant::now();
    let mut last = shared.activity.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while !done() && t0.elapsed() < max {
        if let Some(f) = shared.failure.lock().expect("not poisoned").clone() {
            bail!(f);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = shared.activity.load(Ordering::Relaxed);
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= quiet {
            break;
        }
    }
    Ok(())
}

/// The scenario; prints one JSON line. `max_secs` bounds the joins and the messages, each.
pub async fn run(a: &MucLoadArgs, max_secs: u64) -> Result<serde_json::Value> {
    if a.rooms == 0 || a.occupants == 0 || a.senders > a.occupants {
        bail!("need rooms and occupants, and --senders at most --occupants");
    }
    let t = a.load.target()?;
    let pid = a.load.pid();
    let pw: Arc<str> = a.load.password.clone().into();
    let service = a
        .service
        .clone()
        .unwrap_or_else(|| format!("conference.{}", a.load.domain));
    let n = a.rooms * a.occupants;
    let t0 = Instant::now();
    let logins = super::bounded(n, a.load.connect_concurrency, |i| {
        let (t, pw) = (t.clone(), pw.clone());
        let name = user(&a.prefix, i);
        async move { Conn::login(&t, &name, &pw, "muc", false).await }
    })
    .await;
    eprintln!("  {n} users online in {:.1} s", t0.elapsed().as_secs_f64());
    // Fresh rooms every run: a room left from an earlier run could be configured differently.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let shared = Arc::new(Shared::default());
    let (tx, rx) = watch::channel(Step::Wait);
    let padding: Arc<str> = "x".repeat(a.body).into();
    let mut tasks = Vec::with_capacity(n);
    let mut conns = logins.into_iter();
    for r in 0..a.rooms {
        let room = format!("bench{run_id}-r{r}@{service}");
        let (ready_tx, ready_rx) = watch::channel(false);
        let mut ready_tx = Some(ready_tx);
        for i in 0..a.occupants {
            let (c, _) = conns.next().expect("one login per occupant")?;
            let o = Occupant {
                me: format!("{room}/n{i}"),
                room: room.clone(),
                creator: i == 0,
                to_send: if i < a.senders { a.messages } else { 0 },
                window: a.window.max(1),
                padding: padding.clone(),
            };
            tasks.push(tokio::spawn(occupant(
                c,
                o,
                rx.clone(),
                if i == 0 { ready_tx.take() } else { None },
                ready_rx.clone(),
                shared.clone(),
            )));
        }
    }
    let max = Duration::from_secs(max_secs);
    let quiet = Duration::from_secs(2);
    // Initial presence answers end before the joins.
    settle(&shared, Duration::from_millis(500), max, || false).await?;

    let meter = sys::Meter::start(pid.as_deref());
    let tj = Instant::now();
    tx.send(Step::Join)?;
    let sh = shared.clone();
    settle(&shared, max, max, move || {
        sh.joined.load(Ordering::Relaxed) >= n
    })
    .await?;
    let join_secs = tj.elapsed().as_secs_f64();
    let joined = shared.joined.load(Ordering::Relaxed);
    // The presence floods of the last joins end before the messages start.
    settle(&shared, Duration::from_millis(500), max, || false).await?;
    let join_usage = meter.read();
    let mut join_us = std::mem::take(&mut *shared.join_us.lock().expect("not poisoned"));
    let join_lat = super::latency_json(&mut join_us);
    eprintln!(
        "  joins: {joined}/{n} occupants in {join_secs:.2} s (join p50 {} ms, p99 {} ms), server CPU {:.2} s, load {}",
        join_lat["p50_ms"],
        join_lat["p99_ms"],
        join_usage.server_cpu.as_secs_f64(),
        crate::common::loadavg()
    );
    if joined < n {
        bail!("only {joined} of {n} occupants joined in {max_secs} s");
    }

    let expected_each = (a.senders * a.messages) as u64;
    let expected = expected_each * n as u64;
    shared.delivered.store(0, Ordering::Relaxed);
    let meter = sys::Meter::start(pid.as_deref());
    let start_ns = now_ns();
    tx.send(Step::Send)?;
    let sh = shared.clone();
    settle(&shared, quiet, max, move || {
        sh.delivered.load(Ordering::Relaxed) >= expected
    })
    .await?;
    // Whatever the server still does after the last delivery counts as the phase's CPU.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let usage = meter.read();
    let got = shared.delivered.load(Ordering::Relaxed);
    let secs = shared
        .last_ns
        .load(Ordering::Relaxed)
        .saturating_sub(start_ns) as f64
        / 1e9;
    tx.send(Step::Quit)?;
    let (mut lost, mut extra, mut short_occupants) = (0u64, 0u64, 0usize);
    let mut lat = Vec::with_capacity(got as usize);
    for h in tasks {
        let s = h.await??;
        lost += expected_each.saturating_sub(s.got);
        extra += s.got.saturating_sub(expected_each);
        short_occupants += usize::from(s.got < expected_each);
        lat.extend(s.latencies);
    }
    let errors = shared.errors.load(Ordering::Relaxed);
    let per_s = got as f64 / secs.max(1e-9);
    let per_cpu_s = got as f64 / usage.server_cpu.as_secs_f64().max(0.01);
    let latency = super::latency_json(&mut lat);
    eprintln!(
        "  messages: {got}/{expected} deliveries in {secs:.2} s ({per_s:.0}/s, {:.0} room messages/s), \
         server CPU {:.2} s ({per_cpu_s:.0} deliveries per CPU-second), latency p50 {} ms p99 {} ms, \
         lost {lost} (occupants short: {short_occupants}), duplicates {extra}, errors {errors}, generator {:.0}%, load {}",
        per_s / a.occupants as f64,
        usage.server_cpu.as_secs_f64(),
        latency["p50_ms"],
        latency["p99_ms"],
        usage.self_pct(),
        crate::common::loadavg()
    );
    let mut m = a.load.head("muc");
    m.insert("rooms".into(), a.rooms.into());
    m.insert("occupants".into(), a.occupants.into());
    m.insert("senders".into(), a.senders.into());
    m.insert("messages".into(), a.messages.into());
    m.insert("window".into(), a.window.into());
    m.insert("body_bytes".into(), a.body.into());
    m.insert("join_secs".into(), join_secs.into());
    m.insert("join_latency".into(), join_lat);
    m.insert("join_usage".into(), join_usage.json());
    m.insert("expected".into(), expected.into());
    m.insert("delivered".into(), got.into());
    m.insert("complete".into(), (got >= expected && lost == 0).into());
    m.insert("lost".into(), lost.into());
    m.insert("duplicates".into(), extra.into());
    m.insert("errors".into(), errors.into());
    m.insert("secs".into(), secs.into());
    m.insert("deliveries_per_s".into(), per_s.into());
    m.insert(
        "room_messages_per_s".into(),
        (per_s / a.occupants as f64).into(),
    );
    m.insert("deliveries_per_cpu_s".into(), per_cpu_s.into());
    m.insert(
        "server_cpu_us_per_delivery".into(),
        (usage.server_cpu.as_secs_f64() * 1e6 / (got.max(1) as f64)).into(),
    );
    m.insert("latency".into(), latency);
    m.insert("usage".into(), usage.json());
    Ok(super::emit(m))
}
