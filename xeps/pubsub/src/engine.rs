//! The pubsub entity both PEP and the service are (XEP-0060): where its nodes are stored, who
//! may see and change them (§4.1 affiliations, §4.5 access models), and who hears about
//! changes (§7.1.2 notifications, XEP-0163 §4.3 filtered by entity capabilities).
//! The operations themselves are in `ops` and `owner`.

use std::sync::Arc;

use jid::{BareJid, FullJid, Jid};
use minidom::Element;

use tern_router::time::format_micros;
use tern_router::xml::BuilderExt;
use tern_router::{Condition, Kind, Origin, Router, Stanza};
use tern_stream::NS_CLIENT;

use crate::caps::Caps;
use crate::config::PubSubConfig;
use crate::error::{PsError, PsResult};
use crate::node::{AccessModel, Affiliation, ItemReply, NodeConfig, NodeRecord};
use crate::ns::NS_EVENT;
use crate::store::{Partition, StoredItem};

/// Which kind of pubsub entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityKind {
    /// An account's personal eventing service (XEP-0163); the account owns every node.
    Pep(BareJid),
    /// A pubsub service on its own domain.
    Service,
}

/// One pubsub entity, for the duration of a request.
pub struct Entity<'a> {
    /// The router, for storage, rosters and sending.
    pub router: &'a Arc<Router>,
    /// Its address: the account's bare JID or the service domain.
    pub jid: Jid,
    /// PEP or service.
    pub kind: EntityKind,
    /// Settings and limits.
    pub cfg: &'a PubSubConfig,
    /// Presence and capabilities (PEP only).
    pub caps: Option<&'a Caps>,
    host: String,
    user: String,
}

impl<'a> Entity<'a> {
    /// The PEP service of a local account.
    pub fn pep(
        router: &'a Arc<Router>,
        account: &BareJid,
        cfg: &'a PubSubConfig,
        caps: &'a Caps,
    ) -> Self {
        Entity {
            router,
            jid: Jid::from(account.clone()),
            kind: EntityKind::Pep(account.clone()),
            cfg,
            caps: Some(caps),
            host: account.domain().to_string(),
            user: account.node().map(|n| n.to_string()).unwrap_or_default(),
        }
    }

    /// The service on `domain`.
    pub fn service(router: &'a Arc<Router>, domain: &str, cfg: &'a PubSubConfig) -> Self {
        Entity {
            router,
            jid: Jid::new(domain).unwrap_or_else(|_| Jid::from(BareJid::new("invalid").unwrap())),
            kind: EntityKind::Service,
            cfg,
            caps: None,
            host: domain.to_owned(),
            user: String::new(),
        }
    }

    /// Its storage.
    pub fn store(&self) -> Partition<'_> {
        Partition::new(self.router.storage().map.as_ref(), &self.host, &self.user)
    }

    /// The default configuration of a new node.
    pub fn default_config(&self) -> NodeConfig {
        match self.kind {
            EntityKind::Pep(_) => NodeConfig::pep_default(),
            EntityKind::Service => NodeConfig::service_default(self.cfg.default_max_items),
        }
    }

    /// A node that must exist (`<item-not-found/>` otherwise).
    pub async fn node(&self, name: &str) -> PsResult<NodeRecord> {
        self.store()
            .node(name)
            .await?
            .ok_or_else(PsError::not_found)
    }

    /// The affiliation of `who`; on PEP the account is the owner of everything.
    pub fn affiliation(&self, rec: &NodeRecord, who: &BareJid) -> Affiliation {
        match &self.kind {
            EntityKind::Pep(account) if account == who => Affiliation::Owner,
            _ => rec.affiliation(who.as_str()),
        }
    }

    /// `<forbidden/>` unless `who` owns the node.
    pub fn require_owner(&self, rec: &NodeRecord, who: &BareJid) -> PsResult<()> {
        if self.affiliation(rec, who) == Affiliation::Owner {
            Ok(())
        } else {
            Err(PsError::new(Condition::Forbidden))
        }
    }

    /// Accounts whose rosters decide presence and roster access: the PEP account, or the
    /// service node's local owners.
    fn roster_owners(&self, rec: &NodeRecord) -> Vec<BareJid> {
        match &self.kind {
            EntityKind::Pep(a) => vec![a.clone()],
            EntityKind::Service => rec
                .affiliations
                .iter()
                .filter(|(_, a)| **a == Affiliation::Owner)
                .filter_map(|(j, _)| BareJid::new(j).ok())
                .filter(|j| self.router.is_local(j.domain().as_str()))
                .collect(),
        }
    }

    /// XEP-0060 §6.1.3 / §6.5.9: may `who` subscribe and retrieve items?
    pub async fn check_access(&self, rec: &NodeRecord, who: &BareJid) -> PsResult<()> {
        let aff = self.affiliation(rec, who);
        if aff == Affiliation::Outcast {
            return Err(PsError::new(Condition::Forbidden));
        }
        if aff >= Affiliation::Member {
            return Ok(());
        }
        match rec.config.access_model {
            AccessModel::Open => Ok(()),
            AccessModel::Whitelist => Err(PsError::app(Condition::NotAllowed, "closed-node")),
            AccessModel::Presence => {
                for owner in self.roster_owners(rec) {
                    if let Some(item) = self.roster_item(&owner, who).await {
                        if item.subscription.has_from() {
                            return Ok(());
                        }
                    }
                }
                Err(PsError::app(
                    Condition::NotAuthorized,
                    "presence-subscription-required",
                ))
            }
            AccessModel::Roster => {
                for owner in self.roster_owners(rec) {
                    if let Some(item) = self.roster_item(&owner, who).await {
                        if item
                            .groups
                            .iter()
                            .any(|g| rec.config.roster_groups_allowed.contains(g))
                        {
                            return Ok(());
                        }
                    }
                }
                Err(PsError::app(
                    Condition::NotAuthorized,
                    "not-in-roster-group",
                ))
            }
        }
    }

    async fn roster_item(&self, owner: &BareJid, who: &BareJid) -> Option<tern_roster::RosterItem> {
        let store = tern_roster::roster_of(self.router, owner)?;
        match store.get(who.as_str()).await {
            Ok(item) => item,
            Err(e) => {
                tracing::warn!(owner = %owner, "cannot read roster for pubsub access: {e}");
                None
            }
        }
    }

    /// Who is told about changes to a node: explicit subscribers, and on PEP every full JID
    /// the account hears presence from whose capabilities ask for `<node>+notify` and which may
    /// access the node (XEP-0163 §4.3.2).
    pub async fn recipients(&self, node: &str, rec: &NodeRecord) -> Vec<Jid> {
        let mut out: Vec<Jid> = Vec::new();
        for (jid, sub) in &rec.subscriptions {
            if !sub.deliver {
                continue;
            }
            if let Ok(j) = Jid::new(jid) {
                if self.affiliation(rec, &j.to_bare()) != Affiliation::Outcast {
                    out.push(j);
                }
            }
        }
        if let (EntityKind::Pep(account), Some(caps)) = (&self.kind, self.caps) {
            let mut allowed: Vec<(BareJid, bool)> = Vec::new();
            for full in caps.interested(account, node) {
                let bare = full.to_bare();
                // A bare subscription already reaches every available resource.
                if out
                    .iter()
                    .any(|j| j.as_str() == bare.as_str() || j.as_str() == full.as_str())
                {
                    continue;
                }
                let ok = match allowed.iter().find(|(b, _)| *b == bare) {
                    Some((_, ok)) => *ok,
                    None => {
                        let ok = self.check_access(rec, &bare).await.is_ok();
                        allowed.push((bare, ok));
                        ok
                    }
                };
                if ok {
                    out.push(Jid::from(full));
                }
            }
        }
        out
    }

    /// Sends `<event/>` with one child to each recipient as a message of the node's
    /// notification type.
    pub async fn notify(&self, rec: &NodeRecord, recipients: &[Jid], child: Element) {
        let event = Element::builder("event", NS_EVENT).append(child).build();
        for to in recipients {
            self.send_event(rec, to, event.clone()).await;
        }
    }

    async fn send_event(&self, rec: &NodeRecord, to: &Jid, event: Element) {
        let msg = Element::builder("message", NS_CLIENT)
            .a("type", rec.config.notification_type.as_str())
            .a("id", format!("ps-{:016x}", rand::random::<u64>()))
            .append(event)
            .build();
        let st = Stanza::new(Kind::Message, self.jid.clone(), Some(to.clone()), msg);
        self.router.route(Origin::Local, st).await;
    }

    /// The `<item/>` of a notification or items result.
    pub fn item_element(
        &self,
        ns: &str,
        rec: &NodeRecord,
        item: &StoredItem,
        payload: bool,
    ) -> Element {
        let publisher =
            (rec.config.itemreply == ItemReply::Publisher).then_some(item.publisher.as_str());
        let mut el = Element::builder("item", ns)
            .a("id", item.id.as_str())
            .a_opt("publisher", publisher)
            .build();
        if payload {
            if let Some(p) = item.payload_element() {
                el.append_child(p);
            }
        }
        el
    }

    /// Notifies a published item (XEP-0060 §7.1.2.1).
    pub async fn notify_item(&self, node: &str, rec: &NodeRecord, item: &StoredItem) {
        if !rec.config.deliver_notifications {
            return;
        }
        let to = self.recipients(node, rec).await;
        let items = Element::builder("items", NS_EVENT)
            .a("node", node)
            .append(self.item_element(NS_EVENT, rec, item, rec.config.deliver_payloads))
            .build();
        self.notify(rec, &to, items).await;
    }

    /// Sends the last published item of a node to one JID (XEP-0060 §6.1.7), with its
    /// publication time (XEP-0203).
    pub async fn send_last(&self, node: &str, rec: &NodeRecord, to: &Jid) -> PsResult<()> {
        let Some(item) = self.store().latest(node, Some(1)).await?.pop() else {
            return Ok(());
        };
        let items = Element::builder("items", NS_EVENT)
            .a("node", node)
            .append(self.item_element(NS_EVENT, rec, &item, rec.config.deliver_payloads))
            .build();
        let event = Element::builder("event", NS_EVENT).append(items).build();
        let delay = Element::builder("delay", "urn:xmpp:delay")
            .a("from", self.jid.as_str())
            .a("stamp", format_micros(item.published))
            .build();
        let msg = Element::builder("message", NS_CLIENT)
            .a("type", rec.config.notification_type.as_str())
            .a("id", format!("ps-{:016x}", rand::random::<u64>()))
            .append(event)
            .append(delay)
            .build();
        let st = Stanza::new(Kind::Message, self.jid.clone(), Some(to.clone()), msg);
        self.router.route(Origin::Local, st).await;
        Ok(())
    }

    /// XEP-0163 last-item delivery to a full JID that just became available or whose
    /// capabilities just became known: every node it is interested in and may access.
    pub async fn deliver_last_to(&self, to: &FullJid) -> PsResult<()> {
        let (EntityKind::Pep(account), Some(caps)) = (&self.kind, self.caps) else {
            return Ok(());
        };
        let Some(features) = caps.features(account, to) else {
            return Ok(());
        };
        let bare = to.to_bare();
        for (name, rec) in self.store().nodes().await? {
            if rec.config.send_last_published_item != crate::node::SendLast::OnSubAndPresence
                || !features.contains(&format!("{name}+notify"))
                || self.check_access(&rec, &bare).await.is_err()
            {
                continue;
            }
            self.send_last(&name, &rec, &Jid::from(to.clone())).await?;
        }
        Ok(())
    }
}
