//! XEP-0077: In-Band Registration — account creation before authentication, and password
//! change and account removal after it.
//!
//! Who may register is a per-host [`Policy`]; password change and removal are always allowed
//! to the authenticated account itself. Accounts are stored as SCRAM keys (`tern-sasl`), never
//! as passwords.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use minidom::Element;
use tern_router::Spec;
use tracing::{info, warn};

use tern_router::xml::{set_attr, BuilderExt};
use tern_router::{
    BareJid, Condition, Ctx, Event, Flow, Hooks, Module, Outbound, PreAuth, Router, Stanza,
    StanzaError, Target,
};
use tern_storage::StoreError;
use tern_stream::{StreamError, StreamErrorCondition, NS_CLIENT};

/// The registration namespace.
pub const NS_REGISTER: &str = "jabber:iq:register";
/// The stream feature advertising registration.
pub const NS_FEATURE: &str = "http://jabber.org/features/iq-register";
/// Longest password accepted, in bytes (bounds the PBKDF2 input and the stored stanza).
const MAX_PASSWORD: usize = 1023;

/// Who may create accounts on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Nobody: accounts come from the administrator.
    #[default]
    Closed,
    /// Only clients connecting from a loopback address.
    Loopback,
    /// Anyone.
    Open,
}

/// The XEP-0077 module.
pub struct RegisterModule {
    policies: HashMap<String, Policy>,
    /// Most accounts one IP address may create per hour (0: unlimited).
    per_ip_per_hour: u32,
    recent: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl RegisterModule {
    /// Registration policies by host (hosts not listed are closed) and the per-address hourly
    /// limit on new accounts (0: unlimited).
    pub fn new(policies: HashMap<String, Policy>, per_ip_per_hour: u32) -> Self {
        RegisterModule {
            policies,
            per_ip_per_hour,
            recent: Mutex::default(),
        }
    }

    /// Records one registration attempt from `ip`; false when the address is over its limit.
    fn admit(&self, ip: IpAddr) -> bool {
        if self.per_ip_per_hour == 0 {
            return true;
        }
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        // Forget addresses whose window has passed, so the map cannot grow without bound.
        recent.retain(|_, q| {
            q.back()
                .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(3600))
        });
        let q = recent.entry(ip).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(3600))
        {
            q.pop_front();
        }
        if q.len() >= self.per_ip_per_hour as usize {
            return false;
        }
        q.push_back(now);
        true
    }

    fn allows(&self, info: &PreAuth) -> bool {
        match self.policies.get(&info.host).copied().unwrap_or_default() {
            Policy::Closed => false,
            Policy::Loopback => info.peer.ip().is_loopback(),
            Policy::Open => true,
        }
    }
}

fn query(children: Vec<Element>) -> Element {
    let mut q = Element::builder("query", NS_REGISTER).build();
    for c in children {
        q.append_child(c);
    }
    q
}

fn field(name: &str, text: &str) -> Element {
    Element::builder(name, NS_REGISTER).append(text).build()
}

fn reply(iq: &Element, payload: Option<Element>, error: Option<StanzaError>) -> Element {
    let mut r = Element::builder("iq", NS_CLIENT)
        .a("type", if error.is_some() { "error" } else { "result" })
        .a_opt("id", iq.attr("id"))
        .build();
    if let Some(p) = payload {
        r.append_child(p);
    }
    if let Some(e) = error {
        // RFC 6120 §8.3.1: the error reply may carry the original payload back.
        if let Some(q) = iq.children().next() {
            r.append_child(q.clone());
        }
        r.append_child(e.to_element());
    }
    r
}

fn text_of(q: &Element, name: &str) -> Option<String> {
    q.get_child(name, NS_REGISTER).map(|e| e.text())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn new_record(password: &str) -> Result<tern_storage::AccountRecord, StanzaError> {
    if password.is_empty() || password.len() > MAX_PASSWORD {
        return Err(StanzaError::new(Condition::NotAcceptable).with_text("unacceptable password"));
    }
    tern_sasl::new_account_record(password, tern_sasl::DEFAULT_ITERATIONS, now())
        .map_err(|_| StanzaError::new(Condition::NotAcceptable).with_text("unacceptable password"))
}

impl RegisterModule {
    async fn create(
        &self,
        router: &Router,
        info: &PreAuth,
        q: &Element,
    ) -> Result<(), StanzaError> {
        let (Some(user), Some(password)) = (text_of(q, "username"), text_of(q, "password")) else {
            return Err(StanzaError::new(Condition::NotAcceptable)
                .with_text("username and password are required"));
        };
        // Nodeprep through the JID rules: the stored name is the canonical localpart.
        let jid = BareJid::new(&format!("{}@{}", user.trim(), info.host))
            .ok()
            .filter(|j| j.node().is_some() && !user.contains(['@', '/']))
            .ok_or_else(|| {
                StanzaError::new(Condition::JidMalformed).with_text("invalid username")
            })?;
        let node = jid.node().map(|n| n.to_string()).unwrap_or_default();
        let record = new_record(&password)?;
        match router
            .storage()
            .accounts
            .create(&info.host, &node, &record)
            .await
        {
            Ok(()) => {
                info!(jid = %jid, peer = %info.peer, "account registered in-band");
                Ok(())
            }
            Err(StoreError::Conflict) => {
                Err(StanzaError::new(Condition::Conflict).with_text("username taken"))
            }
            Err(e) => {
                warn!("registration failed: {e}");
                Err(StanzaError::new(Condition::InternalServerError))
            }
        }
    }

    async fn account_iq(
        &self,
        router: &Arc<Router>,
        st: &Stanza,
    ) -> Result<Option<Element>, StanzaError> {
        let me = st.from.to_bare();
        let host = me.domain().to_string();
        let node = me.node().map(|n| n.to_string()).unwrap_or_default();
        let q = st.iq_payload().cloned().unwrap_or_else(|| query(vec![]));
        if st.type_() == "get" {
            return Ok(Some(query(vec![
                Element::bare("registered", NS_REGISTER),
                field("username", &node),
            ])));
        }
        if q.has_child("remove", NS_REGISTER) {
            router
                .storage()
                .accounts
                .delete(&host, &node)
                .await
                .map_err(|e| {
                    warn!("account removal failed: {e}");
                    StanzaError::new(Condition::InternalServerError)
                })?;
            info!(jid = %me, "account removed in-band");
            return Ok(None);
        }
        if let Some(u) = text_of(&q, "username") {
            if BareJid::new(&format!("{}@{host}", u.trim())).ok().as_ref() != Some(&me) {
                return Err(StanzaError::new(Condition::NotAllowed)
                    .with_text("cannot change another account"));
            }
        }
        let Some(password) = text_of(&q, "password") else {
            return Err(StanzaError::new(Condition::BadRequest).with_text("password required"));
        };
        let record = new_record(&password)?;
        router
            .storage()
            .accounts
            .update(&host, &node, &record)
            .await
            .map_err(|e| {
                warn!("password change failed: {e}");
                StanzaError::new(Condition::InternalServerError)
            })?;
        info!(jid = %me, "password changed in-band");
        Ok(None)
    }
}

#[async_trait]
impl Module for RegisterModule {
    fn name(&self) -> &'static str {
        "register"
    }

    fn specs(&self) -> Vec<Spec> {
        vec![Spec::xep(77, "2.4")]
    }

    fn features(&self) -> Vec<&'static str> {
        vec![NS_REGISTER]
    }

    fn register(&self, hooks: &mut Hooks) {
        hooks.on_preauth_iq(NS_REGISTER);
        hooks.on_preauth_features();
        hooks.on(Event::Iq(Target::Host, NS_REGISTER.into()));
        hooks.on(Event::Iq(Target::Bare, NS_REGISTER.into()));
    }

    fn preauth_features(&self, info: &PreAuth) -> Vec<Element> {
        if self.allows(info) {
            vec![Element::bare("register", NS_FEATURE)]
        } else {
            Vec::new()
        }
    }

    async fn on_preauth_iq(&self, router: &Arc<Router>, info: &PreAuth, iq: &Element) -> Element {
        if !self.allows(info) {
            // XEP-0077 §3.1: a host without in-band registration answers service-unavailable.
            return reply(
                iq,
                None,
                Some(StanzaError::new(Condition::ServiceUnavailable)),
            );
        }
        let Some(q) = iq.get_child("query", NS_REGISTER) else {
            return reply(iq, None, Some(StanzaError::new(Condition::BadRequest)));
        };
        match iq.attr("type") {
            Some("get") => {
                let form = query(vec![
                    field("instructions", "Choose a username and password."),
                    Element::bare("username", NS_REGISTER),
                    Element::bare("password", NS_REGISTER),
                ]);
                reply(iq, Some(form), None)
            }
            Some("set") if !self.admit(info.peer.ip()) => {
                warn!(peer = %info.peer, "registration refused: too many accounts from this address");
                let err = StanzaError::new(Condition::ResourceConstraint)
                    .with_text("too many registrations from your address; try again later");
                reply(iq, None, Some(err))
            }
            Some("set") => match self.create(router, info, q).await {
                Ok(()) => reply(iq, None, None),
                Err(e) => reply(iq, None, Some(e)),
            },
            _ => reply(iq, None, Some(StanzaError::new(Condition::BadRequest))),
        }
    }

    async fn on_stanza(&self, _event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        // Only the account itself (or its server, on its behalf) may manage it.
        let target_ok = match &st.to {
            Some(to) if to.node().is_none() => st.from.domain() == to.domain(),
            Some(to) => to.to_bare() == st.from.to_bare(),
            None => true,
        };
        let Some(session) = ctx.origin.session().cloned() else {
            return Flow::Continue;
        };
        if !target_ok {
            ctx.router
                .bounce(st, StanzaError::new(Condition::Forbidden))
                .await;
            return Flow::Handled;
        }
        match self.account_iq(ctx.router, st).await {
            Ok(payload) => {
                let removed = payload.is_none()
                    && st
                        .iq_payload()
                        .is_some_and(|q| q.has_child("remove", NS_REGISTER));
                let mut result = st.iq_result(payload);
                set_attr(&mut result, "to", Some(st.from.as_str()));
                let _ = session.send(result);
                if removed {
                    // XEP-0077 §3.2: every session of a removed account ends.
                    for s in ctx.router.sessions().resources(&st.from.to_bare()) {
                        let err = StreamError::with_text(
                            StreamErrorCondition::NotAuthorized,
                            "account removed",
                        );
                        let _ = s.send_raw(Outbound::Close(Box::new(err)));
                    }
                }
            }
            Err(e) => ctx.router.bounce(st, e).await,
        }
        Flow::Handled
    }
}
