//! `presence`: U online users, each with `--contacts` mutual ("both") subscriptions (a ring:
//! user i is subscribed with the `contacts/2` users on either side), all change presence at
//! once; the figure is the time until every contact has received every change (or until the
//! server goes quiet), the deliveries per second, and deliveries per server CPU-second.
//!
//! Rosters are built through the protocol the first time (RFC 6121 §3: each user sends
//! `subscribe` to its contacts and approves every `subscribe` it receives), so the same
//! steps work on every server; a later run finds them in place at login.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use tokio::sync::watch;

use super::client::Conn;
use super::{sys, user, xml, LoadArgs};

/// `tern-bench presence`.
#[derive(Args, Clone, Debug)]
pub struct PresenceArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Users (accounts PREFIX0 .. PREFIX(N-1)).
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Account name prefix (kept apart from the other scenarios' accounts: these get rosters).
    #[arg(long, default_value = "p")]
    pub prefix: String,
    /// Contacts on each roster (even; at most users - 1).
    #[arg(long, default_value_t = 100)]
    pub contacts: usize,
    /// Presence changes by every user, one after the other.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Subscription requests per second, all users together, while rosters are built (a
    /// burst of 100,000 at once takes some servers minutes to dig out of).
    #[arg(long, default_value_t = 1000.0)]
    pub setup_rate: f64,
    /// Silence that ends a round (or the roster setup) early, in seconds.
    #[arg(long, default_value_t = 3)]
    pub quiet_secs: u64,
    /// Longest wait for one round or for the roster setup, in seconds.
    #[arg(long, default_value_t = 300)]
    pub round_max_secs: u64,
}

/// What the main task tells the connection tasks to do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    Wait,
    Subscribe,
    Round(usize),
    Quit,
}

struct Shared {
    /// Stanzas of the current step received so far, and the time of the last one.
    counted: AtomicU64,
    /// This round's changes received again from the same contact, and from non-contacts
    /// (a stale roster item from an earlier run with other sizes): neither is counted.
    repeated: AtomicU64,
    strays: AtomicU64,
    last_ns: AtomicU64,
    /// Users whose every contact reached subscription "both".
    complete: AtomicUsize,
    /// Every element received by any user: silence here means the server is quiet.
    activity: AtomicU64,
}

fn contacts_of(i: usize, users: usize, contacts: usize) -> Vec<usize> {
    let half = contacts / 2;
    (1..=half)
        .flat_map(|d| [(i + d) % users, (i + users - d) % users])
        .collect()
}

async fn run_user(
    mut c: Conn,
    contacts: Vec<String>,
    already: Vec<String>,
    mut steps: watch::Receiver<Step>,
    shared: Arc<Shared>,
    setup_period: Duration,
) -> Result<()> {
    let wanted: HashSet<&str> = contacts.iter().map(String::as_str).collect();
    // Contacts already "both" at login (an earlier run, perhaps cut short, made them).
    let mut both: HashSet<String> = already
        .into_iter()
        .filter(|j| wanted.contains(j.as_str()))
        .collect();
    if both.len() == wanted.len() {
        shared.complete.fetch_add(1, Ordering::Relaxed);
    }
    let mut step = Step::Wait;
    let mut tag = String::new();
    // Contacts whose change of this round arrived.
    let mut heard: HashSet<Vec<u8>> = HashSet::new();
    // Contacts whose change of the next round arrived before this task saw that round begin
    // (a fast server delivers within the time it takes to wake every client task); they count
    // for that round once this task reaches it.
    let mut next_tag = String::from("round 0");
    let mut early: HashSet<Vec<u8>> = HashSet::new();
    let mut replies = Vec::<u8>::new();
    // Subscription requests still to send, one per tick (the setup is paced).
    let mut to_ask: Vec<String> = Vec::new();
    let mut ask_tick: Option<tokio::time::Interval> = None;
    // The server reflects our own change to us (RFC 6121 §4.2.2); only contacts' count.
    let me = c
        .jid
        .split('/')
        .next()
        .unwrap_or_default()
        .as_bytes()
        .to_vec();
    // TERN_BENCH_TRACE=JID prints what that user receives (to see why a server differs).
    let c_jid = c.jid.clone();
    let trace =
        std::env::var("TERN_BENCH_TRACE").is_ok_and(|j| c_jid.starts_with(&format!("{j}/")));
    let mine = |from: &[u8]| from.starts_with(&me) && from.get(me.len()).is_none_or(|&b| b == b'/');
    loop {
        tokio::select! {
            r = c.read_batch(|e| {
                shared.activity.fetch_add(1, Ordering::Relaxed);
                if trace {
                    eprintln!("  {} <- {}", c_jid, String::from_utf8_lossy(&e[..e.len().min(400)]));
                }
                let name = xml::name(e);
                if name == b"iq" {
                    if xml::attr(e, "type") == Some(b"set") {
                        let id = xml::attr(e, "id").unwrap_or_default();
                        replies.extend_from_slice(b"<iq type='result' id='");
                        replies.extend_from_slice(id);
                        replies.extend_from_slice(b"'/>");
                        if xml::contains(e, b"subscription='both'")
                            || xml::contains(e, b"subscription=\"both\"")
                        {
                            if let Some(j) = xml::find(e, b"jid=").and_then(|p| {
                                let rest = &e[p + 5..];
                                rest.iter().position(|&b| b == b'\'' || b == b'"').map(|q| &rest[..q])
                            }) {
                                let j = String::from_utf8_lossy(j).into_owned();
                                if wanted.contains(j.as_str()) && both.insert(j) && both.len() == wanted.len() {
                                    shared.complete.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                } else if name == b"presence" {
                    match xml::attr(e, "type") {
                        Some(b"subscribe") => {
                            let from = xml::attr(e, "from").unwrap_or_default();
                            replies.extend_from_slice(b"<presence type='subscribed' to='");
                            replies.extend_from_slice(from);
                            replies.extend_from_slice(b"'/>");
                        }
                        None if !mine(xml::attr(e, "from").unwrap_or_default())
                            && ((!tag.is_empty() && xml::text_of(e, "status") == Some(tag.as_bytes()))
                                || xml::text_of(e, "status") == Some(next_tag.as_bytes())) => {
                                let from = xml::attr(e, "from").unwrap_or_default();
                                let bare = from.split(|&b| b == b'/').next().unwrap_or_default();
                                let known = std::str::from_utf8(bare).is_ok_and(|b| wanted.contains(b));
                                let ahead = xml::text_of(e, "status") == Some(next_tag.as_bytes());
                                if !known {
                                    shared.strays.fetch_add(1, Ordering::Relaxed);
                                } else if ahead {
                                    early.insert(bare.to_vec());
                                } else if !heard.insert(bare.to_vec()) {
                                    shared.repeated.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    shared.counted.fetch_add(1, Ordering::Relaxed);
                                    shared.last_ns.store(super::now_ns(), Ordering::Relaxed);
                                }
                        }
                        _ => {}
                    }
                }
            }) => {
                if !r? {
                    bail!("the server closed the stream");
                }
                if !replies.is_empty() {
                    c.send(&replies).await?;
                    replies.clear();
                }
            }
            _ = async {
                match ask_tick.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            } => {
                match to_ask.pop() {
                    Some(j) => c.send(format!("<presence type='subscribe' to='{j}'/>").as_bytes()).await?,
                    None => ask_tick = None,
                }
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
                    Step::Subscribe => {
                        to_ask = contacts.iter().filter(|j| !both.contains(*j)).cloned().collect();
                        let mut t = tokio::time::interval(setup_period);
                        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        ask_tick = Some(t);
                    }
                    Step::Round(r) => {
                        report_missing(&tag, &c_jid, &wanted, &heard);
                        tag = format!("round {r}");
                        heard.clear();
                        if next_tag == tag {
                            heard = std::mem::take(&mut early);
                            if !heard.is_empty() {
                                shared.counted.fetch_add(heard.len() as u64, Ordering::Relaxed);
                                shared.last_ns.store(super::now_ns(), Ordering::Relaxed);
                            }
                        }
                        early.clear();
                        next_tag = format!("round {}", r + 1);
                        let show = if r % 2 == 0 { "away" } else { "xa" };
                        c.send(format!("<presence><show>{show}</show><status>{tag}</status></presence>").as_bytes()).await?;
                    }
                    Step::Quit => {
                        report_missing(&tag, &c_jid, &wanted, &heard);
                        break;
                    }
                    Step::Wait => {}
                }
            }
        }
    }
    c.close(Duration::from_secs(2)).await;
    Ok(())
}

/// Names (on stderr) the contacts whose change of the round never reached this user, so that
/// a server's losses can be followed up.
fn report_missing(tag: &str, me: &str, wanted: &HashSet<&str>, heard: &HashSet<Vec<u8>>) {
    if tag.is_empty() || heard.len() >= wanted.len() {
        return;
    }
    let mut missing: Vec<&str> = wanted
        .iter()
        .filter(|j| !heard.contains(j.as_bytes()))
        .copied()
        .collect();
    missing.sort_unstable();
    let n = missing.len();
    missing.truncate(5);
    eprintln!("  {tag}: {me} never got the change of {n} contact(s): {missing:?}");
}

/// Waits until `done()` or until nothing was counted for `quiet`, at most `max`.
async fn settle(shared: &Shared, quiet: Duration, max: Duration, done: impl Fn() -> bool) {
    let t0 = Instant::now();
    let mut last = shared.activity.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while !done() && t0.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = shared.activity.load(Ordering::Relaxed);
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= quiet {
            break;
        }
    }
}

/// The scenario; prints one JSON line.
pub async fn run(a: &PresenceArgs) -> Result<serde_json::Value> {
    if !a.contacts.is_multiple_of(2) || a.contacts >= a.users {
        bail!("--contacts must be even and below --users");
    }
    let t = a.load.target()?;
    let pid = a.load.pid();
    let pw: Arc<str> = a.load.password.clone().into();
    let t0 = Instant::now();
    let logins = super::bounded(a.users, a.load.connect_concurrency, |i| {
        let (t, pw) = (t.clone(), pw.clone());
        let name = user(&a.prefix, i);
        async move { Conn::login(&t, &name, &pw, "presence", false).await }
    })
    .await;
    let mut conns = Vec::new();
    let mut have_rosters = true;
    for (i, r) in logins.into_iter().enumerate() {
        let (c, info) = r?;
        let mine: HashSet<String> = contacts_of(i, a.users, a.contacts)
            .into_iter()
            .map(|k| format!("{}@{}", user(&a.prefix, k), a.load.domain))
            .collect();
        // Items alone are not enough: a setup cut short leaves "none" items behind.
        have_rosters &= mine.iter().all(|j| info.both.contains(j));
        conns.push((c, info.both));
    }
    eprintln!(
        "  {} users online in {:.1} s; rosters {}",
        a.users,
        t0.elapsed().as_secs_f64(),
        if have_rosters {
            "in place"
        } else {
            "to be built"
        }
    );
    let shared = Arc::new(Shared {
        counted: AtomicU64::new(0),
        repeated: AtomicU64::new(0),
        strays: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
        complete: AtomicUsize::new(0),
        activity: AtomicU64::new(0),
    });
    let (tx, rx) = watch::channel(Step::Wait);
    // Each user asks one contact per period, so all together ask `setup_rate` per second.
    let setup_period = Duration::from_secs_f64(a.users as f64 / a.setup_rate.max(1.0));
    let mut tasks = Vec::new();
    for (i, (c, already)) in conns.into_iter().enumerate() {
        let contacts = contacts_of(i, a.users, a.contacts)
            .into_iter()
            .map(|k| format!("{}@{}", user(&a.prefix, k), a.load.domain))
            .collect();
        tasks.push(tokio::spawn(run_user(
            c,
            contacts,
            already,
            rx.clone(),
            shared.clone(),
            setup_period,
        )));
    }
    let quiet = Duration::from_secs(a.quiet_secs);
    let max = Duration::from_secs(a.round_max_secs);
    // Initial presence floods (probes and broadcasts) end before anything is measured.
    settle(&shared, quiet, max, || false).await;
    let mut setup_secs = None;
    if !have_rosters {
        let ts = Instant::now();
        tx.send(Step::Subscribe)?;
        let users = a.users;
        let sh = shared.clone();
        settle(&shared, Duration::from_secs(10), max, move || {
            sh.complete.load(Ordering::Relaxed) >= users
        })
        .await;
        let complete = shared.complete.load(Ordering::Relaxed);
        setup_secs = Some(ts.elapsed().as_secs_f64());
        eprintln!(
            "  roster setup: {complete}/{} users with {} 'both' contacts after {:.1} s",
            a.users,
            a.contacts,
            ts.elapsed().as_secs_f64()
        );
        settle(&shared, quiet, max, || false).await;
    }
    let expected = (a.users * a.contacts) as u64;
    let mut rounds = Vec::new();
    for r in 0..a.rounds {
        shared.counted.store(0, Ordering::Relaxed);
        shared.repeated.store(0, Ordering::Relaxed);
        shared.strays.store(0, Ordering::Relaxed);
        let meter = sys::Meter::start(pid.as_deref());
        let start_ns = super::now_ns();
        tx.send(Step::Round(r))?;
        let sh = shared.clone();
        settle(&shared, quiet, max, move || {
            sh.counted.load(Ordering::Relaxed) >= expected
        })
        .await;
        // Whatever the server still does after the last delivery counts as the round's CPU.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let usage = meter.read();
        let got = shared.counted.load(Ordering::Relaxed);
        let repeated = shared.repeated.load(Ordering::Relaxed);
        let strays = shared.strays.load(Ordering::Relaxed);
        let secs = shared
            .last_ns
            .load(Ordering::Relaxed)
            .saturating_sub(start_ns) as f64
            / 1e9;
        let per_cpu_s = got as f64 / usage.server_cpu.as_secs_f64().max(0.01);
        eprintln!(
            "  round {r}: {got}/{expected} presences delivered in {secs:.2} s ({:.0}/s), server CPU {:.2} s ({per_cpu_s:.0} deliveries per CPU-second), repeated {repeated}, from non-contacts {strays}, generator {:.0}%, load {}",
            got as f64 / secs.max(1e-9),
            usage.server_cpu.as_secs_f64(),
            usage.self_pct(),
            crate::common::loadavg()
        );
        rounds.push(serde_json::json!({
            "round": r,
            "expected": expected,
            "delivered": got,
            "repeated": repeated,
            "from_non_contacts": strays,
            "complete": got >= expected,
            "secs_until_quiet": secs,
            "deliveries_per_s": got as f64 / secs.max(1e-9),
            "deliveries_per_cpu_s": per_cpu_s,
            "usage": usage.json(),
            "loadavg": crate::common::loadavg(),
        }));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tx.send(Step::Quit)?;
    for h in tasks {
        h.await??;
    }
    let best = |k: &str| {
        let mut v: Vec<f64> = rounds.iter().filter_map(|r| r[k].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let mut m = a.load.head("presence");
    m.insert("users".into(), a.users.into());
    m.insert("contacts".into(), a.contacts.into());
    m.insert("roster_setup_secs".into(), setup_secs.into());
    m.insert(
        "median_secs_until_quiet".into(),
        best("secs_until_quiet").into(),
    );
    m.insert(
        "median_deliveries_per_s".into(),
        best("deliveries_per_s").into(),
    );
    m.insert(
        "median_deliveries_per_cpu_s".into(),
        best("deliveries_per_cpu_s").into(),
    );
    m.insert("rounds".into(), rounds.into());
    Ok(super::emit(m))
}
