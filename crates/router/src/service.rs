//! Services that own a whole domain beside the hosted ones (DESIGN.md §1, step 4 of routing):
//! the MUC service on `conference.<host>`, PubSub on `pubsub.<host>`, HTTP upload, the SOCKS5
//! proxy, and XEP-0114 external components. Every stanza whose `to` is at such a domain
//! (the bare domain, any node, any resource) goes to the service; nothing else sees it.
//!
//! Services can be attached and detached while the server runs, so an external component
//! that connects or disconnects changes routing at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::module::Origin;
use crate::router::Router;
use crate::stanza::Stanza;

/// An entity owning every JID at one domain.
#[async_trait]
pub trait Service: Send + Sync + 'static {
    /// Short name for logs (`"muc"`, `"pubsub"`, `"component"`).
    fn name(&self) -> &'static str;

    /// Human-readable name listed in the parent host's disco#items (XEP-0030 §4.1).
    fn item_name(&self) -> Option<String> {
        None
    }

    /// The XEPs this service implements (see [`crate::Spec`]).
    fn specs(&self) -> Vec<crate::Spec> {
        Vec::new()
    }

    /// Takes a stanza addressed to the service's domain. `from` is stamped and trusted; the
    /// service answers errors itself (with [`Router::bounce`]) for what it does not handle.
    async fn handle(&self, router: &Arc<Router>, origin: &Origin, stanza: Stanza);
}

/// Domain → service table, shared by the router and whoever attaches services at run time.
#[derive(Default)]
pub struct Services {
    map: RwLock<HashMap<String, Arc<dyn Service>>>,
}

impl Services {
    /// The service at a domain (compared in lower case, as domains are).
    pub fn get(&self, domain: &str) -> Option<Arc<dyn Service>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(domain) {
            return Some(s.clone());
        }
        if domain.bytes().any(|b| b.is_ascii_uppercase()) {
            return map.get(&domain.to_ascii_lowercase()).cloned();
        }
        None
    }

    /// Attaches a service to a domain; returns the one it replaced.
    pub fn attach(&self, domain: &str, service: Arc<dyn Service>) -> Option<Arc<dyn Service>> {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.insert(domain.to_ascii_lowercase(), service)
    }

    /// Detaches whatever serves a domain.
    pub fn detach(&self, domain: &str) -> Option<Arc<dyn Service>> {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.remove(&domain.to_ascii_lowercase())
    }

    /// Specs declared by every attached service.
    pub fn specs(&self) -> Vec<crate::Spec> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.values().flat_map(|s| s.specs()).collect()
    }

    /// Domains served, with their disco names, that sit directly under `host`
    /// (`conference.example.org` under `example.org`), sorted.
    pub fn under(&self, host: &str) -> Vec<(String, Option<String>)> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let suffix = format!(".{host}");
        let mut v: Vec<(String, Option<String>)> = map
            .iter()
            .filter(|(d, _)| d.ends_with(&suffix))
            .map(|(d, s)| (d.clone(), s.item_name()))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;
    #[async_trait]
    impl Service for Nop {
        fn name(&self) -> &'static str {
            "nop"
        }
        fn item_name(&self) -> Option<String> {
            Some("Nop".into())
        }
        async fn handle(&self, _r: &Arc<Router>, _o: &Origin, _s: Stanza) {}
    }

    #[test]
    fn attach_lookup_detach() {
        let s = Services::default();
        assert!(s.attach("Conference.Example.org", Arc::new(Nop)).is_none());
        assert!(s.get("conference.example.org").is_some());
        assert!(s.get("CONFERENCE.example.org").is_some());
        assert!(s.get("example.org").is_none());
        assert_eq!(
            s.under("example.org"),
            vec![("conference.example.org".to_owned(), Some("Nop".to_owned()))]
        );
        assert!(s.under("other.org").is_empty());
        assert!(s.detach("conference.example.org").is_some());
        assert!(s.get("conference.example.org").is_none());
    }
}
