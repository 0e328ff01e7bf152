//! XEP-0352 Client State Indication: while a client says it is inactive, presence updates
//! from others are held back (only the latest per sender is kept) and sent together with the
//! next stanza that matters, or when the client becomes active again. Mobile clients save
//! battery and data; only presence is ever held, and only superseded presence is dropped.

use std::collections::HashMap;

use crate::item::Item;

/// XEP-0352 namespace.
pub(crate) const NS_CSI: &str = "urn:xmpp:csi:0";

/// Most senders whose presence is held; past it everything is flushed.
const MAX_HELD: usize = 500;

/// The client's declared state and what is held back for it.
#[derive(Debug, Default)]
pub(crate) struct Csi {
    inactive: bool,
    held: HashMap<String, Item>,
    order: Vec<String>,
}

impl Csi {
    /// Applies `<active/>` or `<inactive/>`; returns what to send now.
    pub(crate) fn set_inactive(&mut self, inactive: bool) -> Vec<Item> {
        self.inactive = inactive;
        if inactive {
            Vec::new()
        } else {
            self.take()
        }
    }

    /// Decides for one outbound stanza: `None` when it is held, otherwise the stanzas to
    /// send now (held presence first, so the client sees events in order).
    pub(crate) fn filter(&mut self, el: Item) -> Vec<Item> {
        if !self.inactive {
            return vec![el];
        }
        let holdable = el.name() == "presence"
            && matches!(el.attr("type"), None | Some("unavailable"))
            && el.attr("from").is_some();
        if holdable {
            let from = el.attr("from").unwrap_or_default().to_owned();
            if self.held.insert(from.clone(), el).is_none() {
                self.order.push(from);
            }
            if self.held.len() > MAX_HELD {
                return self.take();
            }
            return Vec::new();
        }
        let mut out = self.take();
        out.push(el);
        out
    }

    fn take(&mut self) -> Vec<Item> {
        let mut held = std::mem::take(&mut self.held);
        self.order
            .drain(..)
            .filter_map(|k| held.remove(&k))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;

    fn p(from: &str, show: &str) -> Item {
        Item::Own(
            format!("<presence xmlns='jabber:client' from='{from}'><show>{show}</show></presence>")
                .parse()
                .unwrap(),
        )
    }

    fn el(i: &Item) -> Element {
        i.share().into_element("me@x/r")
    }

    #[test]
    fn holds_latest_presence_until_a_message() {
        let mut c = Csi::default();
        assert!(c.set_inactive(true).is_empty());
        assert!(c.filter(p("a@x/1", "away")).is_empty());
        assert!(c.filter(p("b@x/1", "dnd")).is_empty());
        assert!(c.filter(p("a@x/1", "xa")).is_empty());
        let msg: Element = "<message xmlns='jabber:client' from='b@x/1'><body>hi</body></message>"
            .parse()
            .unwrap();
        let out = c.filter(Item::Own(msg));
        assert_eq!(out.len(), 3);
        assert_eq!(
            el(&out[0])
                .get_child("show", "jabber:client")
                .unwrap()
                .text(),
            "xa",
            "latest wins, first-seen order"
        );
        assert_eq!(out[2].name(), "message");
        // Shared stanzas are held the same way.
        assert!(c.set_inactive(true).is_empty());
        let shared = tern_router::SharedStanza::new(el(&p("room@muc/n", "away")));
        assert!(c
            .filter(Item::Shared(std::sync::Arc::new(shared)))
            .is_empty());
        assert_eq!(c.set_inactive(false).len(), 1);
        assert!(c.set_inactive(false).is_empty());
        assert_eq!(
            c.filter(p("a@x/1", "chat")).len(),
            1,
            "active: nothing held"
        );
    }
}
