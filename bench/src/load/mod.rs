//! The XMPP load generator: real clients over STARTTLS against any server (Tern, Prosody,
//! ejabberd), one scenario per subcommand, each ending with one JSON line of results.
//!
//! Layout: `xml` splits streams into elements without building trees, `scram` is the client
//! side of SASL, `client` one connection's login and I/O, `sys` what /proc says about the
//! server and the generator. Scenarios: `register` (accounts and nothing else), `idle`,
//! `login`, `chat`, `presence`, `muc`. See bench/README.md for how each measures.

pub mod chat;
pub mod client;
pub mod idle;
pub mod login;
pub mod muc;
pub mod presence;
pub mod register;
pub mod scram;
pub mod sys;
pub mod xml;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;

use client::Target;
use scram::Mech;

/// Options every load scenario shares.
#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    /// The server's STARTTLS (c2s) address.
    #[arg(long, default_value = "127.0.0.1:5222")]
    pub addr: SocketAddr,
    /// XMPP domain of the accounts (also the TLS server name).
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// PEM CA certificate that signed the server's certificate.
    #[arg(long, default_value = "certs/test/ca.crt")]
    pub ca: PathBuf,
    /// Process id of the server, for its CPU time and memory (/proc/<pid>).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Name of the server in the JSON results (tern, prosody, ejabberd).
    #[arg(long, default_value = "server")]
    pub label: String,
    /// SASL mechanism.
    #[arg(long, value_enum, default_value = "scram-sha-1")]
    pub mech: Mech,
    /// Spread connections over this many source addresses, 127.0.0.11 onwards.
    #[arg(long, default_value_t = 4)]
    pub sources: usize,
    /// Password of every account.
    #[arg(long, default_value = "bench-secret")]
    pub password: String,
    /// Simultaneous logins while connecting many sessions.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
}

impl LoadArgs {
    /// The connection target.
    pub fn target(&self) -> anyhow::Result<Arc<Target>> {
        let sources = (0..self.sources)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11 + i as u8)))
            .collect();
        Target::new(self.addr, self.domain.clone(), self.mech, sources, &self.ca)
    }

    /// The server pid as /proc wants it.
    pub fn pid(&self) -> Option<String> {
        self.server_pid.map(|p| p.to_string())
    }

    /// Facts every scenario's JSON starts with.
    pub fn head(&self, scenario: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("scenario".into(), scenario.into());
        m.insert("server".into(), self.label.clone().into());
        m.insert("mech".into(), self.mech.name().into());
        m.insert("loadavg_start".into(), start_load().into());
        m.insert("machine".into(), crate::common::machine_facts());
        m
    }
}

/// The load average when the scenario started (the first call fixes it; `main` calls it
/// before the scenario runs).
pub fn start_load() -> String {
    static START: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    START.get_or_init(crate::common::loadavg).clone()
}

/// Account name `n` of a series (`u17`).
pub fn user(prefix: &str, n: usize) -> String {
    format!("{prefix}{n}")
}

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the generator started: the timestamps carried in messages.
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Latency percentiles from samples in microseconds (sorted in place).
pub fn latency_json(samples: &mut [u32]) -> serde_json::Value {
    samples.sort_unstable();
    let n = samples.len();
    let q = |p: f64| -> f64 {
        if n == 0 {
            return 0.0;
        }
        let rank = ((n as f64) * p).ceil().clamp(1.0, n as f64) as usize;
        samples[rank - 1] as f64 / 1000.0
    };
    serde_json::json!({
        "n": n,
        "p50_ms": q(0.50),
        "p99_ms": q(0.99),
        "p999_ms": q(0.999),
        "max_ms": q(1.0),
    })
}

/// Prints the scenario's JSON line (the last line of its output) with the load at the end.
pub fn emit(mut m: serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    m.insert("loadavg_end".into(), crate::common::loadavg().into());
    let v = serde_json::Value::Object(m);
    println!("{v}");
    v
}

/// Runs `f` over `0..n` with at most `concurrency` at a time; returns the results in order.
pub async fn bounded<T, F, Fut>(n: usize, concurrency: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.expect("never closed");
        let fut = f(i);
        handles.push(tokio::spawn(async move {
            let out = fut.await;
            drop(permit);
            out
        }));
    }
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.expect("task panicked"));
    }
    out
}

/// A deadline-bounded wait that logs progress to stderr every few seconds.
pub fn progress(what: &str, done: usize, total: usize, since: Instant) {
    eprintln!(
        "  {what}: {done}/{total} after {:.1} s (load {})",
        since.elapsed().as_secs_f64(),
        crate::common::loadavg()
    );
}
