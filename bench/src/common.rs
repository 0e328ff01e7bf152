//! What every scenario shares: realistic archive items, latency statistics, machine facts and
//! the fsync probe that explains `synchronous = full` figures.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use tern_storage::ArchiveItem;

/// Host of every archive the benchmarks write (also the test server's domain).
pub const HOST: &str = "localhost";
/// The MAM module's archive store name (`tern_mam::archive::STORE`).
pub const STORE: &str = "mam";

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// An archive id shaped like the MAM module's: 8 bytes of time and 8 random bytes,
/// base64url without padding (22 characters).
pub fn archive_id(when: i64) -> String {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&when.to_be_bytes());
    raw[8..].copy_from_slice(&rand::random::<[u8; 8]>());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// The bare JID of peer `k`.
pub fn peer(k: usize) -> String {
    format!("peer{k:03}@example.org")
}

const WORDS: &[&str] = &[
    "hello", "are", "you", "coming", "tonight", "the", "train", "is", "late", "again", "see",
    "meeting", "notes", "attached", "thanks", "sounds", "good", "lunch", "tomorrow", "ok",
];

/// A chat message as a client would send it today (body, chat state, receipt request,
/// origin-id, markable), `size` bytes long when `size` leaves room for a body of a few words.
/// Even `n` is incoming (peer to owner), odd `n` outgoing.
pub fn message_xml(owner: &str, peer: &str, n: usize, size: usize) -> Vec<u8> {
    let (from, to) = if n.is_multiple_of(2) {
        (format!("{peer}/phone"), format!("{owner}/laptop"))
    } else {
        (format!("{owner}/laptop"), format!("{peer}/phone"))
    };
    let head = format!(
        "<message xmlns='jabber:client' from='{from}' to='{to}' type='chat' id='m{n:010}'><body>"
    );
    let tail = format!(
        "</body><active xmlns='http://jabber.org/protocol/chatstates'/>\
         <request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/>\
         <origin-id xmlns='urn:xmpp:sid:0' id='o{n:010}'/></message>"
    );
    let room = size.saturating_sub(head.len() + tail.len()).max(16);
    let mut body = String::with_capacity(room + 16);
    let mut w = n;
    while body.len() < room {
        if !body.is_empty() {
            body.push(' ');
        }
        body.push_str(WORDS[w % WORDS.len()]);
        w = w.wrapping_mul(31).wrapping_add(7);
    }
    body.truncate(room);
    format!("{head}{body}{tail}").into_bytes()
}

/// Item `n` of `owner`'s archive, with `peer` and the given time.
pub fn item(owner: &str, peer: &str, n: usize, when: i64, size: usize) -> ArchiveItem {
    ArchiveItem {
        id: archive_id(when),
        when,
        with: peer.to_owned(),
        data: message_xml(owner, peer, n, size),
    }
}

/// Latency summary of one scenario.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub n: usize,
    pub mean: Duration,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Stats {
    /// Nearest-rank percentiles of `samples` (sorted in place).
    pub fn of(samples: &mut [Duration]) -> Stats {
        samples.sort_unstable();
        let n = samples.len();
        let rank = |p: usize| -> Duration {
            if n == 0 {
                return Duration::ZERO;
            }
            samples[(n * p).div_ceil(100).clamp(1, n) - 1]
        };
        let total: Duration = samples.iter().sum();
        Stats {
            n,
            mean: if n == 0 {
                Duration::ZERO
            } else {
                total / n as u32
            },
            p50: rank(50),
            p95: rank(95),
            p99: rank(99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "n": self.n,
            "mean_ms": ms(self.mean),
            "p50_ms": ms(self.p50),
            "p95_ms": ms(self.p95),
            "p99_ms": ms(self.p99),
            "max_ms": ms(self.max),
        })
    }
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn run(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".into())
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews every figure.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Bytes this process has passed to `write`-like system calls, and how many such calls
/// (`wchar` and `syscw` of /proc/self/io): the database's write volume, WAL and checkpoints.
pub fn io_written() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let get = |key: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (get("wchar:"), get("syscw:"))
}

/// The filesystem type `dir` is on, from `df -T`.
pub fn fs_type(dir: &Path) -> String {
    let out = run("df", &["-T", &dir.to_string_lossy()]);
    out.lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?")
        .to_owned()
}

/// What the figures depend on: CPUs, kernel, the code measured, the date.
pub fn machine_facts() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let dirty = !run("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    serde_json::json!({
        "date": run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": cpu,
        "kernel": run("uname", &["-r"]),
        "commit": run("git", &["rev-parse", "--short", "HEAD"]),
        "worktree_dirty": dirty,
        "tmp_fs": fs_type(&std::env::temp_dir()),
        "loadavg": loadavg(),
    })
}

/// Prints the machine facts.
pub fn print_facts(f: &serde_json::Value) {
    let s = |k: &str| f[k].as_str().unwrap_or("?").to_owned();
    println!(
        "machine: {} | nproc {} | {} | kernel {} | commit {}{} | {} is {} | load {}",
        s("date"),
        f["nproc"],
        s("cpu"),
        s("kernel"),
        s("commit"),
        if f["worktree_dirty"] == true {
            " (+ uncommitted changes)"
        } else {
            ""
        },
        std::env::temp_dir().display(),
        s("tmp_fs"),
        s("loadavg"),
    );
}

/// Cost of one durable append to a file in `dir`: write 4 KiB at the end, then `fdatasync`,
/// as SQLite does for each WAL commit with `synchronous = full`. Bounded to `count` rounds or
/// two seconds.
pub fn fsync_probe(dir: &Path, count: usize) -> anyhow::Result<Stats> {
    let tmp = tempfile::Builder::new()
        .prefix("tern-bench-fsync-")
        .tempfile_in(dir)?;
    let mut f = tmp.as_file();
    let page = [0x5au8; 4096];
    let mut samples = Vec::with_capacity(count);
    let stop = Instant::now() + Duration::from_secs(2);
    while samples.len() < count && Instant::now() < stop {
        let t = Instant::now();
        f.write_all(&page)?;
        f.sync_data()?;
        samples.push(t.elapsed());
    }
    Ok(Stats::of(&mut samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_asked_size() {
        for n in [0, 1, 12345] {
            let m = message_xml("alice@localhost", &peer(7), n, 400);
            assert_eq!(m.len(), 400, "{}", String::from_utf8_lossy(&m));
        }
    }

    #[test]
    fn percentiles() {
        let mut v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Stats::of(&mut v);
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p95, Duration::from_millis(95));
        assert_eq!(s.max, Duration::from_millis(100));
    }
}
