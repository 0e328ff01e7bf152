//! What the generator reads from /proc: a process's CPU time and resident memory, the
//! kernel's TCP socket memory, and the clock tick those CPU times count in.

use std::time::{Duration, Instant};

/// Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on every Linux ABI in use).
const USER_HZ: f64 = 100.0;

/// utime + stime of a process (all its threads), from /proc/<pid>/stat.
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: fields start after ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) are utime and stime; `rest` starts at field 3.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / USER_HZ))
}

/// VmRSS of a process, in bytes.
pub fn rss(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// TCP sockets in use and their buffer memory in bytes, from /proc/net/sockstat.
pub fn tcp_sockstat() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let Some(line) = s.lines().find(|l| l.starts_with("TCP:")) else {
        return (0, 0);
    };
    let f: Vec<&str> = line.split_whitespace().collect();
    let get = |k: &str| {
        f.iter()
            .position(|x| *x == k)
            .and_then(|i| f.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (get("inuse"), get("mem") * 4096)
}

/// A CPU-time meter over an interval, for the server and for the generator itself.
pub struct Meter {
    server: Option<String>,
    t0: Instant,
    server0: Duration,
    self0: Duration,
}

/// What a [`Meter`] measured.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Wall time.
    pub wall: Duration,
    /// Server CPU time (user + system, all threads).
    pub server_cpu: Duration,
    /// This process's CPU time.
    pub self_cpu: Duration,
}

impl Meter {
    /// Starts measuring (server by pid, if given).
    pub fn start(server: Option<&str>) -> Meter {
        let server = server.map(str::to_owned);
        Meter {
            server0: server.as_deref().and_then(cpu_time).unwrap_or_default(),
            self0: cpu_time("self").unwrap_or_default(),
            t0: Instant::now(),
            server,
        }
    }

    /// Usage since the start.
    pub fn read(&self) -> Usage {
        Usage {
            wall: self.t0.elapsed(),
            server_cpu: self
                .server
                .as_deref()
                .and_then(cpu_time)
                .unwrap_or_default()
                .saturating_sub(self.server0),
            self_cpu: cpu_time("self")
                .unwrap_or_default()
                .saturating_sub(self.self0),
        }
    }
}

impl Usage {
    /// Server CPU as a share of one core.
    pub fn server_pct(&self) -> f64 {
        100.0 * self.server_cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }

    /// Generator CPU as a share of one core.
    pub fn self_pct(&self) -> f64 {
        100.0 * self.self_cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }

    /// JSON fields shared by every scenario.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "wall_s": self.wall.as_secs_f64(),
            "server_cpu_s": self.server_cpu.as_secs_f64(),
            "server_cpu_pct": self.server_pct(),
            "gen_cpu_s": self.self_cpu.as_secs_f64(),
            "gen_cpu_pct": self.self_pct(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        assert!(rss("self").unwrap() > 0);
        assert!(cpu_time("self").is_some());
    }
}
