//! XEP-0054: vcard-temp, stored by the server for each account.
//!
//! An account sets and reads its own vCard with IQs to its bare JID (or without `to`); anyone
//! may read an account's vCard, which is public profile data by design (§3.2). The vCard is
//! kept verbatim in the `KeyVal` store ("vcard"); the server does not interpret it.
//!
//! After a vCard is stored the module announces [`EVENT_CHANGED`] (docs/hooks.md), so that
//! others (XEP-0398 avatar conversion) can follow changes without knowing this module.

use async_trait::async_trait;
use minidom::Element;
use tern_router::Spec;
use tracing::{info, warn};

use tern_router::{
    BareJid, Condition, Ctx, ErrorType, Event, Flow, Hooks, Kind, Module, Stanza, StanzaError,
    Target,
};

/// The vcard-temp namespace.
pub const NS_VCARD: &str = "vcard-temp";
/// The announcement made after an account's vCard was replaced or removed: the stanza is the
/// `set` request as received (`from` the requester, `to` the account's bare JID, the new
/// `<vCard/>` as payload; an empty one means the vCard was removed).
pub const EVENT_CHANGED: &str = "vcard.changed";
/// KeyVal store name.
const STORE: &str = "vcard";

/// The vcard-temp module.
pub struct VcardModule {
    /// Largest vCard accepted, in bytes of serialized XML (photos make them large).
    pub max_bytes: usize,
}

impl VcardModule {
    async fn handle(&self, ctx: &Ctx<'_>, st: &Stanza) -> Result<Option<Element>, StanzaError> {
        let owner: BareJid = st
            .to
            .as_ref()
            .map(|t| t.to_bare())
            .unwrap_or_else(|| st.from.to_bare());
        let Some(user) = owner.node() else {
            return Err(StanzaError::new(Condition::ServiceUnavailable));
        };
        let own = st.from.to_bare() == owner;
        let host = owner.domain().as_str();
        let kv = &ctx.router.storage().keyval;
        let payload = st.iq_payload().filter(|p| p.name() == "vCard");
        let Some(payload) = payload else {
            return Err(StanzaError::new(Condition::BadRequest));
        };
        if st.type_() == "get" {
            let stored = kv.get(host, STORE, user.as_str()).await.map_err(|e| {
                warn!(jid = %owner, "cannot read vCard: {e}");
                StanzaError::new(Condition::InternalServerError)
            })?;
            return match stored
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse::<Element>().ok())
            {
                Some(v) => Ok(Some(v)),
                // §3.1: the owner gets an empty vCard; others learn there is none.
                None if own => Ok(Some(Element::bare("vCard", NS_VCARD))),
                None => Err(StanzaError::new(Condition::ItemNotFound)),
            };
        }
        if !own {
            return Err(StanzaError::new(Condition::Forbidden)
                .with_text("only the account itself may change its vCard"));
        }
        let bytes = String::from(payload);
        if bytes.len() > self.max_bytes {
            return Err(StanzaError::new(Condition::NotAcceptable)
                .with_type(ErrorType::Modify)
                .with_text(format!("a vCard may hold at most {} bytes", self.max_bytes)));
        }
        // An empty vCard removes the stored one.
        let value = (payload.children().next().is_some()).then_some(bytes.as_bytes());
        kv.set(host, STORE, user.as_str(), value)
            .await
            .map_err(|e| {
                warn!(jid = %owner, "cannot store vCard: {e}");
                StanzaError::new(Condition::InternalServerError)
            })?;
        info!(jid = %owner, bytes = bytes.len(), "vCard updated");
        Ok(None)
    }
}

#[async_trait]
impl Module for VcardModule {
    fn name(&self) -> &'static str {
        "vcard"
    }

    fn specs(&self) -> Vec<Spec> {
        vec![Spec::xep(54, "1.3.0")]
    }

    fn features(&self) -> Vec<&'static str> {
        vec![NS_VCARD]
    }

    fn register(&self, hooks: &mut Hooks) {
        hooks.on(Event::Iq(Target::Bare, NS_VCARD.into()));
    }

    async fn on_stanza(&self, _event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        match self.handle(ctx, st).await {
            Ok(payload) => {
                ctx.router.reply_result(st, payload).await;
                if st.type_() == "set" {
                    let owner = st
                        .to
                        .as_ref()
                        .map(|t| t.to_bare())
                        .unwrap_or_else(|| st.from.to_bare());
                    let mut changed =
                        Stanza::new(Kind::Iq, st.from.clone(), Some(owner.into()), st.el.clone());
                    ctx.router.announce(EVENT_CHANGED, &mut changed).await;
                }
            }
            Err(e) => ctx.router.bounce(st, e).await,
        }
        Flow::Handled
    }
}
