//! The stream prologue: XML declaration and the `<stream:stream>` open tag (RFC 6120 §4.7).

use crate::chars::{decode, split_qname};
use crate::error::{nwf, ParseError};
use crate::ns::{declared_prefix, NsScope};
use crate::tag::parse_tag;
use crate::text::attr_value;
use crate::{Limits, NS_STREAMS, NS_XML};

/// The attributes of a received stream header (RFC 6120 §4.7). Values are as sent: checking
/// `to`/`from` against served domains and negotiating `version` is the caller's business.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamHeader {
    /// `to`: the domain the peer wants to reach.
    pub to: Option<String>,
    /// `from`: the peer's claimed address.
    pub from: Option<String>,
    /// `id`: set by the receiving entity; a client's header normally has none.
    pub id: Option<String>,
    /// `version`, e.g. `"1.0"`; absent means a pre-RFC 3920 peer.
    pub version: Option<String>,
    /// `xml:lang`: the default language of the stream's human-readable text.
    pub lang: Option<String>,
    /// The declared default namespace (always equal to the reader's expected one).
    pub default_ns: Option<String>,
}

/// A validated header plus what later units need from it.
#[derive(Debug)]
pub(crate) struct Opened {
    pub header: StreamHeader,
    /// The literal qualified name, which the stream's end tag must repeat.
    pub qname: String,
    /// The declarations made on the stream element, in scope for every top-level element.
    pub scope: NsScope,
}

/// Checks `<?xml version='1.0' encoding='UTF-8' standalone='…'?>` (XML 1.0 §2.8): version,
/// then optional encoding, then optional standalone, nothing else.
fn check_decl(decl: &[u8]) -> Result<(), ParseError> {
    let decl = decode(decl)?;
    let inner = &decl[2..decl.len() - 2];
    let tag = parse_tag(inner, 3)
        .map_err(|e| nwf(format!("malformed XML declaration: {}", e.detail())))?;
    if tag.name != "xml" {
        return Err(ParseError::RestrictedXml(
            "processing instructions are not allowed".into(),
        ));
    }
    let mut attrs = tag.attrs.iter().peekable();
    match attrs.next() {
        Some(&("version", "1.0")) => {}
        Some(&("version", v)) => {
            return Err(nwf(format!("unsupported XML version {v:?} (only 1.0)")))
        }
        _ => return Err(nwf("XML declaration lacks a version")),
    }
    if let Some(&&("encoding", enc)) = attrs.peek() {
        if !enc.eq_ignore_ascii_case("UTF-8") {
            return Err(ParseError::UnsupportedEncoding(format!(
                "encoding {enc:?} (only UTF-8 is supported)"
            )));
        }
        attrs.next();
    }
    if let Some(&&("standalone", sd)) = attrs.peek() {
        if sd != "yes" && sd != "no" {
            return Err(nwf(format!("invalid standalone value {sd:?}")));
        }
        attrs.next();
    }
    match attrs.next() {
        Some((name, _)) => Err(nwf(format!("unexpected {name:?} in XML declaration"))),
        None => Ok(()),
    }
}

/// Parses and validates the prologue. `tag` runs from `<` to `>` of the stream open tag.
pub(crate) fn parse_header(
    decl: Option<&[u8]>,
    tag: &[u8],
    expected_ns: &str,
    limits: &Limits,
) -> Result<Opened, ParseError> {
    if let Some(decl) = decl {
        check_decl(decl)?;
    }
    let tag = decode(tag)?;
    let inner = &tag[1..tag.len() - 1];
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    let raw = parse_tag(inner, limits.max_attributes)?;

    let mut scope = NsScope::default();
    for &(name, value) in &raw.attrs {
        if let Some(prefix) = declared_prefix(name) {
            scope.declare(prefix, &attr_value(value)?)?;
        }
    }
    let (prefix, local) = split_qname(raw.name)?;
    let ns = scope.resolve(prefix)?;
    if local != "stream" {
        return Err(nwf(format!("root element is <{}>, not <stream>", raw.name)));
    }
    if ns != NS_STREAMS {
        return Err(ParseError::InvalidNamespace(format!(
            "stream element in namespace {ns:?}, expected {NS_STREAMS:?}"
        )));
    }
    let default_ns = match scope.resolve(None)? {
        "" => {
            return Err(ParseError::InvalidNamespace(
                "stream header declares no default namespace".into(),
            ))
        }
        ns if ns != expected_ns => {
            return Err(ParseError::InvalidNamespace(format!(
                "default namespace {ns:?}, expected {expected_ns:?}"
            )))
        }
        ns => ns.to_owned(),
    };

    let mut header = StreamHeader {
        default_ns: Some(default_ns),
        ..StreamHeader::default()
    };
    let mut seen: Vec<(&str, &str)> = Vec::with_capacity(raw.attrs.len());
    for &(name, value) in &raw.attrs {
        if declared_prefix(name).is_some() {
            continue;
        }
        let (prefix, local) = split_qname(name)?;
        // Resolve even attributes we ignore, so an undeclared prefix is reported.
        let attr_ns = match prefix {
            Some(p) => scope.resolve(Some(p))?,
            None => "",
        };
        if seen.contains(&(attr_ns, local)) {
            return Err(nwf(format!(
                "duplicate attribute {name:?} on the stream header"
            )));
        }
        seen.push((attr_ns, local));
        let slot = match (attr_ns, local) {
            ("", "to") => &mut header.to,
            ("", "from") => &mut header.from,
            ("", "id") => &mut header.id,
            ("", "version") => &mut header.version,
            (NS_XML, "lang") => &mut header.lang,
            _ => continue, // RFC 6120 §4.7.1: unknown attributes are ignored
        };
        *slot = Some(attr_value(value)?);
    }
    Ok(Opened {
        header,
        qname: raw.name.to_owned(),
        scope,
    })
}
