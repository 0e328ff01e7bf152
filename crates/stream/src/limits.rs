//! Per-stream resource limits: what one peer may make us buffer or recurse into.

/// Bounds enforced by [`crate::StreamReader`]; exceeding any is a `policy-violation`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest top-level element, in bytes of its serialized input (start tag to end tag).
    /// Checked while the element is still incomplete, so an oversized stanza is rejected as
    /// soon as this many bytes of it are buffered, never after buffering all of it.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting: the top-level element counts as depth 1 (the stream element
    /// itself is not counted), so `32` allows a stanza plus 31 levels of payload.
    pub max_depth: usize,
    /// Most attributes on one start tag, namespace declarations included.
    pub max_attributes: usize,
    /// Largest stream prologue: BOM, XML declaration, whitespace and the `<stream:stream>` tag.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 262_144,
            max_depth: 32,
            max_attributes: 64,
            max_header_bytes: 4096,
        }
    }
}

/// Longest name (qualified, as written) or attribute value (after unescaping), in bytes.
///
/// Not configurable: it is rxml's default token limit, and xmpp-rs peers parse with rxml, so
/// anything longer that we accepted and forwarded would break their streams.
pub(crate) const MAX_TOKEN_BYTES: usize = 8192;

/// The error for a name or attribute value over [`MAX_TOKEN_BYTES`].
pub(crate) fn token_too_long(what: &str) -> crate::ParseError {
    crate::ParseError::PolicyViolation(format!("{what} longer than {MAX_TOKEN_BYTES} bytes"))
}
