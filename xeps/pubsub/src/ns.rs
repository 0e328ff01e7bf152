//! Namespaces and disco features of XEP-0060, XEP-0163, XEP-0223, XEP-0402, XEP-0048/0049.

/// XEP-0060 main namespace.
pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// XEP-0060 owner namespace.
pub const NS_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
/// XEP-0060 event (notification) namespace.
pub const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// XEP-0060 application error conditions.
pub const NS_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
/// XEP-0004 data forms.
pub const NS_DATA: &str = "jabber:x:data";
/// XEP-0115 entity capabilities.
pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";
/// XEP-0030 disco#info.
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// XEP-0030 disco#items.
pub const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XEP-0049 private XML storage.
pub const NS_PRIVATE: &str = "jabber:iq:private";
/// XEP-0402 PEP native bookmarks node and payload namespace.
pub const NS_BOOKMARKS2: &str = "urn:xmpp:bookmarks:1";
/// XEP-0048 bookmarks (private storage payload and legacy PEP node).
pub const NS_BOOKMARKS: &str = "storage:bookmarks";

/// FORM_TYPE of node configuration forms (XEP-0060 §16.4.4).
pub const FORM_NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
/// FORM_TYPE of publish options (XEP-0060 §7.1.5, XEP-0223).
pub const FORM_PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
/// FORM_TYPE of subscription options (XEP-0060 §6.3).
pub const FORM_SUBSCRIBE_OPTIONS: &str = "http://jabber.org/protocol/pubsub#subscribe_options";
/// FORM_TYPE of node meta-data in disco#info (XEP-0060 §5.4).
pub const FORM_META_DATA: &str = "http://jabber.org/protocol/pubsub#meta-data";

/// Pubsub features both the PEP and the service implement (XEP-0060 §10), without the
/// namespace prefix.
const COMMON: &[&str] = &[
    "access-open",
    "access-whitelist",
    "config-node",
    "create-and-configure",
    "create-nodes",
    "delete-items",
    "delete-nodes",
    "item-ids",
    "last-published",
    "member-affiliation",
    "modify-affiliations",
    "outcast-affiliation",
    "persistent-items",
    "publish",
    "publish-options",
    "publisher-affiliation",
    "purge-nodes",
    "retract-items",
    "retrieve-affiliations",
    "retrieve-default",
    "retrieve-items",
    "retrieve-subscriptions",
    "subscribe",
    "subscription-options",
    "manage-subscriptions",
];

/// Features only PEP has (XEP-0163 §6).
const PEP_ONLY: &[&str] = &[
    "access-presence",
    "access-roster",
    "auto-create",
    "auto-subscribe",
    "filtered-notifications",
    "presence-notifications",
];

/// Features only the service has.
const SERVICE_ONLY: &[&str] = &["instant-nodes"];

fn full(list: &[&'static str]) -> Vec<&'static str> {
    // Feature strings must be 'static for Module::account_features; leak once per process.
    list.iter()
        .map(|f| &*Box::leak(format!("{NS_PUBSUB}#{f}").into_boxed_str()))
        .collect()
}

/// The account (PEP) features, full strings, computed once.
pub fn pep_features() -> &'static [&'static str] {
    static F: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let mut v = full(COMMON);
        v.extend(full(PEP_ONLY));
        v.push(NS_PUBSUB);
        v.sort_unstable();
        v
    })
}

/// The service features, full strings, computed once.
pub fn service_features() -> &'static [&'static str] {
    static F: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let mut v = full(COMMON);
        v.extend(full(SERVICE_ONLY));
        v.push(NS_PUBSUB);
        v.sort_unstable();
        v
    })
}
