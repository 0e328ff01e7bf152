//! Black-box conformance suite: the real `tern` binary, driven by tokio-xmpp (xmpp-rs) as a
//! real client.
//!
//! Layout: [`server`] starts one `tern serve` per test in its own temporary directory (test CA and
//! certificate from `tern cert generate --ca`, a TOML config, a SQLite store, accounts created with
//! `tern user add`) and kills it on drop, printing its log if the test failed. [`connector`] is
//! a tokio-xmpp `ServerConnector` that dials 127.0.0.1 directly (STARTTLS or direct TLS, no DNS)
//! and trusts exactly that test CA through its own rustls `ClientConfig`, so no certificate check
//! is disabled and no process environment is touched. [`client`] wraps `tokio_xmpp::Client` with
//! bounded waits: every expectation has a timeout and fails with the stanzas seen instead.
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
