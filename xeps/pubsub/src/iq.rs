//! Reading pubsub IQs (XEP-0060 §5–§8) and writing their results: one dispatcher over the
//! `pubsub` and `pubsub#owner` payloads, shared by PEP and the service.

use jid::Jid;
use minidom::Element;

use tern_router::xml::BuilderExt;
use tern_router::{Condition, Stanza};

use crate::engine::Entity;
use crate::error::{PsError, PsResult};
use crate::forms::Form;
use crate::node::Affiliation;
use crate::ns::{NS_OWNER, NS_PUBSUB};
use crate::ops::Publish;

/// What a handled request did, for follow-up work such as bookmark synchronization.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The IQ result payload.
    pub reply: Option<Element>,
    /// A node whose items changed.
    pub changed: Option<String>,
}

fn reply(el: Element) -> PsResult<Outcome> {
    Ok(Outcome {
        reply: Some(el),
        changed: None,
    })
}

fn empty() -> PsResult<Outcome> {
    Ok(Outcome::default())
}

fn node_attr(el: &Element) -> PsResult<&str> {
    el.attr("node")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| PsError::app(Condition::BadRequest, "nodeid-required"))
}

fn want(st: &Stanza, t: &str) -> PsResult<()> {
    if st.type_() == t {
        Ok(())
    } else {
        Err(PsError::bad(format!("this request needs type '{t}'")))
    }
}

/// Handles a `pubsub` or `pubsub#owner` IQ addressed to `entity`.
pub async fn handle(entity: &Entity<'_>, st: &Stanza) -> PsResult<Outcome> {
    let payload = st
        .iq_payload()
        .ok_or_else(|| PsError::bad("empty request"))?;
    let mut children = payload.children();
    let action = children
        .next()
        .ok_or_else(|| PsError::bad("no pubsub action"))?;
    let rest: Vec<&Element> = children.collect();
    if payload.is("pubsub", NS_OWNER) {
        return owner(entity, st, action, &rest).await;
    }
    if !payload.is("pubsub", NS_PUBSUB) {
        return Err(PsError::bad("unexpected payload"));
    }
    let who = &st.from;
    let form_in = |name: &str| -> PsResult<Option<Form>> {
        match rest.iter().find(|e| e.is(name, NS_PUBSUB)) {
            Some(el) => Form::child_of(el),
            None => Ok(None),
        }
    };
    match action.name() {
        "publish" => {
            want(st, "set")?;
            let node = node_attr(action)?;
            let mut items = action.children().filter(|c| c.is("item", NS_PUBSUB));
            let item = items.next();
            if items.next().is_some() {
                return Err(PsError::bad("one item per publish request"));
            }
            let options = form_in("publish-options")?;
            let id = entity
                .publish(
                    who,
                    Publish {
                        node,
                        item,
                        options,
                    },
                )
                .await?;
            let el = pubsub(
                Element::builder("publish", NS_PUBSUB)
                    .a("node", node)
                    .append(Element::builder("item", NS_PUBSUB).a("id", id).build())
                    .build(),
            );
            Ok(Outcome {
                reply: Some(el),
                changed: Some(node.to_owned()),
            })
        }
        "retract" => {
            want(st, "set")?;
            let node = node_attr(action)?;
            let notify = action.attr("notify").map(|n| matches!(n, "1" | "true"));
            let id = action
                .children()
                .find(|c| c.is("item", NS_PUBSUB))
                .and_then(|i| i.attr("id"));
            entity.retract(who, node, id, notify).await?;
            Ok(Outcome {
                reply: None,
                changed: Some(node.to_owned()),
            })
        }
        "items" => {
            want(st, "get")?;
            let node = node_attr(action)?;
            let max = match action.attr("max_items") {
                Some(m) => Some(
                    m.parse::<usize>()
                        .map_err(|_| PsError::bad("bad max_items"))?,
                ),
                None => None,
            };
            let ids: Vec<String> = action
                .children()
                .filter(|c| c.is("item", NS_PUBSUB))
                .filter_map(|i| i.attr("id").map(str::to_owned))
                .collect();
            let (rec, items) = entity.items(who, node, max, &ids).await?;
            let mut el = Element::builder("items", NS_PUBSUB).a("node", node).build();
            for i in &items {
                el.append_child(entity.item_element(NS_PUBSUB, &rec, i, true));
            }
            reply(pubsub(el))
        }
        "create" => {
            want(st, "set")?;
            let config = form_in("configure")?;
            let requested = action.attr("node");
            let name = entity.create(who, requested, config.as_ref()).await?;
            if requested.is_some_and(|r| r == name) {
                return empty();
            }
            reply(pubsub(
                Element::builder("create", NS_PUBSUB)
                    .a("node", name)
                    .build(),
            ))
        }
        "subscribe" => {
            want(st, "set")?;
            let node = node_attr(action)?;
            let options = form_in("options")?;
            let (jid, subid) = entity
                .subscribe(who, node, action.attr("jid"), options.as_ref())
                .await?;
            reply(pubsub(
                Element::builder("subscription", NS_PUBSUB)
                    .a("node", node)
                    .a("jid", jid)
                    .a("subid", subid)
                    .a("subscription", "subscribed")
                    .build(),
            ))
        }
        "unsubscribe" => {
            want(st, "set")?;
            let node = node_attr(action)?;
            entity
                .unsubscribe(who, node, action.attr("jid"), action.attr("subid"))
                .await?;
            empty()
        }
        "options" => {
            let node = node_attr(action)?;
            let set = if st.type_() == "set" {
                Some(Form::child_of(action)?.ok_or_else(|| PsError::bad("no form"))?)
            } else {
                None
            };
            let form = entity
                .options(who, node, action.attr("jid"), set.as_ref())
                .await?;
            match form {
                Some(f) => reply(pubsub(
                    Element::builder("options", NS_PUBSUB)
                        .a("node", node)
                        .a("jid", who.to_string())
                        .append(f)
                        .build(),
                )),
                None => empty(),
            }
        }
        "subscriptions" => {
            want(st, "get")?;
            let mut el = Element::builder("subscriptions", NS_PUBSUB).build();
            for (name, rec) in entity.own_nodes(action.attr("node")).await? {
                for (jid, sub) in &rec.subscriptions {
                    if Jid::new(jid).is_ok_and(|j| j.to_bare() == who.to_bare()) {
                        el.append_child(
                            Element::builder("subscription", NS_PUBSUB)
                                .a("node", name.as_str())
                                .a("jid", jid.as_str())
                                .a("subid", sub.subid.as_str())
                                .a("subscription", "subscribed")
                                .build(),
                        );
                    }
                }
            }
            reply(pubsub(el))
        }
        "affiliations" => {
            want(st, "get")?;
            let mut el = Element::builder("affiliations", NS_PUBSUB).build();
            for (name, rec) in entity.own_nodes(action.attr("node")).await? {
                let aff = entity.affiliation(&rec, &who.to_bare());
                if aff != Affiliation::None {
                    el.append_child(
                        Element::builder("affiliation", NS_PUBSUB)
                            .a("node", name.as_str())
                            .a("affiliation", aff.as_str())
                            .build(),
                    );
                }
            }
            reply(pubsub(el))
        }
        "default" => Err(PsError::unsupported("retrieve-default-sub")),
        _ => Err(PsError::new(Condition::FeatureNotImplemented)
            .text(format!("unsupported pubsub request <{}/>", action.name()))),
    }
}

fn pubsub(child: Element) -> Element {
    Element::builder("pubsub", NS_PUBSUB).append(child).build()
}

fn owner_el(child: Element) -> Element {
    Element::builder("pubsub", NS_OWNER).append(child).build()
}

/// `(jid, value)` of each child `<name/>` with attribute `attr`.
fn pairs(action: &Element, name: &str, attr: &str) -> PsResult<Vec<(String, String)>> {
    action
        .children()
        .filter(|c| c.is(name, NS_OWNER))
        .map(|c| match (c.attr("jid"), c.attr(attr)) {
            (Some(j), Some(v)) => Ok((j.to_owned(), v.to_owned())),
            _ => Err(PsError::bad(format!("<{name}/> needs jid and {attr}"))),
        })
        .collect()
}

async fn owner(
    entity: &Entity<'_>,
    st: &Stanza,
    action: &Element,
    _rest: &[&Element],
) -> PsResult<Outcome> {
    let who = &st.from;
    match (action.name(), st.type_()) {
        ("configure", "get") => {
            let node = node_attr(action)?;
            let form = entity.configure_get(who, node).await?;
            reply(owner_el(
                Element::builder("configure", NS_OWNER)
                    .a("node", node)
                    .append(form)
                    .build(),
            ))
        }
        ("configure", "set") => {
            let node = node_attr(action)?;
            let form = Form::child_of(action)?.ok_or_else(|| PsError::bad("no form"))?;
            entity.configure_set(who, node, &form).await?;
            empty()
        }
        ("default", "get") => reply(owner_el(
            Element::builder("default", NS_OWNER)
                .append(entity.default_config().to_form())
                .build(),
        )),
        ("delete", "set") => {
            let node = node_attr(action)?;
            entity.delete(who, node).await?;
            Ok(Outcome {
                reply: None,
                changed: Some(node.to_owned()),
            })
        }
        ("purge", "set") => {
            let node = node_attr(action)?;
            entity.purge(who, node).await?;
            Ok(Outcome {
                reply: None,
                changed: Some(node.to_owned()),
            })
        }
        ("affiliations", "get") => {
            let node = node_attr(action)?;
            let rec = entity.affiliations_get(who, node).await?;
            let mut el = Element::builder("affiliations", NS_OWNER)
                .a("node", node)
                .build();
            for (jid, aff) in &rec.affiliations {
                el.append_child(
                    Element::builder("affiliation", NS_OWNER)
                        .a("jid", jid.as_str())
                        .a("affiliation", aff.as_str())
                        .build(),
                );
            }
            reply(owner_el(el))
        }
        ("affiliations", "set") => {
            let node = node_attr(action)?;
            let changes = pairs(action, "affiliation", "affiliation")?;
            entity.affiliations_set(who, node, &changes).await?;
            empty()
        }
        ("subscriptions", "get") => {
            let node = node_attr(action)?;
            let rec = entity.affiliations_get(who, node).await?;
            let mut el = Element::builder("subscriptions", NS_OWNER)
                .a("node", node)
                .build();
            for (jid, sub) in &rec.subscriptions {
                el.append_child(
                    Element::builder("subscription", NS_OWNER)
                        .a("jid", jid.as_str())
                        .a("subid", sub.subid.as_str())
                        .a("subscription", "subscribed")
                        .build(),
                );
            }
            reply(owner_el(el))
        }
        ("subscriptions", "set") => {
            let node = node_attr(action)?;
            let changes = pairs(action, "subscription", "subscription")?;
            entity.subscriptions_set(who, node, &changes).await?;
            empty()
        }
        ("configure" | "default" | "delete" | "purge" | "affiliations" | "subscriptions", _) => {
            Err(PsError::bad("wrong IQ type for this request"))
        }
        ("pending", _) => Err(PsError::unsupported("get-pending")),
        (other, _) => Err(PsError::new(Condition::FeatureNotImplemented)
            .text(format!("unsupported owner request <{other}/>"))),
    }
}
