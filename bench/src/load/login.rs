//! `login`: complete logins per second (TCP, STARTTLS, SASL, bind, roster get, initial
//! presence until the server reflects it) at rising concurrency, each followed by
//! `</stream:stream>` and closing the connection (not waiting for the server's close: servers
//! differ widely in how long they take to answer it); p50/p99 login time and server CPU per
//! login at each level.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;

use super::client::Conn;
use super::{sys, user, LoadArgs};

/// `tern-bench login`.
#[derive(Args, Clone, Debug)]
pub struct LoginArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Concurrency levels (simultaneous clients logging in and out in a loop).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    pub concurrency: Vec<usize>,
    /// Accounts used (PREFIX0 .. PREFIX(N-1)); client k uses those congruent to k.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Account name prefix.
    #[arg(long, default_value = "u")]
    pub prefix: String,
    /// Seconds per concurrency level.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Most logins per level.
    #[arg(long, default_value_t = 20_000)]
    pub max_logins: usize,
}

/// One concurrency level.
async fn level(a: &LoginArgs, conc: usize) -> Result<serde_json::Value> {
    let t = a.load.target()?;
    let pid = a.load.pid();
    let stop = Instant::now() + Duration::from_secs(a.secs);
    let started = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Vec::<u32>::new()));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let meter = sys::Meter::start(pid.as_deref());
    let mut tasks = Vec::new();
    for k in 0..conc {
        let (t, started, errors, samples, first_error) = (
            t.clone(),
            started.clone(),
            errors.clone(),
            samples.clone(),
            first_error.clone(),
        );
        let pw = a.load.password.clone();
        let prefix = a.prefix.clone();
        let (users, max) = (a.users.max(conc), a.max_logins);
        tasks.push(tokio::spawn(async move {
            let mut round = 0;
            while Instant::now() < stop && started.fetch_add(1, Ordering::Relaxed) < max {
                let name = user(&prefix, (k + round * conc) % users);
                round += 1;
                let t0 = Instant::now();
                let r = tokio::time::timeout(
                    Duration::from_secs(30),
                    Conn::login(&t, &name, &pw, &format!("l{k}"), true),
                )
                .await;
                match r {
                    Ok(Ok((c, _))) => {
                        samples
                            .lock()
                            .expect("not poisoned")
                            .push(t0.elapsed().as_micros() as u32);
                        c.quit().await;
                    }
                    Ok(Err(e)) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error
                            .lock()
                            .expect("not poisoned")
                            .get_or_insert_with(|| format!("{e:#}"));
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for h in tasks {
        h.await?;
    }
    let usage = meter.read();
    let mut s = std::mem::take(&mut *samples.lock().expect("not poisoned"));
    let n = s.len();
    let rate = n as f64 / usage.wall.as_secs_f64();
    let cpu_per = usage.server_cpu.as_secs_f64() * 1e6 / n.max(1) as f64;
    let lat = super::latency_json(&mut s);
    let errs = errors.load(Ordering::Relaxed);
    eprintln!(
        "  concurrency {conc:4}: {n} logins, {rate:.0}/s, p50 {} ms, p99 {} ms, server CPU {cpu_per:.0} us/login ({:.0}%), generator {:.0}%, {errs} errors, load {}",
        lat["p50_ms"],
        lat["p99_ms"],
        usage.server_pct(),
        usage.self_pct(),
        crate::common::loadavg()
    );
    if let Some(e) = first_error.lock().expect("not poisoned").as_ref() {
        eprintln!("    first error: {e}");
    }
    Ok(serde_json::json!({
        "concurrency": conc,
        "logins": n,
        "errors": errs,
        "logins_per_s": rate,
        "server_cpu_us_per_login": cpu_per,
        "latency": lat,
        "usage": usage.json(),
        "loadavg": crate::common::loadavg(),
    }))
}

/// The scenario; prints one JSON line.
pub async fn run(a: &LoginArgs) -> Result<serde_json::Value> {
    let mut levels = Vec::new();
    for &c in &a.concurrency {
        levels.push(level(a, c).await?);
        // Let connections in TIME_WAIT and the server's closing sessions settle.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let best = levels
        .iter()
        .filter_map(|l| l["logins_per_s"].as_f64())
        .fold(0.0, f64::max);
    let mut m = a.load.head("login");
    m.insert("best_logins_per_s".into(), best.into());
    m.insert("levels".into(), levels.into());
    Ok(super::emit(m))
}
