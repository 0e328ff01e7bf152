//! XEP-0030: Service Discovery for the server and for accounts, aggregating the features
//! every loaded module declares (DESIGN.md §2: disco aggregation lives in the router).

use async_trait::async_trait;
use minidom::Element;

use crate::module::{Ctx, Event, Flow, Hooks, Module, Spec, Target};
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
        vec![NS_INFO, NS_ITEMS]
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
        // XEP-0030 §3.2/§4.2: an unknown node is item-not-found.
        if st.iq_payload().and_then(|q| q.attr("node")).is_some() {
            ctx.router
                .bounce(st, StanzaError::new(Condition::ItemNotFound))
                .await;
            return Flow::Handled;
        }
        let mut q = Element::builder("query", ns.as_str()).build();
        if ns == NS_INFO {
            match target {
                Target::Host => {
                    q.append_child(identity("server", "im", Some("Tern")));
                    for f in ctx.router.features() {
                        q.append_child(feature(f));
                    }
                    for form in &self.host_forms {
                        q.append_child(form.clone());
                    }
                }
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
