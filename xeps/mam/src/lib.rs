//! XEP-0313: Message Archive Management (`urn:xmpp:mam:2` and `#extended`) for user
//! archives, with XEP-0359 stanza ids, XEP-0059 paging and XEP-0441 preferences.
//!
//! Layout: [`archive`] decides what is stored (XEP-0313 §5.1.1, XEP-0334 hints), makes archive
//! ids and stamps `<stanza-id/>`; [`prefs`] keeps the account's always/never/default
//! preferences; [`form`] parses a query's data form and RSM set; [`query`] runs it and sends
//! results, `<fin/>` and metadata. This file holds the settings and the hook glue: messages a
//! client sends go into the sender's archive, messages arriving for an account into the
//! recipient's (stamped before delivery), and IQs to the account's bare JID are answered for
//! the owner only. MUC and pubsub archives are not served.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use jid::BareJid;
use minidom::Element;
use tern_router::Spec;
use tracing::{debug, info, warn};

use tern_router::time::now_micros;
use tern_router::{
    AccountCache, Condition, Ctx, Event, Flow, Hooks, Kind, Module, Origin, Router, SessionEvent,
    SessionHandle, Stanza, StanzaError, Target,
};

pub mod archive;
pub mod form;
pub mod prefs;
pub mod query;

pub use prefs::Policy;

/// XEP-0313 namespace.
pub const NS_MAM: &str = "urn:xmpp:mam:2";
/// XEP-0313 §6 feature for before-id/after-id/ids, flipped pages and metadata.
pub const NS_MAM_EXTENDED: &str = "urn:xmpp:mam:2#extended";
/// The question this module publishes (DESIGN.md §1): a module answering `Handled` has a
/// message archived that the default rules of XEP-0313 §5.1.1 would skip. Errors, groupchat
/// and messages with a no-store hint are never asked about.
pub const SHOULD_STORE: &str = "mam.should_store";

const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;

/// Archive settings (`[mam]` in the server configuration).
#[derive(Debug, Clone)]
pub struct MamConfig {
    /// Policy of accounts that never set preferences.
    pub default: Policy,
    /// Items older than this many days are deleted and never returned; 0 keeps them forever.
    pub max_age_days: u32,
    /// Most results in one page, whatever the client asks (also the page size when it does not
    /// ask, and the most `ids` one query may name).
    pub max_page: usize,
    /// Most JIDs in one account's always + never lists.
    pub max_prefs_jids: usize,
    /// Seconds between two retention sweeps.
    pub expire_interval_secs: u64,
}

impl Default for MamConfig {
    fn default() -> Self {
        MamConfig {
            default: Policy::Always,
            max_age_days: 0,
            max_page: 250,
            max_prefs_jids: 1000,
            expire_interval_secs: 3600,
        }
    }
}

impl MamConfig {
    /// The oldest time still inside the retention window, if there is one.
    pub fn cutoff(&self) -> Option<i64> {
        (self.max_age_days > 0)
            .then(|| now_micros() - i64::from(self.max_age_days) * MICROS_PER_DAY)
    }
}

/// The archive module.
pub struct MamModule {
    config: MamConfig,
    /// When the last retention sweep started (Unix microseconds; 0: never).
    last_sweep: AtomicI64,
    /// Preferences of online accounts: every archived message consults both parties'.
    prefs: AccountCache<prefs::Prefs>,
}

impl Default for MamModule {
    fn default() -> Self {
        MamModule::new(MamConfig::default())
    }
}

/// Online accounts whose preferences are cached at most (beyond it the cache starts over).
const PREFS_CACHE_MAX: usize = 100_000;

impl MamModule {
    /// A module with these settings.
    pub fn new(config: MamConfig) -> Self {
        MamModule {
            config,
            last_sweep: AtomicI64::new(0),
            prefs: AccountCache::new(PREFS_CACHE_MAX),
        }
    }

    /// The account's preferences, from the cache or the store.
    async fn prefs_of(&self, router: &Router, owner: &BareJid) -> Arc<prefs::Prefs> {
        let default = self.config.default;
        self.prefs
            .get_or_load(router, owner, || prefs::load(router, owner, default))
            .await
    }

    /// Appends to `owner`'s archive if the message and the owner's preferences allow it;
    /// returns the archive id.
    async fn archive(
        &self,
        router: &Arc<Router>,
        owner: &BareJid,
        peer: &tern_router::Jid,
        el: &Element,
    ) -> Option<String> {
        if !self.worth(router, owner, peer, el).await
            || !prefs::allows(router, owner, peer, &*self.prefs_of(router, owner).await).await
        {
            return None;
        }
        self.sweep(router);
        match archive::append(router, owner, &peer.to_bare(), el).await {
            Ok(id) => Some(id),
            Err(e) => {
                warn!(jid = %owner, "cannot archive message: {e}");
                None
            }
        }
    }

    /// The default rules, widened by other modules through the published question
    /// [`SHOULD_STORE`] (e.g. the receipts module for body-less receipts and markers).
    async fn worth(
        &self,
        router: &Arc<Router>,
        owner: &BareJid,
        peer: &tern_router::Jid,
        el: &Element,
    ) -> bool {
        if archive::worth_archiving(el) {
            return true;
        }
        if archive::excluded(el) {
            return false;
        }
        let mut st = Stanza::new(
            Kind::Message,
            peer.clone(),
            Some(tern_router::Jid::from(owner.clone())),
            el.clone(),
        );
        router.ask(SHOULD_STORE, &mut st).await == Flow::Handled
    }

    /// A message from a local client: into the sender's archive, `with` the addressee. A note
    /// to oneself is archived once, when it arrives.
    async fn outgoing(&self, router: &Arc<Router>, st: &Stanza) {
        let Some(to) = &st.to else { return };
        let owner = st.from.to_bare();
        if to.to_bare() == owner {
            return;
        }
        let mut copy = st.el.clone();
        archive::strip_stanza_ids(&mut copy, &owner);
        self.archive(router, &owner, to, &copy).await;
    }

    /// A message for a local account: into its archive, `with` the sender, and stamped with
    /// the archive id before anyone delivers or copies it (XEP-0313 §3.5).
    async fn incoming(&self, router: &Arc<Router>, st: &mut Stanza) {
        let Some(owner) = st.to.as_ref().map(|t| t.to_bare()) else {
            return;
        };
        archive::strip_stanza_ids(&mut st.el, &owner);
        let peer = st.from.clone();
        if let Some(id) = self.archive(router, &owner, &peer, &st.el).await {
            st.el.append_child(archive::stanza_id(&id, &owner));
        }
    }

    /// Deletes items past the retention window, at most once per interval, from a task of its
    /// own: one bounded `expire` per sweep, logged.
    fn sweep(&self, router: &Arc<Router>) {
        let Some(cutoff) = self.config.cutoff() else {
            return;
        };
        let now = now_micros();
        let last = self.last_sweep.load(Ordering::Relaxed);
        let interval = i64::try_from(self.config.expire_interval_secs)
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(1_000_000);
        if now.saturating_sub(last) < interval
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let storage = router.storage().clone();
        let days = self.config.max_age_days;
        tokio::spawn(async move {
            match storage.archive.expire(archive::STORE, cutoff).await {
                Ok(0) => debug!("archive retention: nothing older than {days} days"),
                Ok(n) => info!(
                    removed = n,
                    "archive retention: deleted messages older than {days} days"
                ),
                Err(e) => warn!("archive retention sweep failed: {e}"),
            }
        });
    }

    /// IQs in `urn:xmpp:mam:2` to an account: only its owner may use its archive (§7.1).
    async fn iq(&self, ctx: &Ctx<'_>, st: &Stanza) {
        let router = ctx.router;
        let Some(owner) = st.to.as_ref().map(|t| t.to_bare()) else {
            return router.bounce(st, Condition::BadRequest.into()).await;
        };
        if st.from.to_bare() != owner {
            let err = StanzaError::new(Condition::Forbidden)
                .with_text("only the owner may access this archive");
            return router.bounce(st, err).await;
        }
        let Some(payload) = st.iq_payload() else {
            return router.bounce(st, Condition::BadRequest.into()).await;
        };
        let archive = query::Archive {
            store: router.storage().archive.as_ref(),
            owner: &owner,
            config: &self.config,
        };
        let answer = match (payload.name(), st.type_()) {
            ("query", "set") => {
                self.sweep(router);
                let req = match form::parse(payload) {
                    Ok(r) => r,
                    Err(e) => return router.bounce(st, e).await,
                };
                match archive.page(&req).await {
                    Ok(page) => {
                        let count = archive.count(&req).await;
                        debug!(jid = %owner, results = page.items.len(), complete = page.complete, "archive query");
                        return query::send_page(ctx, st, &owner, &req, page, count);
                    }
                    Err(e) => Err(e),
                }
            }
            ("query", "get") => Ok(form::query_form()),
            ("metadata", "get") => archive.metadata().await,
            ("prefs", "get") => Ok(self.prefs_of(router, &owner).await.to_element()),
            ("prefs", "set") => self.set_prefs(router, &owner, payload).await,
            _ => Err(StanzaError::new(Condition::FeatureNotImplemented)),
        };
        match answer {
            Ok(el) => {
                let reply = Stanza::new(
                    Kind::Iq,
                    owner.clone().into(),
                    Some(st.from.clone()),
                    st.iq_result(Some(el)),
                );
                router.route(Origin::Local, reply).await;
            }
            Err(e) => router.bounce(st, e).await,
        }
    }

    /// XEP-0441 §2.1: stores the new preferences and answers with them as applied.
    async fn set_prefs(
        &self,
        router: &Arc<Router>,
        owner: &BareJid,
        el: &Element,
    ) -> Result<Element, StanzaError> {
        let current = self.prefs_of(router, owner).await;
        let new = prefs::Prefs::from_element(el, current.default, self.config.max_prefs_jids)?;
        let saved = prefs::save(router, owner, &new).await;
        // Also after a failed write: the store may hold either version now.
        self.prefs.invalidate(owner);
        saved.map_err(|e| {
            warn!(jid = %owner, "cannot store archiving preferences: {e}");
            StanzaError::new(Condition::InternalServerError)
        })?;
        info!(jid = %owner, default = new.default.as_str(), "archiving preferences changed");
        Ok(new.to_element())
    }
}

#[async_trait]
impl Module for MamModule {
    fn name(&self) -> &'static str {
        "mam"
    }

    fn specs(&self) -> Vec<Spec> {
        vec![
            Spec::xep(313, "1.1.3"),
            Spec::xep(359, "0.7.0"),
            Spec::xep(441, "0.2.0"),
            Spec::xep(59, "1.0"),
            Spec::xep(334, "1.0.0"),
        ]
    }

    fn features(&self) -> Vec<&'static str> {
        vec![archive::NS_SID]
    }

    fn account_features(&self) -> Vec<&'static str> {
        vec![NS_MAM, NS_MAM_EXTENDED, archive::NS_SID]
    }

    fn register(&self, hooks: &mut Hooks) {
        // Priority 100: the stanza-id must be on an arriving message before carbons (a lower
        // positive priority) copies it and before the router delivers it or stores it offline.
        // Modules that refuse incoming messages (blocking) register above 100, so that what
        // they refuse is never archived (XEP-0313 §5.1).
        hooks.on_priority(Event::Message(Target::Bare), 100);
        hooks.on_priority(Event::Message(Target::Full), 100);
        // Priority -100: the sender's copy needs no stamp (§3.5 forbids showing it to the
        // contact), so it is archived after every other handler, and a message a filter
        // stopped before routing (blocking answers Handled) is not archived.
        hooks.on_priority(Event::Outgoing(Kind::Message), -100);
        hooks.on(Event::Iq(Target::Bare, NS_MAM.into()));
        hooks.on_session();
    }

    async fn on_session(&self, event: SessionEvent, router: &Arc<Router>, session: &SessionHandle) {
        if event == SessionEvent::Closed {
            self.prefs.session_closed(router, &session.jid().to_bare());
        }
    }

    async fn on_stanza(&self, event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        match event {
            Event::Outgoing(Kind::Message) => self.outgoing(ctx.router, st).await,
            Event::Message(_) => self.incoming(ctx.router, st).await,
            Event::Iq(..) => {
                self.iq(ctx, st).await;
                return Flow::Handled;
            }
            _ => {}
        }
        Flow::Continue
    }
}
