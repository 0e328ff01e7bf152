//! One room: its state and the helpers every handler uses (affiliations, occupant presence,
//! fan-out). A room is owned by its own task (`crate::task`), so nothing here locks: handlers
//! take `&mut Room` one stanza at a time, and rooms never wait for each other.
//!
//! Handlers by seam: `join` (entering, leaving, nick and presence changes), `message`
//! (groupchat, subject, private messages, invitations, voice requests), `admin` (roles and
//! affiliations, §8-§9), `owner` (configuration and destruction, §10), `iq` (disco, self-ping,
//! MAM, moderation, IQs between occupants), `history` (the archive and history on join).

pub(crate) mod admin;
pub(crate) mod history;
pub(crate) mod iq;
pub(crate) mod join;
mod life;
pub(crate) mod message;
pub(crate) mod owner;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use base64::Engine;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use sha2::Digest;
use tracing::{debug, warn};

use tern_router::registry::SendError;
use tern_router::xml::BuilderExt;
use tern_router::{Kind, Origin, Router, SessionHandle, SharedStanza, Stanza, StanzaError};

use crate::affiliation::{Affiliation, Role};
use crate::config::Whois;
use crate::ns::{self, MUC_USER};
use crate::roomconfig::RoomConfig;
use crate::service::Shared;
use crate::store::AffItem;

use history::HistItem;
use message::Bucket;

/// One visit of one client session.
pub(crate) struct Occupant {
    /// Room nickname.
    pub nick: String,
    /// The real full JID.
    pub jid: FullJid,
    /// Role during this visit.
    pub role: Role,
    /// The client's presence payload (show, status, priority, caps), without MUC elements.
    pub extra: Vec<Element>,
    /// The local session, when the occupant is one: delivery skips the registry.
    pub session: Option<SessionHandle>,
    /// XEP-0421 id: stable per real bare JID and room.
    pub occupant_id: String,
    /// Groupchat message rate.
    pub bucket: Bucket,
    /// This occupant's presence as others see it, serialized once: `[0]` without the real
    /// JID, `[1]` with it. Cleared whenever presence, role or affiliation change.
    cached: [Option<Arc<SharedStanza>>; 2],
}

impl Occupant {
    /// A new visit.
    pub fn new(
        nick: String,
        jid: FullJid,
        role: Role,
        occupant_id: String,
        bucket: Bucket,
    ) -> Self {
        Occupant {
            nick,
            jid,
            role,
            extra: Vec::new(),
            session: None,
            occupant_id,
            bucket,
            cached: [None, None],
        }
    }

    /// Forgets the serialized presence after a change.
    pub fn invalidate(&mut self) {
        self.cached = [None, None];
    }
}

/// The current subject (§8.1).
#[derive(Default)]
pub(crate) struct Subject {
    /// Its text; empty when none was set.
    pub text: String,
    /// The nick that set it.
    pub by: Option<String>,
}

/// What the presence of an occupant says about it, for [`Room::presence_element`].
pub(crate) struct PresenceSpec<'a> {
    /// Whose presence (room nick).
    pub nick: &'a str,
    /// `None` for available.
    pub type_: Option<&'a str>,
    /// show/status/priority/caps as the client sent them.
    pub extra: &'a [Element],
    /// The occupant's affiliation.
    pub aff: Affiliation,
    /// The occupant's role.
    pub role: Role,
    /// The occupant's real JID.
    pub jid: &'a FullJid,
    /// XEP-0421 id.
    pub occupant_id: &'a str,
    /// Status codes every recipient gets.
    pub codes: &'a [u16],
    /// The new nick (303).
    pub new_nick: Option<&'a str>,
    /// The nick of the moderator who acted (307, 301, …).
    pub actor: Option<&'a str>,
    /// Why.
    pub reason: Option<&'a str>,
    /// `<destroy/>` (§10.9).
    pub destroy: Option<&'a Element>,
}

/// A room.
pub(crate) struct Room {
    /// The service.
    pub svc: Arc<Shared>,
    /// The router, to deliver beyond local sessions.
    pub router: Arc<Router>,
    /// `room@service`.
    pub jid: BareJid,
    /// Configuration.
    pub config: RoomConfig,
    /// Affiliations by bare JID (absent: none).
    pub affiliations: HashMap<BareJid, AffItem>,
    /// Occupants by nick.
    pub occupants: HashMap<String, Occupant>,
    /// Nick by real full JID.
    pub by_jid: HashMap<FullJid, String>,
    /// Subject.
    pub subject: Subject,
    /// The most recent messages, oldest first, for history on join.
    pub history: VecDeque<HistItem>,
    /// A new reserved room not yet configured (§10.1.2): nobody else may enter.
    pub locked: bool,
    /// Secret for occupant ids.
    pub secret: String,
    /// Who created it (counts against their room limit).
    pub creator: BareJid,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// Destroyed: the task ends once it has answered.
    pub destroyed: bool,
    /// The archive writer, started with the first archived message.
    pub writer: Option<history::Writer>,
}

impl Room {
    /// The room's name (local part).
    pub fn node(&self) -> &str {
        self.jid.node().map_or("", |n| n.as_str())
    }

    /// `room@service/nick`.
    pub fn occupant_jid(&self, nick: &str) -> Jid {
        match self.jid.with_resource_str(nick) {
            Ok(j) => Jid::from(j),
            Err(_) => Jid::from(self.jid.clone()),
        }
    }

    /// A user's affiliation; service admins own every room.
    pub fn aff(&self, bare: &BareJid) -> Affiliation {
        if self.svc.is_admin(bare) {
            return Affiliation::Owner;
        }
        self.affiliations
            .get(bare)
            .map_or(Affiliation::None, |a| a.affiliation)
    }

    /// The occupant a real full JID is, if any.
    pub fn occupant_by_jid(&self, jid: &Jid) -> Option<&Occupant> {
        let full = jid.try_as_full().ok()?;
        self.occupants.get(self.by_jid.get(full)?)
    }

    /// Bare JIDs with an affiliation, sorted.
    pub fn with_affiliation(&self, aff: Affiliation) -> Vec<BareJid> {
        let mut v: Vec<BareJid> = self
            .affiliations
            .iter()
            .filter(|(_, a)| a.affiliation == aff)
            .map(|(j, _)| j.clone())
            .collect();
        v.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        v
    }

    /// The XEP-0421 id of a real JID in this room.
    pub fn occupant_id_for(&self, bare: &BareJid) -> String {
        let mut h = sha2::Sha256::new();
        h.update(self.secret.as_bytes());
        h.update([0]);
        h.update(bare.as_str().as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&h.finalize()[..18])
    }

    /// Whether `viewer` may see real JIDs (§5.1, whois).
    pub fn sees_jids(&self, viewer_role: Role) -> bool {
        self.config.whois == Whois::Anyone || viewer_role == Role::Moderator
    }

    /// Status codes describing the room itself to an entering occupant (§7.2.3).
    pub fn room_codes(&self) -> Vec<u16> {
        let mut c = Vec::new();
        if self.config.whois == Whois::Anyone {
            c.push(100);
        }
        if self.config.logging {
            c.push(170);
        }
        c
    }

    /// The `<presence/>` of an occupant as one recipient sees it.
    pub fn presence_element(&self, p: &PresenceSpec<'_>, with_jid: bool, own: &[u16]) -> Element {
        let mut item = Element::builder("item", MUC_USER)
            .a("affiliation", p.aff.as_str())
            .a("role", p.role.as_str())
            .a_opt("jid", with_jid.then(|| p.jid.as_str()))
            .a_opt("nick", p.new_nick)
            .build();
        if let Some(actor) = p.actor {
            item.append_child(Element::builder("actor", MUC_USER).a("nick", actor).build());
        }
        if let Some(r) = p.reason {
            item.append_child(ns::text_el("reason", MUC_USER, r));
        }
        let mut x = Element::builder("x", MUC_USER).append(item).build();
        if let Some(d) = p.destroy {
            x.append_child(d.clone());
        }
        let mut codes: Vec<u16> = p.codes.iter().chain(own).copied().collect();
        codes.sort_unstable();
        codes.dedup();
        for c in codes {
            x.append_child(ns::status(c));
        }
        let mut el = ns::stanza("presence")
            .a("from", self.occupant_jid(p.nick).as_str())
            .a_opt("type", p.type_)
            .build();
        for e in p.extra {
            el.append_child(e.clone());
        }
        el.append_child(x);
        el.append_child(ns::occupant_id(p.occupant_id));
        el
    }

    /// The spec of an occupant's current presence.
    pub fn spec_of<'a>(&self, o: &'a Occupant) -> PresenceSpec<'a> {
        PresenceSpec {
            nick: &o.nick,
            type_: None,
            extra: &o.extra,
            aff: self.aff(&o.jid.to_bare()),
            role: o.role,
            jid: &o.jid,
            occupant_id: &o.occupant_id,
            codes: &[],
            new_nick: None,
            actor: None,
            reason: None,
            destroy: None,
        }
    }

    /// An occupant's current presence as others see it, serialized once per variant.
    pub fn cached_presence(&mut self, nick: &str, with_jid: bool) -> Option<Arc<SharedStanza>> {
        let i = usize::from(with_jid);
        if let Some(c) = self.occupants.get(nick)?.cached[i].clone() {
            return Some(c);
        }
        let o = self.occupants.get(nick)?;
        let el = self.presence_element(&self.spec_of(o), with_jid, &[]);
        let shared = Arc::new(SharedStanza::new(el));
        if let Some(o) = self.occupants.get_mut(nick) {
            o.cached[i] = Some(shared.clone());
        }
        Some(shared)
    }

    /// Sends a presence about `p.nick` to every occupant. The subject of it gets its own copy
    /// with 110 and `self_codes` (none when `self_codes` is `None`), also when it already left
    /// the room and is passed as `departed`; the others share one of two serializations (with
    /// and without the real JID).
    pub async fn fan_out_presence(
        &mut self,
        p: &PresenceSpec<'_>,
        self_codes: Option<&[u16]>,
        departed: Option<&mut Occupant>,
    ) {
        let plain = Arc::new(SharedStanza::new(self.presence_element(p, false, &[])));
        let whois_anyone = self.config.whois == Whois::Anyone;
        let with_jid = if whois_anyone {
            plain.clone()
        } else {
            Arc::new(SharedStanza::new(self.presence_element(p, true, &[])))
        };
        let own = self_codes.map(|extra| {
            let mut codes = vec![110];
            codes.extend_from_slice(extra);
            Arc::new(SharedStanza::new(self.presence_element(p, true, &codes)))
        });
        let subject = p.jid.clone();
        let router = self.router.clone();
        for o in self.occupants.values_mut() {
            let item = if o.jid == subject {
                match &own {
                    Some(own) => own.clone(),
                    None => continue,
                }
            } else if whois_anyone || o.role == Role::Moderator {
                with_jid.clone()
            } else {
                plain.clone()
            };
            deliver(&router, o, vec![item]).await;
        }
        if let (Some(own), Some(o)) = (own, departed) {
            deliver(&router, o, vec![own]).await;
        }
    }

    /// Sends one shared stanza to every occupant.
    pub async fn broadcast(&mut self, item: Arc<SharedStanza>) {
        let router = self.router.clone();
        for o in self.occupants.values_mut() {
            deliver(&router, o, vec![item.clone()]).await;
        }
    }

    /// A message from the room itself (status codes, config changes) to every occupant.
    pub async fn broadcast_status(&mut self, codes: &[u16]) {
        let mut x = Element::builder("x", MUC_USER).build();
        for c in codes {
            x.append_child(ns::status(*c));
        }
        let el = ns::stanza("message")
            .a("from", self.jid.as_str())
            .a("type", "groupchat")
            .a("id", random_id())
            .append(x)
            .build();
        self.broadcast(Arc::new(SharedStanza::new(el))).await;
    }

    /// Sends a stanza built by the room to any JID, through the router (for stanzas that must
    /// see the recipient's hooks, such as private messages and invitations).
    pub async fn route(&self, kind: Kind, from: Jid, to: Jid, el: Element) {
        self.router
            .route(Origin::Local, Stanza::new(kind, from, Some(to), el))
            .await;
    }

    /// Answers an IQ request with a result from the room.
    pub async fn reply(&self, st: &Stanza, payload: Option<Element>) {
        self.router.reply_result(st, payload).await;
    }

    /// Answers a stanza with an error from the address it was sent to.
    pub async fn bounce(&self, st: &Stanza, err: StanzaError) {
        self.router.bounce(st, err).await;
    }

    /// The listing the service keeps for disco#items, after a change.
    pub fn update_listing(&self) {
        // A locked room is nobody's business until it is configured.
        let shown = if self.locked { 0 } else { self.occupants.len() };
        self.svc.update_listing(self.node(), &self.config, shown);
    }
}

/// Queues stanzas for one occupant: straight onto its session's queue when it is local, else
/// through the router (remote occupants).
pub(crate) async fn deliver(router: &Arc<Router>, o: &mut Occupant, items: Vec<Arc<SharedStanza>>) {
    if let Some(s) = &o.session {
        match s.send_shared(items) {
            Ok(()) => return,
            Err(SendError::Full) => {
                warn!(to = %o.jid, "room stanza dropped: the occupant's queue is full");
                return;
            }
            Err(SendError::Gone) => {
                // The session ended; its unavailable presence is on its way. A newer session
                // may hold the same full JID (resource conflict): nothing was sent to it.
                debug!(to = %o.jid, "room stanza for an ended session dropped");
                o.session = None;
                return;
            }
        }
    }
    let to = Jid::from(o.jid.clone());
    for it in items {
        send_to_jid(router, &to, &it).await;
    }
}

/// Routes a shared stanza to one JID as an ordinary element.
pub(crate) async fn send_to_jid(router: &Arc<Router>, to: &Jid, item: &SharedStanza) {
    let el = item.to_element(to.as_str());
    let (Some(kind), Some(from)) = (
        Kind::of(&el),
        el.attr("from").and_then(|f| Jid::new(f).ok()),
    ) else {
        return;
    };
    router
        .route(Origin::Local, Stanza::new(kind, from, Some(to.clone()), el))
        .await;
}

/// A random stanza id for stanzas the room originates.
pub(crate) fn random_id() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>())
}
