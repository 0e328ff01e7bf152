//! Bookmarks kept in step across their three homes (XEP-0402 §"Compatibility"):
//! the XEP-0402 PEP node `urn:xmpp:bookmarks:1` (one item per room, the source of truth),
//! the legacy XEP-0048 PEP node `storage:bookmarks` (one `current` item holding everything,
//! `#compat-pep`), and XEP-0049 private storage of `<storage xmlns='storage:bookmarks'/>`
//! (`#compat`). A change through any of them is written to the others, with the usual
//! notifications.

use std::collections::BTreeMap;

use minidom::Element;
use tracing::warn;

use tern_router::xml::BuilderExt;

use crate::engine::Entity;
use crate::error::PsResult;
use crate::node::{AccessModel, MaxItems, NodeConfig, SendLast};
use crate::ns::{NS_BOOKMARKS, NS_BOOKMARKS2};
use crate::ops::Publish;
use crate::store::to_xml;

/// XEP-0402: bookmarks 2 and XEP-0049 private storage are unified.
pub const FEATURE_COMPAT: &str = "urn:xmpp:bookmarks:1#compat";
/// XEP-0402: bookmarks 2 and XEP-0048 over PEP are unified.
pub const FEATURE_COMPAT_PEP: &str = "urn:xmpp:bookmarks:1#compat-pep";

/// The item id of the single XEP-0048 PEP item.
const CURRENT: &str = "current";

/// XEP-0402 §3 / XEP-0048 §3 node configuration for nodes created on the user's behalf.
fn private_config(max: MaxItems) -> NodeConfig {
    NodeConfig {
        access_model: AccessModel::Whitelist,
        max_items: max,
        send_last_published_item: SendLast::Never,
        ..NodeConfig::pep_default()
    }
}

fn is_true(v: Option<&str>) -> bool {
    matches!(v, Some("1" | "true"))
}

/// One room: XEP-0048 `<conference jid=…/>` → (room JID, XEP-0402 `<conference/>`), keeping
/// the `<extensions/>` of the item it replaces.
fn to_v2(c: &Element, old: Option<&Element>) -> Option<(String, Element)> {
    let jid = c.attr("jid").filter(|j| !j.is_empty())?.to_owned();
    let mut el = Element::builder("conference", NS_BOOKMARKS2)
        .a_opt("name", c.attr("name"))
        .a(
            "autojoin",
            if is_true(c.attr("autojoin")) {
                "true"
            } else {
                "false"
            },
        )
        .build();
    for name in ["nick", "password"] {
        if let Some(v) = c.get_child(name, NS_BOOKMARKS) {
            el.append_child(
                Element::builder(name, NS_BOOKMARKS2)
                    .append(v.text())
                    .build(),
            );
        }
    }
    if let Some(ext) = old.and_then(|o| o.get_child("extensions", NS_BOOKMARKS2)) {
        el.append_child(ext.clone());
    }
    Some((jid, el))
}

/// XEP-0402 item (id = room JID) → XEP-0048 `<conference/>`.
fn to_v1(id: &str, c: &Element) -> Element {
    let mut el = Element::builder("conference", NS_BOOKMARKS)
        .a("jid", id)
        .a_opt("name", c.attr("name"))
        .a(
            "autojoin",
            if is_true(c.attr("autojoin")) {
                "true"
            } else {
                "false"
            },
        )
        .build();
    for name in ["nick", "password"] {
        if let Some(v) = c.get_child(name, NS_BOOKMARKS2) {
            el.append_child(
                Element::builder(name, NS_BOOKMARKS)
                    .append(v.text())
                    .build(),
            );
        }
    }
    el
}

/// The XEP-0402 items, by room JID.
async fn v2_items(entity: &Entity<'_>) -> PsResult<BTreeMap<String, Element>> {
    let mut out = BTreeMap::new();
    if entity.store().node(NS_BOOKMARKS2).await?.is_none() {
        return Ok(out);
    }
    for item in entity.store().latest(NS_BOOKMARKS2, None).await? {
        if let Some(p) = item.payload_element() {
            out.insert(item.id, p);
        }
    }
    Ok(out)
}

/// The XEP-0048 `<storage/>` built from the XEP-0402 items plus the non-room children
/// (`<url/>` bookmarks) of `legacy`.
pub async fn storage_from_v2(entity: &Entity<'_>, legacy: Option<&Element>) -> PsResult<Element> {
    let mut storage = Element::builder("storage", NS_BOOKMARKS).build();
    for (id, c) in v2_items(entity).await? {
        storage.append_child(to_v1(&id, &c));
    }
    for other in legacy
        .into_iter()
        .flat_map(|l| l.children())
        .filter(|c| !c.is("conference", NS_BOOKMARKS))
    {
        storage.append_child(other.clone());
    }
    Ok(storage)
}

/// Publishes as the account, creating the node with `config` when it does not exist.
async fn publish(
    entity: &Entity<'_>,
    node: &str,
    id: &str,
    payload: Element,
    config: NodeConfig,
) -> PsResult<()> {
    let account = entity.jid.to_bare();
    if entity.store().node(node).await?.is_none() {
        match entity.create_node(node, &account, config).await {
            Ok(_)
            | Err(crate::error::PsError {
                cond: tern_router::Condition::Conflict,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    let item = Element::builder("item", crate::ns::NS_PUBSUB)
        .a("id", id)
        .append(payload)
        .build();
    entity
        .publish(
            &entity.jid,
            Publish {
                node,
                item: Some(&item),
                options: None,
            },
        )
        .await?;
    Ok(())
}

/// Makes the XEP-0402 node hold exactly the rooms of a XEP-0048 `<storage/>`.
async fn v1_into_v2(entity: &Entity<'_>, storage: &Element) -> PsResult<()> {
    let existing = v2_items(entity).await?;
    let mut wanted = BTreeMap::new();
    for c in storage
        .children()
        .filter(|c| c.is("conference", NS_BOOKMARKS))
    {
        let old = c.attr("jid").and_then(|j| existing.get(j));
        if let Some((jid, el)) = to_v2(c, old) {
            wanted.insert(jid, el);
        }
    }
    for (jid, el) in &wanted {
        if existing.get(jid).map(to_xml) != Some(to_xml(el)) {
            let cfg = private_config(MaxItems::Max);
            publish(entity, NS_BOOKMARKS2, jid, el.clone(), cfg).await?;
        }
    }
    for jid in existing.keys().filter(|j| !wanted.contains_key(*j)) {
        entity
            .retract(&entity.jid, NS_BOOKMARKS2, Some(jid), Some(true))
            .await?;
    }
    Ok(())
}

/// Rewrites the XEP-0048 PEP item from the XEP-0402 items.
async fn v2_into_v1_pep(entity: &Entity<'_>) -> PsResult<()> {
    let legacy = match entity.store().node(NS_BOOKMARKS).await? {
        Some(_) => entity
            .store()
            .item(NS_BOOKMARKS, CURRENT)
            .await?
            .and_then(|i| i.payload_element()),
        None => None,
    };
    let storage = storage_from_v2(entity, legacy.as_ref()).await?;
    if legacy.as_ref().map(to_xml) == Some(to_xml(&storage)) {
        return Ok(());
    }
    publish(
        entity,
        NS_BOOKMARKS,
        CURRENT,
        storage,
        private_config(MaxItems::Count(1)),
    )
    .await
}

/// After a client changed a PEP node: carries bookmark changes over to the other forms.
pub async fn after_pep_change(entity: &Entity<'_>, node: &str) {
    let r = match node {
        NS_BOOKMARKS2 => v2_into_v1_pep(entity).await,
        NS_BOOKMARKS => {
            async {
                let item = entity.store().item(NS_BOOKMARKS, CURRENT).await?;
                let storage = item
                    .and_then(|i| i.payload_element())
                    .filter(|s| s.is("storage", NS_BOOKMARKS))
                    .unwrap_or_else(|| Element::builder("storage", NS_BOOKMARKS).build());
                v1_into_v2(entity, &storage).await
            }
            .await
        }
        _ => Ok(()),
    };
    if let Err(e) = r {
        warn!(account = %entity.jid, "bookmark synchronization failed: {e}");
    }
}

/// After a client stored XEP-0048 bookmarks in private storage.
pub async fn after_private_set(entity: &Entity<'_>, storage: &Element) -> PsResult<()> {
    v1_into_v2(entity, storage).await?;
    v2_into_v1_pep(entity).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conference_round_trip() {
        let v1: Element = "<conference xmlns='storage:bookmarks' jid='room@muc.example' name='Room' autojoin='1'><nick>me</nick></conference>"
            .parse()
            .unwrap();
        let (jid, v2) = to_v2(&v1, None).unwrap();
        assert_eq!(jid, "room@muc.example");
        assert_eq!(v2.attr("autojoin"), Some("true"));
        assert_eq!(v2.get_child("nick", NS_BOOKMARKS2).unwrap().text(), "me");
        let back = to_v1(&jid, &v2);
        assert_eq!(back.attr("jid"), Some("room@muc.example"));
        assert_eq!(back.attr("name"), Some("Room"));
        assert_eq!(back.get_child("nick", NS_BOOKMARKS).unwrap().text(), "me");
    }
}
