//! XEP-0049 Private XML Storage (`jabber:iq:private`): arbitrary XML an account keeps on the
//! server, keyed by the element's name and namespace. XEP-0048 bookmarks stored here are kept
//! in step with the PEP bookmark nodes (see `bookmarks`).

use std::sync::Arc;

use async_trait::async_trait;
use jid::BareJid;
use minidom::Element;
use tern_router::Spec;
use tracing::debug;

use tern_router::{Condition, Ctx, Event, Flow, Hooks, Module, Stanza, Target};

use crate::bookmarks;
use crate::caps::Caps;
use crate::config::PubSubConfig;
use crate::engine::Entity;
use crate::error::{reply_error, PsError, PsResult};
use crate::ns::{NS_BOOKMARKS, NS_PRIVATE};
use crate::store::to_xml;

const STORE: &str = "private";

/// The private storage module.
pub struct PrivateModule {
    cfg: Arc<PubSubConfig>,
    /// Bookmark synchronization publishes through PEP, whose notifications need the same
    /// capabilities view as the PEP module; a private one stays empty, so such notifications
    /// reach explicit subscribers only. The PEP module shares its own through [`Self::with_caps`].
    caps: Arc<Caps>,
}

impl PrivateModule {
    /// A private storage module sharing the PEP module's capabilities view.
    pub fn with_caps(cfg: Arc<PubSubConfig>, caps: Arc<Caps>) -> Self {
        PrivateModule { cfg, caps }
    }
}

fn key(el: &Element) -> String {
    format!("{{{}}}{}", el.ns(), el.name())
}

fn reserved(ns: &str) -> bool {
    // XEP-0049 §3: the protocol's own and the stream namespaces cannot be stored.
    matches!(ns, NS_PRIVATE | "jabber:client" | "jabber:server")
}

impl PrivateModule {
    async fn handle(&self, ctx: &Ctx<'_>, st: &Stanza) -> PsResult<Option<Element>> {
        let account = st
            .to
            .as_ref()
            .map(|t| t.to_bare())
            .ok_or_else(|| PsError::new(Condition::BadRequest))?;
        // XEP-0049 §3: another user's data is forbidden.
        if st.from.to_bare() != account {
            return Err(PsError::new(Condition::Forbidden));
        }
        let query = st
            .iq_payload()
            .filter(|q| q.is("query", NS_PRIVATE))
            .ok_or_else(|| PsError::bad("expected <query xmlns='jabber:iq:private'/>"))?;
        let children: Vec<&Element> = query.children().collect();
        if children.iter().any(|c| reserved(&c.ns())) {
            return Err(PsError::new(Condition::NotAcceptable));
        }
        let user = account.node().map(|n| n.to_string()).unwrap_or_default();
        let host = account.domain().to_string();
        let map = ctx.router.storage().map.as_ref();
        match st.type_() {
            "get" => {
                let [want] = children.as_slice() else {
                    // XEP-0049 §3: exactly one namespace per get; none is "bad format".
                    return Err(PsError::new(if children.is_empty() {
                        Condition::BadRequest
                    } else {
                        Condition::NotAcceptable
                    }));
                };
                let stored = map
                    .get(&host, STORE, &user, &key(want))
                    .await?
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|x| x.parse::<Element>().ok());
                let mut data =
                    stored.unwrap_or_else(|| Element::builder(want.name(), want.ns()).build());
                if want.is("storage", NS_BOOKMARKS) {
                    let entity = Entity::pep(ctx.router, &account, &self.cfg, &self.caps);
                    data = bookmarks::storage_from_v2(&entity, Some(&data)).await?;
                }
                Ok(Some(
                    Element::builder("query", NS_PRIVATE).append(data).build(),
                ))
            }
            "set" => {
                if children.is_empty() {
                    return Err(PsError::new(Condition::NotAcceptable));
                }
                self.store(ctx, &account, &host, &user, &children).await?;
                Ok(None)
            }
            _ => Err(PsError::new(Condition::BadRequest)),
        }
    }

    async fn store(
        &self,
        ctx: &Ctx<'_>,
        account: &BareJid,
        host: &str,
        user: &str,
        children: &[&Element],
    ) -> PsResult<()> {
        let map = ctx.router.storage().map.as_ref();
        let mut writes = Vec::new();
        for c in children {
            let xml = to_xml(c);
            if xml.len() > self.cfg.max_item_bytes {
                return Err(PsError::new(Condition::NotAcceptable).text("private data too large"));
            }
            writes.push((key(c), Some(xml.into_bytes())));
        }
        let existing = map.all(host, STORE, user).await?;
        let new_keys = writes
            .iter()
            .filter(|(k, _)| !existing.iter().any(|(e, _)| e == k))
            .count();
        if existing.len() + new_keys > self.cfg.max_private_entries {
            return Err(PsError::new(Condition::ResourceConstraint)
                .text("too many private storage entries"));
        }
        map.set_many(host, STORE, user, &writes).await?;
        if let Some(storage) = children.iter().find(|c| c.is("storage", NS_BOOKMARKS)) {
            let entity = Entity::pep(ctx.router, account, &self.cfg, &self.caps);
            bookmarks::after_private_set(&entity, storage).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Module for PrivateModule {
    fn name(&self) -> &'static str {
        "private"
    }

    fn specs(&self) -> Vec<Spec> {
        vec![Spec::xep(49, "1.2")]
    }

    fn features(&self) -> Vec<&'static str> {
        vec![NS_PRIVATE]
    }

    fn register(&self, hooks: &mut Hooks) {
        hooks.on(Event::Iq(Target::Bare, NS_PRIVATE.into()));
    }

    async fn on_stanza(&self, _event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        match self.handle(ctx, st).await {
            Ok(payload) => ctx.router.reply_result(st, payload).await,
            Err(e) => {
                debug!("private storage request failed: {e}");
                reply_error(ctx.router, st, &e).await
            }
        }
        Flow::Handled
    }
}
