//! Moderator and admin use cases (XEP-0045 §8, §9): kick, voice, moderator status, bans,
//! membership and the lists, all through `muc#admin` items. A request with several items is
//! checked whole before any of it applies.

use jid::{BareJid, Jid};
use minidom::Element;
use tracing::info;

use tern_router::xml::BuilderExt;
use tern_router::{Condition, Stanza, StanzaError};

use crate::affiliation::{
    default_role, may_list_affiliation, may_set_affiliation, may_set_role, Affiliation, Role,
};
use crate::ns::{self, MUC_ADMIN};
use crate::room::join::Removal;
use crate::room::Room;
use crate::store::AffItem;

fn err(c: Condition, text: &str) -> StanzaError {
    StanzaError::new(c).with_text(text)
}

/// One checked change.
enum Change {
    Role {
        nick: String,
        role: Role,
        reason: Option<String>,
    },
    Affiliation {
        jid: BareJid,
        aff: Affiliation,
        reason: Option<String>,
        nick: Option<String>,
    },
}

impl Room {
    /// `muc#admin` IQs.
    pub(crate) async fn on_admin(&mut self, st: &Stanza, q: &Element) {
        let actor_bare = st.from.to_bare();
        let actor_aff = self.aff(&actor_bare);
        let actor = self
            .occupant_by_jid(&st.from)
            .map(|o| (o.nick.clone(), o.role));
        let items: Vec<&Element> = q.children().filter(|c| c.is("item", MUC_ADMIN)).collect();
        if items.is_empty() {
            return self
                .bounce(st, err(Condition::BadRequest, "expected <item/>"))
                .await;
        }
        if st.type_() == "get" {
            return match self.list(actor_aff, actor.as_ref().map(|a| a.1), items[0]) {
                Ok(q) => self.reply(st, Some(q)).await,
                Err(e) => self.bounce(st, e).await,
            };
        }
        let actor_role = actor.as_ref().map_or(Role::None, |a| a.1);
        let mut changes = Vec::new();
        for item in &items {
            match self.check(actor_aff, actor_role, &actor_bare, item) {
                Ok(c) => changes.push(c),
                Err(e) => return self.bounce(st, e).await,
            }
        }
        if let Err(e) = self.check_owners_left(&changes) {
            return self.bounce(st, e).await;
        }
        self.reply(st, None).await;
        let actor_nick = actor.map(|a| a.0);
        for c in changes {
            self.apply(c, actor_nick.as_deref()).await;
        }
    }

    /// §9.5, §10.5, §8.5: the list of an affiliation or a role.
    fn list(
        &self,
        actor_aff: Affiliation,
        actor_role: Option<Role>,
        item: &Element,
    ) -> Result<Element, StanzaError> {
        let mut q = Element::builder("query", MUC_ADMIN).build();
        if let Some(a) = item.attr("affiliation") {
            let aff = Affiliation::parse(a)
                .ok_or_else(|| err(Condition::BadRequest, "unknown affiliation"))?;
            may_list_affiliation(actor_aff, aff)?;
            for j in self.with_affiliation(aff) {
                let entry = &self.affiliations[&j];
                let mut it = Element::builder("item", MUC_ADMIN)
                    .a("affiliation", aff.as_str())
                    .a("jid", j.as_str())
                    .a_opt("nick", entry.nick.clone())
                    .build();
                if let Some(r) = &entry.reason {
                    it.append_child(ns::text_el("reason", MUC_ADMIN, r));
                }
                q.append_child(it);
            }
            return Ok(q);
        }
        let role = item
            .attr("role")
            .and_then(Role::parse)
            .ok_or_else(|| err(Condition::BadRequest, "expected an affiliation or a role"))?;
        if actor_role != Some(Role::Moderator) {
            return Err(err(Condition::Forbidden, "only moderators may list roles"));
        }
        let mut occ: Vec<_> = self.occupants.values().filter(|o| o.role == role).collect();
        occ.sort_by(|a, b| a.nick.cmp(&b.nick));
        for o in occ {
            q.append_child(
                Element::builder("item", MUC_ADMIN)
                    .a("role", role.as_str())
                    .a("nick", o.nick.as_str())
                    .a("jid", o.jid.as_str())
                    .a("affiliation", self.aff(&o.jid.to_bare()).as_str())
                    .build(),
            );
        }
        Ok(q)
    }

    fn check(
        &self,
        actor_aff: Affiliation,
        actor_role: Role,
        actor: &BareJid,
        item: &Element,
    ) -> Result<Change, StanzaError> {
        let reason = item.get_child("reason", MUC_ADMIN).map(|r| r.text());
        if let Some(a) = item.attr("affiliation") {
            let aff = Affiliation::parse(a)
                .ok_or_else(|| err(Condition::BadRequest, "unknown affiliation"))?;
            let jid = match (item.attr("jid"), item.attr("nick")) {
                (Some(j), _) => Jid::new(j)
                    .map_err(|_| err(Condition::JidMalformed, "bad 'jid'"))?
                    .to_bare(),
                (None, Some(n)) => self
                    .occupants
                    .get(n)
                    .map(|o| o.jid.to_bare())
                    .ok_or_else(|| err(Condition::ItemNotFound, "no such occupant"))?,
                (None, None) => {
                    return Err(err(
                        Condition::BadRequest,
                        "an affiliation change needs 'jid'",
                    ))
                }
            };
            if self.svc.is_admin(&jid) && aff != Affiliation::Owner {
                return Err(err(
                    Condition::NotAllowed,
                    "service administrators own every room",
                ));
            }
            may_set_affiliation(actor_aff, self.aff(&jid), aff)?;
            // Banning oneself would leave nobody to undo it.
            if aff == Affiliation::Outcast && &jid == actor {
                return Err(err(Condition::Conflict, "you cannot ban yourself"));
            }
            let nick = item
                .attr("nick")
                .filter(|_| item.attr("jid").is_some())
                .map(str::to_owned);
            return Ok(Change::Affiliation {
                jid,
                aff,
                reason,
                nick,
            });
        }
        let role = item
            .attr("role")
            .and_then(Role::parse)
            .ok_or_else(|| err(Condition::BadRequest, "expected an affiliation or a role"))?;
        let nick = item
            .attr("nick")
            .ok_or_else(|| err(Condition::BadRequest, "a role change needs 'nick'"))?;
        let target = self
            .occupants
            .get(nick)
            .ok_or_else(|| err(Condition::ItemNotFound, "no such occupant"))?;
        may_set_role(
            actor_aff,
            actor_role,
            self.aff(&target.jid.to_bare()),
            target.role,
            role,
        )?;
        Ok(Change::Role {
            nick: nick.to_owned(),
            role,
            reason,
        })
    }

    /// §10.6: the last owner may not go.
    fn check_owners_left(&self, changes: &[Change]) -> Result<(), StanzaError> {
        let mut owners = self.with_affiliation(Affiliation::Owner);
        for c in changes {
            if let Change::Affiliation { jid, aff, .. } = c {
                owners.retain(|o| o != jid);
                if *aff == Affiliation::Owner {
                    owners.push(jid.clone());
                }
            }
        }
        if owners.is_empty() {
            return Err(err(Condition::Conflict, "a room needs at least one owner"));
        }
        Ok(())
    }

    async fn apply(&mut self, c: Change, actor: Option<&str>) {
        match c {
            Change::Role {
                nick,
                role: Role::None,
                reason,
            } => {
                // §8.2: kicked.
                info!(room = %self.jid, "occupant kicked");
                self.remove(
                    &nick,
                    Removal {
                        codes: &[307],
                        actor,
                        reason: reason.as_deref(),
                        ..Removal::default()
                    },
                )
                .await;
            }
            Change::Role { nick, role, reason } => {
                if let Some(o) = self.occupants.get_mut(&nick) {
                    o.role = role;
                }
                self.announce(&nick, actor, reason.as_deref()).await;
            }
            Change::Affiliation {
                jid,
                aff,
                reason,
                nick,
            } => {
                if aff == Affiliation::None {
                    self.affiliations.remove(&jid);
                } else {
                    self.affiliations.insert(
                        jid.clone(),
                        AffItem {
                            affiliation: aff,
                            nick,
                            reason: reason.clone(),
                        },
                    );
                }
                self.save_affiliation(&jid).await;
                info!(room = %self.jid, affiliation = aff.as_str(), "affiliation changed");
                let present: Vec<String> = self
                    .occupants
                    .values()
                    .filter(|o| o.jid.to_bare() == jid)
                    .map(|o| o.nick.clone())
                    .collect();
                for n in present {
                    if aff == Affiliation::Outcast {
                        // §9.1: banned.
                        self.remove(
                            &n,
                            Removal {
                                codes: &[301],
                                actor,
                                reason: reason.as_deref(),
                                aff: Some(aff),
                                ..Removal::default()
                            },
                        )
                        .await;
                    } else if self.config.members_only && aff < Affiliation::Member {
                        // §9.4: no longer a member of a members-only room.
                        self.remove(
                            &n,
                            Removal {
                                codes: &[321],
                                actor,
                                reason: reason.as_deref(),
                                ..Removal::default()
                            },
                        )
                        .await;
                    } else {
                        if let Some(o) = self.occupants.get_mut(&n) {
                            o.role = default_role(aff, self.config.moderated);
                        }
                        self.announce(&n, actor, reason.as_deref()).await;
                    }
                }
            }
        }
    }
}
