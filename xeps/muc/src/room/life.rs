//! A room's life: created by its first occupant (§10.1), loaded from storage when persistent,
//! saved on every change that must survive a restart, and forgotten when it ends.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use base64::Engine;
use jid::BareJid;
use tracing::{info, warn};

use tern_router::{Condition, Kind, Origin, Router, SessionHandle, Stanza, StanzaError};

use crate::affiliation::Affiliation;
use crate::ns::MUC;
use crate::roomconfig::RoomConfig;
use crate::service::{Cmd, Shared};
use crate::store::{self, AffItem, StoredRoom};

use super::{Room, Subject};

impl Room {
    fn blank(
        svc: &Arc<Shared>,
        router: &Arc<Router>,
        name: &str,
        creator: BareJid,
    ) -> Option<Room> {
        let jid = BareJid::new(&format!("{name}@{}", svc.domain)).ok()?;
        Some(Room {
            svc: svc.clone(),
            router: router.clone(),
            jid,
            config: RoomConfig::from(&svc.config.default_room),
            affiliations: HashMap::new(),
            occupants: HashMap::new(),
            by_jid: HashMap::new(),
            subject: Subject::default(),
            history: VecDeque::new(),
            locked: false,
            secret: base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(rand::random::<[u8; 16]>()),
            creator,
            created: tern_router::time::now_micros() / 1_000_000,
            destroyed: false,
            writer: None,
        })
    }

    /// §10.1.1: the first presence to a room that does not exist creates it, its sender
    /// becoming owner. A MUC client (`<x xmlns='…muc'/>`) gets a locked room to configure or
    /// accept as instant (201); a client without it an unlocked instant room.
    pub(crate) async fn create(
        svc: &Arc<Shared>,
        router: &Arc<Router>,
        name: &str,
        origin: &Origin,
        st: &Stanza,
    ) -> Option<Room> {
        if st.kind != Kind::Presence {
            return None;
        }
        if st.type_() != "available" {
            // Unavailable or errors for a room that is gone: nothing to answer.
            return None;
        }
        let Ok(from) = st.from.try_as_full().cloned() else {
            router.bounce(st, Condition::BadRequest.into()).await;
            return None;
        };
        let Some(nick) = st
            .to
            .as_ref()
            .and_then(|t| t.resource())
            .map(|r| r.as_str().to_owned())
        else {
            router
                .bounce(
                    st,
                    StanzaError::new(Condition::JidMalformed)
                        .with_text("a room nickname is required"),
                )
                .await;
            return None;
        };
        let creator = from.to_bare();
        if let Err(e) = svc.may_create(&creator) {
            router.bounce(st, e).await;
            return None;
        }
        let mut room = Room::blank(svc, router, name, creator.clone())?;
        room.locked = st.el.has_child("x", MUC);
        room.affiliations.insert(
            creator.clone(),
            AffItem {
                affiliation: Affiliation::Owner,
                nick: None,
                reason: None,
            },
        );
        svc.room_created(&creator);
        info!(room = %room.jid, locked = room.locked, "room created");
        if room.config.persistent && !room.locked {
            room.persist_all().await;
        }
        room.join(origin, st, from, nick, true).await;
        Some(room)
    }

    /// A persistent room from storage; `None` when it is not stored.
    pub(crate) async fn load(
        svc: &Arc<Shared>,
        router: &Arc<Router>,
        name: &str,
    ) -> Result<Option<Room>, tern_storage::StoreError> {
        let Some(stored) = store::load_room(&svc.storage, &svc.domain, name).await? else {
            return Ok(None);
        };
        let creator = BareJid::new(&stored.creator)
            .unwrap_or_else(|_| BareJid::new(&svc.domain).expect("the service domain is a JID"));
        let Some(mut room) = Room::blank(svc, router, name, creator) else {
            return Ok(None);
        };
        room.config = stored.config;
        room.subject = Subject {
            text: stored.subject,
            by: stored.subject_by,
        };
        room.secret = stored.secret;
        room.created = stored.created;
        room.affiliations = store::load_affiliations(&svc.storage, &svc.domain, name).await?;
        room.load_history().await;
        Ok(Some(room))
    }

    /// Handles one command.
    pub(crate) async fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Stanza(origin, st) => match st.kind {
                Kind::Presence => self.on_presence(&origin, st).await,
                Kind::Message => self.on_message(st).await,
                Kind::Iq => self.on_iq(&origin, st).await,
            },
            Cmd::Gone(jid) => self.gone(&jid).await,
            Cmd::Shutdown(done) => {
                let sessions: Vec<SessionHandle> = self
                    .occupants
                    .values()
                    .filter_map(|o| o.session.clone())
                    .collect();
                let nicks: Vec<String> = self.occupants.keys().cloned().collect();
                for n in nicks {
                    self.remove(
                        &n,
                        super::join::Removal {
                            codes: &[332],
                            ..Default::default()
                        },
                    )
                    .await;
                }
                // Sessions close right after the rooms: give them a moment to write the 332s.
                let until = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
                while tokio::time::Instant::now() < until
                    && sessions.iter().any(|s| s.queue_free() < s.queue_capacity())
                {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                let _ = done.send(());
            }
        }
    }

    /// A temporary room ended with its last occupant: its archive goes too.
    pub(crate) async fn forget(self) {
        self.flush_archive().await;
        if let Err(e) =
            store::delete_room(&self.svc.storage, &self.svc.domain, self.node(), true).await
        {
            warn!(room = %self.jid, "cannot delete the ended room's data: {e}");
        }
        self.svc.room_destroyed(self.node(), &self.creator);
        info!(room = %self.jid, "temporary room ended");
    }

    fn stored(&self) -> StoredRoom {
        StoredRoom {
            config: self.config.clone(),
            subject: self.subject.text.clone(),
            subject_by: self.subject.by.clone(),
            creator: self.creator.to_string(),
            secret: self.secret.clone(),
            created: self.created,
        }
    }

    /// Saves the room record of a persistent room (config, subject).
    pub(crate) async fn save(&self) {
        if !self.config.persistent || self.locked {
            return;
        }
        if let Err(e) = store::save_room(
            &self.svc.storage,
            &self.svc.domain,
            self.node(),
            &self.stored(),
        )
        .await
        {
            warn!(room = %self.jid, "cannot save room: {e}");
        }
    }

    /// Saves one affiliation of a persistent room.
    pub(crate) async fn save_affiliation(&self, who: &BareJid) {
        if !self.config.persistent || self.locked {
            return;
        }
        let item = self.affiliations.get(who).cloned();
        if let Err(e) = store::save_affiliations(
            &self.svc.storage,
            &self.svc.domain,
            self.node(),
            &[(who.clone(), item)],
        )
        .await
        {
            warn!(room = %self.jid, "cannot save affiliation: {e}");
        }
    }

    /// Saves everything (a room that just became persistent).
    pub(crate) async fn persist_all(&self) {
        self.save().await;
        if let Err(e) = store::replace_affiliations(
            &self.svc.storage,
            &self.svc.domain,
            self.node(),
            &self.affiliations,
        )
        .await
        {
            warn!(room = %self.jid, "cannot save affiliations: {e}");
        }
    }

    /// Removes the stored record (a room that stopped being persistent keeps running).
    pub(crate) async fn unpersist(&self) {
        if let Err(e) =
            store::delete_room(&self.svc.storage, &self.svc.domain, self.node(), false).await
        {
            warn!(room = %self.jid, "cannot remove stored room: {e}");
        }
    }
}
