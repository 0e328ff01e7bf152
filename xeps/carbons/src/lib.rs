//! XEP-0280: Message Carbons (`urn:xmpp:carbons:2`), with the XEP-0334 `<no-copy/>` hint.
//!
//! Layout: [`rules`] decides which messages are copied (§6) and builds the copies; this file
//! is the module. A client turns carbons on or off for its session with an IQ (§4, §5), kept
//! as the session flag `"carbons"`. Two hooks then make the copies, both answering `Continue`
//! so routing goes on untouched:
//!
//! - `Outgoing(Message)`: a message one of the user's clients sends is copied, wrapped in
//!   `<sent/>`, to the user's other carbons-enabled resources (§8);
//! - `Message(Bare | Full)`: a message to the user is copied, wrapped in `<received/>`, to
//!   each carbons-enabled resource that does not get the original under RFC 6121 §8.5 (§7).
//!   Who gets the original is asked of the router ([`Router::bare_message_recipients`]), so
//!   the delivery rule lives in one place.
//!
//! Errors are copied only when they answer a message that was itself eligible (§6), which
//! needs correlation: each session remembers the ids of its last few eligible messages.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use minidom::Element;
use tern_router::Spec;
use tracing::debug;

use tern_router::xml::set_attr;
use tern_router::{
    BareJid, Condition, Ctx, Event, Flow, Hooks, Jid, Kind, Module, Router, SessionEvent,
    SessionHandle, Stanza, StanzaError, Target,
};

pub mod rules;

use rules::{Direction, Skip, NS_CARBONS, NS_CARBONS_RULES};

/// The session flag holding a client's choice.
pub const FLAG: &str = "carbons";

/// How many recently sent eligible messages a session remembers, to recognise errors that
/// answer them. Bounces come back within moments; older ones are simply not copied.
const RECENT: usize = 32;

/// Priority of the `Message(Bare | Full)` hooks. Copies must be decided before the router's
/// default delivery, and before any module at priority 0 that might answer `Handled`. A
/// future MAM module stamps `<stanza-id/>` at a higher priority still, so that the original
/// and its copies carry the same archive id.
const RECEIVED_PRIORITY: i32 = 10;

/// The Message Carbons module.
#[derive(Default)]
pub struct CarbonsModule {
    /// Per session id: (addressee's bare JID, message id) of recently sent eligible messages.
    sent: Mutex<HashMap<u64, VecDeque<(BareJid, String)>>>,
}

impl CarbonsModule {
    fn sent(&self) -> std::sync::MutexGuard<'_, HashMap<u64, VecDeque<(BareJid, String)>>> {
        // Only a cache of ids: a poisoned lock loses nothing worth a panic.
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// §4, §5: `<enable/>` or `<disable/>`, for the requesting session only.
    async fn toggle(&self, target: Target, ctx: &Ctx<'_>, st: &Stanza) -> Flow {
        let to_bare = st.to.as_ref().map(|t| t.to_bare());
        // §4.1, §5.1: not-allowed for a requester that is not a client of ours, or for a
        // request aimed at someone else's account.
        let own = match target {
            Target::Bare => to_bare == Some(st.from.to_bare()),
            _ => st.to.as_ref().map(|t| t.domain()) == Some(st.from.domain()),
        };
        let session = ctx.origin.session().filter(|_| own);
        let (Some(session), "set") = (session, st.type_()) else {
            let c = if session.is_none() {
                Condition::NotAllowed
            } else {
                Condition::BadRequest
            };
            ctx.router.bounce(st, StanzaError::new(c)).await;
            return Flow::Handled;
        };
        let on = match st.iq_payload().map(|p| p.name()) {
            Some("enable") => true,
            Some("disable") => false,
            _ => {
                ctx.router.bounce(st, Condition::BadRequest.into()).await;
                return Flow::Handled;
            }
        };
        // §10.1: repeated enables or disables are not errors; the flag just stays as it is.
        session.set_flag(FLAG, on);
        debug!(jid = %session.jid(), on, "carbons toggled");
        ctx.router.reply_result(st, None).await;
        Flow::Handled
    }

    /// §8: copies of what one of the user's clients sends, to the user's other clients.
    fn on_sent(&self, ctx: &Ctx<'_>, st: &Stanza) {
        let Some(sender) = ctx.origin.session() else {
            return;
        };
        if let Err(why) = rules::check(&st.el, Direction::Sent) {
            debug!(from = %sender.jid(), ?why, "no sent carbons");
            return;
        }
        if let (Some(to), Some(id)) = (&st.to, st.id()) {
            let mut sent = self.sent();
            let list = sent.entry(sender.id()).or_default();
            if list.len() == RECENT {
                list.pop_front();
            }
            list.push_back((to.to_bare(), id.to_owned()));
        }
        // "excluding the sending client", whether or not it enabled carbons itself.
        send_copies(
            ctx.router,
            &st.el,
            Direction::Sent,
            &sender.jid().to_bare(),
            |s| s.id() != sender.id(),
        );
    }

    /// §7: copies of a message to the user, to the clients that do not get the original.
    fn on_received(&self, ctx: &Ctx<'_>, st: &mut Stanza) {
        let Some(to) = st.to.clone() else {
            return;
        };
        match rules::check(&st.el, Direction::Received) {
            Ok(()) => {}
            Err(Skip::Private) => {
                // §9: no copies, and the receiving server SHOULD remove <private/>.
                rules::strip_private(&mut st.el);
                return;
            }
            Err(Skip::Error) if self.answers_eligible(ctx.router, &to, st) => {}
            Err(why) => {
                debug!(to = %to, ?why, "no received carbons");
                return;
            }
        }
        let originals = original_recipients(ctx.router, &to, st.type_());
        send_copies(
            ctx.router,
            &st.el,
            Direction::Received,
            &to.to_bare(),
            |s| !originals.iter().any(|o| o.id() == s.id()),
        );
    }

    /// Whether an error to `to` answers an eligible message that session sent (§6).
    fn answers_eligible(&self, router: &Router, to: &Jid, st: &Stanza) -> bool {
        let (Ok(full), Some(id)) = (to.try_as_full(), st.id()) else {
            return false;
        };
        let Some(session) = router.sessions().get(full) else {
            return false;
        };
        let peer = st.from.to_bare();
        let mut sent = self.sent();
        let Some(list) = sent.get_mut(&session.id()) else {
            return false;
        };
        match list.iter().position(|(p, i)| *p == peer && i == id) {
            Some(n) => {
                list.remove(n);
                true
            }
            None => false,
        }
    }
}

/// The sessions the router gives the original to (RFC 6121 §8.5.2, §8.5.3), so they get no
/// copy (§7: "MUST NOT send a forwarded copy to the client(s) the original was addressed to").
fn original_recipients(router: &Router, to: &Jid, type_: &str) -> Vec<SessionHandle> {
    match to.try_as_full() {
        Ok(full) => match router.sessions().get(full) {
            Some(s) => vec![s],
            // RFC 6121 §8.5.3.2.1: no such resource; chat and normal go by the bare-JID rules,
            // anything else is not delivered to a resource at all.
            None if matches!(type_, "chat" | "normal") => {
                router.bare_message_recipients(&full.to_bare(), type_)
            }
            None => Vec::new(),
        },
        Err(bare) => router.bare_message_recipients(bare, type_),
    }
}

/// Sends `original`, wrapped, to each carbons-enabled session of `user` that `keep` accepts.
/// Copies go straight to the sessions' queues: they are never bounced back to anyone (§10.3).
fn send_copies(
    router: &Router,
    original: &Element,
    dir: Direction,
    user: &BareJid,
    keep: impl Fn(&SessionHandle) -> bool,
) {
    let targets: Vec<SessionHandle> = router
        .sessions()
        .resources(user)
        .into_iter()
        .filter(|s| s.flag(FLAG) && keep(s))
        .collect();
    if targets.is_empty() {
        return;
    }
    let copy = rules::wrap(original, user, dir);
    for s in targets {
        let mut c = copy.clone();
        set_attr(&mut c, "to", Some(s.jid().as_str()));
        if let Err(e) = s.send(c) {
            debug!(to = %s.jid(), "carbon copy not queued: {e:?}");
        }
    }
}

#[async_trait]
impl Module for CarbonsModule {
    fn name(&self) -> &'static str {
        "carbons"
    }

    fn specs(&self) -> Vec<Spec> {
        vec![Spec::xep(280, "1.0.1")]
    }

    fn features(&self) -> Vec<&'static str> {
        vec![NS_CARBONS, NS_CARBONS_RULES]
    }

    fn register(&self, hooks: &mut Hooks) {
        // Clients send the IQ without 'to' (their bare JID) or to their server.
        hooks.on(Event::Iq(Target::Bare, NS_CARBONS.into()));
        hooks.on(Event::Iq(Target::Host, NS_CARBONS.into()));
        hooks.on(Event::Outgoing(Kind::Message));
        hooks.on_priority(Event::Message(Target::Bare), RECEIVED_PRIORITY);
        hooks.on_priority(Event::Message(Target::Full), RECEIVED_PRIORITY);
        hooks.on_session();
    }

    async fn on_stanza(&self, event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        match event {
            Event::Iq(target, _) => return self.toggle(*target, ctx, st).await,
            Event::Outgoing(Kind::Message) => self.on_sent(ctx, st),
            Event::Message(Target::Bare | Target::Full) => self.on_received(ctx, st),
            _ => {}
        }
        Flow::Continue
    }

    async fn on_session(
        &self,
        event: SessionEvent,
        _router: &Arc<Router>,
        session: &SessionHandle,
    ) {
        if event == SessionEvent::Closed {
            self.sent().remove(&session.id());
        }
    }
}
