//! Publishing and reading (XEP-0060 §6–§7): publish with publish-options (§7.1.5, XEP-0223),
//! retract, item retrieval, subscribe and unsubscribe with minimal subscription options.

use jid::{BareJid, Jid};
use minidom::Element;

use tern_router::time::now_micros;
use tern_router::xml::BuilderExt;
use tern_router::{Condition, Kind, Stanza};
use tern_stream::NS_CLIENT;

use crate::engine::{Entity, EntityKind};
use crate::error::{PsError, PsResult};
use crate::forms::{self, parse_bool, Field, Form};
use crate::node::{Affiliation, NodeRecord, PublishModel, SendLast, Subscription};
use crate::ns::{FORM_PUBLISH_OPTIONS, FORM_SUBSCRIBE_OPTIONS, NS_EVENT};
use crate::store::{to_xml, StoredItem};

/// The announcement made after an item was published on an account's PEP service
/// (docs/hooks.md): the stanza is a headline message from the account to itself carrying the
/// notification `<event/>` with the item, its payload and its `publisher`, whatever the node's
/// delivery settings. XEP-0398 avatar conversion listens to it.
pub const EVENT_PEP_PUBLISHED: &str = "pep.published";

/// A publish request, as read from the wire.
pub struct Publish<'e> {
    /// The node.
    pub node: &'e str,
    /// The `<item/>` (None: a publish without item).
    pub item: Option<&'e Element>,
    /// The publish-options form.
    pub options: Option<Form>,
}

fn random_id() -> String {
    format!(
        "{:016x}{:08x}",
        rand::random::<u64>(),
        rand::random::<u32>()
    )
}

impl Entity<'_> {
    /// Whether `who` may publish to the node (XEP-0060 §7.1.3.1, `pubsub#publish_model`).
    fn may_publish(&self, rec: &NodeRecord, who: &Jid) -> bool {
        let bare = who.to_bare();
        let aff = self.affiliation(rec, &bare);
        if let EntityKind::Pep(_) = self.kind {
            // XEP-0163 §4.3: only the account publishes to its own nodes.
            return aff == Affiliation::Owner;
        }
        match aff {
            Affiliation::Owner | Affiliation::Publisher => true,
            Affiliation::Outcast => false,
            _ => match rec.config.publish_model {
                PublishModel::Publishers => false,
                PublishModel::Subscribers => rec
                    .subscriptions
                    .keys()
                    .any(|j| j == who.as_str() || j == bare.as_str()),
                PublishModel::Open => true,
            },
        }
    }

    /// Checks the item and its payload (XEP-0060 §7.1.3.4–§7.1.3.6).
    fn check_item(&self, rec: &NodeRecord, item: Option<&Element>) -> PsResult<Option<String>> {
        let Some(item) = item else {
            if rec.config.persist_items || rec.config.deliver_payloads {
                return Err(PsError::app(Condition::BadRequest, "item-required"));
            }
            return Ok(None);
        };
        let mut payloads = item.children();
        let payload = payloads.next();
        if payloads.next().is_some() {
            return Err(PsError::app(Condition::BadRequest, "invalid-payload"));
        }
        let Some(payload) = payload else {
            if rec.config.persist_items || rec.config.deliver_payloads {
                return Err(PsError::app(Condition::BadRequest, "payload-required"));
            }
            return Ok(None);
        };
        if !rec.config.payload_type.is_empty() && payload.ns() != rec.config.payload_type {
            return Err(PsError::app(Condition::BadRequest, "invalid-payload"));
        }
        let xml = to_xml(payload);
        if xml.len() > self.cfg.max_item_bytes {
            return Err(PsError::app(Condition::NotAcceptable, "payload-too-big"));
        }
        Ok(Some(xml))
    }

    /// Creates a node for `owner` under the per-user node limit.
    pub(crate) async fn create_node(
        &self,
        name: &str,
        owner: &BareJid,
        config: crate::node::NodeConfig,
    ) -> PsResult<NodeRecord> {
        let nodes = self.store().nodes().await?;
        if nodes.iter().any(|(n, _)| n == name) {
            return Err(PsError::new(Condition::Conflict));
        }
        let owned = nodes
            .iter()
            .filter(|(_, r)| r.affiliation(owner.as_str()) == Affiliation::Owner)
            .count();
        let owned = match self.kind {
            EntityKind::Pep(_) => nodes.len(),
            EntityKind::Service => owned,
        };
        if owned >= self.cfg.max_nodes_per_user {
            return Err(PsError::new(Condition::NotAllowed).text("too many nodes"));
        }
        let rec = NodeRecord::new(config, owner.as_str());
        self.store().put_node(name, &rec).await?;
        Ok(rec)
    }

    /// XEP-0060 §7.1: publishes an item; returns its id. On PEP a missing node is created with
    /// the publish-options as its configuration (XEP-0163 §3, XEP-0223 §3); on an existing node
    /// every option is a precondition (§7.1.5).
    pub async fn publish(&self, who: &Jid, req: Publish<'_>) -> PsResult<String> {
        if let Some(o) = &req.options {
            if o.form_type.as_deref() != Some(FORM_PUBLISH_OPTIONS) {
                return Err(PsError::bad(
                    "publish-options need the publish-options FORM_TYPE",
                ));
            }
        }
        let limit = self.cfg.max_items_per_node;
        let store = self.store();
        let _guard = store.lock(req.node).await;
        let rec = match store.node(req.node).await? {
            Some(rec) => {
                if let Some(o) = &req.options {
                    if !rec.config.satisfies(o, limit) {
                        return Err(PsError::app(Condition::Conflict, "precondition-not-met"));
                    }
                }
                rec
            }
            None => match &self.kind {
                EntityKind::Pep(account) if who.to_bare() == *account => {
                    let mut config = self.default_config();
                    if let Some(o) = &req.options {
                        config = config.apply_form(o, limit)?;
                    }
                    self.create_node(req.node, account, config).await?
                }
                EntityKind::Pep(_) => return Err(PsError::new(Condition::Forbidden)),
                EntityKind::Service => return Err(PsError::not_found()),
            },
        };
        if !self.may_publish(&rec, who) {
            return Err(PsError::new(Condition::Forbidden));
        }
        let payload = self.check_item(&rec, req.item)?;
        let id = req
            .item
            .and_then(|i| i.attr("id"))
            .filter(|i| !i.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(random_id);
        let item = StoredItem {
            id: id.clone(),
            publisher: who.to_string(),
            published: now_micros(),
            payload,
        };
        let keep = rec.config.max_items.effective(limit);
        store.publish(req.node, &item, keep).await?;
        drop(_guard);
        self.notify_item(req.node, &rec, &item).await;
        if let EntityKind::Pep(account) = &self.kind {
            let payload = req.item.and_then(|i| i.children().next());
            self.announce_published(account, req.node, &item, payload)
                .await;
        }
        Ok(id)
    }

    /// Announces [`EVENT_PEP_PUBLISHED`] for an item published on an account's PEP service.
    async fn announce_published(
        &self,
        account: &BareJid,
        node: &str,
        item: &StoredItem,
        payload: Option<&Element>,
    ) {
        let mut el = Element::builder("item", NS_EVENT)
            .a("id", item.id.as_str())
            .a("publisher", item.publisher.as_str())
            .build();
        if let Some(p) = payload {
            el.append_child(p.clone());
        }
        let items = Element::builder("items", NS_EVENT)
            .a("node", node)
            .append(el)
            .build();
        let msg = Element::builder("message", NS_CLIENT)
            .a("type", "headline")
            .append(Element::builder("event", NS_EVENT).append(items).build())
            .build();
        let me = Jid::from(account.clone());
        let mut st = Stanza::new(Kind::Message, me.clone(), Some(me), msg);
        self.router.announce(EVENT_PEP_PUBLISHED, &mut st).await;
    }

    /// XEP-0060 §7.2: deletes an item, notifying when asked to (`notify` attribute) or when
    /// the node is configured to.
    pub async fn retract(
        &self,
        who: &Jid,
        node: &str,
        id: Option<&str>,
        notify: Option<bool>,
    ) -> PsResult<()> {
        let id = id
            .filter(|i| !i.is_empty())
            .ok_or_else(|| PsError::app(Condition::BadRequest, "item-required"))?;
        let store = self.store();
        let _guard = store.lock(node).await;
        let rec = self.node(node).await?;
        let item = store.item(node, id).await?.ok_or_else(PsError::not_found)?;
        let bare = who.to_bare();
        let aff = self.affiliation(&rec, &bare);
        let own_item = Jid::new(&item.publisher).is_ok_and(|p| p.to_bare() == bare);
        let allowed = match self.kind {
            EntityKind::Pep(_) => aff == Affiliation::Owner,
            EntityKind::Service => aff >= Affiliation::Publisher || own_item,
        };
        if !allowed {
            return Err(PsError::new(Condition::Forbidden));
        }
        store.retract(node, id).await?;
        drop(_guard);
        if notify.unwrap_or(rec.config.notify_retract) {
            let to = self.recipients(node, &rec).await;
            let items = Element::builder("items", NS_EVENT)
                .a("node", node)
                .append(Element::builder("retract", NS_EVENT).a("id", id).build())
                .build();
            self.notify(&rec, &to, items).await;
        }
        Ok(())
    }

    /// XEP-0060 §6.5: items of a node, the newest `max` or those with the given ids.
    pub async fn items(
        &self,
        who: &Jid,
        node: &str,
        max: Option<usize>,
        ids: &[String],
    ) -> PsResult<(NodeRecord, Vec<StoredItem>)> {
        let rec = self.node(node).await?;
        self.check_access(&rec, &who.to_bare()).await?;
        let store = self.store();
        let items = if ids.is_empty() {
            store.latest(node, max).await?
        } else {
            let mut v = Vec::new();
            for id in ids {
                if let Some(i) = store.item(node, id).await? {
                    v.push(i);
                }
            }
            v
        };
        Ok((rec, items))
    }

    /// XEP-0060 §6.1: subscribes `jid` (which must be the requester's own, bare or full).
    pub async fn subscribe(
        &self,
        who: &Jid,
        node: &str,
        jid: Option<&str>,
        options: Option<&Form>,
    ) -> PsResult<(String, String)> {
        let jid = own_jid(who, jid)?;
        let store = self.store();
        let guard = store.lock(node).await;
        let mut rec = self.node(node).await?;
        self.check_access(&rec, &who.to_bare()).await?;
        let key = jid.to_string();
        if let Some(existing) = rec.subscriptions.get(&key) {
            return Ok((key, existing.subid.clone()));
        }
        let mut sub = Subscription {
            subid: random_id(),
            deliver: true,
        };
        if let Some(o) = options {
            apply_sub_options(&mut sub, o)?;
        }
        let subid = sub.subid.clone();
        rec.subscriptions.insert(key.clone(), sub);
        store.put_node(node, &rec).await?;
        drop(guard);
        if rec.config.send_last_published_item != SendLast::Never {
            self.send_last(node, &rec, &jid).await?;
        }
        Ok((key, subid))
    }

    /// XEP-0060 §6.2: removes a subscription.
    pub async fn unsubscribe(
        &self,
        who: &Jid,
        node: &str,
        jid: Option<&str>,
        subid: Option<&str>,
    ) -> PsResult<()> {
        let jid = own_jid(who, jid).map_err(|_| PsError::new(Condition::Forbidden))?;
        let store = self.store();
        let _guard = store.lock(node).await;
        let mut rec = self.node(node).await?;
        let key = jid.to_string();
        let Some(sub) = rec.subscriptions.get(&key) else {
            return Err(PsError::app(Condition::UnexpectedRequest, "not-subscribed"));
        };
        if subid.is_some_and(|s| s != sub.subid) {
            return Err(PsError::app(Condition::NotAcceptable, "invalid-subid"));
        }
        rec.subscriptions.remove(&key);
        store.put_node(node, &rec).await?;
        Ok(())
    }

    /// XEP-0060 §6.3: the subscription options form, or (with `set`) applies one.
    pub async fn options(
        &self,
        who: &Jid,
        node: &str,
        jid: Option<&str>,
        set: Option<&Form>,
    ) -> PsResult<Option<Element>> {
        let jid = own_jid(who, jid).map_err(|_| PsError::new(Condition::Forbidden))?;
        let store = self.store();
        let _guard = store.lock(node).await;
        let mut rec = self.node(node).await?;
        let key = jid.to_string();
        let Some(sub) = rec.subscriptions.get_mut(&key) else {
            return Err(PsError::app(Condition::UnexpectedRequest, "not-subscribed"));
        };
        match set {
            Some(form) => {
                apply_sub_options(sub, form)?;
                store.put_node(node, &rec).await?;
                Ok(None)
            }
            None => Ok(Some(forms::build(
                "form",
                FORM_SUBSCRIBE_OPTIONS,
                &[Field::boolean(
                    "pubsub#deliver",
                    "Deliver notifications",
                    sub.deliver,
                )],
            ))),
        }
    }
}

/// The JID a subscription request names, which must belong to the requester (§6.1.3.1).
fn own_jid(who: &Jid, jid: Option<&str>) -> PsResult<Jid> {
    let jid = jid
        .and_then(|j| Jid::new(j).ok())
        .ok_or_else(|| PsError::app(Condition::BadRequest, "invalid-jid"))?;
    if jid.to_bare() != who.to_bare() {
        return Err(PsError::app(Condition::BadRequest, "invalid-jid"));
    }
    Ok(jid)
}

fn apply_sub_options(sub: &mut Subscription, form: &Form) -> PsResult<()> {
    for (var, values) in &form.fields {
        match var.as_str() {
            "pubsub#deliver" => {
                sub.deliver = values
                    .first()
                    .and_then(|v| parse_bool(v))
                    .ok_or_else(|| PsError::app(Condition::BadRequest, "invalid-options"))?
            }
            _ => return Err(PsError::app(Condition::BadRequest, "invalid-options")),
        }
    }
    Ok(())
}
