//! Persistence on the `Map` store (DESIGN.md §4). One pubsub entity (an account's PEP
//! service, or a pubsub service domain) is a partition `(host, user)`; the account's own
//! partition for PEP, so deleting an account deletes its nodes and items.
//!
//! Layout: store `pubsub/nodes` maps node name → [`NodeRecord`] (JSON); each node's items live
//! in their own store `pubsub/items/<node>`, keyed `i:<id>`, beside the key `@order` holding the
//! ids oldest first, so an item and the order change are one atomic write.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use minidom::Element;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard};

use tern_storage::{MapStore, Result, StoreError};

use crate::node::NodeRecord;

const NODES: &str = "pubsub/nodes";
const ORDER: &str = "@order";

/// A published item as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredItem {
    /// Item id.
    pub id: String,
    /// Full JID of the publisher.
    pub publisher: String,
    /// Publication time, Unix microseconds.
    pub published: i64,
    /// The payload, serialized XML (None: a notification-only item).
    pub payload: Option<String>,
}

impl StoredItem {
    /// The payload element, if any and if it still parses.
    pub fn payload_element(&self) -> Option<Element> {
        self.payload.as_deref().and_then(|x| x.parse().ok())
    }
}

/// Serializes an element to text for storage.
pub fn to_xml(el: &Element) -> String {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail short of a minidom bug; an empty payload is then stored.
    let _ = el.write_to(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Backend(format!("corrupt pubsub record: {e}"))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Backend(e.to_string()))
}

fn items_store(node: &str) -> String {
    format!("pubsub/items/{node}")
}

fn item_key(id: &str) -> String {
    format!("i:{id}")
}

/// Changes to one node are read-modify-write; striped locks serialize them per node.
fn stripe(host: &str, user: &str, node: &str) -> &'static Mutex<()> {
    static STRIPES: OnceLock<Vec<Mutex<()>>> = OnceLock::new();
    let stripes = STRIPES.get_or_init(|| (0..64).map(|_| Mutex::new(())).collect());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (host, user, node).hash(&mut h);
    &stripes[(h.finish() % 64) as usize]
}

/// The nodes and items of one pubsub entity.
#[derive(Clone, Copy)]
pub struct Partition<'a> {
    map: &'a dyn MapStore,
    host: &'a str,
    user: &'a str,
}

impl<'a> Partition<'a> {
    /// The partition `(host, user)`; for the service domain `user` is empty.
    pub fn new(map: &'a dyn MapStore, host: &'a str, user: &'a str) -> Self {
        Partition { map, host, user }
    }

    /// Serializes changes to one node; hold the guard across read-modify-write.
    pub async fn lock(&self, node: &str) -> MutexGuard<'static, ()> {
        stripe(self.host, self.user, node).lock().await
    }

    /// Every node, sorted by name.
    pub async fn nodes(&self) -> Result<Vec<(String, NodeRecord)>> {
        let rows = self.map.all(self.host, NODES, self.user).await?;
        rows.into_iter()
            .map(|(k, v)| Ok((k, serde_json::from_slice(&v).map_err(corrupt)?)))
            .collect()
    }

    /// One node.
    pub async fn node(&self, node: &str) -> Result<Option<NodeRecord>> {
        match self.map.get(self.host, NODES, self.user, node).await? {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(corrupt)?)),
            None => Ok(None),
        }
    }

    /// Creates or replaces a node record.
    pub async fn put_node(&self, node: &str, rec: &NodeRecord) -> Result<()> {
        let items = [(node.to_owned(), Some(encode(rec)?))];
        self.map.set_many(self.host, NODES, self.user, &items).await
    }

    /// Deletes a node and its items.
    pub async fn delete_node(&self, node: &str) -> Result<()> {
        self.map
            .set_many(self.host, NODES, self.user, &[(node.to_owned(), None)])
            .await?;
        self.purge(node).await
    }

    /// Item ids, oldest first.
    pub async fn order(&self, node: &str) -> Result<Vec<String>> {
        match self
            .map
            .get(self.host, &items_store(node), self.user, ORDER)
            .await?
        {
            Some(v) => serde_json::from_slice(&v).map_err(corrupt),
            None => Ok(Vec::new()),
        }
    }

    /// One item.
    pub async fn item(&self, node: &str, id: &str) -> Result<Option<StoredItem>> {
        match self
            .map
            .get(self.host, &items_store(node), self.user, &item_key(id))
            .await?
        {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(corrupt)?)),
            None => Ok(None),
        }
    }

    /// The newest `n` items (all with `None`), oldest first.
    pub async fn latest(&self, node: &str, n: Option<usize>) -> Result<Vec<StoredItem>> {
        let order = self.order(node).await?;
        let skip = n.map(|n| order.len().saturating_sub(n)).unwrap_or(0);
        let mut out = Vec::new();
        for id in &order[skip..] {
            if let Some(item) = self.item(node, id).await? {
                out.push(item);
            }
        }
        Ok(out)
    }

    /// Stores an item as the newest (replacing one with the same id) and drops the oldest
    /// beyond `keep`; returns the ids dropped. Call under [`Partition::lock`].
    pub async fn publish(&self, node: &str, item: &StoredItem, keep: u64) -> Result<Vec<String>> {
        let mut order = self.order(node).await?;
        order.retain(|i| *i != item.id);
        order.push(item.id.clone());
        let excess = order.len().saturating_sub(keep.max(1) as usize);
        let dropped: Vec<String> = order.drain(..excess).collect();
        let mut writes: Vec<(String, Option<Vec<u8>>)> =
            dropped.iter().map(|id| (item_key(id), None)).collect();
        writes.push((item_key(&item.id), Some(encode(item)?)));
        writes.push((ORDER.to_owned(), Some(encode(&order)?)));
        self.map
            .set_many(self.host, &items_store(node), self.user, &writes)
            .await?;
        Ok(dropped)
    }

    /// Removes an item; false if it did not exist. Call under [`Partition::lock`].
    pub async fn retract(&self, node: &str, id: &str) -> Result<bool> {
        let mut order = self.order(node).await?;
        let before = order.len();
        order.retain(|i| i != id);
        if order.len() == before {
            return Ok(false);
        }
        let writes = [
            (item_key(id), None),
            (ORDER.to_owned(), Some(encode(&order)?)),
        ];
        self.map
            .set_many(self.host, &items_store(node), self.user, &writes)
            .await?;
        Ok(true)
    }

    /// Removes every item of a node.
    pub async fn purge(&self, node: &str) -> Result<()> {
        self.map
            .clear(self.host, &items_store(node), self.user)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{NodeConfig, NodeRecord};
    use tern_storage::Storage;

    fn item(id: &str) -> StoredItem {
        StoredItem {
            id: id.into(),
            publisher: "a@h/r".into(),
            published: 1,
            payload: Some("<x xmlns='urn:t'/>".into()),
        }
    }

    #[tokio::test]
    async fn publish_keeps_order_and_limit() {
        let s = Storage::memory();
        let p = Partition::new(s.map.as_ref(), "h", "a");
        p.put_node("n", &NodeRecord::new(NodeConfig::pep_default(), "a@h"))
            .await
            .unwrap();
        assert!(p.publish("n", &item("1"), 2).await.unwrap().is_empty());
        assert!(p.publish("n", &item("2"), 2).await.unwrap().is_empty());
        assert!(p.publish("n", &item("1"), 2).await.unwrap().is_empty());
        assert_eq!(p.order("n").await.unwrap(), vec!["2", "1"]);
        assert_eq!(p.publish("n", &item("3"), 2).await.unwrap(), vec!["2"]);
        assert!(p.item("n", "2").await.unwrap().is_none());
        let latest = p.latest("n", Some(1)).await.unwrap();
        assert_eq!(latest[0].id, "3");
        assert!(p.retract("n", "1").await.unwrap());
        assert!(!p.retract("n", "1").await.unwrap());
        p.delete_node("n").await.unwrap();
        assert!(p.node("n").await.unwrap().is_none());
        assert!(p.order("n").await.unwrap().is_empty());
    }
}
