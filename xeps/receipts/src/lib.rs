//! XEP-0184 (Message Delivery Receipts) and XEP-0333 (Chat Markers): making them reliable.
//!
//! The server never fabricates a receipt or a marker: only the recipient's client may say a
//! message arrived or was read. What the server owes them is to carry them as reliably as the
//! messages they are about. Carbon copies (XEP-0280 §6.1 makes receipts and markers eligible),
//! offline storage (anything but standalone chat states is kept) and stream-management
//! redelivery already treat them like any message. The one gap is the archive: XEP-0313's
//! default rules archive only messages with a body, so a body-less receipt or marker would be
//! missing from a device that syncs through MAM. This module answers the archive's published
//! question `mam.should_store` for them. XEP-0334 `<no-store/>` still wins (the archive never
//! asks about such messages).

use async_trait::async_trait;
use tern_router::Spec;

use tern_router::{Ctx, Event, Flow, Hooks, Kind, Module, Stanza};

/// XEP-0184 namespace.
pub const NS_RECEIPTS: &str = "urn:xmpp:receipts";
/// XEP-0333 namespace.
pub const NS_MARKERS: &str = "urn:xmpp:chat-markers:0";
/// The archive's published question (see `tern_mam::SHOULD_STORE`; modules share the name,
/// not the crate).
const MAM_SHOULD_STORE: &str = "mam.should_store";

/// Whether a message carries a delivery receipt or a chat marker (but not a bare request,
/// which only matters together with the body it asks about).
pub fn is_receipt_or_marker(st: &Stanza) -> bool {
    if st.kind != Kind::Message || !matches!(st.type_(), "chat" | "normal") {
        return false;
    }
    st.el.children().any(|c| {
        (c.is("received", NS_RECEIPTS))
            || (c.ns() == NS_MARKERS
                && matches!(c.name(), "received" | "displayed" | "acknowledged"))
    })
}

/// The receipts and markers module.
#[derive(Default)]
pub struct ReceiptsModule;

#[async_trait]
impl Module for ReceiptsModule {
    fn name(&self) -> &'static str {
        "receipts"
    }

    fn specs(&self) -> Vec<Spec> {
        vec![Spec::xep(184, "1.4.0"), Spec::xep(333, "1.0.0")]
    }

    fn register(&self, hooks: &mut Hooks) {
        hooks.on(Event::Named(MAM_SHOULD_STORE));
    }

    async fn on_stanza(&self, _event: &Event, _ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        if is_receipt_or_marker(st) {
            Flow::Handled
        } else {
            Flow::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_router::Jid;

    fn st(xml: &str) -> Stanza {
        let el = xml.parse().unwrap();
        Stanza::new(
            Kind::Message,
            Jid::new("a@x/r").unwrap(),
            Some(Jid::new("b@x").unwrap()),
            el,
        )
    }

    #[test]
    fn recognises_receipts_and_markers_only() {
        assert!(is_receipt_or_marker(&st("<message xmlns='jabber:client' type='chat'><received xmlns='urn:xmpp:receipts' id='1'/></message>")));
        assert!(is_receipt_or_marker(&st("<message xmlns='jabber:client'><displayed xmlns='urn:xmpp:chat-markers:0' id='1'/></message>")));
        assert!(!is_receipt_or_marker(&st("<message xmlns='jabber:client' type='chat'><request xmlns='urn:xmpp:receipts'/></message>")));
        assert!(!is_receipt_or_marker(&st("<message xmlns='jabber:client' type='groupchat'><received xmlns='urn:xmpp:receipts' id='1'/></message>")));
        assert!(!is_receipt_or_marker(&st("<message xmlns='jabber:client' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")));
    }
}
