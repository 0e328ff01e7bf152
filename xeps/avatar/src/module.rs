//! The avatar module: hooks the vCard and PEP announcements to convert (XEP-0398 §3), stamps
//! the avatar hash into the accounts' available presence (XEP-0398 §4, XEP-0153 §3.2), and
//! advertises the conversion on every account (§2).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jid::BareJid;
use tracing::{debug, warn};

use tern_router::{
    Ctx, Event, Flow, Hooks, Kind, Module, Router, SessionEvent, SessionHandle, Stanza,
};

use crate::config::AvatarConfig;
use crate::convert::Account;
use crate::photo::{stamp_presence, vcard_hash, NS_METADATA, NS_VCARD};

/// XEP-0398 §2 account feature.
pub const FEATURE: &str = "urn:xmpp:pep-vcard-conversion:0";
/// Announced by tern-vcard after a vCard was stored.
const VCARD_CHANGED: &str = "vcard.changed";
/// Announced by tern-pubsub after an item was published on an account's PEP service.
const PEP_PUBLISHED: &str = "pep.published";
const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";

/// XEP-0398 conversion and presence hashes.
pub struct AvatarModule {
    /// Each online account's avatar hash: `Some(None)` no avatar, `None` not knowable (a vCard
    /// photo given only by URL). Filled on first presence, kept current by the conversions,
    /// dropped when the account's last session ends, so it holds online accounts only.
    hashes: Mutex<HashMap<BareJid, Option<Option<String>>>>,
    timeout: Duration,
}

impl AvatarModule {
    /// A module with these settings.
    pub fn new(cfg: &AvatarConfig) -> Self {
        AvatarModule {
            hashes: Mutex::new(HashMap::new()),
            timeout: Duration::from_secs(cfg.request_timeout_secs),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<BareJid, Option<Option<String>>>> {
        // Single inserts and removals: a poisoned map is still consistent.
        self.hashes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, account: &BareJid, hash: Option<Option<String>>) {
        self.lock().insert(account.clone(), hash);
    }

    /// The account's current avatar hash, read from its vCard the first time.
    async fn hash(&self, router: &Arc<Router>, account: &BareJid) -> Option<Option<String>> {
        if let Some(h) = self.lock().get(account) {
            return h.clone();
        }
        let acct = Account::new(router, account.clone(), self.timeout);
        match acct.vcard().await {
            Ok(v) => {
                let h = vcard_hash(&v);
                self.remember(account, h.clone());
                h
            }
            Err(e) => {
                // Remembered as unknown, so a broken vCard store costs one warning per login,
                // not one per presence.
                warn!(jid = %account, "cannot read the vCard for the presence avatar hash: {e}");
                self.remember(account, None);
                None
            }
        }
    }

    async fn vcard_changed(&self, router: &Arc<Router>, st: &Stanza) {
        let (Some(account), Some(vcard)) = (
            st.to.as_ref().map(|t| t.to_bare()),
            st.iq_payload().filter(|p| p.is("vCard", NS_VCARD)),
        ) else {
            return;
        };
        let acct = Account::new(router, account.clone(), self.timeout);
        // The presence hash follows the vCard at once, whatever happens on the PEP side.
        self.remember(&account, vcard_hash(vcard));
        if let Err(e) = acct.vcard_to_pep(vcard).await {
            warn!(jid = %account, "vCard to PEP avatar conversion failed: {e}");
        }
    }

    async fn pep_published(&self, router: &Arc<Router>, st: &Stanza) {
        let Some(items) = st
            .el
            .get_child("event", NS_EVENT)
            .and_then(|e| e.get_child("items", NS_EVENT))
            .filter(|i| i.attr("node") == Some(NS_METADATA))
        else {
            return;
        };
        let Some(md) = items
            .get_child("item", NS_EVENT)
            .and_then(|i| i.get_child("metadata", NS_METADATA))
        else {
            return;
        };
        let account = st.from.to_bare();
        let acct = Account::new(router, account.clone(), self.timeout);
        match acct.pep_to_vcard(md).await {
            Ok(Some(h)) => self.remember(&account, Some(h)),
            Ok(None) => {}
            Err(e) => warn!(jid = %account, "PEP avatar to vCard conversion failed: {e}"),
        }
    }
}

#[async_trait]
impl Module for AvatarModule {
    fn name(&self) -> &'static str {
        "avatar"
    }

    fn specs(&self) -> Vec<tern_router::Spec> {
        vec![
            tern_router::Spec::xep(153, "1.1.1"),
            tern_router::Spec::xep(398, "1.0.0"),
        ]
    }

    fn account_features(&self) -> Vec<&'static str> {
        vec![FEATURE]
    }

    fn register(&self, hooks: &mut Hooks) {
        hooks.on(Event::Named(VCARD_CHANGED));
        hooks.on(Event::Named(PEP_PUBLISHED));
        // Every presence a client sends, broadcast or directed (MUC joins too, XEP-0398 §4),
        // before the presence module (priority -100) delivers it.
        hooks.on(Event::Outgoing(Kind::Presence));
        hooks.on_session();
    }

    async fn on_stanza(&self, event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        match event {
            Event::Named(VCARD_CHANGED) => self.vcard_changed(ctx.router, st).await,
            Event::Named(PEP_PUBLISHED) => self.pep_published(ctx.router, st).await,
            Event::Outgoing(Kind::Presence) if st.el.attr("type").is_none() => {
                let account = st.from.to_bare();
                if let Some(hash) = self.hash(ctx.router, &account).await {
                    stamp_presence(&mut st.el, hash.as_deref());
                } else {
                    debug!(jid = %account, "avatar hash unknown: presence left as sent");
                }
            }
            _ => {}
        }
        Flow::Continue
    }

    async fn on_session(&self, event: SessionEvent, router: &Arc<Router>, s: &SessionHandle) {
        if event != SessionEvent::Closed {
            return;
        }
        let account = s.jid().to_bare();
        let others = router
            .sessions()
            .resources(&account)
            .iter()
            .any(|o| o.id() != s.id());
        if !others {
            self.lock().remove(&account);
        }
    }
}
