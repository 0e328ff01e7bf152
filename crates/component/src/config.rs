//! `[[component]]` and `[component_listener]` as written in the configuration file.

use std::collections::HashSet;
use std::net::SocketAddr;

use serde::Deserialize;

/// `[[component]]`: one external component.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentEntry {
    /// The component's domain, e.g. `gateway.example.org`.
    pub domain: String,
    /// The shared secret of the handshake.
    pub secret: String,
}

/// `[component_listener]`: where components connect, and their limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerSection {
    /// Listen addresses (plain TCP: keep them on loopback or a private network).
    pub listen: Vec<String>,
    /// Seconds a new connection has to complete its handshake.
    pub handshake_timeout_secs: u64,
    /// Stanzas queued for one component before further ones bounce.
    pub queue_size: usize,
    /// Largest stanza accepted from a component, in bytes.
    pub max_stanza_bytes: usize,
}

impl Default for ListenerSection {
    fn default() -> Self {
        ListenerSection {
            listen: vec!["127.0.0.1:5347".into()],
            handshake_timeout_secs: 10,
            queue_size: 1024,
            max_stanza_bytes: 262_144,
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// Checks the component settings; errors name the key, the value and what was expected.
pub fn validate(entries: &[ComponentEntry], l: &ListenerSection) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, c) in entries.iter().enumerate() {
        let bad_domain = jid::BareJid::new(&c.domain)
            .map(|j| j.node().is_some())
            .unwrap_or(true);
        if bad_domain {
            return Err(ConfigError(format!(
                "component[{i}].domain = {:?}: expected a domain name such as \"gateway.example.org\"",
                c.domain
            )));
        }
        if c.secret.is_empty() {
            return Err(ConfigError(format!(
                "component[{i}].secret = \"\": expected a non-empty shared secret"
            )));
        }
        if !seen.insert(c.domain.to_ascii_lowercase()) {
            return Err(ConfigError(format!(
                "component[{i}].domain = {:?}: expected each component domain once",
                c.domain
            )));
        }
    }
    for a in &l.listen {
        if a.parse::<SocketAddr>().is_err() {
            return Err(ConfigError(format!(
                "component_listener.listen = {a:?}: expected an address with port, such as \"127.0.0.1:5347\""
            )));
        }
    }
    if l.queue_size == 0 || l.handshake_timeout_secs == 0 || l.max_stanza_bytes < 10_000 {
        return Err(ConfigError(
            "component_listener: expected queue_size >= 1, handshake_timeout_secs >= 1 and max_stanza_bytes >= 10000".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_key() {
        let entries = vec![ComponentEntry {
            domain: "a@b".into(),
            secret: "x".into(),
        }];
        let e = validate(&entries, &ListenerSection::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("component[0].domain"), "{e}");
        let l = ListenerSection {
            listen: vec!["5347".into()],
            ..Default::default()
        };
        assert!(validate(&[], &l)
            .unwrap_err()
            .to_string()
            .contains("component_listener.listen"));
    }
}
