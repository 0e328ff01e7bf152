//! `[http]`: the HTTP listeners and the web-client transports on them.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// When a stream over the plain-HTTP port counts as encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PlainSecure {
    /// Only for clients on a loopback address: a TLS-terminating proxy on the same machine,
    /// or a local development client.
    #[default]
    Loopback,
    /// Always: the port is reachable only through a TLS-terminating proxy.
    Always,
    /// Never: plain-HTTP streams are unencrypted (refused when `c2s.require_encryption`).
    Never,
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Plain-HTTP listeners (Prosody's 5280); loopback only by default.
    pub listen: Vec<String>,
    /// HTTPS listeners (Prosody's 5281), with the hosts' certificates chosen by SNI.
    pub listen_tls: Vec<String>,
    /// When streams over plain HTTP count as encrypted.
    pub plain_is_secure: PlainSecure,
    /// `Origin`s allowed to open WebSockets and to read BOSH and host-meta responses (CORS);
    /// `"*"` allows every origin.
    pub allowed_origins: Vec<String>,
    /// Base URL advertised in host-meta (e.g. `https://xmpp.example.org`); by default the
    /// scheme of the listener and the request's `Host`.
    pub public_url: Option<String>,
    /// Simultaneous HTTP connections across all HTTP listeners.
    pub max_connections: usize,
    /// Seconds a client may take to send its request headers (and the TLS handshake).
    pub header_timeout_secs: u64,
    /// Largest WebSocket message (one XMPP element) in bytes.
    pub websocket_max_message_bytes: usize,
    /// Longest `wait` a BOSH client may ask for, in seconds.
    pub bosh_max_wait_secs: u64,
    /// Most requests a BOSH client may have the server hold (`hold`).
    pub bosh_max_hold: u32,
    /// Seconds a BOSH session survives without any request.
    pub bosh_inactivity_secs: u64,
    /// Shortest interval between two BOSH polling requests, in seconds.
    pub bosh_polling_secs: u64,
    /// Longest `pause` a BOSH client may ask for, in seconds (0: no pausing).
    pub bosh_max_pause_secs: u64,
    /// Largest BOSH request body in bytes.
    pub bosh_max_body_bytes: usize,
    /// Most bytes queued for one BOSH client between its requests before the session ends.
    pub bosh_max_pending_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: vec!["127.0.0.1:5280".into()],
            listen_tls: vec!["[::]:5281".into()],
            plain_is_secure: PlainSecure::Loopback,
            allowed_origins: vec!["*".into()],
            public_url: None,
            max_connections: 10_000,
            header_timeout_secs: 15,
            websocket_max_message_bytes: 262_144,
            bosh_max_wait_secs: 60,
            bosh_max_hold: 1,
            bosh_inactivity_secs: 60,
            bosh_polling_secs: 2,
            bosh_max_pause_secs: 120,
            bosh_max_body_bytes: 524_288,
            bosh_max_pending_bytes: 1_048_576,
        }
    }
}

impl HttpConfig {
    /// Checks what TOML types alone cannot; errors name the key, the value and what was
    /// expected.
    pub fn validate(&self) -> Result<(), String> {
        for (key, list) in [
            ("http.listen", &self.listen),
            ("http.listen_tls", &self.listen_tls),
        ] {
            for a in list {
                if a.parse::<SocketAddr>().is_err() {
                    return Err(format!(
                        "{key} = {a:?}: expected an address with port, such as \"127.0.0.1:5280\" or \"[::]:5281\""
                    ));
                }
            }
        }
        for o in &self.allowed_origins {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                return Err(format!(
                    "http.allowed_origins: {o:?}: expected \"*\" or an origin such as \"https://chat.example.org\""
                ));
            }
        }
        if let Some(u) = &self.public_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(format!(
                    "http.public_url = {u:?}: expected a URL such as \"https://xmpp.example.org\""
                ));
            }
        }
        for (key, v, min) in [
            ("http.max_connections", self.max_connections as u64, 1),
            ("http.header_timeout_secs", self.header_timeout_secs, 1),
            (
                "http.websocket_max_message_bytes",
                self.websocket_max_message_bytes as u64,
                4096,
            ),
            ("http.bosh_max_wait_secs", self.bosh_max_wait_secs, 1),
            ("http.bosh_inactivity_secs", self.bosh_inactivity_secs, 5),
            (
                "http.bosh_max_body_bytes",
                self.bosh_max_body_bytes as u64,
                4096,
            ),
            (
                "http.bosh_max_pending_bytes",
                self.bosh_max_pending_bytes as u64,
                65_536,
            ),
        ] {
            if v < min {
                return Err(format!("{key} = {v}: expected at least {min}"));
            }
        }
        Ok(())
    }

    /// Whether an origin may use the endpoints.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }

    pub(crate) fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }
}
