//! Owner use cases (XEP-0045 §10): the configuration form, instant rooms, and destruction
//! with an alternate venue.

use jid::BareJid;
use minidom::Element;
use tracing::info;

use tern_router::xml::BuilderExt;
use tern_router::{Condition, Stanza, StanzaError};

use crate::affiliation::{Affiliation, Role};
use crate::config::Whois;
use crate::ns::{self, DATA, MUC_OWNER, MUC_USER};
use crate::room::join::Removal;
use crate::room::{deliver, Occupant, PresenceSpec, Room};
use crate::roomconfig::{self, Limits};
use crate::store::{self, AffItem};

fn err(c: Condition, text: &str) -> StanzaError {
    StanzaError::new(c).with_text(text)
}

impl Room {
    fn limits(&self) -> Limits {
        Limits {
            max_occupants: self.svc.config.max_occupants,
            max_history: self.svc.config.max_history,
        }
    }

    /// `muc#owner` IQs; only owners may use them (§10.1).
    pub(crate) async fn on_owner(&mut self, st: &Stanza, q: &Element) {
        if self.aff(&st.from.to_bare()) != Affiliation::Owner {
            return self
                .bounce(st, err(Condition::Forbidden, "only owners may do this"))
                .await;
        }
        if st.type_() == "get" {
            let form = roomconfig::config_form(
                &self.config,
                self.limits(),
                &self.with_affiliation(Affiliation::Owner),
                &self.with_affiliation(Affiliation::Admin),
            );
            let q = Element::builder("query", MUC_OWNER).append(form).build();
            return self.reply(st, Some(q)).await;
        }
        if let Some(d) = q.get_child("destroy", MUC_OWNER) {
            return self.destroy(st, d).await;
        }
        let Some(x) = q.get_child("x", DATA) else {
            return self
                .bounce(
                    st,
                    err(Condition::BadRequest, "expected a form or <destroy/>"),
                )
                .await;
        };
        if x.attr("type") == Some("cancel") {
            self.reply(st, None).await;
            // §10.1.3: cancelling the initial configuration destroys the new room.
            if self.locked {
                self.destroy_quietly().await;
            }
            return;
        }
        // §10.1.2: an empty submitted form accepts the defaults (an instant room).
        let submitted = match roomconfig::apply_form(&self.config, x, self.limits()) {
            Ok(s) => s,
            Err(e) => return self.bounce(st, e).await,
        };
        if let Err(e) = self.apply_lists(submitted.owners.as_deref(), submitted.admins.as_deref()) {
            return self.bounce(st, e).await;
        }
        let old = std::mem::replace(&mut self.config, submitted.config);
        let was_locked = std::mem::replace(&mut self.locked, false);
        self.reply(st, None).await;
        self.after_config(&old, was_locked).await;
    }

    /// `muc#roomconfig_roomowners`/`roomadmins`: the lists become exactly what was sent.
    fn apply_lists(
        &mut self,
        owners: Option<&[BareJid]>,
        admins: Option<&[BareJid]>,
    ) -> Result<(), StanzaError> {
        for (list, aff) in [(owners, Affiliation::Owner), (admins, Affiliation::Admin)] {
            let Some(list) = list else { continue };
            for j in self.with_affiliation(aff) {
                if !list.contains(&j) {
                    self.affiliations.remove(&j);
                }
            }
            for j in list {
                let nick = self.affiliations.get(j).and_then(|a| a.nick.clone());
                self.affiliations.insert(
                    j.clone(),
                    AffItem {
                        affiliation: aff,
                        nick,
                        reason: None,
                    },
                );
            }
        }
        if self.with_affiliation(Affiliation::Owner).is_empty() {
            return Err(err(Condition::Conflict, "a room needs at least one owner"));
        }
        Ok(())
    }

    /// What follows a configuration change (§10.2.1): storage, status messages, members-only
    /// removals, role and presence updates.
    async fn after_config(&mut self, old: &crate::roomconfig::RoomConfig, was_locked: bool) {
        let c = self.config.clone();
        if c.persistent {
            self.persist_all().await;
        } else if old.persistent {
            self.unpersist().await;
        }
        // Affiliation lists may have changed: presence and roles follow.
        let nicks: Vec<String> = self.occupants.keys().cloned().collect();
        for n in &nicks {
            if let Some(o) = self.occupants.get_mut(n) {
                o.invalidate();
            }
        }
        if !was_locked {
            let mut codes = vec![104];
            if old.whois != c.whois {
                codes.push(if c.whois == Whois::Anyone { 172 } else { 173 });
            }
            if old.logging != c.logging {
                codes.push(if c.logging { 170 } else { 171 });
            }
            self.broadcast_status(&codes).await;
        }
        if c.members_only && !old.members_only {
            for n in &nicks {
                let bare = match self.occupants.get(n) {
                    Some(o) => o.jid.to_bare(),
                    None => continue,
                };
                if self.aff(&bare) < Affiliation::Member {
                    self.remove(
                        n,
                        Removal {
                            codes: &[322],
                            ..Removal::default()
                        },
                    )
                    .await;
                }
            }
        }
        self.update_listing();
        info!(room = %self.jid, persistent = c.persistent, "room configured");
    }

    /// §10.9: every occupant is told, with the alternate venue if one was given; the room and
    /// everything stored of it are gone.
    async fn destroy(&mut self, st: &Stanza, d: &Element) {
        let mut destroy = Element::builder("destroy", MUC_USER)
            .a_opt("jid", d.attr("jid"))
            .build();
        if let Some(r) = d.get_child("reason", MUC_OWNER) {
            destroy.append_child(ns::text_el("reason", MUC_USER, &r.text()));
        }
        if let Some(p) = d.get_child("password", MUC_OWNER) {
            destroy.append_child(ns::text_el("password", MUC_USER, &p.text()));
        }
        let router = self.router.clone();
        let nicks: Vec<String> = self.occupants.keys().cloned().collect();
        for n in nicks {
            let Some(mut o) = self.occupants.remove(&n) else {
                continue;
            };
            self.by_jid.remove(&o.jid);
            self.svc.set_occupancy(&o.jid, self.node(), false);
            let snap = Occupant::snapshot(&o);
            let spec = PresenceSpec {
                type_: Some("unavailable"),
                extra: &[],
                aff: Affiliation::None,
                role: Role::None,
                destroy: Some(&destroy),
                ..self.spec_of(&snap)
            };
            let el = self.presence_element(&spec, true, &[110]);
            deliver(
                &router,
                &mut o,
                vec![std::sync::Arc::new(tern_router::SharedStanza::new(el))],
            )
            .await;
        }
        self.reply(st, None).await;
        self.destroy_quietly().await;
        info!(room = %self.jid, "room destroyed by its owner");
    }

    /// Ends the room and deletes what is stored of it.
    async fn destroy_quietly(&mut self) {
        let nicks: Vec<String> = self.occupants.keys().cloned().collect();
        for n in nicks {
            self.remove(&n, Removal::default()).await;
        }
        if let Err(e) =
            store::delete_room(&self.svc.storage, &self.svc.domain, self.node(), true).await
        {
            tracing::warn!(room = %self.jid, "cannot delete the destroyed room's data: {e}");
        }
        self.svc.room_destroyed(self.node(), &self.creator);
        self.destroyed = true;
    }
}
