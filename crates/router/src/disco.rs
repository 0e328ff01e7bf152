//! XEP-0030: Service Discovery for the server and for accounts, aggregating the features
//! every loaded module declares (DESIGN.md §2: disco aggregation lives in the router), and
//! the server's XEP-0115 capabilities: a `<c/>` stream feature (§6.3) whose `ver` hashes the
//! host's disco#info, which is also answered under the node `CAPS_NODE#ver` (§6.2).

use async_trait::async_trait;
use minidom::Element;

use crate::caps::{self, NS_CAPS};
use crate::module::{Ctx, Event, Flow, Hooks, Module, Spec, Target};
use crate::router::Router;
use crate::stanza::{Condition, Stanza, StanzaError};
use crate::xml::BuilderExt;

/// disco#info namespace.
pub const NS_INFO: &str = "http://jabber.org/protocol/disco#info";
/// disco#items namespace.
pub const NS_ITEMS: &str = "http://jabber.org/protocol/disco#items";

/// XEP-0128 form type of XEP-0157 contact addresses.
pub const NS_SERVERINFO: &str = "http://jabber.org/network/serverinfo";
/// XEP-0004 data forms.
pub const NS_DATA: &str = "jabber:x:data";

/// The XEP-0115 `node` of the server's capabilities: a URI naming the software (§4).
pub const CAPS_NODE: &str = "https://tern.example/caps";

/// The server's identity: category, type, name.
const SERVER_IDENTITY: (&str, &str, &str) = ("server", "im", "Tern");

impl Router {
    /// The hosts' disco#info `<query/>`: the server identity, every module's features and
    /// XEP-0128 forms (every host serves the same modules).
    pub fn host_info(&self) -> Element {
        let (category, type_, name) = SERVER_IDENTITY;
        let mut q = Element::builder("query", NS_INFO).build();
        q.append_child(identity(category, type_, Some(name)));
        for f in self.features() {
            q.append_child(feature(f));
        }
        for form in self.host_forms() {
            q.append_child(form);
        }
        q
    }

    /// XEP-0115 §6.3: the `<c/>` stream feature for [`Router::host_info`]; none when no module
    /// answers disco#info (nobody could check it).
    pub fn caps_feature(&self) -> Option<Element> {
        self.caps
            .get_or_init(|| {
                self.features().contains(&NS_INFO).then(|| {
                    Element::builder("c", NS_CAPS)
                        .a("hash", "sha-1")
                        .a("node", CAPS_NODE)
                        .a("ver", caps::ver(&self.host_info()))
                        .build()
                })
            })
            .clone()
    }

    /// `CAPS_NODE#ver`, the node under which [`Router::host_info`] is also answered.
    fn caps_node(&self) -> Option<String> {
        let c = self.caps_feature()?;
        Some(format!("{CAPS_NODE}#{}", c.attr("ver")?))
    }
}

/// Answers disco#info and disco#items for hosts and accounts.
#[derive(Default)]
pub struct DiscoModule {
    /// XEP-0128 extension forms of the hosts' disco#info (e.g. XEP-0157 contact addresses).
    host_forms: Vec<Element>,
}

impl DiscoModule {
    /// A module whose host info carries XEP-0157 contact addresses: `(field, URIs)` pairs such
    /// as `("abuse-addresses", ["mailto:abuse@example.org"])`; none means no form.
    pub fn new(contacts: &[(String, Vec<String>)]) -> Self {
        let mut host_forms = Vec::new();
        if contacts.iter().any(|(_, v)| !v.is_empty()) {
            host_forms.push(serverinfo_form(contacts));
        }
        DiscoModule { host_forms }
    }
}

/// XEP-0157 §2: a result form with a hidden FORM_TYPE and one list-multi field per kind.
fn serverinfo_form(contacts: &[(String, Vec<String>)]) -> Element {
    let field = |var: &str, type_: Option<&str>, values: &[String]| {
        let mut f = Element::builder("field", NS_DATA)
            .a("var", var)
            .a_opt("type", type_)
            .build();
        for v in values {
            f.append_child(
                Element::builder("value", NS_DATA)
                    .append(v.as_str())
                    .build(),
            );
        }
        f
    };
    let mut x = Element::builder("x", NS_DATA).a("type", "result").build();
    x.append_child(field(
        "FORM_TYPE",
        Some("hidden"),
        &[NS_SERVERINFO.to_owned()],
    ));
    for (var, values) in contacts.iter().filter(|(_, v)| !v.is_empty()) {
        x.append_child(field(var, None, values));
    }
    x
}

fn identity(category: &str, type_: &str, name: Option<&str>) -> Element {
    Element::builder("identity", NS_INFO)
        .a("category", category)
        .a("type", type_)
        .a_opt("name", name)
        .build()
}

fn feature(var: &str) -> Element {
    Element::builder("feature", NS_INFO).a("var", var).build()
}

#[async_trait]
impl Module for DiscoModule {
    fn name(&self) -> &'static str {
        "disco"
    }

    fn specs(&self) -> Vec<Spec> {
        vec![Spec::xep(30, "2.5.0"), Spec::xep(157, "1.1.1")]
    }

    fn features(&self) -> Vec<&'static str> {
        // XEP-0115 §9: the server publishes its own capabilities (stream feature).
        vec![NS_INFO, NS_ITEMS, NS_CAPS]
    }

    fn host_forms(&self) -> Vec<Element> {
        self.host_forms.clone()
    }

    fn register(&self, hooks: &mut Hooks) {
        for target in [Target::Host, Target::Bare] {
            hooks.on(Event::Iq(target, NS_INFO.into()));
            hooks.on(Event::Iq(target, NS_ITEMS.into()));
        }
    }

    async fn on_stanza(&self, event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        let Event::Iq(target, ns) = event else {
            return Flow::Continue;
        };
        if st.type_() != "get" {
            ctx.router
                .bounce(st, StanzaError::new(Condition::BadRequest))
                .await;
            return Flow::Handled;
        }
        if let Some(node) = st.iq_payload().and_then(|q| q.attr("node")) {
            // XEP-0115 §6.2: the capabilities node answers what the ver was computed from.
            if *target == Target::Host
                && ns == NS_INFO
                && ctx.router.caps_node().as_deref() == Some(node)
            {
                let mut q = ctx.router.host_info();
                crate::xml::set_attr(&mut q, "node", Some(node));
                ctx.router.reply_result(st, Some(q)).await;
                return Flow::Handled;
            }
            // XEP-0030 §3.2/§4.2: an unknown node is item-not-found.
            ctx.router
                .bounce(st, StanzaError::new(Condition::ItemNotFound))
                .await;
            return Flow::Handled;
        }
        let mut q = Element::builder("query", ns.as_str()).build();
        if ns == NS_INFO {
            match target {
                Target::Host => q = ctx.router.host_info(),
                _ => {
                    q.append_child(identity("account", "registered", None));
                    for (category, type_) in ctx.router.account_identities() {
                        q.append_child(identity(category, type_, None));
                    }
                    q.append_child(feature(NS_INFO));
                    q.append_child(feature(NS_ITEMS));
                    for f in ctx.router.account_features() {
                        q.append_child(feature(f));
                    }
                }
            }
        }
        if ns == NS_ITEMS && *target == Target::Host {
            // XEP-0030 §4: the services on subdomains of this host (MUC, PubSub, upload, …).
            let host = st
                .to
                .as_ref()
                .map(|j| j.domain().to_string())
                .unwrap_or_default();
            for (jid, name) in ctx.router.services().under(&host) {
                q.append_child(
                    Element::builder("item", NS_ITEMS)
                        .a("jid", jid)
                        .a_opt("name", name.as_deref())
                        .build(),
                );
            }
        }
        if ns == NS_ITEMS && *target == Target::Bare {
            if let Some(account) = st.to.as_ref().map(|j| j.to_bare()) {
                for item in ctx.router.account_items(&account, &st.from).await {
                    q.append_child(item);
                }
            }
        }
        ctx.router.reply_result(st, Some(q)).await;
        Flow::Handled
    }
}
