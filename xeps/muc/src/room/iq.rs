//! IQs to the room and its occupants: disco#info with the `muc#roominfo` form (§6.4),
//! disco#items, ping, XEP-0410 self-ping, the room archive (XEP-0313), moderation (XEP-0425),
//! and IQs between occupants, forwarded with the sender's occupant JID (§7.5 for IQs).

use std::sync::Arc;

use jid::Jid;
use minidom::Element;

use tern_router::xml::BuilderExt;
use tern_router::{Condition, Ctx, Kind, Origin, SharedStanza, Stanza, StanzaError};

use crate::affiliation::{Affiliation, Role};
use crate::ns::{
    self, DISCO_INFO, DISCO_ITEMS, MAM, MODERATE, MUC, MUC_ADMIN, MUC_OWNER, PING, RETRACT,
};
use crate::roomconfig;

fn err(c: Condition, text: &str) -> StanzaError {
    StanzaError::new(c).with_text(text)
}

impl super::Room {
    /// An IQ to the room or one of its occupants.
    pub(crate) async fn on_iq(&mut self, origin: &Origin, st: Stanza) {
        let target = st
            .to
            .as_ref()
            .and_then(|t| t.resource())
            .map(|r| r.as_str().to_owned());
        match target {
            Some(nick) => self.iq_to_occupant(&st, &nick).await,
            None => self.iq_to_room(origin, &st).await,
        }
    }

    async fn iq_to_occupant(&mut self, st: &Stanza, nick: &str) {
        let sender = self.occupant_by_jid(&st.from).map(|o| o.nick.clone());
        if !st.is_iq_request() {
            // A response from an occupant's client to an IQ another occupant sent it.
            if let (Some(from_nick), Some(to)) =
                (sender, self.occupants.get(nick).map(super::Room::real))
            {
                let from = self.occupant_jid(&from_nick);
                self.route(Kind::Iq, from, to, st.el.clone()).await;
            }
            return;
        }
        let Some(sender) = sender else {
            // XEP-0410 §3: a client that is not joined (any more) learns it from this.
            return self
                .bounce(
                    st,
                    err(Condition::NotAcceptable, "you are not in this room"),
                )
                .await;
        };
        let payload = st.iq_payload();
        if sender == nick && payload.is_some_and(|p| p.is("ping", PING)) {
            // XEP-0410 §3.2 (self-ping optimization): the service answers for the client.
            return self.reply(st, None).await;
        }
        let Some(to) = self.occupants.get(nick).map(super::Room::real) else {
            return self
                .bounce(st, err(Condition::ItemNotFound, "no such occupant"))
                .await;
        };
        let from = self.occupant_jid(&sender);
        self.route(Kind::Iq, from, to, st.el.clone()).await;
    }

    async fn iq_to_room(&mut self, origin: &Origin, st: &Stanza) {
        if !st.is_iq_request() {
            return;
        }
        let Some(q) = st.iq_payload().cloned() else {
            return self.bounce(st, Condition::BadRequest.into()).await;
        };
        let get = st.type_() == "get";
        match (q.name(), q.ns().as_str()) {
            ("query", DISCO_INFO) if get => {
                let info = self.disco_info(&st.from, q.attr("node"));
                match info {
                    Some(i) => self.reply(st, Some(i)).await,
                    None => self.bounce(st, Condition::ItemNotFound.into()).await,
                }
            }
            ("query", DISCO_ITEMS) if get => {
                // §6.5: occupants are not listed; their JIDs are theirs to reveal.
                let items = Element::builder("query", DISCO_ITEMS)
                    .a_opt("node", q.attr("node"))
                    .build();
                self.reply(st, Some(items)).await
            }
            ("ping", PING) if get => self.reply(st, None).await,
            ("query", MUC_OWNER) => self.on_owner(st, &q).await,
            ("query", MUC_ADMIN) => self.on_admin(st, &q).await,
            ("moderate", MODERATE) if !get => self.moderate(st, &q).await,
            (_, MAM) => self.mam(origin, st, &q).await,
            _ => self.bounce(st, Condition::ServiceUnavailable.into()).await,
        }
    }

    /// §6.4 disco#info; the `x-roomuser-item` node tells a user its reserved nick (§7.12).
    fn disco_info(&self, from: &Jid, node: Option<&str>) -> Option<Element> {
        let identity = |name: &str| {
            Element::builder("identity", DISCO_INFO)
                .a("category", "conference")
                .a("type", "text")
                .a("name", name)
                .build()
        };
        if node == Some("x-roomuser-item") {
            let mut q = Element::builder("query", DISCO_INFO)
                .a("node", "x-roomuser-item")
                .build();
            if let Some(n) = self
                .affiliations
                .get(&from.to_bare())
                .and_then(|a| a.nick.as_deref())
            {
                q.append_child(identity(n));
            }
            return Some(q);
        }
        if node.is_some() {
            return None;
        }
        let name = if self.config.name.is_empty() {
            self.node()
        } else {
            &self.config.name
        };
        let mut q = Element::builder("query", DISCO_INFO)
            .append(identity(name))
            .build();
        let mut features = vec![
            MUC,
            DISCO_INFO,
            DISCO_ITEMS,
            PING,
            ns::SELF_PING,
            ns::OCCUPANT_ID,
            ns::STABLE_ID,
            ns::CONFERENCE,
            ns::MUC_REQUEST,
            MODERATE,
            RETRACT,
            ns::SID,
        ];
        if self.config.logging {
            features.push(MAM);
        }
        features.extend(roomconfig::features(&self.config));
        for f in features {
            q.append_child(Element::builder("feature", DISCO_INFO).a("var", f).build());
        }
        q.append_child(roomconfig::info_form(
            &self.config,
            self.occupants.len(),
            &self.subject.text,
            self.config.change_subject,
        ));
        Some(q)
    }

    /// XEP-0313 on the room JID: who may read it follows who may enter.
    async fn mam(&mut self, origin: &Origin, st: &Stanza, q: &Element) {
        let aff = self.aff(&st.from.to_bare());
        if aff == Affiliation::Outcast || (self.config.members_only && aff < Affiliation::Member) {
            return self
                .bounce(
                    st,
                    err(Condition::Forbidden, "you may not read this room's archive"),
                )
                .await;
        }
        if !self.config.logging {
            return self
                .bounce(
                    st,
                    err(
                        Condition::FeatureNotImplemented,
                        "this room keeps no archive",
                    ),
                )
                .await;
        }
        let cfg = tern_mam::MamConfig {
            max_page: self.svc.config.max_archive_page,
            max_age_days: 0,
            ..tern_mam::MamConfig::default()
        };
        let archive = tern_mam::query::Archive {
            store: self.svc.storage.archive.as_ref(),
            owner: &self.jid,
            config: &cfg,
        };
        self.flush_archive().await;
        let answer = match (q.name(), st.type_()) {
            ("query", "set") => {
                let req = match tern_mam::form::parse(q) {
                    Ok(r) => r,
                    Err(e) => return self.bounce(st, e).await,
                };
                match archive.page(&req).await {
                    Ok(page) => {
                        let count = archive.count(&req).await;
                        let ctx = Ctx {
                            router: &self.router,
                            origin,
                        };
                        return tern_mam::query::send_page(&ctx, st, &self.jid, &req, page, count);
                    }
                    Err(e) => Err(e),
                }
            }
            ("query", "get") => Ok(tern_mam::form::query_form()),
            ("metadata", "get") => archive.metadata().await,
            _ => Err(StanzaError::new(Condition::FeatureNotImplemented)),
        };
        match answer {
            Ok(el) => self.reply(st, Some(el)).await,
            Err(e) => self.bounce(st, e).await,
        }
    }

    /// XEP-0425: a moderator retracts a message; everyone is told and the archive keeps a
    /// tombstone.
    async fn moderate(&mut self, st: &Stanza, q: &Element) {
        let Some((nick, occupant_id)) = self
            .occupant_by_jid(&st.from)
            .filter(|o| o.role == Role::Moderator)
            .map(|o| (o.nick.clone(), o.occupant_id.clone()))
        else {
            return self
                .bounce(
                    st,
                    err(
                        Condition::Forbidden,
                        "only moderators may moderate messages",
                    ),
                )
                .await;
        };
        let (Some(id), true) = (q.attr("id"), q.has_child("retract", RETRACT)) else {
            return self
                .bounce(
                    st,
                    err(
                        Condition::BadRequest,
                        "expected <moderate id='…'><retract/></moderate>",
                    ),
                )
                .await;
        };
        let Some(item) = self.archived(id).await else {
            return self
                .bounce(
                    st,
                    err(Condition::ItemNotFound, "no such message in the archive"),
                )
                .await;
        };
        let reason = q.get_child("reason", MODERATE).map(|r| r.text());
        let moderated = Element::builder("moderated", MODERATE)
            .a("by", self.occupant_jid(&nick).as_str())
            .append(ns::occupant_id(&occupant_id))
            .build();
        let with_reason = |mut e: Element| {
            e.append_child(moderated.clone());
            if let Some(r) = &reason {
                e.append_child(ns::text_el("reason", RETRACT, r));
            }
            e
        };
        let now = tern_router::time::now_micros();
        let tomb = with_reason(
            Element::builder("retracted", RETRACT)
                .a("stamp", tern_router::time::format_micros(now))
                .build(),
        );
        self.tombstone(&item, tomb).await;
        let retract = with_reason(Element::builder("retract", RETRACT).a("id", id).build());
        let mut el = ns::stanza("message")
            .a("from", self.jid.as_str())
            .a("type", "groupchat")
            .a("id", super::random_id())
            .append(retract)
            .append(ns::text_el(
                "body",
                tern_stream::NS_CLIENT,
                "This message was removed by a moderator.",
            ))
            .append(Element::bare("store", ns::HINTS))
            .build();
        if let Some((aid, _)) = self.archive(&el).await {
            el.append_child(tern_mam::archive::stanza_id(&aid, &self.jid));
        }
        self.reply(st, None).await;
        self.broadcast(Arc::new(SharedStanza::new(el))).await;
    }
}
