//! `[pubsub]` settings: the service on `pubsub.<host>`, PEP and private storage limits.

use serde::Deserialize;

/// Who may create nodes on the pubsub service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CreatePolicy {
    /// Accounts of the hosts this server serves.
    #[default]
    Local,
    /// Any entity, remote ones included.
    Anyone,
    /// Nobody (nodes made by configuration or not at all).
    Nobody,
}

/// `[pubsub]` in the server configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PubSubConfig {
    /// Run the XEP-0060 service on its own domain for every host.
    pub service: bool,
    /// Domain of the service; `{host}` is replaced by each served host.
    pub service_domain: String,
    /// Who may create nodes on the service: `local`, `anyone` or `nobody`.
    pub create_nodes: CreatePolicy,
    /// Most items one node keeps; also what `pubsub#max_items = max` means.
    pub max_items_per_node: u64,
    /// `pubsub#max_items` of new service nodes that do not set it.
    pub default_max_items: u64,
    /// Most PEP nodes one account may have, and most service nodes one user may own.
    pub max_nodes_per_user: usize,
    /// Largest item payload in bytes (serialized XML); larger ones get `<payload-too-big/>`.
    pub max_item_bytes: usize,
    /// Most XEP-0049 private XML entries one account may store.
    pub max_private_entries: usize,
    /// Most entity-capabilities hashes remembered (XEP-0115 disco#info results).
    pub caps_cache_entries: usize,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        PubSubConfig {
            service: true,
            service_domain: "pubsub.{host}".into(),
            create_nodes: CreatePolicy::Local,
            max_items_per_node: 1000,
            default_max_items: 10,
            max_nodes_per_user: 200,
            max_item_bytes: 200_000,
            max_private_entries: 100,
            caps_cache_entries: 4096,
        }
    }
}

impl PubSubConfig {
    /// The service domain for a host.
    pub fn service_domain_for(&self, host: &str) -> String {
        self.service_domain.replace("{host}", host)
    }

    /// Checks values TOML types cannot; the error names the key and what was expected.
    pub fn validate(&self) -> Result<(), String> {
        if !self.service_domain.contains("{host}") {
            return Err(format!(
                "pubsub.service_domain = {:?}: expected a pattern containing {{host}}, such as \"pubsub.{{host}}\"",
                self.service_domain
            ));
        }
        for (key, v) in [
            (
                "pubsub.max_items_per_node",
                self.max_items_per_node as usize,
            ),
            ("pubsub.default_max_items", self.default_max_items as usize),
            ("pubsub.max_nodes_per_user", self.max_nodes_per_user),
            ("pubsub.max_item_bytes", self.max_item_bytes),
            ("pubsub.caps_cache_entries", self.caps_cache_entries),
        ] {
            if v == 0 {
                return Err(format!("{key} = 0: expected at least 1"));
            }
        }
        if self.default_max_items > self.max_items_per_node {
            return Err(format!(
                "pubsub.default_max_items = {}: expected at most pubsub.max_items_per_node ({})",
                self.default_max_items, self.max_items_per_node
            ));
        }
        Ok(())
    }
}
