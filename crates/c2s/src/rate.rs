//! Token-bucket throttling of what a client sends: past its rate, the session simply stops
//! reading for a while, so TCP pushes back on the client instead of the server buffering.

use std::time::{Duration, Instant};

/// A byte-rate token bucket.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `rate` bytes per second on average, bursts up to `burst` bytes.
    pub(crate) fn new(rate: u64, burst: u64) -> Self {
        let burst = burst.max(1) as f64;
        RateLimiter {
            rate: rate.max(1) as f64,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Accounts for `n` bytes read at `now`; returns how long to pause before reading again.
    pub(crate) fn take(&mut self, n: usize, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - n as f64;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_pass_then_the_rate_applies() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1000, 4000);
        assert_eq!(r.take(4000, t0), None);
        let d = r.take(500, t0).expect("over the burst");
        assert!((d.as_secs_f64() - 0.5).abs() < 1e-6, "{d:?}");
        // After the pause the debt is repaid and a second of tokens is back.
        assert_eq!(r.take(500, t0 + Duration::from_millis(1500)), None);
    }
}
