//! Builds one complete top-level element from its exact byte range.
//!
//! quick-xml tokenizes (tags, text, CDATA, references); every token is then checked here
//! against XML 1.0 + Namespaces as strictly as rxml would, and turned into a minidom tree.

use minidom::rxml::{Namespace, NcName};
use minidom::Element;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::chars::{decode, split_qname};
use crate::error::{nwf, ParseError};
use crate::ns::{declared_prefix, NsScope};
use crate::tag::parse_tag;
use crate::text::{attr_value, push_text, resolve_ref};
use crate::Limits;

/// An element whose end tag has not been seen yet.
struct Open {
    el: Element,
    qname: String,
    scope_mark: usize,
}

/// Parses `src`, which the scanner framed as exactly one element, with `scope` (the stream
/// header's declarations) in effect.
pub(crate) fn build_element(
    src: &[u8],
    scope: &NsScope,
    limits: &Limits,
) -> Result<Element, ParseError> {
    let src = decode(src)?;
    let mut reader = Reader::from_str(src);
    // Defaults already give what we need (end names checked, no trimming, dangling `&` is an
    // error); set them anyway so a quick-xml default change cannot loosen us silently.
    let config = reader.config_mut();
    config.check_end_names = true;
    config.allow_dangling_amp = false;
    config.allow_unmatched_ends = false;
    config.expand_empty_elements = false;
    config.trim_text(false);

    let mut scope = scope.clone();
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| nwf(format!("malformed XML: {e}")))?;
        if root.is_some() && event != Event::Eof {
            return Err(nwf("content after the end of the element"));
        }
        match event {
            Event::Start(tag) => {
                let (el, qname, scope_mark) = open_tag(&tag, &mut scope, limits)?;
                stack.push(Open {
                    el,
                    qname,
                    scope_mark,
                });
            }
            Event::Empty(tag) => {
                let (el, _, mark) = open_tag(&tag, &mut scope, limits)?;
                scope.truncate(mark);
                attach(&mut stack, &mut root, el);
            }
            Event::End(end) => {
                let open = stack.pop().ok_or_else(|| nwf("unexpected end tag"))?;
                if end.name().as_ref() != open.qname.as_bytes() {
                    return Err(nwf(format!("mismatched end tag for <{}>", open.qname)));
                }
                scope.truncate(open.scope_mark);
                attach(&mut stack, &mut root, open.el);
            }
            Event::Text(text) => {
                let raw = utf8(&text)?;
                if raw.contains("]]>") {
                    return Err(nwf("']]>' is not allowed in character data"));
                }
                let mut s = String::with_capacity(raw.len());
                push_text(&mut s, raw);
                append_text(&mut stack, s)?;
            }
            Event::GeneralRef(reference) => {
                let c = resolve_ref(utf8(&reference)?)?;
                append_text(&mut stack, c.to_string())?;
            }
            Event::CData(cdata) => {
                let mut s = String::with_capacity(cdata.len());
                push_text(&mut s, utf8(&cdata)?);
                append_text(&mut stack, s)?;
            }
            // The scanner rejects these first; kept so this function is strict on its own.
            Event::Comment(_) => {
                return Err(ParseError::RestrictedXml("comments are not allowed".into()))
            }
            Event::PI(_) | Event::Decl(_) => {
                return Err(ParseError::RestrictedXml(
                    "processing instructions are not allowed".into(),
                ))
            }
            Event::DocType(_) => {
                return Err(ParseError::RestrictedXml("DTDs are not allowed".into()))
            }
            Event::Eof => break,
        }
    }
    root.ok_or_else(|| nwf("element is incomplete"))
}

fn utf8(bytes: &[u8]) -> Result<&str, ParseError> {
    // The whole unit was decoded already; this cannot fail unless quick-xml split a character.
    std::str::from_utf8(bytes).map_err(|e| nwf(format!("invalid UTF-8: {e}")))
}

fn attach(stack: &mut [Open], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => {
            parent.el.append_child(el);
        }
        None => *root = Some(el),
    }
}

fn append_text(stack: &mut [Open], text: String) -> Result<(), ParseError> {
    if text.is_empty() {
        return Ok(());
    }
    let top = stack
        .last_mut()
        .ok_or_else(|| nwf("text outside the element"))?;
    top.el.append_text(text);
    Ok(())
}

/// Turns a start tag into an element: declarations first (they apply to the tag's own name
/// and attributes), then the name, then the other attributes. Returns the element, its literal
/// qname and the scope mark to restore at its end.
///
/// Declarations are neither attributes nor recorded as the element's minidom `prefixes`:
/// minidom 0.19's serializer (rxml's `SimpleNamespaces`) panics on some legal patterns, such as
/// a child rebinding a parent's prefix or an explicit `xmlns:xml`. With no recorded prefixes it
/// declares what it needs itself and cannot panic, and our writer never needed them.
fn open_tag(
    tag: &BytesStart<'_>,
    scope: &mut NsScope,
    limits: &Limits,
) -> Result<(Element, String, usize), ParseError> {
    let raw = parse_tag(utf8(tag)?, limits.max_attributes)?;
    let mark = scope.mark();
    for &(name, value) in &raw.attrs {
        if let Some(prefix) = declared_prefix(name) {
            scope.declare(prefix, &attr_value(value)?)?;
        }
    }
    let (prefix, local) = split_qname(raw.name)?;
    if prefix == Some("xml") {
        // Legal for a generic XML parser, but no XMPP element lives there, and rxml (minidom's
        // parser, our strictness reference) rejects it too.
        return Err(nwf(format!("element <{}> in the XML namespace", raw.name)));
    }
    let mut el = Element::bare(local, scope.resolve(prefix)?);
    for &(name, value) in &raw.attrs {
        if declared_prefix(name).is_some() {
            continue;
        }
        let (prefix, local) = split_qname(name)?;
        let ns = match prefix {
            None => Namespace::NONE,
            Some(p) => {
                let ns = scope.resolve(Some(p))?;
                Namespace::try_share_static(ns).unwrap_or_else(|| Namespace::from(ns.to_owned()))
            }
        };
        let local = NcName::try_from(local).map_err(|e| nwf(format!("{local:?}: {e}")))?;
        if el
            .attrs_mut()
            .insert(ns, local, attr_value(value)?)
            .is_some()
        {
            // Same expanded name twice, e.g. `a:x` and `b:x` with a and b bound alike.
            return Err(nwf(format!(
                "duplicate attribute {name:?} on <{}>",
                raw.name
            )));
        }
    }
    Ok((el, raw.name.to_owned(), mark))
}
