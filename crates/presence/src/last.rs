//! The account's last unavailable presence, kept so that a probe while the account is offline
//! is answered with it and a XEP-0203 delay stamp (RFC 6121 §4.3.2, first option) rather than
//! a bare unavailable: clients then show when the contact was last seen and their status.

use minidom::Element;
use tracing::warn;

use tern_router::time::{format_micros, now_micros};
use tern_router::xml::{set_attr, BuilderExt};
use tern_router::{BareJid, Jid, Router};

/// KeyVal store: "<micros>\n<full JID>\n<stanza XML>".
const STORE: &str = "presence.last";

/// Records `el` (an unavailable presence from the full JID `from`) as the account's last.
pub(crate) async fn record(router: &Router, owner: &BareJid, from: &Jid, el: &Element) {
    let Some(user) = owner.node() else { return };
    let value = format!("{}\n{}\n{}", now_micros(), from, String::from(el));
    if let Err(e) = router
        .storage()
        .keyval
        .set(
            owner.domain().as_str(),
            STORE,
            user.as_str(),
            Some(value.as_bytes()),
        )
        .await
    {
        warn!(jid = %owner, "cannot store last presence: {e}");
    }
}

/// The stored last unavailable presence with a delay stamp, and the full JID it came from.
pub(crate) async fn load(router: &Router, owner: &BareJid) -> Option<(Jid, Element)> {
    let user = owner.node()?;
    let bytes = match router
        .storage()
        .keyval
        .get(owner.domain().as_str(), STORE, user.as_str())
        .await
    {
        Ok(b) => b?,
        Err(e) => {
            warn!(jid = %owner, "cannot read last presence: {e}");
            return None;
        }
    };
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.splitn(3, '\n');
    let at: i64 = parts.next()?.parse().ok()?;
    let from = Jid::new(parts.next()?).ok()?;
    let mut el: Element = parts.next()?.parse().ok()?;
    // The stored stanza was addressed to nobody in particular; the answer gets its own `to`.
    set_attr(&mut el, "to", None);
    set_attr(&mut el, "from", None);
    el.append_child(
        Element::builder("delay", "urn:xmpp:delay")
            .a("from", owner.domain().as_str())
            .a("stamp", format_micros(at))
            .build(),
    );
    Some((from, el))
}
