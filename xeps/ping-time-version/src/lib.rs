//! XEP-0199 (XMPP Ping), XEP-0202 (Entity Time) and XEP-0092 (Software Version), answered by
//! the server for itself; XEP-0012 (Last Activity) lives in [`last`].
//!
//! Pings to an account's bare JID are answered too, as the server does on the account's
//! behalf (XEP-0199 §4.2 leaves c2s pings to the server; clients ping their own domain or omit
//! `to`, which RFC 6120 §10.3.3 makes the account's bare JID).

use async_trait::async_trait;
use minidom::Element;
use tern_router::Spec;

use tern_router::time::{format_micros, now_micros};
use tern_router::{Condition, Ctx, Event, Flow, Hooks, Module, Stanza, StanzaError, Target};

/// XEP-0199 namespace.
pub const NS_PING: &str = "urn:xmpp:ping";
/// XEP-0202 namespace.
pub const NS_TIME: &str = "urn:xmpp:time";
/// XEP-0092 namespace.
pub const NS_VERSION: &str = "jabber:iq:version";

pub mod last;

/// How much XEP-0092 answers reveal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disclosure {
    /// Name, version and operating system.
    Full,
    /// Name and version (the default: the OS mostly helps attackers).
    Version,
    /// Nothing: the feature is not advertised and queries get `<service-unavailable/>`.
    None,
}

/// Answers ping, time and version queries addressed to the server.
pub struct PingTimeVersion {
    /// What version queries reveal.
    pub disclosure: Disclosure,
}

impl PingTimeVersion {
    fn namespaces(&self) -> Vec<&'static str> {
        let mut v = vec![NS_PING, NS_TIME];
        if self.disclosure != Disclosure::None {
            v.push(NS_VERSION);
        }
        v
    }
}

fn text(name: &str, ns: &str, value: &str) -> Element {
    Element::builder(name, ns).append(value).build()
}

#[async_trait]
impl Module for PingTimeVersion {
    fn name(&self) -> &'static str {
        "ping-time-version"
    }

    fn specs(&self) -> Vec<Spec> {
        vec![
            Spec::xep(199, "2.0.1"),
            Spec::xep(202, "2.0"),
            Spec::xep(92, "1.1"),
        ]
    }

    fn features(&self) -> Vec<&'static str> {
        self.namespaces()
    }

    fn register(&self, hooks: &mut Hooks) {
        for ns in self.namespaces() {
            hooks.on(Event::Iq(Target::Host, ns.into()));
        }
        hooks.on(Event::Iq(Target::Bare, NS_PING.into()));
    }

    async fn on_stanza(&self, event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        let Event::Iq(target, ns) = event else {
            return Flow::Continue;
        };
        // A ping to someone else's bare JID is theirs to answer (or not): only our own account.
        if *target == Target::Bare && st.to.as_ref().map(|t| t.to_bare()) != Some(st.from.to_bare())
        {
            return Flow::Continue;
        }
        if st.type_() != "get" {
            ctx.router
                .bounce(st, StanzaError::new(Condition::BadRequest))
                .await;
            return Flow::Handled;
        }
        let payload = match ns.as_str() {
            NS_PING => None,
            NS_TIME => {
                // UTC: the server does not disclose its local offset.
                let mut t = Element::builder("time", NS_TIME).build();
                t.append_child(text("tzo", NS_TIME, "+00:00"));
                t.append_child(text("utc", NS_TIME, &format_micros(now_micros())));
                Some(t)
            }
            _ => {
                let mut q = Element::builder("query", NS_VERSION).build();
                q.append_child(text("name", NS_VERSION, "Tern"));
                q.append_child(text("version", NS_VERSION, env!("CARGO_PKG_VERSION")));
                if self.disclosure == Disclosure::Full {
                    q.append_child(text("os", NS_VERSION, std::env::consts::OS));
                }
                Some(q)
            }
        };
        ctx.router.reply_result(st, payload).await;
        Flow::Handled
    }
}
