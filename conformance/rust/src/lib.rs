//! Black-box conformance suite: the real `tern` binary, driven by tokio-xmpp (xmpp-rs) as a
//! real client.
//!
//! Layout: [`server`] starts one `tern serve` per test in its own temporary directory (test CA and
//! certificate from `tern cert generate --ca`, a TOML config, a SQLite store, accounts created with
//! `tern user add`) and kills it on drop, printing its log if the test failed. [`connector`] is
//! a tokio-xmpp `ServerConnector` that dials 127.0.0.1 directly (STARTTLS or direct TLS, no DNS)
//! and trusts exactly that test CA through its own rustls `ClientConfig`, so no certificate check
//! is disabled and no process environment is touched. [`client`] drives tokio-xmpp's
//! `StanzaStream` with bounded waits: every expectation has a timeout and fails with the stanzas
//! seen instead. README.md lists the expected failures and the tokio-xmpp quirks worked around.
//!
//! The tests are in `tests/`; run them with `cargo build --bin tern && cargo test -p
//! tern-conformance` (set `TERN_BIN` to test another binary).

pub mod client;
pub mod connector;
pub mod server;

pub use client::{TestClient, WAIT};
pub use connector::{Mode, TernConnector};
pub use server::TernServer;

/// Re-exports so tests use exactly the crates tokio-xmpp was built with.
pub use tokio_xmpp::{self, jid, minidom, parsers};

/// With `TERN_CONFORMANCE_LOG=trace` (or debug, info…) tokio-xmpp's `log` output, including
/// its `SEND`/`RECV` wire trace at trace level, goes to stderr. Run a single test to read it.
pub fn init_client_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Some(level) = std::env::var("TERN_CONFORMANCE_LOG")
            .ok()
            .and_then(|l| l.parse::<log::LevelFilter>().ok())
        else {
            return;
        };
        if log::set_logger(&StderrLog).is_ok() {
            log::set_max_level(level);
        }
    });
}

struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        eprintln!(
            "{}.{:06} {:5} {} {}",
            t.as_secs(),
            t.subsec_micros(),
            r.level(),
            r.target(),
            r.args()
        );
    }
    fn flush(&self) {}
}
