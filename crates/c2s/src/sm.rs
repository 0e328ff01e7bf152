//! XEP-0198 Stream Management: counting, acknowledgements and the resumption hand-over.
//!
//! The session keeps every stanza it wrote since the client's last `<a/>`; a client that
//! reconnects with `<resume/>` gets them again after its own count, and a session that ends
//! without resumption hands them back to the router for redelivery (XEP-0198 §5), so nothing
//! written to a dying TCP connection is lost.

use std::collections::VecDeque;
use std::time::Duration;

use minidom::Element;

use tern_router::xml::BuilderExt;

use crate::item::Item;
use tern_router::BareJid;

use crate::conn::XmlConn;

/// XEP-0198 namespace.
pub(crate) const NS_SM: &str = "urn:xmpp:sm:3";

/// A resumption request from a new connection, handed to the session task that owns the
/// stream being resumed.
pub(crate) struct ResumeRequest {
    /// The new, authenticated connection.
    pub conn: XmlConn,
    /// How many of our stanzas the client says it handled.
    pub h: u32,
}

/// Where resumable sessions can be found by their stream-management id.
pub(crate) type ResumeSlot = (BareJid, tokio::sync::mpsc::Sender<ResumeRequest>);

/// Stream-management state of one session.
#[derive(Debug)]
pub(crate) struct Sm {
    /// The resumption id, when the client asked for resumption.
    pub id: Option<String>,
    /// How long the session waits for a resumption after its connection is lost.
    pub resume_timeout: Duration,
    /// Stanzas received from the client and handled.
    pub h_in: u32,
    /// The client's last acknowledged count.
    acked: u32,
    /// Stanzas sent and not yet acknowledged, oldest first.
    unacked: VecDeque<Item>,
    /// Stanzas sent since we last asked for an acknowledgement.
    since_request: usize,
}

/// The client acknowledged more stanzas than we sent (XEP-0198 §4).
#[derive(Debug)]
pub(crate) struct CountTooHigh {
    pub h: u32,
    pub sent: u32,
}

impl Sm {
    pub(crate) fn new(id: Option<String>, resume_timeout: Duration) -> Self {
        Sm {
            id,
            resume_timeout,
            h_in: 0,
            acked: 0,
            unacked: VecDeque::new(),
            since_request: 0,
        }
    }

    /// Records a stanza written to the client.
    pub(crate) fn sent(&mut self, el: Item) {
        self.unacked.push_back(el);
        self.since_request += 1;
    }

    /// Total stanzas sent (modulo 2^32, as the XEP counts).
    pub(crate) fn sent_count(&self) -> u32 {
        self.acked.wrapping_add(self.unacked.len() as u32)
    }

    /// Applies the client's count `h`.
    pub(crate) fn ack(&mut self, h: u32) -> Result<(), CountTooHigh> {
        let n = h.wrapping_sub(self.acked) as usize;
        if n > self.unacked.len() {
            return Err(CountTooHigh {
                h,
                sent: self.sent_count(),
            });
        }
        self.unacked.drain(..n);
        self.acked = h;
        Ok(())
    }

    /// Stanzas not yet acknowledged, oldest first.
    pub(crate) fn unacked(&self) -> impl Iterator<Item = &Item> {
        self.unacked.iter()
    }

    /// Number of unacknowledged stanzas.
    pub(crate) fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    /// Takes the unacknowledged stanzas (when the session ends for good).
    pub(crate) fn take_unacked(&mut self) -> Vec<Item> {
        self.unacked.drain(..).collect()
    }

    /// Whether enough has been sent to ask for an acknowledgement; resets the counter.
    pub(crate) fn should_request(&mut self, every: usize) -> bool {
        if self.since_request >= every {
            self.since_request = 0;
            true
        } else {
            false
        }
    }
}

/// `<a h='…'/>`
pub(crate) fn ack_element(h: u32) -> Element {
    Element::builder("a", NS_SM).a("h", h.to_string()).build()
}

/// `<failed/>` with a stanza error condition and, where known, our count.
pub(crate) fn failed(condition: &str, h: Option<u32>) -> Element {
    Element::builder("failed", NS_SM)
        .a_opt("h", h.map(|h| h.to_string()))
        .append(Element::bare(condition, tern_router::NS_STANZAS))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el() -> Item {
        Item::Own(Element::bare("message", "jabber:client"))
    }

    #[test]
    fn counting_and_acks_wrap() {
        let mut sm = Sm::new(None, Duration::from_secs(1));
        sm.acked = u32::MAX - 1;
        for _ in 0..4 {
            sm.sent(el());
        }
        assert_eq!(sm.sent_count(), 2);
        sm.ack(0).unwrap();
        assert_eq!(sm.unacked_len(), 2);
        assert!(sm.ack(5).is_err(), "more than was sent");
        sm.ack(2).unwrap();
        assert_eq!(sm.unacked_len(), 0);
        assert!(sm.should_request(4));
        assert!(!sm.should_request(4));
    }
}
