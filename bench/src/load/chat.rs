//! `chat`: pairs of online users sending each other messages to the bare JID.
//!
//! First each direction keeps `--window` messages in flight (closed loop) for `--secs`: the
//! delivered rate is the saturation rate. Then senders are paced (open loop) at fractions of
//! that rate and at fixed rates, and end-to-end latency is measured from the moment a message
//! is written to the moment its receiver has read it (sender and receiver are in this process;
//! the send time travels in the message id). Every phase drains and checks that every message
//! sent arrived (zero loss) and that no error came back. Server CPU per delivered message is
//! the server's utime+stime over the phase divided by the messages delivered.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use tokio::sync::Semaphore;
use tokio::time::{interval_at, sleep_until, MissedTickBehavior};

use super::client::Conn;
use super::{now_ns, sys, user, xml, LoadArgs};

/// `tern-bench chat`.
#[derive(Args, Clone, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Pairs of users (accounts PREFIX0 .. PREFIX(2*pairs-1)).
    #[arg(long, default_value_t = 50)]
    pub pairs: usize,
    /// Account name prefix.
    #[arg(long, default_value = "u")]
    pub prefix: String,
    /// Messages in flight per direction in the saturation phase.
    #[arg(long, default_value_t = 8)]
    pub window: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Paced phases at these fractions of the saturation rate.
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.8")]
    pub fractions: Vec<f64>,
    /// Paced phases at these absolute rates (messages per second, all pairs together).
    #[arg(long, value_delimiter = ',', default_value = "2000")]
    pub rates: Vec<f64>,
    /// Bytes of message body.
    #[arg(long, default_value_t = 100)]
    pub body: usize,
}

/// One direction of a pair.
#[derive(Default)]
struct Dir {
    sent: AtomicU64,
    received: AtomicU64,
    done: AtomicBool,
}

#[derive(Clone, Copy)]
enum Mode {
    Saturate,
    Paced { period: Duration, offset: Duration },
}

struct Outcome {
    conn: Conn,
    latencies: Vec<u32>,
    lags: Vec<u32>,
    in_window: u64,
    errors: u64,
}

struct Link {
    to: String,
    out: Arc<Dir>,
    inn: Arc<Dir>,
    /// Window of the direction this connection sends on, released by its receiver.
    out_window: Arc<Semaphore>,
    inn_window: Arc<Semaphore>,
}

async fn drive(
    mut c: Conn,
    l: Link,
    mode: Mode,
    start: Instant,
    stop: Instant,
    body: Arc<str>,
) -> Result<Outcome> {
    let mut latencies = Vec::new();
    let mut lags = Vec::new();
    let (mut in_window, mut errors, mut seq) = (0u64, 0u64, 0u64);
    let mut sending = true;
    let mut ticker = match mode {
        Mode::Paced { period, offset } => {
            let mut t = interval_at((start + offset).into(), period);
            t.set_missed_tick_behavior(MissedTickBehavior::Burst);
            Some(t)
        }
        Mode::Saturate => None,
    };
    let saturate = ticker.is_none();
    let stop_sleep = sleep_until(stop.into());
    tokio::pin!(stop_sleep);
    let mut check = tokio::time::interval(Duration::from_millis(20));
    let drain_deadline = stop + Duration::from_secs(10);
    enum Act {
        Read(bool, u64),
        Send(Option<Instant>),
        Stop,
        Check,
    }
    loop {
        let act = tokio::select! {
            r = async {
                let mut got = 0u64;
                let open = c.read_batch(|e| {
                    if xml::name(e) != b"message" {
                        return;
                    }
                    if xml::attr(e, "type") == Some(b"error") {
                        errors += 1;
                        return;
                    }
                    let Some(ts) = xml::attr(e, "id")
                        .and_then(|id| std::str::from_utf8(id).ok())
                        .and_then(|id| id.split_once('.'))
                        .and_then(|(_, ts)| ts.parse::<u64>().ok())
                    else {
                        return;
                    };
                    let now = now_ns();
                    latencies.push((now.saturating_sub(ts) / 1000) as u32);
                    if Instant::now() <= stop {
                        in_window += 1;
                    }
                    got += 1;
                }).await?;
                Ok::<_, anyhow::Error>((open, got))
            } => { let (open, got) = r?; Act::Read(open, got) }
            p = l.out_window.acquire(), if sending && saturate => {
                p?.forget();
                Act::Send(None)
            }
            tk = async {
                match ticker.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            }, if sending && !saturate => Act::Send(Some(tk.into_std())),
            _ = &mut stop_sleep, if sending => Act::Stop,
            _ = check.tick(), if !sending => Act::Check,
        };
        match act {
            Act::Read(open, got) => {
                l.inn.received.fetch_add(got, Ordering::Relaxed);
                if saturate {
                    l.inn_window.add_permits(got as usize);
                }
                if !open {
                    bail!("the server closed the stream");
                }
            }
            Act::Send(scheduled) => {
                seq += 1;
                let now = now_ns();
                if let Some(s) = scheduled {
                    lags.push((Instant::now().saturating_duration_since(s).as_micros()) as u32);
                }
                let msg = format!(
                    "<message to='{}' type='chat' id='{seq}.{now}'><body>{body}</body></message>",
                    l.to
                );
                c.send(msg.as_bytes()).await?;
                l.out.sent.fetch_add(1, Ordering::Relaxed);
            }
            Act::Stop => {
                sending = false;
                l.out.done.store(true, Ordering::Release);
            }
            Act::Check => {}
        }
        if !sending
            && ((l.inn.done.load(Ordering::Acquire)
                && l.inn.received.load(Ordering::Relaxed) >= l.inn.sent.load(Ordering::Relaxed))
                || Instant::now() > drain_deadline)
        {
            break;
        }
    }
    Ok(Outcome {
        conn: c,
        latencies,
        lags,
        in_window,
        errors,
    })
}

/// Runs one phase over all pairs; returns the connections and the phase's JSON.
async fn phase(
    a: &ChatArgs,
    conns: Vec<Conn>,
    mode_for: impl Fn(usize) -> Mode,
    label: &str,
    offered: Option<f64>,
) -> Result<(Vec<Conn>, serde_json::Value)> {
    let pid = a.load.pid();
    let body: Arc<str> = "x".repeat(a.body).into();
    let dirs: Vec<(Arc<Dir>, Arc<Dir>)> = (0..a.pairs)
        .map(|_| (Arc::new(Dir::default()), Arc::new(Dir::default())))
        .collect();
    let windows: Vec<(Arc<Semaphore>, Arc<Semaphore>)> = (0..a.pairs)
        .map(|_| {
            (
                Arc::new(Semaphore::new(a.window)),
                Arc::new(Semaphore::new(a.window)),
            )
        })
        .collect();
    let meter = sys::Meter::start(pid.as_deref());
    let start = Instant::now() + Duration::from_millis(200);
    let stop = start + Duration::from_secs(a.secs);
    let mut tasks = Vec::new();
    for (i, c) in conns.into_iter().enumerate() {
        let p = i / 2;
        let (ab, ba) = &dirs[p];
        let (wab, wba) = &windows[p];
        // Even i is A (sends on ab), odd is B.
        let link = if i % 2 == 0 {
            Link {
                to: format!("{}@{}", user(&a.prefix, 2 * p + 1), a.load.domain),
                out: ab.clone(),
                inn: ba.clone(),
                out_window: wab.clone(),
                inn_window: wba.clone(),
            }
        } else {
            Link {
                to: format!("{}@{}", user(&a.prefix, 2 * p), a.load.domain),
                out: ba.clone(),
                inn: ab.clone(),
                out_window: wba.clone(),
                inn_window: wab.clone(),
            }
        };
        tasks.push(tokio::spawn(drive(
            c,
            link,
            mode_for(i),
            start,
            stop,
            body.clone(),
        )));
    }
    let mut conns = Vec::new();
    let (mut lat, mut lags) = (Vec::new(), Vec::new());
    let (mut in_window, mut errors) = (0u64, 0u64);
    for t in tasks {
        let o = t.await??;
        conns.push(o.conn);
        lat.extend(o.latencies);
        lags.extend(o.lags);
        in_window += o.in_window;
        errors += o.errors;
    }
    let usage = meter.read();
    let sent: u64 = dirs
        .iter()
        .map(|(x, y)| x.sent.load(Ordering::Relaxed) + y.sent.load(Ordering::Relaxed))
        .sum();
    let delivered = lat.len() as u64;
    let rate = in_window as f64 / a.secs as f64;
    let cpu_per = usage.server_cpu.as_secs_f64() * 1e6 / delivered.max(1) as f64;
    let lost = sent.saturating_sub(delivered);
    let latency = super::latency_json(&mut lat);
    let lag = super::latency_json(&mut lags);
    eprintln!(
        "  {label:>12}: sent {sent}, delivered {delivered} ({rate:.0}/s), lost {lost}, errors {errors}; latency p50 {} p99 {} p99.9 {} max {} ms; server CPU {cpu_per:.1} us/msg ({:.0}%); generator {:.0}%; load {}",
        latency["p50_ms"],
        latency["p99_ms"],
        latency["p999_ms"],
        latency["max_ms"],
        usage.server_pct(),
        usage.self_pct(),
        crate::common::loadavg()
    );
    Ok((
        conns,
        serde_json::json!({
            "phase": label,
            "offered_per_s": offered,
            "secs": a.secs,
            "sent": sent,
            "delivered": delivered,
            "delivered_per_s": rate,
            "lost": lost,
            "errors": errors,
            "zero_loss": lost == 0 && errors == 0,
            "latency": latency,
            "sender_lag": lag,
            "server_cpu_us_per_msg": cpu_per,
            "usage": usage.json(),
            "loadavg": crate::common::loadavg(),
        }),
    ))
}

/// The scenario; prints one JSON line.
pub async fn run(a: &ChatArgs) -> Result<serde_json::Value> {
    let t = a.load.target()?;
    let n = 2 * a.pairs;
    let pw: Arc<str> = a.load.password.clone().into();
    let logins = super::bounded(n, a.load.connect_concurrency, |i| {
        let (t, pw) = (t.clone(), pw.clone());
        let name = user(&a.prefix, i);
        async move { Conn::login(&t, &name, &pw, "chat", true).await }
    })
    .await;
    let mut conns = Vec::with_capacity(n);
    for r in logins {
        conns.push(r?.0);
    }
    eprintln!("  {n} users online ({} pairs)", a.pairs);
    let mut phases = Vec::new();
    let (c, sat) = phase(a, conns, |_| Mode::Saturate, "saturation", None).await?;
    let sat_rate = sat["delivered_per_s"].as_f64().unwrap_or(0.0);
    phases.push(sat.clone());
    conns = c;
    let mut points: Vec<(String, f64)> = a
        .fractions
        .iter()
        .map(|f| (format!("{:.0}%", f * 100.0), f * sat_rate))
        .collect();
    points.extend(a.rates.iter().map(|r| (format!("{r:.0}/s"), *r)));
    for (label, rate) in points {
        if rate < 1.0 {
            continue;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let senders = n as f64;
        let period = Duration::from_secs_f64(senders / rate);
        let (c, p) = phase(
            a,
            conns,
            |i| Mode::Paced {
                period,
                offset: period.mul_f64(i as f64 / senders),
            },
            &label,
            Some(rate),
        )
        .await?;
        conns = c;
        phases.push(p);
    }
    let closing: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::spawn(c.close(Duration::from_secs(2))))
        .collect();
    for h in closing {
        let _ = h.await;
    }
    let mut m = a.load.head("chat");
    m.insert("pairs".into(), a.pairs.into());
    m.insert("window".into(), a.window.into());
    m.insert("body_bytes".into(), a.body.into());
    m.insert("saturation_per_s".into(), sat_rate.into());
    m.insert(
        "saturation_cpu_us_per_msg".into(),
        sat["server_cpu_us_per_msg"].clone(),
    );
    m.insert(
        "zero_loss".into(),
        phases.iter().all(|p| p["zero_loss"] == true).into(),
    );
    m.insert("phases".into(), phases.into());
    Ok(super::emit(m))
}
