//! The `Module` trait and the hook bus (DESIGN.md §1).
//!
//! The core fires a named [`Event`] for each stanza; modules registered for it run in
//! priority order (higher first) until one answers [`Flow::Handled`]; the router's built-in
//! default runs when none does. Modules never call each other.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use minidom::Element;

use crate::registry::SessionHandle;
use crate::router::Router;
use crate::stanza::{Kind, Stanza};

/// What a handler tells the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Not mine, or I only observed it: let the next handler (or the default) run.
    Continue,
    /// I took care of it: stop here.
    Handled,
}

/// Which local entity a stanza is addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The server domain itself (`to` is a bare domain we host).
    Host,
    /// An account's bare JID (also stanzas without `to` from that account, RFC 6120 §10.3).
    Bare,
    /// A full JID of a local account.
    Full,
}

/// The events modules hook.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Event {
    /// Any stanza entering the router, whatever its origin (client, server module, remote
    /// server), before `Outgoing` and before the addressee is classified: policy that must see
    /// every stanza in both directions (XEP-0191 blocking) hooks this.
    Routing(Kind),
    /// A stanza from a local client, before routing (carbons, archive-out).
    Outgoing(Kind),
    /// A message to a local target.
    Message(Target),
    /// A presence to a local target (subscriptions, probes, directed presence).
    Presence(Target),
    /// A presence without `to` from a local client: a broadcast (RFC 6121 §4.2, §4.4).
    PresenceBroadcast,
    /// An IQ get/set whose payload has this namespace, to a local target.
    Iq(Target, String),
    /// A message to a local account with no resource that can take it (RFC 6121 §8.5.2.2):
    /// offline storage hooks this; the default bounces `service-unavailable`.
    Undeliverable,
    /// A question a module publishes for others to answer (DESIGN.md §1), fired with
    /// `Router::ask`; its meaning is documented by the publisher, e.g. "mam.should_store":
    /// `Handled` means "archive this message although the default rules would not".
    Named(&'static str),
}

/// Who sent a stanza into the router.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A bound session of a local account.
    Client(SessionHandle),
    /// The server itself (a module generating a stanza).
    Local,
    /// A remote server, by its domain.
    Remote(String),
}

impl Origin {
    /// The client session, if the stanza came from one.
    pub fn session(&self) -> Option<&SessionHandle> {
        match self {
            Origin::Client(s) => Some(s),
            _ => None,
        }
    }
}

/// What a handler gets besides the stanza.
pub struct Ctx<'a> {
    /// The router, to send stanzas and reach storage and sessions.
    pub router: &'a Arc<Router>,
    /// Where the stanza came from.
    pub origin: &'a Origin,
}

/// Session lifecycle notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// A resource was bound.
    Bound,
    /// The session ended, cleanly or not; presence must go unavailable.
    Closed,
    /// The session sent initial presence with a non-negative priority, so messages for the
    /// bare JID may now reach it (RFC 6121 §8.5.2.1.1); fired by the presence module.
    Available,
}

/// Facts about a not-yet-authenticated stream, for pre-authentication handlers (XEP-0077).
#[derive(Debug, Clone)]
pub struct PreAuth {
    /// The host the stream is for.
    pub host: String,
    /// Whether the stream is TLS-protected.
    pub secure: bool,
    /// The peer's address, for loopback-only policies and rate limits.
    pub peer: std::net::SocketAddr,
}

/// A protocol specification an implementation follows, at the version it was written
/// against; docs/xep-support.md is checked against these declarations (a test fails when a
/// row is missing, extra or at another version), so the table cannot drift from the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Spec {
    /// XEP number.
    pub xep: u16,
    /// The version implemented, e.g. `"1.3"`.
    pub version: &'static str,
}

impl Spec {
    /// XEP `xep` at `version`.
    pub const fn xep(xep: u16, version: &'static str) -> Spec {
        Spec { xep, version }
    }
}

/// A feature module: roster, presence, every XEP.
#[async_trait]
pub trait Module: Send + Sync + 'static {
    /// Short unique name, used in logs and configuration.
    fn name(&self) -> &'static str;

    /// Service discovery features this module adds to the hosts it runs on (XEP-0030).
    fn features(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// XEP-0128 extended-information forms this module adds to the hosts' disco#info (e.g.
    /// XEP-0157 contact addresses); they count in the server's XEP-0115 `ver` too.
    fn host_forms(&self) -> Vec<Element> {
        Vec::new()
    }

    /// Features this module adds to every local account's bare JID (XEP-0030 disco#info to
    /// `user@host`), e.g. XEP-0313's `urn:xmpp:mam:2` for the account's archive.
    fn account_features(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Identities (category, type) this module adds to every local account's disco#info, e.g.
    /// XEP-0163's `pubsub`/`pep` for the account's personal eventing service.
    fn account_identities(&self) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }

    /// Items this module lists in disco#items of `account` (XEP-0030 §4) for `requester`, e.g.
    /// the account's PEP nodes the requester may see; called for queries without a node.
    async fn account_items(
        &self,
        _router: &Arc<Router>,
        _account: &jid::BareJid,
        _requester: &jid::Jid,
    ) -> Vec<Element> {
        Vec::new()
    }

    /// The XEPs this module implements (see [`Spec`]).
    fn specs(&self) -> Vec<Spec> {
        Vec::new()
    }

    /// Declares the events the module wants; called once at start-up.
    fn register(&self, hooks: &mut Hooks);

    /// Handles an event it registered for.
    async fn on_stanza(&self, _event: &Event, _ctx: &Ctx<'_>, _stanza: &mut Stanza) -> Flow {
        Flow::Continue
    }

    /// Session lifecycle, for modules that asked with [`Hooks::on_session`].
    async fn on_session(
        &self,
        _event: SessionEvent,
        _router: &Arc<Router>,
        _session: &SessionHandle,
    ) {
    }

    /// An IQ sent before authentication (only namespaces claimed with [`Hooks::on_preauth_iq`]);
    /// returns the reply.
    async fn on_preauth_iq(&self, _router: &Arc<Router>, _info: &PreAuth, iq: &Element) -> Element {
        iq.clone()
    }

    /// Stream features to offer before authentication (e.g. XEP-0077's `<register/>`).
    fn preauth_features(&self, _info: &PreAuth) -> Vec<Element> {
        Vec::new()
    }

    /// Stream features to offer on the authenticated stream, beside binding (e.g. XEP-0237's
    /// `<ver/>`).
    fn session_features(&self) -> Vec<Element> {
        Vec::new()
    }
}

struct Entry {
    priority: i32,
    module: Arc<dyn Module>,
}

/// The hook bus: which modules run for which event, in which order.
#[derive(Default)]
pub struct Hooks {
    stanza: HashMap<Event, Vec<Entry>>,
    session: Vec<Arc<dyn Module>>,
    preauth_iq: HashMap<String, Arc<dyn Module>>,
    preauth_features: Vec<Arc<dyn Module>>,
    current: Option<Arc<dyn Module>>,
}

impl Hooks {
    /// Registers the module being set up for an event at the default priority 0.
    pub fn on(&mut self, event: Event) {
        self.on_priority(event, 0);
    }

    /// Registers with an explicit priority; callers say in a comment why it is not 0.
    pub fn on_priority(&mut self, event: Event, priority: i32) {
        let module = self
            .current
            .clone()
            .expect("Hooks used outside Module::register");
        let list = self.stanza.entry(event).or_default();
        list.push(Entry { priority, module });
        // Stable sort: equal priorities keep registration order.
        list.sort_by_key(|e| std::cmp::Reverse(e.priority));
    }

    /// Asks for session lifecycle events.
    pub fn on_session(&mut self) {
        let module = self
            .current
            .clone()
            .expect("Hooks used outside Module::register");
        self.session.push(module);
    }

    /// Claims pre-authentication IQs of a namespace (one module per namespace).
    pub fn on_preauth_iq(&mut self, ns: &str) {
        let module = self
            .current
            .clone()
            .expect("Hooks used outside Module::register");
        self.preauth_iq.insert(ns.to_owned(), module);
    }

    /// Asks to contribute pre-authentication stream features.
    pub fn on_preauth_features(&mut self) {
        let module = self
            .current
            .clone()
            .expect("Hooks used outside Module::register");
        self.preauth_features.push(module);
    }

    pub(crate) fn add(&mut self, module: Arc<dyn Module>) {
        self.current = Some(module.clone());
        module.register(self);
        self.current = None;
    }

    pub(crate) fn handlers(&self, event: &Event) -> impl Iterator<Item = &Arc<dyn Module>> {
        self.stanza
            .get(event)
            .into_iter()
            .flatten()
            .map(|e| &e.module)
    }

    pub(crate) fn session_modules(&self) -> &[Arc<dyn Module>] {
        &self.session
    }

    pub(crate) fn preauth_iq(&self, ns: &str) -> Option<&Arc<dyn Module>> {
        self.preauth_iq.get(ns)
    }

    pub(crate) fn preauth_feature_modules(&self) -> &[Arc<dyn Module>] {
        &self.preauth_features
    }
}
