//! `idle`: N authenticated TLS sessions (bound, roster fetched, available) held open and
//! silent. The server's resident memory before and after gives its user-space bytes per
//! session; /proc/net/sockstat and the kernel's slab total give the kernel's share.
//!
//! A process here may hold at most 20,000 open files, so `--procs P` spreads the sessions
//! over P child processes of this binary (each told its share through the environment)
//! while this one measures.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::client::Conn;
use super::{sys, user, LoadArgs};

/// Environment variable that makes a child process hold `first:count` sessions.
const WORKER_ENV: &str = "TERN_BENCH_IDLE_WORKER";

/// `tern-bench idle`.
#[derive(Args, Clone, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Sessions to hold (accounts PREFIX0 .. PREFIX(N-1)).
    #[arg(long, default_value_t = 1000)]
    pub sessions: usize,
    /// Account name prefix.
    #[arg(long, default_value = "u")]
    pub prefix: String,
    /// Generator processes sharing the sessions (at most 20,000 open files each).
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// Seconds of silence after the last login before the server's memory is read.
    #[arg(long, default_value_t = 5)]
    pub settle_secs: u64,
}

fn kernel_slab() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Slab:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Logs in `count` sessions from account `first`; returns them and the failures.
async fn hold(a: &IdleArgs, first: usize, count: usize) -> Result<(Vec<Conn>, usize)> {
    let t = a.load.target()?;
    let pw: Arc<str> = a.load.password.clone().into();
    let prefix = a.prefix.clone();
    let t0 = Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let results = super::bounded(count, a.load.connect_concurrency, |i| {
        let t = t.clone();
        let pw = pw.clone();
        let name = user(&prefix, first + i);
        let done = done.clone();
        async move {
            let r = tokio::time::timeout(
                Duration::from_secs(60),
                Conn::login(&t, &name, &pw, "idle", true),
            )
            .await;
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n.is_multiple_of(2000) {
                super::progress("logged in", n, count, t0);
            }
            match r {
                Ok(Ok((c, _))) => Ok(c),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(anyhow::anyhow!("{name}: login timed out")),
            }
        }
    })
    .await;
    let mut conns = Vec::with_capacity(count);
    let mut failed = 0;
    for r in results {
        match r {
            Ok(c) => conns.push(c),
            Err(e) => {
                if failed < 3 {
                    eprintln!("  login failed: {e:#}");
                }
                failed += 1;
            }
        }
    }
    Ok((conns, failed))
}

/// Child process: hold the share named in the environment until stdin closes.
pub async fn worker(a: &IdleArgs, spec: &str) -> Result<()> {
    let (first, count) = spec
        .split_once(':')
        .and_then(|(f, c)| Some((f.parse().ok()?, c.parse().ok()?)))
        .context("bad worker spec")?;
    let (conns, failed) = hold(a, first, count).await?;
    println!("READY {} {failed}", conns.len());
    // Hold until the parent has measured and closes our stdin.
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin()
            .read_line(&mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
    })
    .await?;
    drop(conns);
    Ok(())
}

/// Whether this process is an idle worker (then `worker` runs instead of `run`).
pub fn worker_spec() -> Option<String> {
    std::env::var(WORKER_ENV).ok()
}

/// The scenario; prints one JSON line.
pub async fn run(a: &IdleArgs) -> Result<serde_json::Value> {
    let pid = a.load.pid();
    let Some(pid) = pid.as_deref() else {
        bail!("idle needs --server-pid");
    };
    let rss0 = sys::rss(pid).context("server pid not found")?;
    let (_, sock_mem0) = sys::tcp_sockstat();
    let slab0 = kernel_slab();
    let meter = sys::Meter::start(Some(pid));
    let t0 = Instant::now();
    let procs = a.procs.max(1);
    let mut held = 0;
    let mut failed = 0;
    let mut local = Vec::new();
    let mut children = Vec::new();
    if procs == 1 {
        let (c, f) = hold(a, 0, a.sessions).await?;
        held = c.len();
        failed = f;
        local = c;
    } else {
        let exe = std::env::current_exe()?;
        let args: Vec<String> = std::env::args().skip(1).collect();
        let per = a.sessions.div_ceil(procs);
        for p in 0..procs {
            let first = p * per;
            let count = per.min(a.sessions.saturating_sub(first));
            if count == 0 {
                break;
            }
            let mut child = Command::new(&exe)
                .args(&args)
                .env(WORKER_ENV, format!("{first}:{count}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            let out = BufReader::new(child.stdout.take().expect("piped"));
            children.push((child, out));
        }
        for (_, out) in &mut children {
            let line = tokio::task::block_in_place(|| {
                out.lines()
                    .map_while(Result::ok)
                    .find(|l| l.starts_with("READY "))
            })
            .context("worker ended without READY")?;
            let mut f = line.split_whitespace().skip(1);
            held += f.next().and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            failed += f.next().and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        }
    }
    let login_secs = t0.elapsed().as_secs_f64();
    let usage = meter.read();
    eprintln!(
        "  {held} sessions up in {login_secs:.1} s ({failed} failed); settling {} s",
        a.settle_secs
    );
    tokio::time::sleep(Duration::from_secs(a.settle_secs)).await;
    let rss1 = sys::rss(pid).unwrap_or(0);
    let (sockets, sock_mem1) = sys::tcp_sockstat();
    let slab1 = kernel_slab();
    // Release every session, then see how much memory the server gives back.
    drop(local);
    for (mut child, _) in children {
        drop(child.stdin.take());
        let _ = tokio::task::block_in_place(|| child.wait());
    }
    tokio::time::sleep(Duration::from_secs(a.settle_secs)).await;
    let rss2 = sys::rss(pid).unwrap_or(0);
    let n = held.max(1) as f64;
    let per = (rss1 as f64 - rss0 as f64) / n;
    eprintln!(
        "  server RSS {:.1} -> {:.1} MiB: {:.0} B ({:.1} KiB) per session; kernel slab {:.0} B/session; after close {:.1} MiB",
        rss0 as f64 / 1048576.0,
        rss1 as f64 / 1048576.0,
        per,
        per / 1024.0,
        (slab1 as f64 - slab0 as f64) / n,
        rss2 as f64 / 1048576.0
    );
    let mut m = a.load.head("idle");
    m.insert("sessions".into(), held.into());
    m.insert("failed".into(), failed.into());
    m.insert("procs".into(), procs.into());
    m.insert("login_secs".into(), login_secs.into());
    m.insert("rss_before".into(), rss0.into());
    m.insert("rss_after".into(), rss1.into());
    m.insert("rss_after_close".into(), rss2.into());
    m.insert("bytes_per_session".into(), per.into());
    m.insert("tcp_sockets_inuse".into(), sockets.into());
    m.insert(
        "kernel_sockbuf_bytes_per_session".into(),
        ((sock_mem1 as f64 - sock_mem0 as f64) / n).into(),
    );
    m.insert(
        "kernel_slab_bytes_per_session".into(),
        ((slab1 as f64 - slab0 as f64) / n).into(),
    );
    m.insert("connect_usage".into(), usage.json());
    Ok(super::emit(m))
}
