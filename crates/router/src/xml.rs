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
