//! The service on its domain: the table of rooms (running or only stored), dispatch of each
//! stanza to its room's task, and what the service answers itself (disco of the service and
//! its public rooms, ping). The table's lock is a short synchronous one, never held across an
//! `.await`; each room runs in its own task, so a large room never stalls another.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use tokio::sync::mpsc;
use tracing::debug;

use tern_router::xml::BuilderExt;
use tern_router::{Condition, Kind, Origin, Router, Stanza, StanzaError};
use tern_storage::Storage;

use crate::config::{CreatePolicy, MucConfig};
use crate::ns::{DISCO_INFO, DISCO_ITEMS, MUC, PING};
use crate::roomconfig::RoomConfig;
use crate::task;

/// Stanzas a room task may hold before senders wait: back-pressure on whoever floods a room.
const ROOM_QUEUE: usize = 1024;

/// What a room's task is asked to do.
pub(crate) enum Cmd {
    /// A stanza addressed to the room or one of its occupants.
    Stanza(Origin, Stanza),
    /// A client session ended: its occupant, if any, leaves (for sessions that never sent
    /// presence, whose unavailable the presence module does not send).
    Gone(FullJid),
    /// The server is stopping: occupants get status 332.
    Shutdown(tokio::sync::oneshot::Sender<()>),
}

/// What disco#items needs of a room without asking its task.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listing {
    /// Listed (public) rooms only appear in disco#items.
    pub public: bool,
    /// Natural-language name.
    pub name: String,
    /// Current occupants.
    pub occupants: usize,
}

/// A room the service knows: running (with a task) and/or stored (persistent).
struct Slot {
    tx: Option<mpsc::Sender<Cmd>>,
    listing: Listing,
    persistent: bool,
}

/// State shared by the service front and every room task.
pub(crate) struct Shared {
    /// `conference.example.org`.
    pub domain: String,
    /// `example.org`: whose accounts are local.
    pub host: String,
    /// Settings.
    pub config: MucConfig,
    /// The stores.
    pub storage: Storage,
    admins: HashSet<BareJid>,
    rooms: Mutex<HashMap<String, Slot>>,
    /// Rooms each real full JID occupies, so a closed session leaves them all.
    occupancy: Mutex<HashMap<FullJid, HashSet<String>>>,
    /// Existing rooms per creator, for `max_rooms_per_user`.
    created: Mutex<HashMap<BareJid, usize>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// The service for one domain, knowing the stored rooms.
    pub async fn load(
        config: MucConfig,
        host: &str,
        storage: Storage,
    ) -> Result<Arc<Shared>, tern_storage::StoreError> {
        let domain = config.domain_for(host);
        let admins = config
            .admins
            .iter()
            .filter_map(|a| BareJid::new(a).ok())
            .collect();
        let mut rooms = HashMap::new();
        let mut created: HashMap<BareJid, usize> = HashMap::new();
        for (name, r) in crate::store::all_rooms(&storage, &domain).await? {
            if let Ok(c) = BareJid::new(&r.creator) {
                *created.entry(c).or_default() += 1;
            }
            rooms.insert(
                name,
                Slot {
                    tx: None,
                    listing: Listing {
                        public: r.config.public,
                        name: r.config.name.clone(),
                        occupants: 0,
                    },
                    persistent: true,
                },
            );
        }
        debug!(domain, rooms = rooms.len(), "muc service loaded");
        Ok(Arc::new(Shared {
            domain,
            host: host.to_ascii_lowercase(),
            config,
            storage,
            admins,
            rooms: Mutex::new(rooms),
            occupancy: Mutex::new(HashMap::new()),
            created: Mutex::new(created),
        }))
    }

    /// A service administrator (owner of every room).
    pub fn is_admin(&self, bare: &BareJid) -> bool {
        self.admins.contains(bare)
    }

    /// §10.1.1 and `[muc]` limits: may this user create one more room?
    pub fn may_create(&self, who: &BareJid) -> Result<(), StanzaError> {
        let allowed = self.is_admin(who)
            || match self.config.create_rooms {
                CreatePolicy::Anyone => true,
                CreatePolicy::Local => who.domain().as_str() == self.host && who.node().is_some(),
                CreatePolicy::Admins => false,
            };
        if !allowed {
            return Err(StanzaError::new(Condition::NotAllowed)
                .with_text("you may not create rooms on this service"));
        }
        let max = self.config.max_rooms_per_user;
        if max > 0
            && !self.is_admin(who)
            && lock(&self.created).get(who).copied().unwrap_or(0) >= max
        {
            return Err(StanzaError::new(Condition::ResourceConstraint)
                .with_text(format!("you may have at most {max} rooms")));
        }
        let total = self.config.max_rooms;
        if total > 0 && lock(&self.rooms).len() > total {
            return Err(StanzaError::new(Condition::ResourceConstraint)
                .with_text("this service holds as many rooms as it may"));
        }
        Ok(())
    }

    /// Counts a new room against its creator.
    pub fn room_created(&self, creator: &BareJid) {
        *lock(&self.created).entry(creator.clone()).or_default() += 1;
    }

    /// A room is gone for good: forget its listing and its creator's count.
    pub fn room_destroyed(&self, name: &str, creator: &BareJid) {
        lock(&self.rooms).remove(name);
        let mut c = lock(&self.created);
        if let Some(n) = c.get_mut(creator) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.remove(creator);
            }
        }
    }

    /// Records what disco#items shows of a room.
    pub fn update_listing(&self, name: &str, config: &RoomConfig, occupants: usize) {
        if let Some(slot) = lock(&self.rooms).get_mut(name) {
            slot.listing = Listing {
                public: config.public,
                name: config.name.clone(),
                occupants,
            };
            slot.persistent = config.persistent;
        }
    }

    /// A real JID entered or left a room.
    pub fn set_occupancy(&self, jid: &FullJid, room: &str, present: bool) {
        let mut o = lock(&self.occupancy);
        if present {
            o.entry(jid.clone()).or_default().insert(room.to_owned());
        } else if let Some(set) = o.get_mut(jid) {
            set.remove(room);
            if set.is_empty() {
                o.remove(jid);
            }
        }
    }

    /// The room task ends if nothing is waiting for it: returns false (keep running) when
    /// a stanza arrived meanwhile. A temporary room's slot goes with it; a persistent one's
    /// stays for disco#items and is reloaded on demand.
    pub fn try_unload(&self, name: &str, rx: &mpsc::Receiver<Cmd>, keep_listing: bool) -> bool {
        let mut rooms = lock(&self.rooms);
        if !rx.is_empty() {
            return false;
        }
        if keep_listing {
            if let Some(slot) = rooms.get_mut(name) {
                slot.tx = None;
                slot.listing.occupants = 0;
            }
        } else {
            rooms.remove(name);
        }
        true
    }

    /// The sender of a room's task, starting the task if it is not running.
    fn room_tx(self: &Arc<Self>, router: &Arc<Router>, name: &str) -> mpsc::Sender<Cmd> {
        let mut rooms = lock(&self.rooms);
        let slot = rooms.entry(name.to_owned()).or_insert_with(|| Slot {
            tx: None,
            listing: Listing::default(),
            persistent: false,
        });
        if let Some(tx) = slot.tx.as_ref().filter(|t| !t.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(ROOM_QUEUE);
        slot.tx = Some(tx.clone());
        let stored = slot.persistent;
        tokio::spawn(task::run(
            self.clone(),
            router.clone(),
            name.to_owned(),
            rx,
            stored,
        ));
        tx
    }

    /// Hands a command to a room, starting its task when needed; a task that ended just as
    /// the command was sent is started again.
    pub async fn to_room(self: &Arc<Self>, router: &Arc<Router>, name: &str, mut cmd: Cmd) {
        for _ in 0..3 {
            let tx = self.room_tx(router, name);
            match tx.send(cmd).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(c)) => cmd = c,
            }
        }
        debug!(room = name, "room task kept ending; command dropped");
    }

    /// Running rooms a session occupies.
    pub fn rooms_of(&self, jid: &FullJid) -> Vec<String> {
        lock(&self.occupancy)
            .get(jid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Senders of every running room (for shutdown).
    pub fn running(&self) -> Vec<mpsc::Sender<Cmd>> {
        lock(&self.rooms)
            .values()
            .filter_map(|s| s.tx.clone())
            .collect()
    }

    /// Public rooms for disco#items, sorted by name.
    fn public_rooms(&self) -> Vec<(String, Listing)> {
        let mut v: Vec<(String, Listing)> = lock(&self.rooms)
            .iter()
            .filter(|(_, s)| s.listing.public && (s.persistent || s.listing.occupants > 0))
            .map(|(n, s)| (n.clone(), s.listing.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Stanzas to the service's own domain (§6.1-§6.3).
    pub async fn handle_service(&self, router: &Arc<Router>, st: Stanza) {
        if st.kind != Kind::Iq {
            // Messages and presence to the bare service mean nothing (§6); errors are dropped.
            if st.kind == Kind::Message && matches!(st.type_(), "normal" | "chat") {
                router
                    .bounce(&st, Condition::ServiceUnavailable.into())
                    .await;
            }
            return;
        }
        if !st.is_iq_request() {
            return;
        }
        let Some(q) = st.iq_payload() else {
            return router.bounce(&st, Condition::BadRequest.into()).await;
        };
        let get = st.type_() == "get";
        let answer = match (q.name(), q.ns().as_str()) {
            ("query", DISCO_INFO) if get && q.attr("node").is_none() => Some(self.service_info()),
            ("query", DISCO_ITEMS) if get && q.attr("node").is_none() => Some(self.service_items()),
            ("ping", PING) if get => None,
            _ => {
                return router
                    .bounce(&st, Condition::ServiceUnavailable.into())
                    .await
            }
        };
        router.reply_result(&st, answer).await;
    }

    fn service_info(&self) -> Element {
        let mut q = Element::builder("query", DISCO_INFO)
            .append(
                Element::builder("identity", DISCO_INFO)
                    .a("category", "conference")
                    .a("type", "text")
                    .a("name", self.config.name.as_str())
                    .build(),
            )
            .build();
        for f in [DISCO_INFO, DISCO_ITEMS, MUC, PING, crate::ns::OCCUPANT_ID] {
            q.append_child(Element::builder("feature", DISCO_INFO).a("var", f).build());
        }
        q
    }

    fn service_items(&self) -> Element {
        let mut q = Element::builder("query", DISCO_ITEMS).build();
        for (name, l) in self.public_rooms() {
            let jid = format!("{name}@{}", self.domain);
            let label = if l.name.is_empty() {
                name.clone()
            } else {
                l.name.clone()
            };
            q.append_child(
                Element::builder("item", DISCO_ITEMS)
                    .a("jid", jid)
                    .a("name", label)
                    .build(),
            );
        }
        q
    }
}

/// The addressed room's name, when `to` names one.
pub(crate) fn room_name(to: &Jid) -> Option<String> {
    to.node().map(|n| n.as_str().to_owned())
}
