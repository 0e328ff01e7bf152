//! `[s2s]`: federation settings as written in the configuration file, and their validation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The default federation port (RFC 6120 §14.7).
pub const DEFAULT_LISTEN: &str = "[::]:5269";

/// `[s2s]` in the configuration file. Every key has a default: federation works with no
/// section at all.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S2sSection {
    /// Whether to federate at all; when false, remote domains get `remote-server-not-found`.
    pub enabled: bool,
    /// STARTTLS listeners for incoming server connections.
    pub listen: Vec<String>,
    /// Direct-TLS listeners (XEP-0368), none by default.
    pub listen_tls: Vec<String>,
    /// Refuse peers whose certificate cannot be verified for their domain (with dialback too).
    pub require_verified_certificates: bool,
    /// Allow server dialback (XEP-0220) as the authentication of peers.
    pub allow_dialback: bool,
    /// Trust the operating system's certificate store.
    pub system_roots: bool,
    /// Extra PEM files of certificate authorities to trust for peers' certificates.
    pub ca_files: Vec<PathBuf>,
    /// `domain = "host:port"`: connect there instead of resolving the domain (no DNS).
    pub routes: BTreeMap<String, String>,
    /// Domains we never federate with (their subdomains neither).
    pub blocked: Vec<String>,
    /// Stanzas queued per remote domain while its connection is set up or busy.
    pub queue_size: usize,
    /// Seconds allowed to reach and authenticate with a remote server, per attempt.
    pub connect_timeout_secs: u64,
    /// Further attempts after a failed connection, before queued stanzas are bounced.
    pub connect_retries: u32,
    /// Seconds before the first retry; each further retry waits twice as long.
    pub retry_delay_secs: u64,
    /// Seconds an idle connection is kept open.
    pub idle_timeout_secs: u64,
    /// Largest stanza accepted from a remote server, in bytes.
    pub max_stanza_bytes: usize,
    /// Simultaneous incoming server connections.
    pub max_incoming: usize,
    /// Per-domain policy overrides: `[s2s.domain."example.net"]`.
    pub domain: BTreeMap<String, DomainPolicy>,
}

/// `[s2s.domain."example.net"]`: policy for one remote domain.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainPolicy {
    /// Overrides `s2s.require_verified_certificates` for this domain.
    pub require_verified_certificates: Option<bool>,
    /// Overrides `s2s.allow_dialback` for this domain.
    pub allow_dialback: Option<bool>,
}

impl Default for S2sSection {
    fn default() -> Self {
        S2sSection {
            enabled: true,
            listen: vec![DEFAULT_LISTEN.into()],
            listen_tls: Vec::new(),
            require_verified_certificates: true,
            allow_dialback: true,
            system_roots: true,
            ca_files: Vec::new(),
            routes: BTreeMap::new(),
            blocked: Vec::new(),
            queue_size: 256,
            connect_timeout_secs: 15,
            connect_retries: 2,
            retry_delay_secs: 2,
            idle_timeout_secs: 600,
            max_stanza_bytes: 262_144,
            max_incoming: 1000,
            domain: BTreeMap::new(),
        }
    }
}

/// A configuration value that is out of range; names the key, the value and what is expected.
#[derive(Debug, thiserror::Error)]
#[error("{key} = {value}: expected {expected}")]
pub struct ConfigError {
    /// Dotted key path.
    pub key: String,
    /// The value as written.
    pub value: String,
    /// What would have been accepted.
    pub expected: String,
}

fn err(key: impl Into<String>, value: impl std::fmt::Debug, expected: &str) -> ConfigError {
    ConfigError {
        key: key.into(),
        value: format!("{value:?}"),
        expected: expected.into(),
    }
}

impl S2sSection {
    /// Checks what TOML types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, list) in [
            ("s2s.listen", &self.listen),
            ("s2s.listen_tls", &self.listen_tls),
        ] {
            for a in list {
                if a.parse::<SocketAddr>().is_err() {
                    return Err(err(key, a, "an address with port, such as \"[::]:5269\""));
                }
            }
        }
        for (domain, target) in &self.routes {
            if parse_host_port(target).is_none() {
                return Err(err(
                    format!("s2s.routes.{domain:?}"),
                    target,
                    "\"host:port\", such as \"127.0.0.1:5269\" or \"xmpp.example.net:5269\"",
                ));
            }
        }
        for (key, v, min) in [
            ("s2s.queue_size", self.queue_size, 1),
            (
                "s2s.connect_timeout_secs",
                self.connect_timeout_secs as usize,
                1,
            ),
            ("s2s.idle_timeout_secs", self.idle_timeout_secs as usize, 1),
            ("s2s.max_stanza_bytes", self.max_stanza_bytes, 10_000),
            ("s2s.max_incoming", self.max_incoming, 1),
        ] {
            if v < min {
                return Err(err(key, v, &format!("at least {min}")));
            }
        }
        Ok(())
    }

    /// Whether the listen list is the built-in default (binding it may fail without that
    /// being the operator's mistake, e.g. another XMPP server on the machine).
    pub fn listen_is_default(&self) -> bool {
        self.listen.len() == 1 && self.listen[0] == DEFAULT_LISTEN
    }

    /// Seconds as durations.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// Whether a domain (or a parent of it) is blocked.
    pub fn is_blocked(&self, domain: &str) -> bool {
        self.blocked.iter().any(|b| {
            let b = b.trim_end_matches('.');
            domain.eq_ignore_ascii_case(b)
                || (domain.len() > b.len()
                    && domain[domain.len() - b.len()..].eq_ignore_ascii_case(b)
                    && domain.as_bytes()[domain.len() - b.len() - 1] == b'.')
        })
    }

    /// Effective certificate policy for a peer domain.
    pub fn require_verified(&self, domain: &str) -> bool {
        self.domain
            .get(domain)
            .and_then(|d| d.require_verified_certificates)
            .unwrap_or(self.require_verified_certificates)
    }

    /// Effective dialback policy for a peer domain.
    pub fn dialback_allowed(&self, domain: &str) -> bool {
        self.domain
            .get(domain)
            .and_then(|d| d.allow_dialback)
            .unwrap_or(self.allow_dialback)
    }
}

/// Splits `host:port` (`[v6]:port` too).
pub fn parse_host_port(s: &str) -> Option<(String, u16)> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some((sa.ip().to_string(), sa.port()));
    }
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty() && !host.contains(':')).then(|| (host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c: S2sSection = toml::from_str(
            "require_verified_certificates = true\nblocked = [\"spam.example\"]\n\
             [routes]\n\"b.test\" = \"127.0.0.1:5270\"\n\
             [domain.\"old.example\"]\nrequire_verified_certificates = false\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert!(c.listen_is_default());
        assert!(c.require_verified("new.example"));
        assert!(!c.require_verified("old.example"));
        assert!(c.dialback_allowed("old.example"));
        assert!(c.is_blocked("spam.example") && c.is_blocked("a.Spam.example"));
        assert!(!c.is_blocked("notspam.example"));
        assert_eq!(
            parse_host_port(&c.routes["b.test"]),
            Some(("127.0.0.1".into(), 5270))
        );
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = S2sSection::default();
        c.routes.insert("x.test".into(), "nowhere".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("s2s.routes") && e.contains("nowhere"), "{e}");
        let c = S2sSection {
            queue_size: 0,
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("s2s.queue_size"));
        assert_eq!(parse_host_port("[::1]:5269"), Some(("::1".into(), 5269)));
        assert_eq!(
            parse_host_port("xmpp.example:5269"),
            Some(("xmpp.example".into(), 5269))
        );
        assert_eq!(parse_host_port("::1"), None);
    }
}
