//! XEP-0215: External Service Discovery (`urn:xmpp:extdisco:2`), so that clients find the
//! STUN and TURN servers they need for audio/video calls (XEP-0167/0176).
//!
//! Services come from `[[external_service]]` in the configuration. A TURN server that shares a
//! secret with Tern (coturn's `use-auth-secret`, the "TURN REST API" scheme) is listed as
//! restricted and gets time-limited credentials: the username is `<expiry unix time>:<JID>`
//! and the password is base64(HMAC-SHA1(secret, username)), which the TURN server checks on
//! its own without talking to Tern. Credentials are included in the service list (what
//! Conversations and Dino read) and are also answered to a `<credentials/>` request (§3.3).

use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use minidom::Element;
use serde::Deserialize;
use tern_router::Spec;

use tern_router::time::{format_micros, now_micros};
use tern_router::xml::BuilderExt;
use tern_router::{Condition, Ctx, Event, Flow, Hooks, Module, Stanza, StanzaError, Target};

/// XEP-0215 namespace.
pub const NS_EXTDISCO: &str = "urn:xmpp:extdisco:2";

/// One `[[external_service]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalService {
    /// `stun`, `stuns`, `turn` or `turns`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Host name or address clients connect to.
    pub host: String,
    /// Port (3478 for STUN/TURN, 5349 for the TLS variants, when absent).
    pub port: Option<u16>,
    /// `udp` or `tcp`; absent means either.
    pub transport: Option<String>,
    /// Name shown to users.
    pub name: Option<String>,
    /// Shared secret with the TURN server; when set, clients get time-limited credentials.
    pub secret: Option<String>,
    /// Lifetime of generated credentials, in seconds.
    #[serde(default = "default_ttl")]
    pub ttl_secs: u64,
}

fn default_ttl() -> u64 {
    86_400
}

impl ExternalService {
    /// Checks the entry; the error names the offending value.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.type_.as_str(), "stun" | "stuns" | "turn" | "turns") {
            return Err(format!(
                "type = {:?}: expected \"stun\", \"stuns\", \"turn\" or \"turns\"",
                self.type_
            ));
        }
        if let Some(t) = &self.transport {
            if !matches!(t.as_str(), "udp" | "tcp") {
                return Err(format!("transport = {t:?}: expected \"udp\" or \"tcp\""));
            }
        }
        if self.host.is_empty() {
            return Err("host: must not be empty".into());
        }
        if self.ttl_secs == 0 {
            return Err("ttl_secs = 0: expected at least 1".into());
        }
        Ok(())
    }

    fn port(&self) -> u16 {
        self.port.unwrap_or(if self.type_.ends_with('s') {
            5349
        } else {
            3478
        })
    }

    /// The `<service/>` element, with fresh credentials for `jid` when restricted.
    fn element(&self, jid: &str, now_secs: u64) -> Element {
        let mut el = Element::builder("service", NS_EXTDISCO)
            .a("type", self.type_.as_str())
            .a("host", self.host.as_str())
            .a("port", self.port().to_string())
            .a_opt("transport", self.transport.as_deref())
            .a_opt("name", self.name.as_deref())
            .build();
        if let Some(secret) = &self.secret {
            let expiry = now_secs + self.ttl_secs;
            let (user, pass) = turn_credentials(secret, expiry, jid);
            tern_router::xml::set_attr(&mut el, "restricted", Some("1"));
            tern_router::xml::set_attr(&mut el, "username", Some(&user));
            tern_router::xml::set_attr(&mut el, "password", Some(&pass));
            let expires = format_micros(expiry as i64 * 1_000_000);
            tern_router::xml::set_attr(&mut el, "expires", Some(&expires));
        }
        el
    }
}

/// The TURN REST API credentials: `<expiry>:<jid>` and base64(HMAC-SHA1(secret, username)).
pub fn turn_credentials(secret: &str, expiry_unix: u64, jid: &str) -> (String, String) {
    let user = format!("{expiry_unix}:{jid}");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(user.as_bytes());
    let pass = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (user, pass)
}

/// The external service discovery module.
pub struct ExtDiscoModule {
    services: Vec<ExternalService>,
}

impl ExtDiscoModule {
    /// A module listing these services.
    pub fn new(services: Vec<ExternalService>) -> Self {
        ExtDiscoModule { services }
    }

    fn answer(&self, st: &Stanza) -> Result<Element, StanzaError> {
        if st.type_() != "get" {
            return Err(StanzaError::new(Condition::BadRequest));
        }
        let q = st
            .iq_payload()
            .ok_or_else(|| StanzaError::new(Condition::BadRequest))?;
        let jid = st.from.to_bare().to_string();
        let now = (now_micros() / 1_000_000) as u64;
        match q.name() {
            // §3.1: all services, or those of one type.
            "services" => {
                let want = q.attr("type");
                let mut out = Element::bare("services", NS_EXTDISCO);
                for s in self
                    .services
                    .iter()
                    .filter(|s| want.is_none_or(|t| t == s.type_))
                {
                    out.append_child(s.element(&jid, now));
                }
                Ok(out)
            }
            // §3.3: credentials for one service, named by host and type (port optional).
            "credentials" => {
                let want = q.get_child("service", NS_EXTDISCO).ok_or_else(|| {
                    StanzaError::new(Condition::BadRequest)
                        .with_text("credentials need a <service/>")
                })?;
                let found = self.services.iter().find(|s| {
                    s.secret.is_some()
                        && want.attr("host") == Some(s.host.as_str())
                        && want.attr("type").is_none_or(|t| t == s.type_)
                        && want.attr("port").is_none_or(|p| p == s.port().to_string())
                });
                let s = found.ok_or_else(|| StanzaError::new(Condition::ItemNotFound))?;
                let mut out = Element::bare("credentials", NS_EXTDISCO);
                out.append_child(s.element(&jid, now));
                Ok(out)
            }
            _ => Err(StanzaError::new(Condition::BadRequest)),
        }
    }
}

#[async_trait]
impl Module for ExtDiscoModule {
    fn name(&self) -> &'static str {
        "extdisco"
    }

    fn specs(&self) -> Vec<Spec> {
        vec![Spec::xep(215, "1.0.0")]
    }

    fn features(&self) -> Vec<&'static str> {
        if self.services.is_empty() {
            Vec::new()
        } else {
            vec![NS_EXTDISCO]
        }
    }

    fn register(&self, hooks: &mut Hooks) {
        if !self.services.is_empty() {
            hooks.on(Event::Iq(Target::Host, NS_EXTDISCO.into()));
        }
    }

    async fn on_stanza(&self, _event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        // Only the server's own users: credentials for the TURN relay are not for strangers.
        if !ctx.router.is_local(st.from.domain().as_str()) || st.from.node().is_none() {
            ctx.router
                .bounce(st, StanzaError::new(Condition::Forbidden))
                .await;
            return Flow::Handled;
        }
        match self.answer(st) {
            Ok(el) => ctx.router.reply_result(st, Some(el)).await,
            Err(e) => ctx.router.bounce(st, e).await,
        }
        Flow::Handled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_rest_credentials_match_the_published_scheme() {
        // The password is base64(HMAC-SHA1(secret, "expiry:user")); checked against an
        // independent computation: python3 -c 'import hmac,hashlib,base64;
        // print(base64.b64encode(hmac.new(b"north", b"1700000000:alice@example.org",
        // hashlib.sha1).digest()).decode())'
        let (u, p) = turn_credentials("north", 1_700_000_000, "alice@example.org");
        assert_eq!(u, "1700000000:alice@example.org");
        assert_eq!(p, "PZI+z4ibN1IQ7v4pzuL4fO8lnhI=");
    }
}
