//! XEP-0357: Push Notifications (`urn:xmpp:push:0`), the server side.
//!
//! A client enables push for its account with the JID and node of its app server's push
//! service (and optional publish options, e.g. a secret). Each registration remembers the
//! resource that made it. When a message worth a notification arrives for the account and that
//! resource cannot read it now — it is offline, or its XEP-0198 session is hibernating
//! ([`FLAG_DETACHED`]) — the server publishes a `urn:xmpp:push:summary` notification from the
//! account's bare JID to the push service (§7), with the count of such messages since the
//! resource was last connected. Bodies are left out unless the configuration allows them
//! (§10: they would go through third parties).
//!
//! Registrations live in the `Map` store ("push", key `jid` + NUL + `node`). A publish
//! answered with an error disables that registration (§7.1).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use minidom::Element;
use tern_router::Spec;
use tracing::{debug, info, warn};

use tern_router::xml::BuilderExt;
use tern_router::{
    AccountCache, BareJid, Condition, Ctx, Event, Flow, Hooks, Jid, Kind, Module, Origin, Router,
    SessionEvent, SessionHandle, Stanza, StanzaError, Target, FLAG_DETACHED,
};
use tern_stream::NS_CLIENT;

/// XEP-0357 namespace.
pub const NS_PUSH: &str = "urn:xmpp:push:0";
const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_DATA: &str = "jabber:x:data";
const NS_PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
const STORE: &str = "push";
/// Prefix of the ids of publish requests, to recognise their answers.
const ID_PREFIX: &str = "push-";

/// `[push]` settings.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// Include the message body in notifications (off: bodies would pass through the app
    /// vendor's servers).
    pub include_body: bool,
    /// Include the sender's JID.
    pub include_sender: bool,
    /// Most registrations one account may hold.
    pub max_per_user: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            include_body: false,
            include_sender: true,
            max_per_user: 10,
        }
    }
}

/// One enabled push service.
#[derive(Debug, Clone, PartialEq)]
struct Registration {
    service: Jid,
    node: String,
    /// The resource that enabled it.
    resource: String,
    /// The publish-options form given at enable time, if any.
    options: Option<Element>,
}

impl Registration {
    fn key(&self) -> String {
        format!("{}\0{}", self.service, self.node)
    }

    fn encode(&self) -> Vec<u8> {
        let mut el = Element::builder("registration", NS_PUSH)
            .a("jid", self.service.to_string())
            .a("node", self.node.as_str())
            .a("resource", self.resource.as_str())
            .build();
        if let Some(o) = &self.options {
            el.append_child(o.clone());
        }
        String::from(&el).into_bytes()
    }

    fn decode(b: &[u8]) -> Option<Registration> {
        let el: Element = std::str::from_utf8(b).ok()?.parse().ok()?;
        Some(Registration {
            service: Jid::new(el.attr("jid")?).ok()?,
            node: el.attr("node")?.to_owned(),
            resource: el.attr("resource").unwrap_or_default().to_owned(),
            options: el.get_child("x", NS_DATA).cloned(),
        })
    }
}

/// The push notifications module.
pub struct PushModule {
    config: PushConfig,
    /// Messages counted per (account, resource, registration key) since the resource last
    /// connected.
    pending: Mutex<HashMap<(BareJid, String, String), u64>>,
    /// Outstanding publishes: request id → (account, registration key).
    sent: Mutex<HashMap<String, (BareJid, String)>>,
    /// Registrations of online accounts: every message to an account consults them.
    regs: AccountCache<Vec<Registration>>,
}

/// Online accounts whose registrations are cached at most (beyond it the cache starts over).
const REGS_CACHE_MAX: usize = 100_000;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Outstanding publishes remembered at most; older ones are forgotten (their errors ignored).
const SENT_MAX: usize = 10_000;

impl PushModule {
    /// A module with these settings.
    pub fn new(config: PushConfig) -> Self {
        PushModule {
            config,
            pending: Mutex::new(HashMap::new()),
            sent: Mutex::new(HashMap::new()),
            regs: AccountCache::new(REGS_CACHE_MAX),
        }
    }

    async fn registrations(router: &Router, owner: &BareJid) -> Vec<Registration> {
        let Some(user) = owner.node() else {
            return Vec::new();
        };
        match router
            .storage()
            .map
            .all(owner.domain().as_str(), STORE, user.as_str())
            .await
        {
            Ok(all) => all
                .iter()
                .filter_map(|(_, v)| Registration::decode(v))
                .collect(),
            Err(e) => {
                warn!(jid = %owner, "cannot read push registrations: {e}");
                Vec::new()
            }
        }
    }

    async fn remove(router: &Router, owner: &BareJid, key: &str) -> Result<(), StanzaError> {
        let user = owner.node().map(|n| n.as_str()).unwrap_or_default();
        router
            .storage()
            .map
            .set_many(
                owner.domain().as_str(),
                STORE,
                user,
                &[(key.to_owned(), None)],
            )
            .await
            .map_err(|e| {
                warn!(jid = %owner, "cannot change push registrations: {e}");
                StanzaError::new(Condition::InternalServerError)
            })
    }

    /// enable / disable (§5, §6), from the account's own resources only.
    async fn iq(&self, ctx: &Ctx<'_>, st: &Stanza) -> Result<(), StanzaError> {
        let owner = st
            .to
            .as_ref()
            .map(|t| t.to_bare())
            .unwrap_or_else(|| st.from.to_bare());
        if st.from.to_bare() != owner {
            return Err(StanzaError::new(Condition::Forbidden));
        }
        if st.type_() != "set" {
            return Err(StanzaError::new(Condition::BadRequest));
        }
        let q = st
            .iq_payload()
            .ok_or_else(|| StanzaError::new(Condition::BadRequest))?;
        let service = q
            .attr("jid")
            .and_then(|j| Jid::new(j).ok())
            .ok_or_else(|| {
                StanzaError::new(Condition::BadRequest).with_text("a valid 'jid' is required")
            })?;
        let router = ctx.router;
        let user = owner.node().map(|n| n.as_str()).unwrap_or_default();
        match q.name() {
            "enable" => {
                let node = q.attr("node").unwrap_or_default().to_owned();
                let options = q
                    .get_child("x", NS_DATA)
                    .filter(|x| form_type(x) == Some(NS_PUBLISH_OPTIONS))
                    .cloned();
                let reg = Registration {
                    service,
                    node,
                    resource: st
                        .from
                        .resource()
                        .map(|r| r.to_string())
                        .unwrap_or_default(),
                    options,
                };
                let existing = Self::registrations(router, &owner).await;
                // §5: the same JID and node again replaces the earlier one.
                if existing.len() >= self.config.max_per_user
                    && !existing.iter().any(|r| r.key() == reg.key())
                {
                    return Err(StanzaError::new(Condition::ResourceConstraint).with_text(
                        format!(
                            "at most {} push registrations per account",
                            self.config.max_per_user
                        ),
                    ));
                }
                let stored = router
                    .storage()
                    .map
                    .set_many(
                        owner.domain().as_str(),
                        STORE,
                        user,
                        &[(reg.key(), Some(reg.encode()))],
                    )
                    .await;
                // Also after a failed write: the store may hold either version now.
                self.regs.invalidate(&owner);
                stored.map_err(|e| {
                    warn!(jid = %owner, "cannot store push registration: {e}");
                    StanzaError::new(Condition::InternalServerError)
                })?;
                info!(jid = %st.from, service = %reg.service, "push notifications enabled");
                Ok(())
            }
            "disable" => {
                // §6: without a node, every node of that service.
                let node = q.attr("node");
                for r in Self::registrations(router, &owner).await {
                    if r.service == service && node.is_none_or(|n| n == r.node) {
                        let removed = Self::remove(router, &owner, &r.key()).await;
                        self.regs.invalidate(&owner);
                        removed?;
                        self.pending()
                            .retain(|(o, _, k), _| !(o == &owner && *k == r.key()));
                    }
                }
                info!(jid = %st.from, service = %service, "push notifications disabled");
                Ok(())
            }
            _ => Err(StanzaError::new(Condition::BadRequest)),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<(BareJid, String, String), u64>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sent(&self) -> std::sync::MutexGuard<'_, HashMap<String, (BareJid, String)>> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A message to the account: notify every registration whose resource cannot read it now.
    async fn on_message(&self, router: &Arc<Router>, st: &Stanza) {
        if !worth_a_push(st) {
            return;
        }
        let Some(owner) = st.to.as_ref().map(|t| t.to_bare()) else {
            return;
        };
        let regs = self
            .regs
            .get_or_load(router, &owner, || Self::registrations(router, &owner))
            .await;
        if regs.is_empty() {
            return;
        }
        let sessions = router.sessions().resources(&owner);
        for reg in regs.iter() {
            let reachable = sessions
                .iter()
                .any(|s| s.jid().resource().as_str() == reg.resource && !s.flag(FLAG_DETACHED));
            // A message to a full JID concerns that resource's registrations only.
            let addressed_elsewhere = st
                .to
                .as_ref()
                .and_then(|t| t.resource())
                .is_some_and(|r| r.as_str() != reg.resource);
            if reachable || addressed_elsewhere {
                continue;
            }
            let count = {
                let mut p = self.pending();
                let c = p
                    .entry((owner.clone(), reg.resource.clone(), reg.key()))
                    .or_insert(0);
                *c += 1;
                *c
            };
            self.publish(router, &owner, reg, st, count).await;
        }
    }

    async fn publish(
        &self,
        router: &Arc<Router>,
        owner: &BareJid,
        reg: &Registration,
        st: &Stanza,
        count: u64,
    ) {
        let mut form = Element::builder("x", NS_DATA).a("type", "submit").build();
        form.append_child(field("FORM_TYPE", "urn:xmpp:push:summary"));
        form.append_child(field("message-count", &count.to_string()));
        if self.config.include_sender {
            form.append_child(field("last-message-sender", &st.from.to_string()));
        }
        if self.config.include_body {
            if let Some(b) = st.el.get_child("body", NS_CLIENT) {
                form.append_child(field("last-message-body", &b.text()));
            }
        }
        let notification = Element::builder("notification", NS_PUSH)
            .append(form)
            .build();
        let mut publish = Element::builder("publish", NS_PUBSUB)
            .a("node", reg.node.as_str())
            .build();
        publish.append_child(
            Element::builder("item", NS_PUBSUB)
                .append(notification)
                .build(),
        );
        let mut pubsub = Element::builder("pubsub", NS_PUBSUB)
            .append(publish)
            .build();
        if let Some(o) = &reg.options {
            pubsub.append_child(
                Element::builder("publish-options", NS_PUBSUB)
                    .append(o.clone())
                    .build(),
            );
        }
        let id = format!("{ID_PREFIX}{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        {
            let mut sent = self.sent();
            if sent.len() >= SENT_MAX {
                sent.clear();
            }
            sent.insert(id.clone(), (owner.clone(), reg.key()));
        }
        let iq = Element::builder("iq", NS_CLIENT)
            .a("type", "set")
            .a("id", id)
            .append(pubsub)
            .build();
        debug!(jid = %owner, service = %reg.service, count, "push notification");
        let st = Stanza::new(
            Kind::Iq,
            Jid::from(owner.clone()),
            Some(reg.service.clone()),
            iq,
        );
        router.route(Origin::Local, st).await;
    }

    /// The answer to a publish: an error disables the registration (§7.1).
    async fn on_answer(&self, router: &Router, st: &Stanza) -> Flow {
        let Some(id) = st.id().filter(|i| i.starts_with(ID_PREFIX)) else {
            return Flow::Continue;
        };
        let Some((owner, key)) = self.sent().remove(id) else {
            return Flow::Continue;
        };
        if Some(owner.clone()) != st.to.as_ref().map(|t| t.to_bare()) {
            return Flow::Continue;
        }
        if st.is_error() {
            warn!(jid = %owner, service = %st.from, "push service refused a notification; registration disabled");
            let _ = Self::remove(router, &owner, &key).await;
            self.regs.invalidate(&owner);
            self.pending()
                .retain(|(o, _, k), _| !(*o == owner && *k == key));
        }
        Flow::Handled
    }
}

fn field(var: &str, value: &str) -> Element {
    Element::builder("field", NS_DATA)
        .a("var", var)
        .append(Element::builder("value", NS_DATA).append(value).build())
        .build()
}

fn form_type(x: &Element) -> Option<&str> {
    let f = x.children().find(|f| f.attr("var") == Some("FORM_TYPE"))?;
    let v = f.children().next()?;
    // A text node borrowed from the element; empty values count as absent.
    v.texts().next().filter(|t| !t.is_empty())
}

/// Messages a user would want to be woken for: chat, normal and groupchat with a body or an
/// end-to-end encrypted payload; not chat states, receipts or errors on their own.
fn worth_a_push(st: &Stanza) -> bool {
    if !matches!(st.type_(), "chat" | "normal" | "groupchat") {
        return false;
    }
    st.el.get_child("body", NS_CLIENT).is_some()
        || st
            .el
            .has_child("encrypted", "eu.siacs.conversations.axolotl")
        || st.el.has_child("encrypted", "urn:xmpp:omemo:2")
}

#[async_trait]
impl Module for PushModule {
    fn name(&self) -> &'static str {
        "push"
    }

    fn specs(&self) -> Vec<Spec> {
        vec![Spec::xep(357, "0.4.1")]
    }

    fn account_features(&self) -> Vec<&'static str> {
        vec![NS_PUSH]
    }

    fn register(&self, hooks: &mut Hooks) {
        hooks.on(Event::Iq(Target::Bare, NS_PUSH.into()));
        // Observers (answer Continue) before delivery or offline storage.
        hooks.on_priority(Event::Message(Target::Bare), 5);
        hooks.on_priority(Event::Message(Target::Full), 5);
        // Answers to our publishes are IQ responses to the bare JID, which no other hook sees.
        hooks.on(Event::Routing(Kind::Iq));
        hooks.on_session();
    }

    async fn on_stanza(&self, event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        match event {
            Event::Iq(..) => {
                match self.iq(ctx, st).await {
                    Ok(()) => ctx.router.reply_result(st, None).await,
                    Err(e) => ctx.router.bounce(st, e).await,
                }
                Flow::Handled
            }
            Event::Message(_) => {
                self.on_message(ctx.router, st).await;
                Flow::Continue
            }
            Event::Routing(_) if matches!(st.type_(), "result" | "error") => {
                self.on_answer(ctx.router, st).await
            }
            _ => Flow::Continue,
        }
    }

    async fn on_session(&self, event: SessionEvent, router: &Arc<Router>, session: &SessionHandle) {
        if event == SessionEvent::Closed {
            self.regs.session_closed(router, &session.jid().to_bare());
        }
        // The resource is back: its counts start over.
        if event == SessionEvent::Bound {
            let owner = session.jid().to_bare();
            let resource = session.jid().resource().as_str();
            self.pending()
                .retain(|(o, r, _), _| !(o == &owner && r == resource));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_roundtrips() {
        let opts: Element = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>s3</value></field></x>".parse().unwrap();
        let r = Registration {
            service: Jid::new("push.example.org").unwrap(),
            node: "n1".into(),
            resource: "phone".into(),
            options: Some(opts),
        };
        assert_eq!(Registration::decode(&r.encode()), Some(r.clone()));
        assert_eq!(
            form_type(r.options.as_ref().unwrap()),
            Some(NS_PUBLISH_OPTIONS)
        );
        assert!(Registration::decode(b"<junk").is_none());
    }
}
