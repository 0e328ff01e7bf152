//! Messages (XEP-0045 §7.4, §7.5, §7.8, §7.13, §8.1): groupchat reflected to every occupant
//! with a stanza id and occupant id, subject changes, private messages, mediated invitations
//! and declines, voice requests and their approval, and the per-occupant message rate.

use std::sync::Arc;
use std::time::Instant;

use jid::{BareJid, Jid};
use minidom::{Element, Node};
use tracing::debug;

use tern_router::xml::{set_attr, BuilderExt};
use tern_router::{Condition, ErrorType, Kind, SharedStanza, Stanza, StanzaError};
use tern_stream::NS_CLIENT;

use crate::affiliation::{Affiliation, Role};
use crate::config::AllowPm;
use crate::ns::{self, DATA, MUC_REQUEST, MUC_USER, OCCUPANT_ID, RETRACT, SID};
use crate::room::history::{history_stanza, parse, HistItem};
use crate::room::join::Removal;
use crate::room::Room;
use crate::store::AffItem;

/// A token bucket: `rate` messages per second on average, `burst` at once.
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    /// A full bucket; a rate of 0 never limits.
    pub fn new(rate: f64, burst: u32) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            last: Instant::now(),
            rate,
            burst: f64::from(burst),
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn err(c: Condition, text: &str) -> StanzaError {
    StanzaError::new(c).with_text(text)
}

/// Error conditions that mean the occupant's client is gone (XEP-0045 §18.1.? and common
/// practice): the service removes it with status 333.
fn means_gone(st: &Stanza) -> bool {
    let Some(e) = st.el.get_child("error", NS_CLIENT) else {
        return false;
    };
    e.children().any(|c| {
        matches!(
            c.name(),
            "gone"
                | "item-not-found"
                | "recipient-unavailable"
                | "redirect"
                | "remote-server-not-found"
                | "remote-server-timeout"
                | "service-unavailable"
        )
    })
}

/// A copy of a message without the children the room replaces: stanza ids it did not
/// assign, occupant ids (XEP-0421 §4) and `muc#user` payloads.
fn cleaned(el: &Element, room: &BareJid) -> Element {
    let mut out = el.clone();
    tern_mam::archive::strip_stanza_ids(&mut out, room);
    let drop = |c: &Element| {
        c.is("occupant-id", OCCUPANT_ID) || (c.is("stanza-id", SID) && c.attr("by").is_none())
    };
    if out.children().any(drop) {
        for node in out.take_nodes() {
            match &node {
                Node::Element(c) if drop(c) => {}
                _ => out.append_node(node),
            }
        }
    }
    out
}

impl Room {
    /// A message to the room or an occupant.
    pub(crate) async fn on_message(&mut self, st: Stanza) {
        let to_occupant = st
            .to
            .as_ref()
            .and_then(|t| t.resource())
            .map(|r| r.as_str().to_owned());
        let sender = self.occupant_by_jid(&st.from).map(|o| o.nick.clone());
        if st.is_error() {
            if let Some(nick) = sender.filter(|_| means_gone(&st)) {
                self.remove(
                    &nick,
                    Removal {
                        codes: &[333],
                        ..Removal::default()
                    },
                )
                .await;
            }
            return;
        }
        match (st.type_(), to_occupant) {
            ("groupchat", Some(_)) => {
                // §7.5: groupchat to an occupant JID is not a thing.
                self.bounce(
                    &st,
                    err(Condition::BadRequest, "groupchat messages go to the room"),
                )
                .await
            }
            ("groupchat", None) => match sender {
                Some(nick) => self.groupchat(&st, &nick).await,
                None => {
                    self.bounce(
                        &st,
                        err(Condition::NotAcceptable, "you are not in this room"),
                    )
                    .await
                }
            },
            (_, Some(target)) => match sender {
                Some(nick) => self.private(&st, &nick, &target).await,
                None => {
                    self.bounce(
                        &st,
                        err(Condition::NotAcceptable, "you are not in this room"),
                    )
                    .await
                }
            },
            (_, None) => self.at_room_bare(&st, sender).await,
        }
    }

    /// §7.4 and §8.1: a groupchat message or a subject change, reflected to everyone.
    async fn groupchat(&mut self, st: &Stanza, nick: &str) {
        let Some(o) = self.occupants.get_mut(nick) else {
            return;
        };
        let role = o.role;
        if !o.bucket.take(Instant::now()) {
            let e = StanzaError::new(Condition::PolicyViolation)
                .with_type(ErrorType::Wait)
                .with_text("you are sending messages too fast");
            return self.bounce(st, e).await;
        }
        let occupant_id = o.occupant_id.clone();
        let bare = o.jid.to_bare();
        if role == Role::Visitor && self.config.moderated {
            return self
                .bounce(
                    st,
                    err(Condition::Forbidden, "visitors may not speak in this room"),
                )
                .await;
        }
        let subject = st.el.get_child("subject", NS_CLIENT);
        let has_body = st.el.has_child("body", NS_CLIENT);
        if let (Some(subject), false) = (subject, has_body) {
            if !(self.config.change_subject && role >= Role::Participant) && role != Role::Moderator
            {
                return self
                    .bounce(
                        st,
                        err(Condition::Forbidden, "you may not change the subject"),
                    )
                    .await;
            }
            self.subject.text = subject.text();
            self.subject.by = Some(nick.to_owned());
            self.save().await;
            let s = self.subject_stanza();
            return self.broadcast(s).await;
        }
        let mut el = cleaned(&st.el, &self.jid);
        set_attr(&mut el, "from", Some(self.occupant_jid(nick).as_str()));
        set_attr(&mut el, "to", None);
        el.append_child(ns::occupant_id(&occupant_id));
        let archived = if has_body || el.has_child("retract", RETRACT) {
            self.archive(&el).await
        } else {
            None
        };
        if let Some(r) = el.get_child("retract", RETRACT) {
            self.self_retraction(r, &occupant_id, &bare).await;
        }
        let history = archived
            .as_ref()
            .map(|(id, when)| {
                (
                    history_stanza(&self.jid, &el, Some(id), *when),
                    id.clone(),
                    *when,
                )
            })
            .or_else(|| {
                has_body.then(|| {
                    let now = tern_router::time::now_micros();
                    (
                        history_stanza(&self.jid, &el, None, now),
                        String::new(),
                        now,
                    )
                })
            });
        if let Some((id, _)) = &archived {
            el.append_child(tern_mam::archive::stanza_id(id, &self.jid));
        }
        let live = Arc::new(SharedStanza::new(el));
        self.broadcast(live).await;
        if let Some((stanza, id, when)) = history {
            self.remember(HistItem {
                id: (!id.is_empty()).then_some(id),
                when,
                stanza,
            });
        }
    }

    /// XEP-0424 in a room: an occupant retracts its own message; the archive keeps a
    /// tombstone. Someone else's message is left alone (clients check the occupant id too).
    async fn self_retraction(&mut self, r: &Element, occupant_id: &str, _bare: &BareJid) {
        let Some(id) = r.attr("id") else { return };
        let Some(item) = self.archived(id).await else {
            return;
        };
        let Some(old) = parse(&item) else { return };
        let theirs = old
            .get_child("occupant-id", OCCUPANT_ID)
            .and_then(|o| o.attr("id"))
            == Some(occupant_id);
        if !theirs || old.has_child("retracted", RETRACT) {
            return;
        }
        let tomb = Element::builder("retracted", RETRACT)
            .a(
                "stamp",
                tern_router::time::format_micros(tern_router::time::now_micros()),
            )
            .build();
        self.tombstone(&item, tomb).await;
    }

    /// §7.5: a private message between occupants, through the router so the recipient's
    /// archive and carbons apply.
    async fn private(&mut self, st: &Stanza, from_nick: &str, to_nick: &str) {
        let Some(sender_role) = self.occupants.get(from_nick).map(|o| o.role) else {
            return;
        };
        let allowed = match self.config.allow_pm {
            AllowPm::Anyone => true,
            AllowPm::Participants => sender_role >= Role::Participant,
            AllowPm::Moderators => sender_role == Role::Moderator,
            AllowPm::None => false,
        };
        if !allowed {
            return self
                .bounce(
                    st,
                    err(
                        Condition::Forbidden,
                        "private messages are not allowed in this room",
                    ),
                )
                .await;
        }
        let Some(target) = self.occupants.get(to_nick).map(Room::real) else {
            return self
                .bounce(st, err(Condition::ItemNotFound, "no such occupant"))
                .await;
        };
        let mut el = cleaned(&st.el, &self.jid);
        set_attr(&mut el, "to", None);
        // §7.5: marks the message as a MUC private message for the recipient's client.
        if !el.has_child("x", MUC_USER) {
            el.append_child(Element::bare("x", MUC_USER));
        }
        if let Some(o) = self.occupants.get(from_nick) {
            el.append_child(ns::occupant_id(&o.occupant_id));
        }
        let from = self.occupant_jid(from_nick);
        self.route(Kind::Message, from, target, el).await;
    }

    /// A message to the room's bare JID that is not groupchat: invitations, declines, voice
    /// requests and their approval (§7.8, §7.13, §8.6).
    async fn at_room_bare(&mut self, st: &Stanza, sender: Option<String>) {
        if let Some(x) = st.el.get_child("x", MUC_USER) {
            if let Some(decline) = x.get_child("decline", MUC_USER) {
                return self.decline(st, decline).await;
            }
            let invites: Vec<&Element> =
                x.children().filter(|c| c.is("invite", MUC_USER)).collect();
            if !invites.is_empty() {
                return self.invite(st, sender.as_deref(), &invites).await;
            }
        }
        if let Some(form) = st.el.get_child("x", DATA) {
            if ns::form_type(form).as_deref() == Some(MUC_REQUEST) {
                return match sender {
                    Some(nick) => self.voice_form(st, &nick, form).await,
                    None => {
                        self.bounce(
                            st,
                            err(Condition::NotAcceptable, "you are not in this room"),
                        )
                        .await
                    }
                };
            }
        }
        if st.type_() != "headline" {
            self.bounce(
                st,
                err(
                    Condition::BadRequest,
                    "messages to the room must be of type groupchat",
                ),
            )
            .await;
        }
    }

    /// §7.8.2: a mediated invitation, forwarded from the room.
    async fn invite(&mut self, st: &Stanza, sender: Option<&str>, invites: &[&Element]) {
        let Some(nick) = sender else {
            return self
                .bounce(
                    st,
                    err(Condition::NotAcceptable, "you are not in this room"),
                )
                .await;
        };
        let Some((role, bare)) = self.occupants.get(nick).map(|o| (o.role, o.jid.to_bare())) else {
            return;
        };
        let aff = self.aff(&bare);
        let may = if self.config.members_only {
            aff >= Affiliation::Admin || (self.config.allow_invites && role >= Role::Participant)
        } else {
            self.config.allow_invites || role == Role::Moderator
        };
        if !may {
            return self
                .bounce(
                    st,
                    err(Condition::Forbidden, "you may not invite to this room"),
                )
                .await;
        }
        let mut targets = Vec::new();
        for inv in invites {
            match inv.attr("to").and_then(|t| Jid::new(t).ok()) {
                Some(j) => targets.push((j, inv.get_child("reason", MUC_USER).map(|r| r.text()))),
                None => {
                    return self
                        .bounce(
                            st,
                            err(Condition::JidMalformed, "invite needs a valid 'to'"),
                        )
                        .await
                }
            }
        }
        for (to, reason) in targets {
            // §7.8.2: in a members-only room the invitee becomes a member.
            let tb = to.to_bare();
            if self.config.members_only
                && self.aff(&tb) < Affiliation::Member
                && self.aff(&tb) != Affiliation::Outcast
            {
                self.affiliations.insert(
                    tb.clone(),
                    AffItem {
                        affiliation: Affiliation::Member,
                        nick: None,
                        reason: None,
                    },
                );
                self.save_affiliation(&tb).await;
            }
            let mut invite = Element::builder("invite", MUC_USER)
                .a("from", st.from.as_str())
                .build();
            if let Some(r) = &reason {
                invite.append_child(ns::text_el("reason", MUC_USER, r));
            }
            let mut x = Element::builder("x", MUC_USER).append(invite).build();
            if let Some(pw) = &self.config.password {
                x.append_child(ns::text_el("password", MUC_USER, pw));
            }
            let body = format!(
                "You are invited to {} by {}{}",
                self.jid,
                st.from.to_bare(),
                reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
            let el = ns::stanza("message")
                .a("id", super::random_id())
                .append(x)
                .append(
                    Element::builder("x", ns::CONFERENCE)
                        .a("jid", self.jid.as_str())
                        .build(),
                )
                .append(ns::text_el("body", NS_CLIENT, &body))
                .build();
            debug!(room = %self.jid, "invitation sent");
            self.route(Kind::Message, self.jid.clone().into(), to, el)
                .await;
        }
    }

    /// §7.8.2: a declined invitation goes back to the inviter, from the room.
    async fn decline(&mut self, st: &Stanza, decline: &Element) {
        let Some(to) = decline.attr("to").and_then(|t| Jid::new(t).ok()) else {
            return self
                .bounce(
                    st,
                    err(Condition::JidMalformed, "decline needs a valid 'to'"),
                )
                .await;
        };
        let mut d = Element::builder("decline", MUC_USER)
            .a("from", st.from.to_bare().as_str())
            .build();
        if let Some(r) = decline.get_child("reason", MUC_USER) {
            d.append_child(r.clone());
        }
        let el = ns::stanza("message")
            .a("id", super::random_id())
            .append(Element::builder("x", MUC_USER).append(d).build())
            .build();
        self.route(Kind::Message, self.jid.clone().into(), to, el)
            .await;
    }

    /// §7.13 and §8.6: a visitor asks for voice (forwarded to the moderators), or a moderator
    /// answers such a request (voice granted when allowed).
    async fn voice_form(&mut self, st: &Stanza, nick: &str, form: &Element) {
        let values = ns::form_values(form);
        let get = |var: &str| {
            values
                .iter()
                .find(|(v, _)| v == var)
                .and_then(|(_, vals)| vals.first().cloned())
        };
        let Some((role, jid)) = self.occupants.get(nick).map(|o| (o.role, o.jid.clone())) else {
            return;
        };
        if role == Role::Moderator {
            if let Some(allow) = get("muc#request_allow").and_then(|v| ns::parse_bool(&v)) {
                let target = get("muc#roomnick").filter(|n| self.occupants.contains_key(n));
                return match (allow, target) {
                    (true, Some(t)) if self.occupants[&t].role == Role::Visitor => {
                        if let Some(o) = self.occupants.get_mut(&t) {
                            o.role = Role::Participant;
                        }
                        self.announce(&t, Some(nick), None).await;
                    }
                    (true, None) => {
                        self.bounce(st, err(Condition::ItemNotFound, "no such occupant"))
                            .await
                    }
                    _ => {}
                };
            }
        }
        if role != Role::Visitor {
            return; // only visitors ask for voice; nothing to do otherwise
        }
        let request = Element::builder("x", DATA)
            .a("type", "form")
            .append(ns::text_el("title", DATA, "Voice request"))
            .append(ns::text_el(
                "instructions",
                DATA,
                "Grant voice to this occupant?",
            ))
            .append(ns::field("FORM_TYPE", "hidden", None, &[MUC_REQUEST]))
            .append(ns::field(
                "muc#role",
                "list-single",
                Some("Requested role"),
                &["participant"],
            ))
            .append(ns::field(
                "muc#jid",
                "jid-single",
                Some("User ID"),
                &[jid.as_str()],
            ))
            .append(ns::field(
                "muc#roomnick",
                "text-single",
                Some("Room nickname"),
                &[nick],
            ))
            .append(ns::field(
                "muc#request_allow",
                "boolean",
                Some("Grant voice?"),
                &["false"],
            ))
            .build();
        let moderators: Vec<Jid> = self
            .occupants
            .values()
            .filter(|o| o.role == Role::Moderator)
            .map(Room::real)
            .collect();
        for m in moderators {
            let el = ns::stanza("message")
                .a("id", super::random_id())
                .append(request.clone())
                .build();
            self.route(Kind::Message, self.jid.clone().into(), m, el)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_limits_rate_and_refills() {
        let t0 = Instant::now();
        let mut b = Bucket::new(2.0, 3);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0), "burst spent");
        assert!(b.take(t0 + Duration::from_millis(600)), "refilled at 2/s");
        assert!(!b.take(t0 + Duration::from_millis(650)));
        let mut free = Bucket::new(0.0, 0);
        assert!((0..1000).all(|_| free.take(t0)));
    }

    #[test]
    fn foreign_ids_are_stripped() {
        let room = BareJid::new("r@muc.x").unwrap();
        let el: Element = "<message xmlns='jabber:client' type='groupchat'><body>b</body>\
            <stanza-id xmlns='urn:xmpp:sid:0' by='r@muc.x' id='forged'/>\
            <occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/>\
            <origin-id xmlns='urn:xmpp:sid:0' id='keep'/></message>"
            .parse()
            .unwrap();
        let c = cleaned(&el, &room);
        assert!(!c.has_child("stanza-id", SID));
        assert!(!c.has_child("occupant-id", OCCUPANT_ID));
        assert!(c.has_child("origin-id", SID));
    }
}
