//! Serialization for an open stream: the response header and top-level elements.
//!
//! minidom's own serializer does not know the stream context (it would redeclare the default
//! namespace on every stanza and invent prefixes for `stream:`), so elements are written here.

use minidom::{Element, Node};

use crate::chars::is_xml_char;
use crate::{NS_STREAMS, NS_XML};

/// Closes a stream opened with [`stream_header`].
pub const STREAM_CLOSE: &str = "</stream:stream>";

/// Prefixes the writer never generates for attribute namespaces: `stream` must stay bound to
/// the streams namespace for the whole stream, `xml`/`xmlns` are reserved.
const RESERVED_PREFIXES: &[&str] = &["stream", "xml", "xmlns"];

/// Opening of a response stream header, starting with <?xml version='1.0'?>, declaring
/// xmlns=default_ns and xmlns:stream; attributes escaped. `version='1.0'` is always sent.
///
/// An empty `id` omits the attribute: the initiating entity must not send one (RFC 6120
/// §4.7.3), so the same function serves outgoing (s2s) streams.
pub fn stream_header(
    default_ns: &str,
    from: Option<&str>,
    to: Option<&str>,
    id: &str,
    lang: Option<&str>,
) -> String {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"<?xml version='1.0'?><stream:stream");
    let mut attr = |name: &str, value: &str| {
        out.push(b' ');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"='");
        escape(value, true, &mut out);
        out.push(b'\'');
    };
    attr("xmlns", default_ns);
    attr("xmlns:stream", NS_STREAMS);
    if let Some(from) = from {
        attr("from", from);
    }
    if let Some(to) = to {
        attr("to", to);
    }
    if !id.is_empty() {
        attr("id", id);
    }
    attr("version", "1.0");
    if let Some(lang) = lang {
        attr("xml:lang", lang);
    }
    out.push(b'>');
    // Only &str input and ASCII markup were written, and escape() emits valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// Serializes a top-level element for a stream whose default namespace is
/// `stream_default_ns`: no xmlns is emitted where it equals the inherited namespace; elements
/// in NS_STREAMS are written with the `stream:` prefix (declared in the header); xml:lang
/// written as xml:lang; text and attribute values escaped (also `\r`, so it round-trips).
///
/// Characters that XML cannot carry at all (NUL, most C0 controls, U+FFFE/U+FFFF) are written
/// as U+FFFD rather than producing a document the peer must reject. Names are written as
/// stored: minidom does not validate element names, so callers must not invent invalid ones.
pub fn write_element(el: &Element, stream_default_ns: &str, out: &mut Vec<u8>) {
    write_node(el, stream_default_ns, true, out);
}

/// Serializes a top-level element as a standalone document fragment: every namespace it uses
/// is declared on it, `xmlns:stream` included when it is a `stream:` element. This is the
/// framing of transports without an enclosing `<stream:stream>`: RFC 7395 §3.3.3 (each
/// WebSocket message) and XEP-0206 §2 (children of a BOSH `<body/>`).
pub fn write_standalone(el: &Element, out: &mut Vec<u8>) {
    write_node(el, "", false, out);
}

/// [`write_element`] into a new buffer.
pub fn to_bytes(el: &Element, stream_default_ns: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_element(el, stream_default_ns, &mut out);
    out
}

fn write_node(el: &Element, inherited_ns: &str, stream_declared: bool, out: &mut Vec<u8>) {
    let ns = el.ns();
    let in_streams = ns == NS_STREAMS;
    // A `stream:`-prefixed element leaves the default namespace of its children unchanged.
    let child_ns: &str = if in_streams { inherited_ns } else { &ns };
    out.push(b'<');
    write_qname(el, in_streams, out);
    if in_streams && !stream_declared {
        out.extend_from_slice(b" xmlns:stream='");
        out.extend_from_slice(NS_STREAMS.as_bytes());
        out.push(b'\'');
    }
    let stream_declared = stream_declared || in_streams;
    if !in_streams && ns != inherited_ns {
        out.extend_from_slice(b" xmlns='");
        escape(&ns, true, out);
        out.push(b'\'');
    }
    write_attrs(el, out);
    if el.nodes().next().is_none() {
        out.extend_from_slice(b"/>");
        return;
    }
    out.push(b'>');
    for node in el.nodes() {
        match node {
            Node::Element(child) => write_node(child, child_ns, stream_declared, out),
            Node::Text(text) => escape(text, false, out),
        }
    }
    out.extend_from_slice(b"</");
    write_qname(el, in_streams, out);
    out.push(b'>');
}

fn write_qname(el: &Element, in_streams: bool, out: &mut Vec<u8>) {
    if in_streams {
        out.extend_from_slice(b"stream:");
    }
    out.extend_from_slice(el.name().as_bytes());
}

/// Writes attributes, declaring a prefix on this element for each attribute namespace other
/// than none and `xml`. The element's own recorded prefixes are reused when they are safe,
/// otherwise `ns0`, `ns1`, … are generated.
fn write_attrs(el: &Element, out: &mut Vec<u8>) {
    let mut declared: Vec<(String, String)> = Vec::new();
    for ((ns, name), value) in el.attrs().iter() {
        out.push(b' ');
        if ns.is_some() && ns.as_str() == NS_XML {
            out.extend_from_slice(b"xml:");
        } else if ns.is_some() {
            let prefix = match declared.iter().find(|(_, n)| n == ns.as_str()) {
                Some((p, _)) => p.clone(),
                None => {
                    let p = choose_prefix(el, ns.as_str(), &declared);
                    out.extend_from_slice(b"xmlns:");
                    out.extend_from_slice(p.as_bytes());
                    out.extend_from_slice(b"='");
                    escape(ns.as_str(), true, out);
                    out.extend_from_slice(b"' ");
                    declared.push((p.clone(), ns.as_str().to_owned()));
                    p
                }
            };
            out.extend_from_slice(prefix.as_bytes());
            out.push(b':');
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"='");
        escape(value, true, out);
        out.push(b'\'');
    }
}

fn choose_prefix(el: &Element, ns: &str, declared: &[(String, String)]) -> String {
    let taken = |p: &str| RESERVED_PREFIXES.contains(&p) || declared.iter().any(|(d, _)| d == p);
    let recorded = el
        .prefixes
        .declared_prefixes()
        .iter()
        .find_map(|(p, n)| p.as_deref().filter(|p| n == ns && !taken(p)));
    if let Some(p) = recorded {
        return p.to_owned();
    }
    (0..)
        .map(|i| format!("ns{i}"))
        .find(|p| !taken(p))
        .unwrap_or_default()
}

/// Writes ` name='value'` with the value escaped as [`write_element`] escapes attributes: for
/// callers that splice an attribute into bytes serialized earlier (shared fan-out stanzas).
pub fn write_attr(name: &str, value: &str, out: &mut Vec<u8>) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    escape(value, true, out);
    out.push(b'\'');
}

/// Escapes character data (`in_attr == false`) or a single-quoted attribute value.
fn escape(s: &str, in_attr: bool, out: &mut Vec<u8>) {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let rep: &[u8] = match c {
            '&' => b"&amp;",
            '<' => b"&lt;",
            // Always escaped in text too: `]]>` is forbidden in character data.
            '>' => b"&gt;",
            // Literal CR would be normalized to LF by the reader (XML 1.0 §2.11).
            '\r' => b"&#13;",
            '\'' if in_attr => b"&apos;",
            '"' if in_attr => b"&quot;",
            // Literal tab/LF in attributes would be normalized to spaces (§3.3.3).
            '\n' if in_attr => b"&#10;",
            '\t' if in_attr => b"&#9;",
            c if !is_xml_char(c) => "\u{FFFD}".as_bytes(),
            _ => continue,
        };
        out.extend_from_slice(&s.as_bytes()[start..i]);
        out.extend_from_slice(rep);
        start = i + c.len_utf8();
    }
    out.extend_from_slice(&s.as_bytes()[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str, attr: bool) -> String {
        let mut v = Vec::new();
        escape(s, attr, &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("a<b>&c'\"\r\n\t", false),
            "a&lt;b&gt;&amp;c'\"&#13;\n\t"
        );
        assert_eq!(
            esc("a<b>&c'\"\r\n\t", true),
            "a&lt;b&gt;&amp;c&apos;&quot;&#13;&#10;&#9;"
        );
        assert_eq!(esc("x\u{0}y\u{FFFF}", false), "x\u{FFFD}y\u{FFFD}");
        assert_eq!(esc("plain ünïcode", false), "plain ünïcode");
    }

    #[test]
    fn standalone_declares_every_namespace() {
        let features: Element = "<features xmlns='http://etherx.jabber.org/streams'>\
            <bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></features>"
            .parse()
            .unwrap();
        let mut out = Vec::new();
        write_standalone(&features, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>\
             <bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
        );
        let msg: Element = "<message xmlns='jabber:client' to='a@b'><body>hi</body></message>"
            .parse()
            .unwrap();
        let mut out = Vec::new();
        write_standalone(&msg, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<message xmlns='jabber:client' to='a@b'><body>hi</body></message>"
        );
    }

    #[test]
    fn header_text() {
        assert_eq!(
            stream_header(
                "jabber:client",
                Some("im.example.com"),
                None,
                "++TR84Sm6A3hnt3Q065SnAbbk3Y=",
                Some("en")
            ),
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' from='im.example.com' \
             id='++TR84Sm6A3hnt3Q065SnAbbk3Y=' version='1.0' xml:lang='en'>"
        );
        assert!(!stream_header("jabber:server", None, Some("a'b"), "", None).contains(" id="));
        assert!(
            stream_header("jabber:server", None, Some("a'b"), "", None).contains("to='a&apos;b'")
        );
    }
}
