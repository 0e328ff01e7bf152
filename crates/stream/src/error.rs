//! Typed reader failures; each maps to the RFC 6120 §4.9.3 condition to send the peer.

use crate::StreamErrorCondition;

/// Why the reader rejected the stream. Every variant is fatal for the stream: the caller sends
/// [`ParseError::condition`] as a stream error and closes. "Need more bytes" is not an error
/// (it is `Ok(None)` from [`crate::StreamReader::next_event`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not well-formed XML, including invalid UTF-8 and characters outside XML 1.0's `Char`
    /// (RFC 6120 §11.6 allows either `not-well-formed` or `invalid-xml`; we pick the former).
    #[error("not-well-formed: {0}")]
    NotWellFormed(String),
    /// Well-formed XML that RFC 6120 §11.1 forbids: comments, PIs, DTDs, entity references.
    #[error("restricted-xml: {0}")]
    RestrictedXml(String),
    /// Wrong stream namespace or wrong/missing default (content) namespace.
    #[error("invalid-namespace: {0}")]
    InvalidNamespace(String),
    /// A prefix that no in-scope declaration binds.
    #[error("bad-namespace-prefix: {0}")]
    BadNamespacePrefix(String),
    /// An XML declaration naming an encoding other than UTF-8.
    #[error("unsupported-encoding: {0}")]
    UnsupportedEncoding(String),
    /// A limit in [`crate::Limits`] was exceeded.
    #[error("policy-violation: {0}")]
    PolicyViolation(String),
    /// Well-formed but invalid content; the reader itself never produces this, it exists so
    /// callers validating payloads can report through the same type.
    #[error("invalid-xml: {0}")]
    InvalidXml(String),
}

impl ParseError {
    /// The stream error condition to send for this failure.
    pub fn condition(&self) -> StreamErrorCondition {
        match self {
            ParseError::NotWellFormed(_) => StreamErrorCondition::NotWellFormed,
            ParseError::RestrictedXml(_) => StreamErrorCondition::RestrictedXml,
            ParseError::InvalidNamespace(_) => StreamErrorCondition::InvalidNamespace,
            ParseError::BadNamespacePrefix(_) => StreamErrorCondition::BadNamespacePrefix,
            ParseError::UnsupportedEncoding(_) => StreamErrorCondition::UnsupportedEncoding,
            ParseError::PolicyViolation(_) => StreamErrorCondition::PolicyViolation,
            ParseError::InvalidXml(_) => StreamErrorCondition::InvalidXml,
        }
    }

    /// The human-readable detail, without the condition name.
    pub fn detail(&self) -> &str {
        match self {
            ParseError::NotWellFormed(s)
            | ParseError::RestrictedXml(s)
            | ParseError::InvalidNamespace(s)
            | ParseError::BadNamespacePrefix(s)
            | ParseError::UnsupportedEncoding(s)
            | ParseError::PolicyViolation(s)
            | ParseError::InvalidXml(s) => s,
        }
    }
}

/// Shorthand for the most common failure.
pub(crate) fn nwf(msg: impl Into<String>) -> ParseError {
    ParseError::NotWellFormed(msg.into())
}
