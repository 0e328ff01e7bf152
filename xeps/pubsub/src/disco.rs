//! XEP-0030 for pubsub nodes (XEP-0060 §5): node info and items, the node list of an entity,
//! and the service's own info.

use jid::Jid;
use minidom::Element;

use tern_router::xml::BuilderExt;

use crate::engine::Entity;
use crate::error::PsResult;
use crate::forms::{self, Field};
use crate::ns::{FORM_META_DATA, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PUBSUB};

/// disco#items entries for the nodes `requester` may access.
pub async fn node_list(entity: &Entity<'_>, requester: &Jid) -> PsResult<Vec<Element>> {
    let mut out = Vec::new();
    for (name, rec) in entity.store().nodes().await? {
        if entity
            .check_access(&rec, &requester.to_bare())
            .await
            .is_err()
        {
            continue;
        }
        out.push(
            Element::builder("item", NS_DISCO_ITEMS)
                .a("jid", entity.jid.to_string())
                .a("node", name.as_str())
                .a_opt(
                    "name",
                    Some(rec.config.title.as_str()).filter(|t| !t.is_empty()),
                )
                .build(),
        );
    }
    Ok(out)
}

/// The disco#info or disco#items answer for one node, or `None` when the node does not exist
/// or the requester may not see it (both answered as an unknown node).
pub async fn node_query(
    entity: &Entity<'_>,
    ns: &str,
    node: &str,
    requester: &Jid,
) -> PsResult<Option<Element>> {
    let Some(rec) = entity.store().node(node).await? else {
        return Ok(None);
    };
    if entity
        .check_access(&rec, &requester.to_bare())
        .await
        .is_err()
    {
        return Ok(None);
    }
    let mut q = Element::builder("query", ns).a("node", node).build();
    if ns == NS_DISCO_INFO {
        q.append_child(
            Element::builder("identity", NS_DISCO_INFO)
                .a("category", "pubsub")
                .a("type", "leaf")
                .build(),
        );
        q.append_child(feature(NS_PUBSUB));
        let owners: Vec<String> = rec
            .affiliations
            .iter()
            .filter(|(_, a)| **a == crate::node::Affiliation::Owner)
            .map(|(j, _)| j.clone())
            .collect();
        let meta = vec![
            Field::one(
                "pubsub#title",
                "text-single",
                "Title",
                rec.config.title.clone(),
            ),
            Field::one(
                "pubsub#description",
                "text-single",
                "Description",
                rec.config.description.clone(),
            ),
            Field::one(
                "pubsub#type",
                "text-single",
                "Payload type",
                rec.config.payload_type.clone(),
            ),
            Field::one(
                "pubsub#access_model",
                "list-single",
                "Access model",
                rec.config.access_model.as_str().to_owned(),
            ),
            Field {
                values: owners,
                ..Field::one("pubsub#owner", "jid-multi", "Owners", String::new())
            },
        ];
        q.append_child(forms::build("result", FORM_META_DATA, &meta));
    } else {
        for id in entity.store().order(node).await? {
            q.append_child(
                Element::builder("item", NS_DISCO_ITEMS)
                    .a("jid", entity.jid.to_string())
                    .a("name", id)
                    .build(),
            );
        }
    }
    Ok(Some(q))
}

fn feature(var: &str) -> Element {
    Element::builder("feature", NS_DISCO_INFO)
        .a("var", var)
        .build()
}

/// The service's own disco#info (XEP-0060 §5.1).
pub fn service_info() -> Element {
    let mut q = Element::builder("query", NS_DISCO_INFO).build();
    q.append_child(
        Element::builder("identity", NS_DISCO_INFO)
            .a("category", "pubsub")
            .a("type", "service")
            .a("name", "Publish-Subscribe")
            .build(),
    );
    q.append_child(feature(NS_DISCO_INFO));
    q.append_child(feature(NS_DISCO_ITEMS));
    for f in crate::ns::service_features() {
        q.append_child(feature(f));
    }
    q
}
