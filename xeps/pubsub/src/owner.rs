//! Node ownership (XEP-0060 §8): create, configure, default configuration, delete, purge,
//! and the management of affiliations and subscriptions; plus the entity-wide lists of a
//! user's own subscriptions and affiliations (§5.6, §5.7).

use jid::{BareJid, Jid};
use minidom::Element;

use tern_router::xml::BuilderExt;
use tern_router::Condition;

use crate::config::CreatePolicy;
use crate::engine::{Entity, EntityKind};
use crate::error::{PsError, PsResult};
use crate::forms::Form;
use crate::node::{Affiliation, NodeRecord, Subscription};
use crate::ns::{FORM_NODE_CONFIG, NS_EVENT};

impl Entity<'_> {
    /// XEP-0060 §8.1: creates a node, named or instant (§8.1.2); returns its name.
    pub async fn create(
        &self,
        who: &Jid,
        node: Option<&str>,
        config: Option<&Form>,
    ) -> PsResult<String> {
        let owner = who.to_bare();
        match &self.kind {
            EntityKind::Pep(account) if *account != owner => {
                return Err(PsError::new(Condition::Forbidden))
            }
            EntityKind::Service => {
                let allowed = match self.cfg.create_nodes {
                    CreatePolicy::Anyone => true,
                    CreatePolicy::Local => self.router.is_local(owner.domain().as_str()),
                    CreatePolicy::Nobody => false,
                };
                if !allowed {
                    return Err(PsError::new(Condition::Forbidden));
                }
            }
            _ => {}
        }
        let name = match (node.filter(|n| !n.is_empty()), &self.kind) {
            (Some(n), _) => n.to_owned(),
            (None, EntityKind::Service) => {
                format!("{:016x}", rand::random::<u64>())
            }
            (None, EntityKind::Pep(_)) => {
                return Err(PsError::app(Condition::NotAcceptable, "nodeid-required"))
            }
        };
        let mut cfg = self.default_config();
        if let Some(form) = config.filter(|f| f.kind != "cancel") {
            check_config_form(form)?;
            cfg = cfg.apply_form(form, self.cfg.max_items_per_node)?;
        }
        let store = self.store();
        let _guard = store.lock(&name).await;
        self.create_node(&name, &owner, cfg).await?;
        Ok(name)
    }

    /// XEP-0060 §8.2: the configuration form of a node.
    pub async fn configure_get(&self, who: &Jid, node: &str) -> PsResult<Element> {
        let rec = self.node(node).await?;
        self.require_owner(&rec, &who.to_bare())?;
        Ok(rec.config.to_form())
    }

    /// XEP-0060 §8.2.4: applies a submitted configuration (a `cancel` changes nothing).
    pub async fn configure_set(&self, who: &Jid, node: &str, form: &Form) -> PsResult<()> {
        let store = self.store();
        let guard = store.lock(node).await;
        let mut rec = self.node(node).await?;
        self.require_owner(&rec, &who.to_bare())?;
        if form.kind == "cancel" {
            return Ok(());
        }
        check_config_form(form)?;
        rec.config = rec.config.apply_form(form, self.cfg.max_items_per_node)?;
        store.put_node(node, &rec).await?;
        drop(guard);
        if rec.config.notify_config {
            let to = self.recipients(node, &rec).await;
            let el = Element::builder("configuration", NS_EVENT)
                .a("node", node)
                .build();
            self.notify(&rec, &to, el).await;
        }
        Ok(())
    }

    /// XEP-0060 §8.4: deletes a node, telling its subscribers.
    pub async fn delete(&self, who: &Jid, node: &str) -> PsResult<()> {
        let store = self.store();
        let guard = store.lock(node).await;
        let rec = self.node(node).await?;
        self.require_owner(&rec, &who.to_bare())?;
        let to = self.recipients(node, &rec).await;
        store.delete_node(node).await?;
        drop(guard);
        if rec.config.notify_delete {
            let el = Element::builder("delete", NS_EVENT).a("node", node).build();
            self.notify(&rec, &to, el).await;
        }
        Ok(())
    }

    /// XEP-0060 §8.5: removes every item of a node, telling its subscribers.
    pub async fn purge(&self, who: &Jid, node: &str) -> PsResult<()> {
        let store = self.store();
        let guard = store.lock(node).await;
        let rec = self.node(node).await?;
        self.require_owner(&rec, &who.to_bare())?;
        if !rec.config.persist_items {
            return Err(PsError::unsupported("persistent-items"));
        }
        store.purge(node).await?;
        drop(guard);
        if rec.config.notify_retract {
            let to = self.recipients(node, &rec).await;
            let el = Element::builder("purge", NS_EVENT).a("node", node).build();
            self.notify(&rec, &to, el).await;
        }
        Ok(())
    }

    /// XEP-0060 §8.9.1: the node's affiliations, for its owner.
    pub async fn affiliations_get(&self, who: &Jid, node: &str) -> PsResult<NodeRecord> {
        let rec = self.node(node).await?;
        self.require_owner(&rec, &who.to_bare())?;
        Ok(rec)
    }

    /// XEP-0060 §8.9.2: changes affiliations; all or none. Outcasts lose their
    /// subscriptions; a node is never left without an owner.
    pub async fn affiliations_set(
        &self,
        who: &Jid,
        node: &str,
        changes: &[(String, String)],
    ) -> PsResult<()> {
        let store = self.store();
        let _guard = store.lock(node).await;
        let mut rec = self.node(node).await?;
        self.require_owner(&rec, &who.to_bare())?;
        for (jid, aff) in changes {
            let bare = BareJid::new(jid).map_err(|_| PsError::bad("bad jid"))?;
            let aff = Affiliation::parse(aff).ok_or_else(|| PsError::bad("bad affiliation"))?;
            if matches!(&self.kind, EntityKind::Pep(a) if *a == bare) {
                // The account always owns its PEP nodes.
                continue;
            }
            match aff {
                Affiliation::None => {
                    rec.affiliations.remove(bare.as_str());
                }
                a => {
                    rec.affiliations.insert(bare.to_string(), a);
                }
            }
            if aff == Affiliation::Outcast {
                rec.subscriptions
                    .retain(|j, _| Jid::new(j).map(|j| j.to_bare() != bare).unwrap_or(true));
            }
        }
        let has_owner = matches!(self.kind, EntityKind::Pep(_))
            || rec.affiliations.values().any(|a| *a == Affiliation::Owner);
        if !has_owner {
            return Err(PsError::new(Condition::NotAcceptable).text("a node needs an owner"));
        }
        store.put_node(node, &rec).await?;
        Ok(())
    }

    /// XEP-0060 §8.8.2: changes subscriptions (`subscribed` or `none`); all or none.
    pub async fn subscriptions_set(
        &self,
        who: &Jid,
        node: &str,
        changes: &[(String, String)],
    ) -> PsResult<()> {
        let store = self.store();
        let _guard = store.lock(node).await;
        let mut rec = self.node(node).await?;
        self.require_owner(&rec, &who.to_bare())?;
        for (jid, state) in changes {
            let j = Jid::new(jid).map_err(|_| PsError::bad("bad jid"))?;
            match state.as_str() {
                "none" => {
                    rec.subscriptions.remove(j.as_str());
                }
                "subscribed" => {
                    rec.subscriptions
                        .entry(j.to_string())
                        .or_insert_with(|| Subscription {
                            subid: format!("{:016x}", rand::random::<u64>()),
                            deliver: true,
                        });
                }
                _ => return Err(PsError::bad("unsupported subscription state")),
            }
        }
        store.put_node(node, &rec).await?;
        Ok(())
    }

    /// §5.6 / §5.7: `(node, record)` pairs the requester is subscribed or affiliated to,
    /// optionally one node only.
    pub async fn own_nodes(&self, node: Option<&str>) -> PsResult<Vec<(String, NodeRecord)>> {
        let mut nodes = self.store().nodes().await?;
        if let Some(n) = node {
            nodes.retain(|(name, _)| name == n);
        }
        Ok(nodes)
    }
}

/// A configuration form must be the node_config form type when it names one (§8.2.4).
fn check_config_form(form: &Form) -> PsResult<()> {
    match form.form_type.as_deref() {
        None | Some(FORM_NODE_CONFIG) => {}
        Some(_) => return Err(PsError::bad("expected the node_config form")),
    }
    if let Some((_, v)) = form
        .fields
        .iter()
        .find(|(var, _)| var == "pubsub#node_type")
    {
        if v.first().map(String::as_str) == Some("collection") {
            return Err(PsError::unsupported("collections"));
        }
    }
    Ok(())
}
