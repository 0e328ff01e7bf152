//! Small conveniences over minidom 0.19, whose attribute API takes rxml `NcName`s and panics
//! when `set_attr` is asked to remove a value.

use minidom::rxml::{Namespace, NcName};
use minidom::{Element, ElementBuilder};

/// Sets (or with `None` removes) an un-namespaced attribute.
///
/// Attribute names here are literals of our own code; an invalid one is a programming error,
/// so it is skipped (and flagged in debug builds) rather than panicking a server in production.
pub fn set_attr(el: &mut Element, name: &str, value: Option<&str>) {
    let Ok(n) = NcName::try_from(name) else {
        debug_assert!(false, "invalid attribute name {name}");
        return;
    };
    match value {
        Some(v) => {
            el.attrs_mut().insert(Namespace::NONE, n, v.to_owned());
        }
        None => {
            el.attrs_mut().remove(&Namespace::NONE, &n);
        }
    }
}

/// Builder extension taking attribute names as `&str`.
pub trait BuilderExt {
    /// Adds an un-namespaced attribute.
    fn a(self, name: &str, value: impl Into<String>) -> Self;
    /// Adds the attribute only when `value` is `Some`.
    fn a_opt(self, name: &str, value: Option<impl Into<String>>) -> Self;
}

impl BuilderExt for ElementBuilder {
    fn a(self, name: &str, value: impl Into<String>) -> Self {
        match NcName::try_from(name) {
            Ok(n) => self.attr(n, value.into()),
            Err(_) => {
                debug_assert!(false, "invalid attribute name {name}");
                self
            }
        }
    }

    fn a_opt(self, name: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.a(name, v),
            None => self,
        }
    }
}

/// An element with the given name and namespace and no attributes (shorthand for builders).
pub fn el(name: &str, ns: &str) -> ElementBuilder {
    Element::builder(name, ns)
}

/// A copy of `el` in which every element in namespace `from` is in `to` instead: stanzas
/// cross between `jabber:client` and the server (`jabber:server`) or component
/// (`jabber:component:accept`) content namespaces (RFC 6120 §4.8.3), and their
/// `jabber:client` children (`<body/>`, `<error/>`) move with them. Borrowed when nothing
/// needs to change.
pub fn renamespace<'a>(el: &'a Element, from: &str, to: &str) -> std::borrow::Cow<'a, Element> {
    fn uses(el: &Element, ns: &str) -> bool {
        el.ns() == ns || el.children().any(|c| uses(c, ns))
    }
    fn rebuild(el: &Element, from: &str, to: &str) -> Element {
        let ns = if el.ns() == from {
            to.to_owned()
        } else {
            el.ns()
        };
        let mut out = Element::builder(el.name(), ns).build();
        *out.attrs_mut() = el.attrs().clone();
        for node in el.nodes() {
            match node {
                minidom::Node::Element(c) => {
                    out.append_child(rebuild(c, from, to));
                }
                minidom::Node::Text(t) => out.append_text_node(t.clone()),
            }
        }
        out
    }
    if uses(el, from) {
        std::borrow::Cow::Owned(rebuild(el, from, to))
    } else {
        std::borrow::Cow::Borrowed(el)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamespace_moves_only_the_named_namespace() {
        let el: Element = "<message xmlns='jabber:client' to='a@b' xml:lang='en'><body>hi &amp; bye</body><x xmlns='urn:x'><y/></x></message>"
            .parse()
            .unwrap();
        let out = renamespace(&el, "jabber:client", "jabber:server");
        assert_eq!(out.ns(), "jabber:server");
        assert_eq!(out.attr("to"), Some("a@b"));
        assert_eq!(
            out.attr_ns("http://www.w3.org/XML/1998/namespace", "lang"),
            Some("en")
        );
        assert_eq!(
            out.get_child("body", "jabber:server").unwrap().text(),
            "hi & bye"
        );
        assert!(out
            .get_child("x", "urn:x")
            .unwrap()
            .get_child("y", "urn:x")
            .is_some());
        let back = renamespace(&out, "jabber:server", "jabber:client");
        assert_eq!(*back, el);
        assert!(matches!(
            renamespace(&el, "jabber:component:accept", "jabber:client"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
