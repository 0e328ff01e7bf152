//! One stanza on its way to the client: built for this session alone, or serialized once and
//! shared with other sessions (MUC fan-out). Stream management keeps these for resending and
//! client state indication holds them back, so both read them without materializing copies.

use std::sync::Arc;

use minidom::Element;

use tern_router::SharedStanza;

use crate::link::Outbox;

/// A stanza queued for the client.
#[derive(Debug)]
pub(crate) enum Item {
    /// A stanza for this session only.
    Own(Element),
    /// A stanza shared with other sessions; the session's own JID becomes its `to`.
    Shared(Arc<SharedStanza>),
}

impl Item {
    fn el(&self) -> &Element {
        match self {
            Item::Own(el) => el,
            Item::Shared(s) => s.element(),
        }
    }

    /// The element name (`message`, `presence`, `iq`).
    pub(crate) fn name(&self) -> &str {
        self.el().name()
    }

    /// An attribute of the stanza (a shared one has no `to`).
    pub(crate) fn attr<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.el().attr(name)
    }

    /// Serializes the stanza for a session bound to `jid`.
    pub(crate) fn write(&self, jid: &str, out: &mut Outbox) {
        match self {
            Item::Own(el) => out.element(el),
            Item::Shared(s) => out.shared(s, jid),
        }
    }

    /// The stanza as an element addressed to `jid` (for redelivery when the session ends).
    pub(crate) fn into_element(self, jid: &str) -> Element {
        match self {
            Item::Own(el) => el,
            Item::Shared(s) => s.to_element(jid),
        }
    }

    /// A cheap copy (shared stanzas are reference-counted).
    #[cfg(test)]
    pub(crate) fn share(&self) -> Item {
        match self {
            Item::Own(el) => Item::Own(el.clone()),
            Item::Shared(s) => Item::Shared(s.clone()),
        }
    }
}
