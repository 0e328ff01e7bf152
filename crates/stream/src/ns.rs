//! Namespaces in XML 1.0: an in-scope declaration stack with the reserved-prefix rules.

use crate::error::{nwf, ParseError};
use crate::{NS_XML, NS_XMLNS};

/// In-scope namespace declarations, innermost last. A top-level element starts from a copy of
/// the stream header's scope, which is how `<stream:features>` and default-namespace
/// `<message>` resolve without redeclaring anything.
#[derive(Debug, Clone, Default)]
pub(crate) struct NsScope {
    /// `(prefix, namespace)`; prefix `None` is the default namespace, namespace `""` means
    /// the default namespace was undeclared with `xmlns=''`.
    decls: Vec<(Option<String>, String)>,
}

impl NsScope {
    /// A position to [`NsScope::truncate`] back to when the current element ends.
    pub fn mark(&self) -> usize {
        self.decls.len()
    }

    /// Drops declarations made after `mark`.
    pub fn truncate(&mut self, mark: usize) {
        self.decls.truncate(mark);
    }

    /// Adds one declaration, enforcing the Namespaces in XML constraints on reserved names.
    pub fn declare(&mut self, prefix: Option<&str>, ns: &str) -> Result<(), ParseError> {
        match prefix {
            Some("xmlns") => return Err(nwf("the xmlns prefix must not be declared")),
            Some("xml") if ns != NS_XML => return Err(nwf("the xml prefix cannot be rebound")),
            Some("xml") => return Ok(()), // redundant but legal; it is built in
            Some(p) if ns.is_empty() => {
                return Err(nwf(format!("prefix {p:?} cannot be undeclared in XML 1.0")))
            }
            _ if ns == NS_XML => return Err(nwf("the XML namespace cannot be bound here")),
            _ if ns == NS_XMLNS => return Err(nwf("the xmlns namespace cannot be bound")),
            _ => {}
        }
        self.decls.push((prefix.map(str::to_owned), ns.to_owned()));
        Ok(())
    }

    /// The namespace for `prefix` (`None` = default). The default namespace resolves to `""`
    /// when undeclared; an unknown prefix is `bad-namespace-prefix`.
    pub fn resolve(&self, prefix: Option<&str>) -> Result<&str, ParseError> {
        if prefix == Some("xml") {
            return Ok(NS_XML);
        }
        if prefix == Some("xmlns") {
            return Err(nwf("the xmlns prefix cannot qualify an element"));
        }
        match self
            .decls
            .iter()
            .rev()
            .find(|(p, _)| p.as_deref() == prefix)
        {
            Some((_, ns)) => Ok(ns),
            None => match prefix {
                None => Ok(""),
                Some(p) => Err(ParseError::BadNamespacePrefix(format!(
                    "prefix {p:?} is not declared"
                ))),
            },
        }
    }
}

/// If the attribute name is a namespace declaration, its declared prefix:
/// `Some(None)` for `xmlns`, `Some(Some(p))` for `xmlns:p`.
pub(crate) fn declared_prefix(attr_name: &str) -> Option<Option<&str>> {
    if attr_name == "xmlns" {
        Some(None)
    } else {
        attr_name.strip_prefix("xmlns:").map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoping_and_reserved_prefixes() {
        let mut s = NsScope::default();
        s.declare(None, "jabber:client").unwrap();
        s.declare(Some("stream"), "http://etherx.jabber.org/streams")
            .unwrap();
        let m = s.mark();
        s.declare(None, "urn:x").unwrap();
        assert_eq!(s.resolve(None).unwrap(), "urn:x");
        s.truncate(m);
        assert_eq!(s.resolve(None).unwrap(), "jabber:client");
        assert_eq!(s.resolve(Some("xml")).unwrap(), NS_XML);
        assert!(matches!(
            s.resolve(Some("db")),
            Err(ParseError::BadNamespacePrefix(_))
        ));
        assert!(s.declare(Some("xmlns"), "urn:x").is_err());
        assert!(s.declare(Some("xml"), "urn:x").is_err());
        assert!(s.declare(Some("p"), "").is_err());
        assert!(s.declare(Some("p"), NS_XML).is_err());
        assert!(s.declare(None, NS_XMLNS).is_err());
        assert!(s.declare(Some("xml"), NS_XML).is_ok());
        s.declare(None, "").unwrap();
        assert_eq!(s.resolve(None).unwrap(), "");
    }
}
