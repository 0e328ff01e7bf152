//! Routing: classify a stanza's addressee, fire the event for it, and apply the RFC's
//! default delivery rules when no module handled it (RFC 6120 §10, RFC 6121 §8.5).

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use tracing::{debug, warn};

use tern_storage::Storage;

use crate::local::Pending;
use crate::module::{Ctx, Event, Flow, Hooks, Module, Origin, PreAuth, SessionEvent, Target};
use crate::registry::{SessionHandle, SessionRegistry, SharedStanza};
use crate::service::{Service, Services};
use crate::stanza::{Condition, Kind, Stanza, StanzaError};

/// Delivery to domains we do not host (the s2s pool implements it).
#[async_trait]
pub trait RemoteRoute: Send + Sync + 'static {
    /// Sends a stanza to a remote domain, queueing while a connection is set up.
    async fn send(&self, domain: &str, stanza: Element) -> Result<(), StanzaError>;
}

/// Boxed future returned by the recursive routing entry point.
pub type RouteFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The stanza router of one server process.
pub struct Router {
    hosts: HashSet<String>,
    storage: Storage,
    registry: Arc<dyn SessionRegistry>,
    pub(crate) hooks: Hooks,
    modules: Vec<Arc<dyn Module>>,
    remote: Option<Arc<dyn RemoteRoute>>,
    services: Services,
    /// Server-internal requests awaiting their response (`local.rs`).
    pub(crate) pending: Pending,
    /// The server's XEP-0115 `<c/>`, computed once the modules are known (`disco.rs`).
    pub(crate) caps: std::sync::OnceLock<Option<Element>>,
    /// How long a stanza for a session whose queue is full waits for room.
    delivery_wait: Duration,
}

/// Assembles a [`Router`] at start-up.
pub struct RouterBuilder {
    hosts: HashSet<String>,
    storage: Storage,
    registry: Arc<dyn SessionRegistry>,
    modules: Vec<Arc<dyn Module>>,
    remote: Option<Arc<dyn RemoteRoute>>,
    services: Services,
    delivery_wait: Duration,
}

/// Default of [`RouterBuilder::delivery_wait`].
pub const DEFAULT_DELIVERY_WAIT: Duration = Duration::from_secs(2);

impl RouterBuilder {
    /// How long a message or IQ for a session whose queue is full waits for room before it
    /// counts as undeliverable; the sender's stream is not read meanwhile (back-pressure).
    pub fn delivery_wait(mut self, wait: Duration) -> Self {
        self.delivery_wait = wait;
        self
    }

    /// Serves a domain (a virtual host).
    pub fn host(mut self, domain: &str) -> Self {
        self.hosts.insert(domain.to_ascii_lowercase());
        self
    }

    /// Loads a module.
    pub fn module(mut self, m: Arc<dyn Module>) -> Self {
        self.modules.push(m);
        self
    }

    /// Attaches a service to a domain (MUC, PubSub, upload, proxy).
    pub fn service(self, domain: &str, s: Arc<dyn Service>) -> Self {
        self.services.attach(domain, s);
        self
    }

    /// Sets the route to remote domains.
    pub fn remote(mut self, r: Arc<dyn RemoteRoute>) -> Self {
        self.remote = Some(r);
        self
    }

    /// Finishes: registers every module's hooks.
    pub fn build(self) -> Arc<Router> {
        let mut hooks = Hooks::default();
        for m in &self.modules {
            hooks.add(m.clone());
        }
        Arc::new(Router {
            hosts: self.hosts,
            storage: self.storage,
            registry: self.registry,
            hooks,
            modules: self.modules,
            remote: self.remote,
            services: self.services,
            pending: Pending::default(),
            caps: std::sync::OnceLock::new(),
            delivery_wait: self.delivery_wait,
        })
    }
}

impl Router {
    /// Starts building a router over a store and a session registry.
    pub fn builder(storage: Storage, registry: Arc<dyn SessionRegistry>) -> RouterBuilder {
        RouterBuilder {
            hosts: HashSet::new(),
            storage,
            registry,
            modules: Vec::new(),
            remote: None,
            services: Services::default(),
            delivery_wait: DEFAULT_DELIVERY_WAIT,
        }
    }

    /// Whether we serve this domain.
    pub fn is_local(&self, domain: &str) -> bool {
        self.hosts.contains(domain)
    }

    /// The served domains.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(String::as_str)
    }

    /// Services on their own domains; attach and detach here at run time (XEP-0114 components).
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The stores.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The session registry.
    pub fn sessions(&self) -> &Arc<dyn SessionRegistry> {
        &self.registry
    }

    /// Disco features of all loaded modules, sorted and deduplicated.
    pub fn features(&self) -> Vec<&'static str> {
        let mut f: Vec<&'static str> = self.modules.iter().flat_map(|m| m.features()).collect();
        f.sort_unstable();
        f.dedup();
        f
    }

    /// Specs declared by every loaded module and attached service, sorted and deduplicated.
    pub fn specs(&self) -> Vec<crate::module::Spec> {
        let mut v: Vec<_> = self.modules.iter().flat_map(|m| m.specs()).collect();
        v.extend(self.services.specs());
        v.sort_unstable();
        v.dedup();
        v
    }

    /// XEP-0128 forms of the hosts' disco#info from all loaded modules.
    pub fn host_forms(&self) -> Vec<Element> {
        self.modules.iter().flat_map(|m| m.host_forms()).collect()
    }

    /// Disco features of local accounts from all loaded modules, sorted and deduplicated.
    pub fn account_features(&self) -> Vec<&'static str> {
        let mut f: Vec<&'static str> = self
            .modules
            .iter()
            .flat_map(|m| m.account_features())
            .collect();
        f.sort_unstable();
        f.dedup();
        f
    }

    /// Disco identities of local accounts from all loaded modules, sorted and deduplicated.
    pub fn account_identities(&self) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = self
            .modules
            .iter()
            .flat_map(|m| m.account_identities())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Disco items of a local account for a requester, from all loaded modules.
    pub async fn account_items(
        self: &Arc<Self>,
        account: &BareJid,
        requester: &Jid,
    ) -> Vec<Element> {
        let mut items = Vec::new();
        for m in &self.modules {
            items.extend(m.account_items(self, account, requester).await);
        }
        items
    }

    /// Whether a local account exists (a bound session proves it without a store read).
    pub async fn account_exists(&self, bare: &BareJid) -> bool {
        let Some(node) = bare.node() else {
            return false;
        };
        if !self.registry.resources(bare).is_empty() {
            return true;
        }
        match self
            .storage
            .accounts
            .get(bare.domain().as_str(), node.as_str())
            .await
        {
            Ok(r) => r.is_some(),
            Err(e) => {
                warn!(jid = %bare, error = %e, "account lookup failed; treating as absent");
                false
            }
        }
    }

    /// Tells session-interested modules about a bound or closed session.
    pub async fn session_event(self: &Arc<Self>, event: SessionEvent, session: &SessionHandle) {
        for m in self.hooks.session_modules() {
            m.on_session(event, self, session).await;
        }
    }

    /// Answers a pre-authentication IQ, or `None` when no module claims its namespace.
    pub async fn preauth_iq(self: &Arc<Self>, info: &PreAuth, iq: &Element) -> Option<Element> {
        let ns = iq.children().next()?.ns();
        let m = self.hooks.preauth_iq(&ns)?;
        Some(m.on_preauth_iq(self, info, iq).await)
    }

    /// Pre-authentication stream features from modules, and the server's XEP-0115
    /// capabilities (`disco.rs`).
    pub fn preauth_features(&self, info: &PreAuth) -> Vec<Element> {
        self.hooks
            .preauth_feature_modules()
            .iter()
            .flat_map(|m| m.preauth_features(info))
            .chain(self.caps_feature())
            .collect()
    }

    /// Authenticated-stream features from all modules, and the server's XEP-0115
    /// capabilities (`disco.rs`).
    pub fn session_features(&self) -> Vec<Element> {
        self.modules
            .iter()
            .flat_map(|m| m.session_features())
            .chain(self.caps_feature())
            .collect()
    }

    /// Routes a stanza whose `from` is already stamped and trusted.
    pub fn route<'a>(self: &'a Arc<Self>, origin: Origin, stanza: Stanza) -> RouteFuture<'a> {
        Box::pin(self.route_inner(origin, stanza, None))
    }

    /// Routes the copy of `shared` (sent by `from`) addressed to `to` exactly as
    /// [`Router::route`] routes it with [`Origin::Local`]: the same hooks see the same stanza.
    /// Only the hand-over differs: a local resource that gets the copy as the hooks left it
    /// unchanged is queued `shared` itself, so the copies of a presence broadcast to many
    /// contacts (RFC 6121 §4.4.2) are serialized once instead of once per recipient. The
    /// session writes its own full JID as the `to` (RFC 6121 §4.4.3: the presence goes to
    /// every available resource of the contact).
    pub async fn route_shared(self: &Arc<Self>, shared: &Arc<SharedStanza>, from: &Jid, to: Jid) {
        let el = shared.to_element(to.as_str());
        let Some(kind) = Kind::of(&el) else {
            return;
        };
        let st = Stanza {
            kind,
            from: from.clone(),
            to: Some(to),
            el,
        };
        self.route_inner(Origin::Local, st, Some(shared)).await;
    }

    /// Sends an error reply for a stanza back to its sender, unless it is itself an error
    /// (RFC 6120 §8.3.1) or an IQ response (which must never be answered).
    pub async fn bounce(self: &Arc<Self>, st: &Stanza, err: StanzaError) {
        if st.is_error() || (st.kind == Kind::Iq && st.type_() == "result") {
            return;
        }
        let reply = st.error_reply(&err);
        let from = st
            .to
            .clone()
            .unwrap_or_else(|| Jid::from(st.from.to_bare()));
        let reply = Stanza::new(st.kind, from, Some(st.from.clone()), reply);
        self.route(Origin::Local, reply).await;
    }

    /// Answers an IQ request with a result carrying `payload`, from the entity it was
    /// addressed to (the sender's own account when it had no `to`, RFC 6120 §10.3.3).
    pub async fn reply_result(self: &Arc<Self>, st: &Stanza, payload: Option<Element>) {
        let to = st.from.clone();
        let from = st.to.clone().unwrap_or_else(|| Jid::from(to.to_bare()));
        let reply = Stanza::new(Kind::Iq, from, Some(to), st.iq_result(payload));
        self.route(Origin::Local, reply).await;
    }

    /// Fires a module-published [`Event::Named`] question; `Handled` if any module said yes.
    pub async fn ask(self: &Arc<Self>, name: &'static str, st: &mut Stanza) -> Flow {
        self.fire(&Event::Named(name), &Origin::Local, st).await
    }

    async fn fire(self: &Arc<Self>, event: &Event, origin: &Origin, st: &mut Stanza) -> Flow {
        let ctx = Ctx {
            router: self,
            origin,
        };
        for m in self.hooks.handlers(event) {
            if m.on_stanza(event, &ctx, st).await == Flow::Handled {
                return Flow::Handled;
            }
        }
        Flow::Continue
    }

    async fn route_inner(
        self: &Arc<Self>,
        origin: Origin,
        mut st: Stanza,
        shared: Option<&Arc<SharedStanza>>,
    ) {
        if matches!(origin, Origin::Local) {
            if let Some(waiting) = self.pending.take(&st) {
                // The asker may have given up (timeout) meanwhile; nothing to do then.
                let _ = waiting.send(st);
                return;
            }
        }
        if self.fire(&Event::Routing(st.kind), &origin, &mut st).await == Flow::Handled {
            return;
        }
        if matches!(origin, Origin::Client(_))
            && self.fire(&Event::Outgoing(st.kind), &origin, &mut st).await == Flow::Handled
        {
            return;
        }
        let Some(to) = st.to.clone() else {
            if st.kind == Kind::Presence && matches!(origin, Origin::Client(_)) {
                self.fire(&Event::PresenceBroadcast, &origin, &mut st).await;
            }
            return;
        };
        if !self.is_local(to.domain().as_str()) {
            if let Some(service) = self.services.get(to.domain().as_str()) {
                return service.handle(self, &origin, st).await;
            }
            return self.route_remote(st).await;
        }
        match (to.node().is_some(), to.try_as_full()) {
            (false, _) => self.to_host(origin, st).await,
            (true, Ok(full)) => {
                let full = full.clone();
                self.to_full(origin, st, full).await
            }
            (true, Err(bare)) => {
                let bare = bare.clone();
                self.to_bare(origin, st, bare, shared).await
            }
        }
    }

    async fn route_remote(self: &Arc<Self>, st: Stanza) {
        let domain = st
            .to
            .as_ref()
            .map(|j| j.domain().to_string())
            .unwrap_or_default();
        let result = match &self.remote {
            Some(r) => r.send(&domain, st.el.clone()).await,
            None => Err(StanzaError::new(Condition::RemoteServerNotFound)
                .with_text("federation is not enabled on this server")),
        };
        if let Err(e) = result {
            debug!(to = %domain, "remote delivery failed: {:?}", e.condition);
            self.bounce(&st, e).await;
        }
    }

    async fn to_host(self: &Arc<Self>, origin: Origin, mut st: Stanza) {
        match st.kind {
            Kind::Iq if st.is_iq_request() => {
                let Some(ns) = iq_ns(&st) else {
                    return self.bounce(&st, Condition::BadRequest.into()).await;
                };
                let ev = Event::Iq(Target::Host, ns);
                if self.fire(&ev, &origin, &mut st).await == Flow::Continue {
                    self.bounce(&st, Condition::ServiceUnavailable.into()).await;
                }
            }
            Kind::Iq => {}
            Kind::Message => {
                if self
                    .fire(&Event::Message(Target::Host), &origin, &mut st)
                    .await
                    == Flow::Continue
                    && matches!(st.type_(), "normal" | "chat")
                {
                    self.bounce(&st, Condition::ServiceUnavailable.into()).await;
                }
            }
            Kind::Presence => {
                self.fire(&Event::Presence(Target::Host), &origin, &mut st)
                    .await;
            }
        }
    }

    async fn to_bare(
        self: &Arc<Self>,
        origin: Origin,
        mut st: Stanza,
        bare: BareJid,
        shared: Option<&Arc<SharedStanza>>,
    ) {
        if !self.account_exists(&bare).await {
            return self.no_such_user(st).await;
        }
        match st.kind {
            Kind::Message => {
                if self
                    .fire(&Event::Message(Target::Bare), &origin, &mut st)
                    .await
                    == Flow::Continue
                {
                    self.deliver_message_to_bare(&origin, st, &bare).await;
                }
            }
            Kind::Presence => {
                if self
                    .fire(&Event::Presence(Target::Bare), &origin, &mut st)
                    .await
                    == Flow::Continue
                    && matches!(st.type_(), "available" | "unavailable")
                {
                    let shared = shared.filter(|sh| is_copy_of(&st.el, sh));
                    for s in self.registry.resources(&bare) {
                        if !s.is_available() {
                            continue;
                        }
                        match shared {
                            Some(sh) => {
                                if let Err(e) = s.send_shared(vec![sh.clone()]) {
                                    warn!(to = %s.jid(), "delivery to session failed: {e:?}");
                                }
                            }
                            None => {
                                self.deliver(&s, &st);
                            }
                        }
                    }
                }
            }
            Kind::Iq if st.is_iq_request() => {
                let Some(ns) = iq_ns(&st) else {
                    return self.bounce(&st, Condition::BadRequest.into()).await;
                };
                if self
                    .fire(&Event::Iq(Target::Bare, ns), &origin, &mut st)
                    .await
                    == Flow::Continue
                {
                    self.bounce(&st, Condition::ServiceUnavailable.into()).await;
                }
            }
            // RFC 6121 §8.5.2.1.3: IQ responses to a bare JID are dropped.
            Kind::Iq => {}
        }
    }

    async fn to_full(self: &Arc<Self>, origin: Origin, mut st: Stanza, full: FullJid) {
        let session = self.registry.get(&full);
        if session.is_none() && !self.account_exists(&full.to_bare()).await {
            return self.no_such_user(st).await;
        }
        // IQ responses are not hooked: they belong to whoever sent the request.
        let event = match st.kind {
            Kind::Message => Some(Event::Message(Target::Full)),
            Kind::Presence => Some(Event::Presence(Target::Full)),
            Kind::Iq => iq_ns(&st)
                .filter(|_| st.is_iq_request())
                .map(|ns| Event::Iq(Target::Full, ns)),
        };
        if let Some(event) = event {
            if self.fire(&event, &origin, &mut st).await == Flow::Handled {
                return;
            }
        }
        if let Some(s) = session {
            if self.deliver_wait(&s, &st).await {
                return;
            }
        }
        let bare = full.to_bare();
        // RFC 6121 §8.5.3.2: no such resource.
        match (st.kind, st.type_()) {
            (Kind::Message, "normal" | "chat") => {
                self.deliver_message_to_bare(&origin, st, &bare).await
            }
            (Kind::Message, "groupchat") => {
                self.bounce(&st, Condition::ServiceUnavailable.into()).await
            }
            (
                Kind::Presence,
                "subscribe" | "subscribed" | "unsubscribe" | "unsubscribed" | "probe",
            ) => {
                let flow = self
                    .fire(&Event::Presence(Target::Bare), &origin, &mut st)
                    .await;
                if flow == Flow::Continue {
                    debug!(to = %full, "subscription presence to absent resource dropped");
                }
            }
            (Kind::Iq, "get" | "set") => {
                self.bounce(&st, Condition::ServiceUnavailable.into()).await
            }
            _ => {}
        }
    }

    /// RFC 6121 §8.5.2.1.1 and §8.5.2.2.1: deliver to the sessions
    /// [`Router::bare_message_recipients`] picks; with none, the message is undeliverable.
    async fn deliver_message_to_bare(
        self: &Arc<Self>,
        origin: &Origin,
        mut st: Stanza,
        bare: &BareJid,
    ) {
        let recipients = self.bare_message_recipients(bare, st.type_());
        match st.type_() {
            "error" => {}
            "groupchat" => self.bounce(&st, Condition::ServiceUnavailable.into()).await,
            "headline" => {
                for s in &recipients {
                    self.deliver(s, &st);
                }
            }
            _ => {
                let mut delivered = false;
                for s in &recipients {
                    delivered |= self.deliver_wait(s, &st).await;
                }
                if !delivered
                    && self.fire(&Event::Undeliverable, origin, &mut st).await == Flow::Continue
                {
                    self.bounce(&st, Condition::ServiceUnavailable.into()).await;
                }
            }
        }
    }

    /// The sessions the default rules give a message of type `type_` addressed to `bare`
    /// (RFC 6121 §8.5.2.1.1): every available resource with a non-negative priority for a
    /// headline; those with the highest such priority for chat and normal; none for error
    /// (dropped) and groupchat (bounced). Public so that modules which must know who gets the
    /// original (XEP-0280 carbons) apply the same rule rather than a copy of it.
    pub fn bare_message_recipients(&self, bare: &BareJid, type_: &str) -> Vec<SessionHandle> {
        if matches!(type_, "error" | "groupchat") {
            return Vec::new();
        }
        let candidates: Vec<(i8, SessionHandle)> = self
            .registry
            .resources(bare)
            .into_iter()
            .filter_map(|s| {
                // Read under the lock: a snapshot would copy the whole presence state.
                let (available, priority) = s.update_presence(|p| (p.available(), p.priority));
                (available && priority >= 0).then_some((priority, s))
            })
            .collect();
        let top = candidates.iter().map(|(p, _)| *p).max();
        candidates
            .into_iter()
            .filter(|(p, _)| type_ == "headline" || Some(*p) == top)
            .map(|(_, s)| s)
            .collect()
    }

    /// Hands back a stanza that was queued or sent to a session that ended without the client
    /// acknowledging it (XEP-0198 §5): a chat or normal message goes to the account's other
    /// resources by the bare-JID rules, else to the `Undeliverable` hooks (offline storage); an
    /// IQ request is answered with an error; anything else is dropped. The stanza hooks do not
    /// run again: archives and copies already saw it.
    pub async fn redeliver(self: &Arc<Self>, el: Element) {
        let (Some(kind), Some(from), Some(to)) = (
            Kind::of(&el),
            el.attr("from").and_then(|f| Jid::new(f).ok()),
            el.attr("to").and_then(|t| Jid::new(t).ok()),
        ) else {
            return;
        };
        // A message from the account's own bare JID is a copy the server made for one resource
        // (e.g. a XEP-0280 carbon): it means nothing to the others.
        if kind == Kind::Message && from == to.to_bare() {
            return;
        }
        let st = Stanza {
            kind,
            from,
            to: Some(to.clone()),
            el,
        };
        match (kind, st.type_()) {
            (Kind::Message, "chat" | "normal") if self.is_local(to.domain().as_str()) => {
                let bare = to.to_bare();
                self.deliver_message_to_bare(&Origin::Local, st, &bare)
                    .await
            }
            (Kind::Iq, "get" | "set") => {
                self.bounce(&st, StanzaError::new(Condition::RecipientUnavailable))
                    .await
            }
            _ => debug!("dropping undelivered {kind:?} on session end"),
        }
    }

    /// RFC 6121 §8.5.1: the addressed account does not exist.
    async fn no_such_user(self: &Arc<Self>, st: Stanza) {
        match (st.kind, st.type_()) {
            (Kind::Message, "normal" | "chat") | (Kind::Iq, "get" | "set") => {
                self.bounce(&st, Condition::ServiceUnavailable.into()).await
            }
            _ => {}
        }
    }

    /// Queues a stanza addressed to this session; while its queue is full, waits up to the
    /// delivery wait for the client to catch up, so a fast sender is slowed down to the
    /// reader's pace instead of having its messages diverted (offline storage, bounces).
    pub async fn deliver_wait(&self, session: &SessionHandle, st: &Stanza) -> bool {
        match session.send_wait(st.el.clone(), self.delivery_wait).await {
            Ok(()) => true,
            Err(e) => {
                warn!(to = %session.jid(), wait_ms = self.delivery_wait.as_millis() as u64, "delivery to session failed: {e:?}");
                false
            }
        }
    }

    /// Queues a stanza on a session; false if the session is gone or overloaded.
    pub fn deliver(&self, session: &SessionHandle, st: &Stanza) -> bool {
        match session.send(st.el.clone()) {
            Ok(()) => true,
            Err(e) => {
                warn!(to = %session.jid(), "delivery to session failed: {e:?}");
                false
            }
        }
    }
}

/// Whether `el` is the stanza of `shared` with only a `to` added, i.e. no hook rewrote it.
fn is_copy_of(el: &Element, shared: &SharedStanza) -> bool {
    let orig = shared.element();
    el.name() == orig.name()
        && el.ns() == orig.ns()
        && el
            .attrs()
            .iter()
            .filter(|((ns, name), _)| !(ns.is_none() && name.as_str() == "to"))
            .eq(orig.attrs().iter())
        && el.nodes().eq(orig.nodes())
}

fn iq_ns(st: &Stanza) -> Option<String> {
    let mut children = st.el.children();
    let first = children.next()?;
    // RFC 6120 §8.2.3: a get or set IQ carries exactly one payload.
    children.next().is_none().then(|| first.ns())
}
