//! A node as stored: its configuration (XEP-0060 §16.4.4 `pubsub#node_config` fields), its
//! affiliations and its subscriptions, plus the mapping between configuration and data forms
//! (configure get/set, publish-options preconditions of XEP-0060 §7.1.5 / XEP-0223).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use tern_router::Condition;

use crate::error::{PsError, PsResult};
use crate::forms::{self, parse_bool, Field, Form};
use crate::ns::FORM_NODE_CONFIG;

/// Who may retrieve items and subscribe (XEP-0060 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessModel {
    /// Anyone not outcast.
    Open,
    /// Contacts subscribed to the owner's presence.
    Presence,
    /// Contacts in allowed roster groups.
    Roster,
    /// Only affiliated entities (member, publisher, owner).
    Whitelist,
}

impl AccessModel {
    const ALL: &'static [&'static str] = &["open", "presence", "roster", "whitelist"];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessModel::Open => "open",
            AccessModel::Presence => "presence",
            AccessModel::Roster => "roster",
            AccessModel::Whitelist => "whitelist",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => AccessModel::Open,
            "presence" => AccessModel::Presence,
            "roster" => AccessModel::Roster,
            "whitelist" => AccessModel::Whitelist,
            _ => return None,
        })
    }
}

/// Who may publish (XEP-0060 `pubsub#publish_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishModel {
    /// Owners and publishers.
    Publishers,
    /// Also subscribers.
    Subscribers,
    /// Anyone allowed to access the node.
    Open,
}

impl PublishModel {
    const ALL: &'static [&'static str] = &["publishers", "subscribers", "open"];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PublishModel::Publishers => "publishers",
            PublishModel::Subscribers => "subscribers",
            PublishModel::Open => "open",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "publishers" => PublishModel::Publishers,
            "subscribers" => PublishModel::Subscribers,
            "open" => PublishModel::Open,
            _ => return None,
        })
    }
}

/// When the last item goes to a new subscriber (XEP-0060 `pubsub#send_last_published_item`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendLast {
    /// Never.
    Never,
    /// When subscribing.
    OnSub,
    /// When subscribing and whenever an interested resource becomes available (PEP).
    OnSubAndPresence,
}

impl SendLast {
    const ALL: &'static [&'static str] = &["never", "on_sub", "on_sub_and_presence"];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SendLast::Never => "never",
            SendLast::OnSub => "on_sub",
            SendLast::OnSubAndPresence => "on_sub_and_presence",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "never" => SendLast::Never,
            "on_sub" => SendLast::OnSub,
            "on_sub_and_presence" => SendLast::OnSubAndPresence,
            _ => return None,
        })
    }
}

/// `pubsub#max_items`: a number, or `max` (the server's limit, XEP-0060 §7.1.5 / XEP-0223).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaxItems {
    /// At most this many.
    Count(u64),
    /// As many as the server allows.
    Max,
}

impl MaxItems {
    /// The number of items kept under a server limit.
    pub fn effective(self, limit: u64) -> u64 {
        match self {
            MaxItems::Count(n) => n.min(limit),
            MaxItems::Max => limit,
        }
    }

    fn wire(self) -> String {
        match self {
            MaxItems::Count(n) => n.to_string(),
            MaxItems::Max => "max".into(),
        }
    }

    fn parse(s: &str, limit: u64) -> Option<Self> {
        let s = s.trim();
        if s == "max" {
            return Some(MaxItems::Max);
        }
        let n: u64 = s.parse().ok()?;
        (n <= limit).then_some(MaxItems::Count(n))
    }
}

/// Who gets replies to items (XEP-0060 `pubsub#itemreply`); `Publisher` also makes the
/// service name the publisher in notifications (§7.1.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemReply {
    /// The node owner.
    Owner,
    /// The item's publisher.
    Publisher,
}

/// Node configuration (XEP-0060 §16.4.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// `pubsub#access_model`.
    pub access_model: AccessModel,
    /// `pubsub#publish_model`.
    pub publish_model: PublishModel,
    /// `pubsub#max_items`.
    pub max_items: MaxItems,
    /// `pubsub#persist_items`.
    pub persist_items: bool,
    /// `pubsub#deliver_payloads`.
    pub deliver_payloads: bool,
    /// `pubsub#deliver_notifications`.
    pub deliver_notifications: bool,
    /// `pubsub#notify_retract`.
    pub notify_retract: bool,
    /// `pubsub#notify_delete`.
    pub notify_delete: bool,
    /// `pubsub#notify_config`.
    pub notify_config: bool,
    /// `pubsub#send_last_published_item`.
    pub send_last_published_item: SendLast,
    /// `pubsub#itemreply`.
    pub itemreply: ItemReply,
    /// `pubsub#notification_type`: `headline` or `normal`.
    pub notification_type: String,
    /// `pubsub#title`.
    pub title: String,
    /// `pubsub#description`.
    pub description: String,
    /// `pubsub#type`: the payload namespace.
    pub payload_type: String,
    /// `pubsub#roster_groups_allowed`.
    pub roster_groups_allowed: Vec<String>,
}

impl NodeConfig {
    /// XEP-0163 §4.4 defaults for a PEP node.
    pub fn pep_default() -> Self {
        NodeConfig {
            access_model: AccessModel::Presence,
            publish_model: PublishModel::Publishers,
            max_items: MaxItems::Count(1),
            persist_items: true,
            deliver_payloads: true,
            deliver_notifications: true,
            notify_retract: true,
            notify_delete: true,
            notify_config: false,
            send_last_published_item: SendLast::OnSubAndPresence,
            itemreply: ItemReply::Owner,
            notification_type: "headline".into(),
            title: String::new(),
            description: String::new(),
            payload_type: String::new(),
            roster_groups_allowed: Vec::new(),
        }
    }

    /// Defaults for a node on the pubsub service.
    pub fn service_default(max_items: u64) -> Self {
        NodeConfig {
            access_model: AccessModel::Open,
            max_items: MaxItems::Count(max_items),
            send_last_published_item: SendLast::Never,
            ..NodeConfig::pep_default()
        }
    }

    /// The configuration form (`type='form'`), with the current values.
    pub fn to_form(&self) -> minidom::Element {
        let fields = vec![
            Field::one("pubsub#title", "text-single", "Title", self.title.clone()),
            Field::one(
                "pubsub#description",
                "text-single",
                "Description",
                self.description.clone(),
            ),
            Field::one(
                "pubsub#type",
                "text-single",
                "Payload namespace",
                self.payload_type.clone(),
            ),
            Field::list(
                "pubsub#access_model",
                "Access model",
                self.access_model.as_str(),
                AccessModel::ALL,
            ),
            Field::list(
                "pubsub#publish_model",
                "Publish model",
                self.publish_model.as_str(),
                PublishModel::ALL,
            ),
            Field::one(
                "pubsub#max_items",
                "text-single",
                "Most items kept (a number or max)",
                self.max_items.wire(),
            ),
            Field::boolean("pubsub#persist_items", "Persist items", self.persist_items),
            Field::boolean(
                "pubsub#deliver_payloads",
                "Deliver payloads with notifications",
                self.deliver_payloads,
            ),
            Field::boolean(
                "pubsub#deliver_notifications",
                "Deliver notifications",
                self.deliver_notifications,
            ),
            Field::boolean(
                "pubsub#notify_retract",
                "Notify on retraction",
                self.notify_retract,
            ),
            Field::boolean(
                "pubsub#notify_delete",
                "Notify on node deletion",
                self.notify_delete,
            ),
            Field::boolean(
                "pubsub#notify_config",
                "Notify on configuration change",
                self.notify_config,
            ),
            Field::list(
                "pubsub#send_last_published_item",
                "Send the last item",
                self.send_last_published_item.as_str(),
                SendLast::ALL,
            ),
            Field::list(
                "pubsub#itemreply",
                "Replies go to",
                match self.itemreply {
                    ItemReply::Owner => "owner",
                    ItemReply::Publisher => "publisher",
                },
                &["owner", "publisher"],
            ),
            Field::list(
                "pubsub#notification_type",
                "Notification message type",
                &self.notification_type,
                &["headline", "normal"],
            ),
            Field {
                values: self.roster_groups_allowed.clone(),
                ..Field::one(
                    "pubsub#roster_groups_allowed",
                    "list-multi",
                    "Roster groups allowed",
                    String::new(),
                )
            },
        ];
        forms::build("form", FORM_NODE_CONFIG, &fields)
    }

    /// Applies one submitted field; an unknown field or a bad value is `<not-acceptable/>`
    /// (XEP-0060 §8.2.5.3).
    pub fn apply(&mut self, var: &str, values: &[String], limit: u64) -> PsResult<()> {
        let one = values.first().map(String::as_str).unwrap_or("");
        let bad = || {
            PsError::new(Condition::NotAcceptable)
                .text(format!("unsupported value for {var}: {one:?}"))
        };
        let boolean = || parse_bool(one).ok_or_else(bad);
        match var {
            "pubsub#title" => self.title = one.to_owned(),
            "pubsub#description" => self.description = one.to_owned(),
            "pubsub#type" => self.payload_type = one.to_owned(),
            "pubsub#access_model" => self.access_model = AccessModel::parse(one).ok_or_else(bad)?,
            "pubsub#publish_model" => {
                self.publish_model = PublishModel::parse(one).ok_or_else(bad)?
            }
            "pubsub#max_items" => self.max_items = MaxItems::parse(one, limit).ok_or_else(bad)?,
            "pubsub#persist_items" => self.persist_items = boolean()?,
            "pubsub#deliver_payloads" => self.deliver_payloads = boolean()?,
            "pubsub#deliver_notifications" => self.deliver_notifications = boolean()?,
            "pubsub#notify_retract" => self.notify_retract = boolean()?,
            "pubsub#notify_delete" => self.notify_delete = boolean()?,
            "pubsub#notify_config" => self.notify_config = boolean()?,
            "pubsub#send_last_published_item" => {
                self.send_last_published_item = SendLast::parse(one).ok_or_else(bad)?
            }
            "pubsub#itemreply" => {
                self.itemreply = match one {
                    "owner" => ItemReply::Owner,
                    "publisher" => ItemReply::Publisher,
                    _ => return Err(bad()),
                }
            }
            "pubsub#notification_type" => match one {
                "headline" | "normal" => self.notification_type = one.to_owned(),
                _ => return Err(bad()),
            },
            "pubsub#roster_groups_allowed" => self.roster_groups_allowed = values.to_vec(),
            // Only leaf nodes exist here; collections are refused before this (`collections`).
            "pubsub#node_type" if one == "leaf" => {}
            _ => {
                return Err(PsError::new(Condition::NotAcceptable)
                    .text(format!("unsupported configuration field {var}")))
            }
        }
        Ok(())
    }

    /// Applies a submitted configuration form: all fields or none.
    pub fn apply_form(&self, form: &Form, limit: u64) -> PsResult<NodeConfig> {
        let mut next = self.clone();
        for (var, values) in &form.fields {
            next.apply(var, values, limit)?;
        }
        Ok(next)
    }

    /// XEP-0060 §7.1.5: whether the node's configuration satisfies every publish-options
    /// precondition. A field the node cannot have (unknown, or a value it does not accept)
    /// can never match.
    pub fn satisfies(&self, form: &Form, limit: u64) -> bool {
        form.fields.iter().all(|(var, values)| {
            let mut probe = self.clone();
            probe.apply(var, values, limit).is_ok() && probe == *self
        })
    }
}

/// An entity's affiliation with a node (XEP-0060 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affiliation {
    /// Banned.
    Outcast,
    /// None.
    None,
    /// May subscribe and retrieve items under the whitelist model.
    Member,
    /// May publish.
    Publisher,
    /// May configure and delete.
    Owner,
}

impl Affiliation {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Publisher => "publisher",
            Affiliation::Owner => "owner",
        }
    }

    /// From the wire.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "publisher" => Affiliation::Publisher,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }
}

/// One subscription (XEP-0060 §4.2); subscriptions needing approval are not offered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The subscription id.
    pub subid: String,
    /// `pubsub#deliver` subscription option.
    pub deliver: bool,
}

/// A stored node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its configuration.
    pub config: NodeConfig,
    /// Bare JID → affiliation (absent: none).
    pub affiliations: BTreeMap<String, Affiliation>,
    /// Subscribed JID (bare or full, as subscribed) → subscription.
    pub subscriptions: BTreeMap<String, Subscription>,
}

impl NodeRecord {
    /// A new node owned by `owner`.
    pub fn new(config: NodeConfig, owner: &str) -> Self {
        let mut affiliations = BTreeMap::new();
        affiliations.insert(owner.to_owned(), Affiliation::Owner);
        NodeRecord {
            config,
            affiliations,
            subscriptions: BTreeMap::new(),
        }
    }

    /// The affiliation of a bare JID.
    pub fn affiliation(&self, bare: &str) -> Affiliation {
        self.affiliations
            .get(bare)
            .copied()
            .unwrap_or(Affiliation::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, &str)]) -> Form {
        Form {
            kind: "submit".into(),
            form_type: None,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                .collect(),
        }
    }

    #[test]
    fn preconditions_match_only_current_values() {
        let mut c = NodeConfig::pep_default();
        assert!(c.satisfies(&form(&[("pubsub#access_model", "presence")]), 100));
        assert!(!c.satisfies(&form(&[("pubsub#access_model", "open")]), 100));
        assert!(!c.satisfies(&form(&[("pubsub#unknown", "x")]), 100));
        c.max_items = MaxItems::Max;
        assert!(c.satisfies(&form(&[("pubsub#max_items", "max")]), 100));
        assert!(!c.satisfies(&form(&[("pubsub#max_items", "100")]), 100));
        assert!(c.satisfies(&form(&[("pubsub#persist_items", "true")]), 100));
    }

    #[test]
    fn apply_rejects_bad_values_and_limits() {
        let c = NodeConfig::pep_default();
        assert!(c
            .apply_form(&form(&[("pubsub#max_items", "1000")]), 100)
            .is_err());
        let n = c
            .apply_form(
                &form(&[("pubsub#max_items", "max"), ("pubsub#access_model", "open")]),
                100,
            )
            .unwrap();
        assert_eq!(n.max_items.effective(100), 100);
        assert_eq!(n.access_model, AccessModel::Open);
        assert!(c
            .apply_form(&form(&[("pubsub#access_model", "authorize")]), 100)
            .is_err());
    }
}
