//! RFC 6120 §4.9: stream errors as sent on the wire, and their defined conditions.

use std::fmt;

use minidom::Element;

use crate::{ParseError, NS_STREAMS, NS_STREAM_ERRORS};

macro_rules! conditions {
    ($($variant:ident => $name:literal,)*) => {
        /// RFC 6120 §4.9.3: every defined stream error condition.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum StreamErrorCondition {
            $(
                #[doc = concat!("`<", $name, "/>`")]
                $variant,
            )*
        }

        impl StreamErrorCondition {
            /// Every defined condition, in RFC order (useful for exhaustive tests).
            pub const ALL: &'static [StreamErrorCondition] = &[$(StreamErrorCondition::$variant),*];

            /// The element name of the condition, e.g. `"not-well-formed"`.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(StreamErrorCondition::$variant => $name,)*
                }
            }

            /// Parses an element name back into a condition; `None` for undefined names.
            pub fn from_name(s: &str) -> Option<Self> {
                match s {
                    $($name => Some(StreamErrorCondition::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

conditions! {
    BadFormat => "bad-format",
    BadNamespacePrefix => "bad-namespace-prefix",
    Conflict => "conflict",
    ConnectionTimeout => "connection-timeout",
    HostGone => "host-gone",
    HostUnknown => "host-unknown",
    ImproperAddressing => "improper-addressing",
    InternalServerError => "internal-server-error",
    InvalidFrom => "invalid-from",
    InvalidNamespace => "invalid-namespace",
    InvalidXml => "invalid-xml",
    NotAuthorized => "not-authorized",
    NotWellFormed => "not-well-formed",
    PolicyViolation => "policy-violation",
    RemoteConnectionFailed => "remote-connection-failed",
    Reset => "reset",
    ResourceConstraint => "resource-constraint",
    RestrictedXml => "restricted-xml",
    SeeOtherHost => "see-other-host",
    SystemShutdown => "system-shutdown",
    UndefinedCondition => "undefined-condition",
    UnsupportedEncoding => "unsupported-encoding",
    UnsupportedFeature => "unsupported-feature",
    UnsupportedStanzaType => "unsupported-stanza-type",
    UnsupportedVersion => "unsupported-version",
}

impl fmt::Display for StreamErrorCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stream error (RFC 6120 §4.9): a defined condition plus optional descriptive text.
///
/// `see-other-host` carries its host as the condition's text content on the wire; this type
/// does not model that payload (build the element by hand when redirecting).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamError {
    /// The defined condition.
    pub condition: StreamErrorCondition,
    /// Optional `<text/>`: for humans and logs, never for protocol decisions (§4.9.2).
    pub text: Option<String>,
}

impl StreamError {
    /// An error with only a condition.
    pub fn new(condition: StreamErrorCondition) -> Self {
        StreamError {
            condition,
            text: None,
        }
    }

    /// An error with a condition and descriptive text.
    pub fn with_text(condition: StreamErrorCondition, text: impl Into<String>) -> Self {
        StreamError {
            condition,
            text: Some(text.into()),
        }
    }

    /// `<error xmlns='http://etherx.jabber.org/streams'>` with the condition and text children.
    pub fn to_element(&self) -> Element {
        let mut el = Element::bare("error", NS_STREAMS);
        el.append_child(Element::bare(self.condition.as_str(), NS_STREAM_ERRORS));
        if let Some(text) = &self.text {
            el.append_child(
                Element::builder("text", NS_STREAM_ERRORS)
                    .append(text.as_str())
                    .build(),
            );
        }
        el
    }

    /// The serialized `<stream:error>…</stream:error>`, ready to write after the stream header
    /// (which declares the `stream` prefix) and before [`crate::STREAM_CLOSE`].
    pub fn to_bytes(&self) -> Vec<u8> {
        // The default namespace does not matter: every child declares its own.
        crate::to_bytes(&self.to_element(), crate::NS_CLIENT)
    }

    /// Reads a received `<stream:error/>`; `None` if `el` is not one. An unknown condition
    /// maps to `undefined-condition` (RFC 6120 §4.9.3.21 says to treat it so).
    pub fn from_element(el: &Element) -> Option<Self> {
        if !el.is("error", NS_STREAMS) {
            return None;
        }
        let mut condition = None;
        let mut text = None;
        for child in el.children().filter(|c| c.has_ns(NS_STREAM_ERRORS)) {
            if child.name() == "text" {
                text = Some(child.text());
            } else if condition.is_none() {
                condition = Some(
                    StreamErrorCondition::from_name(child.name())
                        .unwrap_or(StreamErrorCondition::UndefinedCondition),
                );
            }
        }
        Some(StreamError {
            condition: condition.unwrap_or(StreamErrorCondition::UndefinedCondition),
            text,
        })
    }
}

impl From<&ParseError> for StreamError {
    fn from(e: &ParseError) -> Self {
        StreamError::with_text(e.condition(), e.detail())
    }
}

impl From<ParseError> for StreamError {
    fn from(e: ParseError) -> Self {
        StreamError::from(&e)
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream error <{}/>", self.condition)?;
        if let Some(text) = &self.text {
            write!(f, ": {text}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StreamError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_conditions_round_trip_by_name() {
        assert_eq!(StreamErrorCondition::ALL.len(), 25);
        for c in StreamErrorCondition::ALL {
            assert_eq!(StreamErrorCondition::from_name(c.as_str()), Some(*c));
        }
        assert_eq!(StreamErrorCondition::from_name("nope"), None);
    }

    #[test]
    fn parse_error_maps_to_condition() {
        let e = ParseError::RestrictedXml("comment".into());
        assert_eq!(e.condition(), StreamErrorCondition::RestrictedXml);
        let se = StreamError::from(e);
        assert_eq!(se.text.as_deref(), Some("comment"));
    }

    #[test]
    fn from_element_reads_condition_and_text() {
        let se = StreamError::with_text(StreamErrorCondition::HostUnknown, "no such host");
        assert_eq!(StreamError::from_element(&se.to_element()), Some(se));
        assert_eq!(
            StreamError::from_element(&Element::bare("error", "x")),
            None
        );
    }
}
