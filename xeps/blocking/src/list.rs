//! A block list and XEP-0016 §2.1 JID matching, which XEP-0191 §6 adopts.

use tern_router::Jid;

/// One account's blocked JIDs, in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockList {
    items: Vec<Jid>,
}

impl BlockList {
    /// Parses the stored form (a JSON array of JID strings); unreadable entries are skipped.
    pub fn decode(bytes: &[u8]) -> BlockList {
        let raw: Vec<String> = serde_json::from_slice(bytes).unwrap_or_default();
        BlockList {
            items: raw.iter().filter_map(|s| Jid::new(s).ok()).collect(),
        }
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let raw: Vec<String> = self.items.iter().map(|j| j.to_string()).collect();
        serde_json::to_vec(&raw).unwrap_or_default()
    }

    /// The blocked JIDs.
    pub fn items(&self) -> &[Jid] {
        &self.items
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds JIDs not already listed; returns those that were new.
    pub fn add(&mut self, jids: &[Jid]) -> Vec<Jid> {
        let mut added = Vec::new();
        for j in jids {
            if !self.items.contains(j) {
                self.items.push(j.clone());
                added.push(j.clone());
            }
        }
        added
    }

    /// Removes the given JIDs; returns those that were listed.
    pub fn remove(&mut self, jids: &[Jid]) -> Vec<Jid> {
        let removed: Vec<Jid> = jids
            .iter()
            .filter(|j| self.items.contains(j))
            .cloned()
            .collect();
        self.items.retain(|j| !jids.contains(j));
        removed
    }

    /// Empties the list; returns what it held.
    pub fn clear(&mut self) -> Vec<Jid> {
        std::mem::take(&mut self.items)
    }

    /// Whether communication with `peer` is blocked.
    pub fn blocks(&self, peer: &Jid) -> bool {
        self.items.iter().any(|item| matches(item, peer))
    }
}

/// XEP-0016 §2.1: an item `user@domain/resource` matches that full JID only; `user@domain`
/// matches the bare JID and every resource of it; `domain/resource` matches that resource of
/// the domain only; `domain` matches the domain and every JID at it.
pub fn matches(item: &Jid, peer: &Jid) -> bool {
    if item.domain() != peer.domain() {
        return false;
    }
    match (item.node(), item.resource()) {
        (Some(_), Some(_)) => item == peer,
        (Some(n), None) => peer.node() == Some(n),
        (None, Some(r)) => peer.node().is_none() && peer.resource() == Some(r),
        (None, None) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: &str) -> Jid {
        Jid::new(s).unwrap()
    }

    #[test]
    fn xep0016_matching() {
        let full = j("romeo@example.net/orchard");
        assert!(matches(&j("romeo@example.net/orchard"), &full));
        assert!(!matches(&j("romeo@example.net/balcony"), &full));
        assert!(matches(&j("romeo@example.net"), &full));
        assert!(matches(&j("romeo@example.net"), &j("romeo@example.net")));
        assert!(!matches(
            &j("romeo@example.net/orchard"),
            &j("romeo@example.net")
        ));
        assert!(matches(&j("example.net"), &full));
        assert!(matches(&j("example.net"), &j("example.net")));
        assert!(!matches(&j("example.net"), &j("romeo@example.org")));
        assert!(matches(
            &j("example.net/orchard"),
            &j("example.net/orchard")
        ));
        assert!(!matches(&j("example.net/orchard"), &full));
        assert!(!matches(&j("juliet@example.net"), &full));
    }

    #[test]
    fn add_remove_roundtrip() {
        let mut l = BlockList::default();
        assert_eq!(l.add(&[j("a@x"), j("b@x"), j("a@x")]).len(), 2);
        assert!(l.blocks(&j("a@x/r")));
        let back = BlockList::decode(&l.encode());
        assert_eq!(back, l);
        assert_eq!(l.remove(&[j("a@x"), j("c@x")]), vec![j("a@x")]);
        assert!(!l.blocks(&j("a@x/r")));
        assert_eq!(l.clear(), vec![j("b@x")]);
        assert!(l.is_empty());
        assert!(BlockList::decode(b"not json").is_empty());
    }
}
