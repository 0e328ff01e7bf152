//! Which messages are copied (XEP-0280 §6, "Messages Eligible for Carbons Delivery", the rule
//! set advertised as `urn:xmpp:carbons:rules:0`), and how a copy is wrapped (§7, §8, XEP-0297).
//!
//! Pure functions over elements, so the rules are tested here against the XEP's examples.

use minidom::Element;
use tern_router::xml::BuilderExt;
use tern_router::BareJid;
use tern_stream::NS_CLIENT;

/// XEP-0280 namespace.
pub const NS_CARBONS: &str = "urn:xmpp:carbons:2";
/// Feature saying the server applies the §6 rules below.
pub const NS_CARBONS_RULES: &str = "urn:xmpp:carbons:rules:0";
/// XEP-0297 Stanza Forwarding.
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";
/// XEP-0334 Message Processing Hints.
pub const NS_HINTS: &str = "urn:xmpp:hints";
/// XEP-0085 Chat State Notifications.
pub const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
/// XEP-0184 Message Delivery Receipts.
pub const NS_RECEIPTS: &str = "urn:xmpp:receipts";
/// XEP-0333 Chat Markers.
pub const NS_MARKERS: &str = "urn:xmpp:chat-markers:0";
/// XEP-0045 `<x/>` on messages from a room (PMs, mediated invitations).
pub const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// XEP-0249 Direct MUC Invitations.
pub const NS_CONFERENCE: &str = "jabber:x:conference";

/// Which side of a conversation a copy is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent by one of the user's own clients (§8): `<sent/>` copies.
    Sent,
    /// Addressed to the user (§7): `<received/>` copies.
    Received,
}

impl Direction {
    fn wrapper(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }
}

/// Why a message is not copied (for debug logs and the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// `<private xmlns='urn:xmpp:carbons:2'/>` (§9).
    Private,
    /// `<no-copy xmlns='urn:xmpp:hints'/>` (XEP-0334 §4.4; §9 asks senders to add both).
    NoCopy,
    /// It already carries a `<sent/>` or `<received/>` wrapper: either one of our copies or
    /// a forgery. Copying it would nest a third party's "carbon" inside a genuine one from
    /// the user's bare JID, defeating the §11 check clients rely on.
    Wrapped,
    /// Groupchat (§6, MUC rules): the room itself delivers to every joined client.
    Groupchat,
    /// A private message from a MUC occupant: the room already sends it to every joined
    /// client of the user (§6, MUC rules).
    MucPrivate,
    /// An error; copied only when it answers an eligible message (the caller correlates).
    Error,
    /// None of the §6 criteria matched (e.g. a headline, or a normal message without body).
    NotIm,
}

/// Applies XEP-0280 §6 to a message. `Err(Skip::Error)` means the caller must decide whether
/// the error answers a message that was itself eligible.
pub fn check(el: &Element, dir: Direction) -> Result<(), Skip> {
    if el.has_child("private", NS_CARBONS) {
        return Err(Skip::Private);
    }
    if el.has_child("no-copy", NS_HINTS) {
        return Err(Skip::NoCopy);
    }
    if el.has_child("sent", NS_CARBONS) || el.has_child("received", NS_CARBONS) {
        return Err(Skip::Wrapped);
    }
    let type_ = el.attr("type").unwrap_or("normal");
    if type_ == "groupchat" {
        return Err(Skip::Groupchat);
    }
    let muc_x = el.get_child("x", NS_MUC_USER);
    let mediated_invite = muc_x.is_some_and(|x| x.has_child("invite", NS_MUC_USER));
    // A private message *to* an occupant is copied (the rules say the copies SHOULD be limited
    // to clients sharing the nick; without room state we copy to all enabled clients).
    if dir == Direction::Received && muc_x.is_some() && !mediated_invite {
        return Err(Skip::MucPrivate);
    }
    if type_ == "error" {
        return Err(Skip::Error);
    }
    let im_payload = el.children().any(|c| {
        let ns = c.ns();
        ns == NS_CHATSTATES || ns == NS_RECEIPTS || ns == NS_MARKERS
    });
    let invitation = mediated_invite || el.has_child("x", NS_CONFERENCE);
    if type_ == "chat"
        || (type_ == "normal" && el.has_child("body", NS_CLIENT))
        || im_payload
        || invitation
    {
        Ok(())
    } else {
        Err(Skip::NotIm)
    }
}

/// Removes every `<private/>` element: the receiving server SHOULD before delivering (§9).
pub fn strip_private(el: &mut Element) {
    while el.remove_child("private", NS_CARBONS).is_some() {}
}

/// The carbon copy of `original` for the user `user` (§7, §8): from the user's bare JID, the
/// original's type, `<sent/>` or `<received/>` around `<forwarded/>` around the message.
/// `to` is left for the caller to set per receiving resource.
pub fn wrap(original: &Element, user: &BareJid, dir: Direction) -> Element {
    let forwarded = Element::builder("forwarded", NS_FORWARD)
        .append(original.clone())
        .build();
    let mut b = Element::builder("message", NS_CLIENT)
        .a("from", user.as_str())
        .append(
            Element::builder(dir.wrapper(), NS_CARBONS)
                .append(forwarded)
                .build(),
        );
    if let Some(t) = original.attr("type") {
        b = b.a("type", t);
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Element {
        s.parse().unwrap()
    }

    fn msg(attrs: &str, inner: &str) -> Element {
        parse(&format!(
            "<message xmlns='jabber:client' from='juliet@capulet.example/balcony' to='romeo@montague.example/garden' {attrs}>{inner}</message>"
        ))
    }

    #[test]
    fn types_and_payloads() {
        use Direction::*;
        // §7 example: a chat message is copied.
        let chat = msg(
            "type='chat'",
            "<body>What man art thou</body><thread>0e31</thread>",
        );
        assert_eq!(check(&chat, Received), Ok(()));
        assert_eq!(check(&chat, Sent), Ok(()));
        // type normal (also the default) only with a body.
        assert_eq!(check(&msg("", "<body>hi</body>"), Sent), Ok(()));
        assert_eq!(
            check(&msg("type='normal'", "<subject>s</subject>"), Sent),
            Err(Skip::NotIm)
        );
        // XEP-0085 / 0184 / 0333 payloads make any type eligible.
        for p in [
            "<composing xmlns='http://jabber.org/protocol/chatstates'/>",
            "<received xmlns='urn:xmpp:receipts' id='x'/>",
            "<displayed xmlns='urn:xmpp:chat-markers:0' id='x'/>",
        ] {
            assert_eq!(check(&msg("", p), Received), Ok(()), "{p}");
        }
        assert_eq!(
            check(&msg("type='headline'", "<body>news</body>"), Received),
            Err(Skip::NotIm)
        );
        assert_eq!(
            check(&msg("type='groupchat'", "<body>all</body>"), Sent),
            Err(Skip::Groupchat)
        );
        assert_eq!(
            check(
                &msg("type='error'", "<body>x</body><error type='cancel'/>"),
                Received
            ),
            Err(Skip::Error)
        );
    }

    #[test]
    fn opting_out_and_forgeries() {
        let private = msg(
            "type='chat'",
            "<body>b</body><private xmlns='urn:xmpp:carbons:2'/>",
        );
        assert_eq!(check(&private, Direction::Sent), Err(Skip::Private));
        let no_copy = msg(
            "type='chat'",
            "<body>b</body><no-copy xmlns='urn:xmpp:hints'/>",
        );
        assert_eq!(check(&no_copy, Direction::Received), Err(Skip::NoCopy));
        let forged = msg(
            "type='chat'",
            "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='x@y/z' type='chat'><body>fake</body></message></forwarded></received>",
        );
        assert_eq!(check(&forged, Direction::Received), Err(Skip::Wrapped));
        let mut stripped = private.clone();
        strip_private(&mut stripped);
        assert!(!stripped.has_child("private", NS_CARBONS));
        assert!(stripped.has_child("body", NS_CLIENT));
    }

    #[test]
    fn muc_rules() {
        let pm = msg(
            "type='chat'",
            "<body>psst</body><x xmlns='http://jabber.org/protocol/muc#user'/>",
        );
        assert_eq!(check(&pm, Direction::Received), Err(Skip::MucPrivate));
        assert_eq!(check(&pm, Direction::Sent), Ok(()));
        let mediated = msg(
            "",
            "<x xmlns='http://jabber.org/protocol/muc#user'><invite from='a@b/c'/></x>",
        );
        assert_eq!(check(&mediated, Direction::Received), Ok(()));
        let direct = msg(
            "",
            "<x xmlns='jabber:x:conference' jid='room@muc.example'/>",
        );
        assert_eq!(check(&direct, Direction::Received), Ok(()));
    }

    #[test]
    fn wrapping_follows_the_examples() {
        // §8 example: Romeo's other clients receive a <sent/> copy from his bare JID.
        let original = parse(
            "<message xmlns='jabber:client' from='romeo@montague.example/home' to='juliet@capulet.example/balcony' type='chat'><body>Neither, fair saint</body></message>",
        );
        let user = BareJid::new("romeo@montague.example").unwrap();
        let copy = wrap(&original, &user, Direction::Sent);
        assert_eq!(copy.attr("from"), Some("romeo@montague.example"));
        assert_eq!(copy.attr("type"), Some("chat"));
        let inner = copy
            .get_child("sent", NS_CARBONS)
            .and_then(|s| s.get_child("forwarded", NS_FORWARD))
            .and_then(|f| f.get_child("message", NS_CLIENT))
            .expect("sent/forwarded/message");
        assert_eq!(inner, &original);
        let copy = wrap(&original, &user, Direction::Received);
        assert!(copy.has_child("received", NS_CARBONS));
    }
}
