//! Checks on stanzas from the client (RFC 6120 §8.1, §8.2.3, §10.3) before they are routed.

use minidom::Element;
use tracing::debug;

use tern_router::xml::set_attr;
use tern_router::{Condition, Jid, Kind, SessionHandle, Stanza, StanzaError};
use tern_stream::{StreamError, StreamErrorCondition as Sec};

use crate::bind::NS_SESSION;
use crate::session::Out;

/// Checks one element from the client and returns the stanza to route, if any (an element
/// the session answers itself returns `None`). Errors end the stream with that condition (the
/// stream error is already in `out`).
pub(crate) fn check_element(
    handle: &SessionHandle,
    el: Element,
    out: &mut Out,
) -> Result<Option<Stanza>, Sec> {
    let Some(kind) = Kind::of(&el) else {
        let err = StreamError::with_text(
            Sec::UnsupportedStanzaType,
            format!("<{}/> is not supported", el.name()),
        );
        out.error(&err);
        return Err(Sec::UnsupportedStanzaType);
    };
    let me = handle.jid();
    // RFC 6120 §8.1.2.1: a 'from' other than the full or bare JID of the session is spoofing.
    if let Some(from) = el.attr("from") {
        let ok = Jid::new(from)
            .map(|j| j == *me || j == me.to_bare())
            .unwrap_or(false);
        if !ok {
            let err =
                StreamError::with_text(Sec::InvalidFrom, "'from' does not match the bound JID");
            out.error(&err);
            return Err(Sec::InvalidFrom);
        }
    }
    let from = Jid::from(me.clone());
    let to = match el.attr("to").map(Jid::new) {
        None => None,
        Some(Ok(j)) => Some(j),
        Some(Err(_)) => {
            reply_local(
                handle,
                &el,
                kind,
                StanzaError::new(Condition::JidMalformed),
                out,
            );
            return Ok(None);
        }
    };
    if let Some(err) = check_stanza(kind, &el) {
        reply_local(handle, &el, kind, err, out);
        return Ok(None);
    }
    // RFC 6120 §10.3: no 'to' means the account itself, except presence (a broadcast).
    let to = match (to, kind) {
        (None, Kind::Presence) => None,
        (None, _) => Some(Jid::from(me.to_bare())),
        (Some(t), _) => Some(t),
    };
    let st = Stanza::new(kind, from, to, el);
    if kind == Kind::Iq && is_legacy_session(&st) {
        out.stanza(st.iq_result(None));
        return Ok(None);
    }
    debug!(kind = ?kind, to = ?st.to.as_ref().map(|j| j.as_str()), "stanza from client");
    Ok(Some(st))
}

/// Type and shape checks of RFC 6120 §8.1.3 and §8.2.3.
fn check_stanza(kind: Kind, el: &Element) -> Option<StanzaError> {
    let t = el.attr("type");
    let valid = match kind {
        Kind::Message => matches!(
            t,
            None | Some("chat" | "error" | "groupchat" | "headline" | "normal")
        ),
        Kind::Presence => matches!(
            t,
            None | Some(
                "error"
                    | "probe"
                    | "subscribe"
                    | "subscribed"
                    | "unavailable"
                    | "unsubscribe"
                    | "unsubscribed"
            )
        ),
        Kind::Iq => match t {
            Some("get" | "set") => el.attr("id").is_some() && el.children().count() == 1,
            Some("result") => el.attr("id").is_some() && el.children().count() <= 1,
            Some("error") => el.attr("id").is_some(),
            _ => false,
        },
    };
    (!valid).then(|| StanzaError::new(Condition::BadRequest).with_text("malformed stanza"))
}

fn is_legacy_session(st: &Stanza) -> bool {
    st.type_() == "set" && st.iq_payload().is_some_and(|p| p.is("session", NS_SESSION))
}

/// Answers a stanza the session itself rejects, straight back to the client.
fn reply_local(handle: &SessionHandle, el: &Element, kind: Kind, err: StanzaError, out: &mut Out) {
    if el.attr("type") == Some("error") || (kind == Kind::Iq && el.attr("type") == Some("result")) {
        return;
    }
    let mut reply = el.clone();
    set_attr(&mut reply, "type", Some("error"));
    set_attr(&mut reply, "to", Some(handle.jid().as_str()));
    set_attr(&mut reply, "from", None);
    reply.append_child(err.to_element());
    out.stanza(reply);
}
