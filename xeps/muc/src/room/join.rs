//! Entering, leaving and changing presence or nick (XEP-0045 §7.2, §7.6, §7.7, §7.14), and
//! the removals every other handler uses (kick, ban, affiliation change, ghosts).

use std::sync::Arc;

use jid::{FullJid, Jid};
use minidom::Element;
use tracing::debug;

use tern_router::{Condition, Origin, SharedStanza, Stanza, StanzaError};

use crate::affiliation::{default_role, Affiliation, Role};
use crate::ns::{MUC, MUC_USER, OCCUPANT_ID};
use crate::room::history::HistoryRequest;
use crate::room::message::Bucket;
use crate::room::{deliver, Occupant, PresenceSpec, Room};

/// How an occupant leaves, for [`Room::remove`].
#[derive(Default)]
pub(crate) struct Removal<'a> {
    /// Status codes (307 kicked, 301 banned, 321, 322, 332, 333).
    pub codes: &'a [u16],
    /// The moderator's nick.
    pub actor: Option<&'a str>,
    /// Why.
    pub reason: Option<&'a str>,
    /// The client's own unavailable payload (status text) on a voluntary exit.
    pub extra: Vec<Element>,
    /// The affiliation to show (outcast for a ban), when it differs from the stored one.
    pub aff: Option<Affiliation>,
    /// `<destroy/>` when the room is destroyed.
    pub destroy: Option<&'a Element>,
}

/// The payload of a client's presence that the room repeats: everything but the MUC
/// elements and occupant ids (XEP-0421 §4: the service strips ones it did not add).
pub(crate) fn presence_payload(el: &Element) -> Vec<Element> {
    el.children()
        .filter(|c| !(c.is("x", MUC) || c.is("x", MUC_USER) || c.is("occupant-id", OCCUPANT_ID)))
        .cloned()
        .collect()
}

fn err(c: Condition, text: &str) -> StanzaError {
    StanzaError::new(c).with_text(text)
}

impl Room {
    /// Presence to the room or an occupant JID.
    pub(crate) async fn on_presence(&mut self, origin: &Origin, st: Stanza) {
        let Ok(from) = st.from.try_as_full().cloned() else {
            if !st.is_error() {
                self.bounce(
                    &st,
                    err(Condition::BadRequest, "presence must come from a full JID"),
                )
                .await;
            }
            return;
        };
        let nick = st
            .to
            .as_ref()
            .and_then(|t| t.resource())
            .map(|r| r.as_str().to_owned());
        let current = self.by_jid.get(&from).cloned();
        match (st.type_(), current, nick) {
            ("available", _, None) => {
                // §7.2.1: entering needs a nick.
                self.bounce(
                    &st,
                    err(Condition::JidMalformed, "a room nickname is required"),
                )
                .await
            }
            ("available", None, Some(nick)) => self.join(origin, &st, from, nick, false).await,
            ("available", Some(cur), Some(nick)) if cur == nick => {
                if st.el.has_child("x", MUC) {
                    self.rejoin(&st, &cur).await
                } else {
                    self.presence_update(&st, &cur).await
                }
            }
            ("available", Some(cur), Some(nick)) => self.change_nick(&st, &cur, &nick).await,
            ("unavailable", Some(cur), _) => {
                let extra = presence_payload(&st.el);
                self.remove(
                    &cur,
                    Removal {
                        extra,
                        ..Removal::default()
                    },
                )
                .await;
            }
            ("error", Some(cur), _) => {
                // The occupant's client or server refused room presence: it is gone.
                self.remove(
                    &cur,
                    Removal {
                        codes: &[333],
                        ..Removal::default()
                    },
                )
                .await;
            }
            _ => debug!(room = %self.jid, from = %st.from, "presence ignored"),
        }
    }

    /// The checks of §7.2.4-§7.2.10, in order; `Ok` with the nick to use (a member's reserved
    /// nick replaces another one, §7.2.? 210).
    fn admit(
        &self,
        st: &Stanza,
        from: &FullJid,
        nick: &str,
    ) -> Result<(String, bool), StanzaError> {
        let bare = from.to_bare();
        let aff = self.aff(&bare);
        if self.locked && aff != Affiliation::Owner {
            return Err(err(
                Condition::ItemNotFound,
                "the room is not configured yet",
            ));
        }
        if aff == Affiliation::Outcast {
            return Err(err(Condition::Forbidden, "you are banned from this room"));
        }
        if self.config.members_only && aff < Affiliation::Member {
            return Err(err(
                Condition::RegistrationRequired,
                "this room is for members only",
            ));
        }
        if let Some(pw) = &self.config.password {
            let given = st
                .el
                .get_child("x", MUC)
                .and_then(|x| x.get_child("password", MUC))
                .map(|p| p.text());
            if aff < Affiliation::Admin && given.as_deref() != Some(pw.as_str()) {
                return Err(err(Condition::NotAuthorized, "a password is required"));
            }
        }
        if self.occupants.len() >= self.config.max_users && aff < Affiliation::Admin {
            return Err(err(Condition::ServiceUnavailable, "the room is full"));
        }
        let reserved = self.affiliations.get(&bare).and_then(|a| a.nick.clone());
        let (nick, changed) = match reserved {
            Some(r) if r != nick => (r, true),
            _ => (nick.to_owned(), false),
        };
        if self.occupants.contains_key(&nick) {
            return Err(err(Condition::Conflict, "that nickname is in use"));
        }
        if self.reserved_by_other(&nick, &bare) {
            return Err(err(Condition::Conflict, "that nickname is reserved"));
        }
        Ok((nick, changed))
    }

    /// Whether another user reserved this nick (§7.10).
    pub(crate) fn reserved_by_other(&self, nick: &str, bare: &jid::BareJid) -> bool {
        self.affiliations
            .iter()
            .any(|(j, a)| j != bare && a.nick.as_deref() == Some(nick))
    }

    /// §7.2: a new occupant enters; `created` when it just created the room (201).
    pub(crate) async fn join(
        &mut self,
        origin: &Origin,
        st: &Stanza,
        from: FullJid,
        nick: String,
        created: bool,
    ) {
        let (nick, changed) = match self.admit(st, &from, &nick) {
            Ok(n) => n,
            Err(e) => {
                debug!(room = %self.jid, from = %from, "entry refused: {:?}", e.condition);
                return self.bounce(st, e).await;
            }
        };
        let bare = from.to_bare();
        let aff = self.aff(&bare);
        let role = default_role(aff, self.config.moderated);
        let occupant_id = self.occupant_id_for(&bare);
        let cfg = &self.svc.config;
        let mut occ = Occupant::new(
            nick.clone(),
            from.clone(),
            role,
            occupant_id,
            Bucket::new(cfg.message_rate, cfg.message_burst),
        );
        occ.extra = presence_payload(&st.el);
        occ.session = origin
            .session()
            .filter(|s| *s.jid() == from)
            .cloned()
            .or_else(|| self.router.sessions().get(&from));
        // Existing occupants first (§7.2.3), each serialized once for every newcomer.
        let sees = self.sees_jids(role);
        let nicks: Vec<String> = self.occupants.keys().cloned().collect();
        let mut burst: Vec<Arc<SharedStanza>> = Vec::with_capacity(nicks.len() + 32);
        for n in &nicks {
            if let Some(p) = self.cached_presence(n, sees) {
                burst.push(p);
            }
        }
        self.by_jid.insert(from.clone(), nick.clone());
        self.occupants.insert(nick.clone(), occ);
        self.svc.set_occupancy(&from, self.node(), true);
        let mut own_codes = self.room_codes();
        if created {
            own_codes.push(201);
        }
        if changed {
            own_codes.push(210);
        }
        own_codes.push(110);
        let snap = Occupant::snapshot(&self.occupants[&nick]);
        let spec = self.spec_of(&snap);
        let own = self.presence_element(&spec, true, &own_codes);
        // The newcomer's presence to everyone else.
        self.fan_out_presence(&spec, None, None).await;
        burst.push(Arc::new(SharedStanza::new(own)));
        let req =
            HistoryRequest::from_join(st.el.get_child("x", MUC), tern_router::time::now_micros());
        burst.extend(self.history_for(&req));
        burst.push(self.subject_stanza());
        let router = self.router.clone();
        if let Some(o) = self.occupants.get_mut(&nick) {
            deliver(&router, o, burst).await;
        }
        self.update_listing();
        debug!(room = %self.jid, occupants = self.occupants.len(), "occupant entered");
    }

    /// The same session sends its entry presence again (e.g. after a reconnection it did
    /// not notice): it gets the room's state again, the others hear nothing new.
    async fn rejoin(&mut self, st: &Stanza, nick: &str) {
        let Some(role) = self.occupants.get(nick).map(|o| o.role) else {
            return;
        };
        if let Some(o) = self.occupants.get_mut(nick) {
            o.extra = presence_payload(&st.el);
            o.invalidate();
        }
        let sees = self.sees_jids(role);
        let others: Vec<String> = self
            .occupants
            .keys()
            .filter(|n| *n != nick)
            .cloned()
            .collect();
        let mut burst = Vec::with_capacity(others.len() + 32);
        for n in &others {
            if let Some(p) = self.cached_presence(n, sees) {
                burst.push(p);
            }
        }
        let mut codes = self.room_codes();
        codes.push(110);
        let own = {
            let o = &self.occupants[nick];
            self.presence_element(&self.spec_of(o), true, &codes)
        };
        burst.push(Arc::new(SharedStanza::new(own)));
        let req =
            HistoryRequest::from_join(st.el.get_child("x", MUC), tern_router::time::now_micros());
        burst.extend(self.history_for(&req));
        burst.push(self.subject_stanza());
        let router = self.router.clone();
        if let Some(o) = self.occupants.get_mut(nick) {
            deliver(&router, o, burst).await;
        }
    }

    /// §7.7: new show/status, reflected to everyone including the sender (110).
    async fn presence_update(&mut self, st: &Stanza, nick: &str) {
        let Some(o) = self.occupants.get_mut(nick) else {
            return;
        };
        o.extra = presence_payload(&st.el);
        o.invalidate();
        let snap = Occupant::snapshot(o);
        let spec = self.spec_of(&snap);
        self.fan_out_presence(&spec, Some(&[]), None).await;
    }

    /// §7.6: unavailable with 303 from the old nick, then available from the new one.
    async fn change_nick(&mut self, st: &Stanza, old: &str, new: &str) {
        let Some(from) = st.from.try_as_full().ok().cloned() else {
            return;
        };
        if self.occupants.contains_key(new) || self.reserved_by_other(new, &from.to_bare()) {
            return self
                .bounce(st, err(Condition::Conflict, "that nickname is in use"))
                .await;
        }
        let Some(snap) = self.occupants.get(old).map(Occupant::snapshot) else {
            return;
        };
        let mut spec = self.spec_of(&snap);
        spec.type_ = Some("unavailable");
        spec.codes = &[303];
        spec.new_nick = Some(new);
        spec.extra = &[];
        self.fan_out_presence(&spec, Some(&[]), None).await;
        let Some(mut o) = self.occupants.remove(old) else {
            return;
        };
        o.nick = new.to_owned();
        o.extra = presence_payload(&st.el);
        o.invalidate();
        self.by_jid.insert(from, new.to_owned());
        self.occupants.insert(new.to_owned(), o);
        let snap = Occupant::snapshot(&self.occupants[new]);
        let spec = self.spec_of(&snap);
        self.fan_out_presence(&spec, Some(&[]), None).await;
        debug!(room = %self.jid, "occupant changed nick");
    }

    /// An occupant leaves: everyone, itself included (110), gets its unavailable presence.
    pub(crate) async fn remove(&mut self, nick: &str, how: Removal<'_>) {
        let Some(mut o) = self.occupants.remove(nick) else {
            return;
        };
        self.by_jid.remove(&o.jid);
        self.svc.set_occupancy(&o.jid, self.node(), false);
        let aff = how.aff.unwrap_or_else(|| self.aff(&o.jid.to_bare()));
        let spec = PresenceSpec {
            nick: &o.nick.clone(),
            type_: Some("unavailable"),
            extra: &how.extra,
            aff,
            role: Role::None,
            jid: &o.jid.clone(),
            occupant_id: &o.occupant_id.clone(),
            codes: how.codes,
            new_nick: None,
            actor: how.actor,
            reason: how.reason,
            destroy: how.destroy,
        };
        self.fan_out_presence(&spec, Some(&[]), Some(&mut o)).await;
        self.update_listing();
        debug!(room = %self.jid, occupants = self.occupants.len(), codes = ?how.codes, "occupant left");
    }

    /// A session ended without telling the room (it never sent presence, so the presence
    /// module sends no unavailable for it).
    pub(crate) async fn gone(&mut self, jid: &FullJid) {
        if let Some(nick) = self.by_jid.get(jid).cloned() {
            self.remove(&nick, Removal::default()).await;
        }
    }

    /// An occupant's role changed: its presence is broadcast again (§8.4, §9.6).
    pub(crate) async fn announce(&mut self, nick: &str, actor: Option<&str>, reason: Option<&str>) {
        let Some(o) = self.occupants.get_mut(nick) else {
            return;
        };
        o.invalidate();
        let snap = Occupant::snapshot(o);
        let mut spec = self.spec_of(&snap);
        spec.actor = actor;
        spec.reason = reason;
        self.fan_out_presence(&spec, Some(&[]), None).await;
    }

    /// The real JID as a [`Jid`], for addressing.
    pub(crate) fn real(o: &Occupant) -> Jid {
        Jid::from(o.jid.clone())
    }
}

impl Occupant {
    /// A copy of what presence needs, so the room can be borrowed mutably while fanning out.
    pub(crate) fn snapshot(o: &Occupant) -> Occupant {
        Occupant {
            nick: o.nick.clone(),
            jid: o.jid.clone(),
            role: o.role,
            extra: o.extra.clone(),
            session: None,
            occupant_id: o.occupant_id.clone(),
            bucket: Bucket::new(0.0, 0),
            cached: [None, None],
        }
    }
}
