//! Namespaces and the small elements every part of the service builds.

use minidom::Element;

use tern_router::xml::BuilderExt;
use tern_stream::NS_CLIENT;

/// XEP-0045 namespaces.
pub const MUC: &str = "http://jabber.org/protocol/muc";
/// `<x/>` in presence and messages from the room.
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// Role and affiliation changes.
pub const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
/// Room configuration and destruction.
pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// Voice requests (§7.13).
pub const MUC_REQUEST: &str = "http://jabber.org/protocol/muc#request";
/// XEP-0030.
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// XEP-0030.
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XEP-0004.
pub const DATA: &str = "jabber:x:data";
/// XEP-0199.
pub const PING: &str = "urn:xmpp:ping";
/// XEP-0203.
pub const DELAY: &str = "urn:xmpp:delay";
/// XEP-0359.
pub const SID: &str = "urn:xmpp:sid:0";
/// XEP-0421.
pub const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
/// XEP-0424.
pub const RETRACT: &str = "urn:xmpp:message-retract:1";
/// XEP-0425.
pub const MODERATE: &str = "urn:xmpp:message-moderate:1";
/// XEP-0410: the service answers self-pings itself.
pub const SELF_PING: &str = "http://jabber.org/protocol/muc#self-ping-optimization";
/// XEP-0249: direct invitations (between clients; the room advertises it).
pub const CONFERENCE: &str = "jabber:x:conference";
/// XEP-0334.
pub const HINTS: &str = "urn:xmpp:hints";
/// XEP-0313.
pub const MAM: &str = "urn:xmpp:mam:2";
/// Stable occupant JIDs across nick changes are not promised; `muc#stable_id` is: the room
/// keeps the sender's message id when it reflects a message.
pub const STABLE_ID: &str = "http://jabber.org/protocol/muc#stable_id";

/// `<status code='…'/>` in `muc#user`.
pub fn status(code: u16) -> Element {
    Element::builder("status", MUC_USER)
        .a("code", code.to_string())
        .build()
}

/// A `jabber:client` element with a text child, e.g. `<body>`.
pub fn text_el(name: &str, ns: &str, text: &str) -> Element {
    Element::builder(name, ns).append(text).build()
}

/// An empty stanza of a kind.
pub fn stanza(name: &str) -> minidom::ElementBuilder {
    Element::builder(name, NS_CLIENT)
}

/// `<occupant-id/>` (XEP-0421).
pub fn occupant_id(id: &str) -> Element {
    Element::builder("occupant-id", OCCUPANT_ID)
        .a("id", id)
        .build()
}

/// A data-form field with values.
pub fn field(var: &str, type_: &str, label: Option<&str>, values: &[&str]) -> Element {
    let mut f = Element::builder("field", DATA)
        .a("var", var)
        .a_opt("type", (!type_.is_empty()).then_some(type_))
        .a_opt("label", label)
        .build();
    for v in values {
        f.append_child(text_el("value", DATA, v));
    }
    f
}

/// A `list-single` field with its options.
pub fn list_field(var: &str, label: &str, value: &str, options: &[(&str, &str)]) -> Element {
    let mut f = field(var, "list-single", Some(label), &[value]);
    for (v, l) in options {
        f.append_child(
            Element::builder("option", DATA)
                .a("label", *l)
                .append(text_el("value", DATA, v))
                .build(),
        );
    }
    f
}

/// The values of every field of a submitted form, by `var`.
pub fn form_values(x: &Element) -> Vec<(String, Vec<String>)> {
    x.children()
        .filter(|c| c.is("field", DATA))
        .filter_map(|f| {
            let var = f.attr("var")?.to_owned();
            let values = f
                .children()
                .filter(|v| v.is("value", DATA))
                .map(|v| v.text())
                .collect();
            Some((var, values))
        })
        .collect()
}

/// The FORM_TYPE of a form, if any.
pub fn form_type(x: &Element) -> Option<String> {
    form_values(x)
        .into_iter()
        .find(|(v, _)| v == "FORM_TYPE")
        .and_then(|(_, vals)| vals.into_iter().next())
}

/// XEP-0004 §3.3 booleans: `1`/`true` and `0`/`false`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}
