//! The BOSH `<body/>` wrapper (XEP-0124 §4): parsing requests with the stream parser's
//! limits, and rendering responses and terminal binding conditions (§17.2).

use minidom::Element;

use tern_stream::{Limits, ParseError, StreamEvent, StreamReader, NS_CLIENT};

/// XEP-0124 namespace of `<body/>`.
pub(crate) const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
/// XEP-0206 namespace of the `xmpp:` attributes.
pub(crate) const NS_XBOSH: &str = "urn:xmpp:xbosh";

/// Terminal binding conditions (XEP-0124 §17.2) that we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Terminal {
    /// The request is malformed.
    BadRequest,
    /// The `to` host is not served here.
    HostUnknown,
    /// The session-creation request lacks `to`.
    ImproperAddressing,
    /// Unknown `sid`, or a `rid` outside the window or no longer cached.
    ItemNotFound,
    /// The client broke a limit (overactivity, pause, body size, too many requests).
    PolicyViolation,
    /// The server is shutting down.
    SystemShutdown,
    /// The session ended for a reason none of the others names.
    UndefinedCondition,
}

impl Terminal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Terminal::BadRequest => "bad-request",
            Terminal::HostUnknown => "host-unknown",
            Terminal::ImproperAddressing => "improper-addressing",
            Terminal::ItemNotFound => "item-not-found",
            Terminal::PolicyViolation => "policy-violation",
            Terminal::SystemShutdown => "system-shutdown",
            Terminal::UndefinedCondition => "undefined-condition",
        }
    }
}

/// The stream context a body is parsed in, as on a TCP client stream.
const CONTEXT: &[u8] = b"<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

/// Parses a request body into its `<body/>` element. The nesting limit grows by one for the
/// wrapper; the size limit is the body limit, checked before parsing.
pub(crate) fn parse(bytes: &[u8], limits: &Limits) -> Result<Element, ParseError> {
    let limits = Limits {
        max_stanza_bytes: bytes.len().max(1),
        max_depth: limits.max_depth + 1,
        ..limits.clone()
    };
    let mut reader = StreamReader::new(limits, NS_CLIENT);
    reader.feed(CONTEXT)?;
    let _ = reader.next_event()?;
    // Some clients start with an XML declaration, which is legal at the start of an HTTP
    // entity but not inside our stream context.
    let text = strip_declaration(bytes);
    reader.feed(text)?;
    let mut body = None;
    while let Some(ev) = reader.next_event()? {
        match ev {
            StreamEvent::Element(el) if body.is_none() => body = Some(el),
            _ => return Err(ParseError::NotWellFormed("one <body/> per request".into())),
        }
    }
    if reader.buffered() > 0 {
        return Err(ParseError::NotWellFormed("incomplete <body/>".into()));
    }
    match body {
        Some(b) if b.is("body", NS_HTTPBIND) => Ok(b),
        Some(_) => Err(ParseError::InvalidNamespace(format!(
            "expected <body xmlns='{NS_HTTPBIND}'/>"
        ))),
        None => Err(ParseError::NotWellFormed("empty request".into())),
    }
}

fn strip_declaration(bytes: &[u8]) -> &[u8] {
    let trimmed = bytes.trim_ascii_start();
    if trimmed.starts_with(b"<?xml") {
        if let Some(end) = trimmed.windows(2).position(|w| w == b"?>") {
            return &trimmed[end + 2..];
        }
    }
    bytes
}

/// A response `<body>` with `attrs` around `children` (already serialized standalone).
pub(crate) fn render(attrs: &[(&str, String)], children: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(children.len() + 200);
    out.extend_from_slice(b"<body xmlns='");
    out.extend_from_slice(NS_HTTPBIND.as_bytes());
    out.push(b'\'');
    for (name, value) in attrs {
        out.push(b' ');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"='");
        escape_attr(value, &mut out);
        out.push(b'\'');
    }
    if children.is_empty() {
        out.extend_from_slice(b"/>");
    } else {
        out.push(b'>');
        out.extend_from_slice(children);
        out.extend_from_slice(b"</body>");
    }
    out
}

/// `<body type='terminate' condition='…'/>`
pub(crate) fn terminal(condition: Terminal) -> Vec<u8> {
    render(
        &[
            ("type", "terminate".into()),
            ("condition", condition.as_str().into()),
        ],
        b"",
    )
}

fn escape_attr(v: &str, out: &mut Vec<u8>) {
    for c in v.chars() {
        match c {
            '&' => out.extend_from_slice(b"&amp;"),
            '\'' => out.extend_from_slice(b"&apos;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '"' => out.extend_from_slice(b"&quot;"),
            c => {
                let mut b = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xep_0206_session_request() {
        let req = b"<body content='text/xml; charset=utf-8' hold='1' rid='1573741820' \
            to='example.com' wait='60' xml:lang='en' xmpp:version='1.0' \
            xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>";
        let b = parse(req, &Limits::default()).unwrap();
        assert_eq!(b.attr("rid"), Some("1573741820"));
        assert_eq!(b.attr_ns(NS_XBOSH, "version"), Some("1.0"));
    }

    #[test]
    fn children_keep_their_namespaces() {
        let req = b"<?xml version='1.0'?><body rid='2' sid='s' xmlns='http://jabber.org/protocol/httpbind'>\
            <message xmlns='jabber:client' to='a@b'><body>hi</body></message>\
            <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth></body>";
        let b = parse(req, &Limits::default()).unwrap();
        let kids: Vec<_> = b.children().collect();
        assert!(kids[0].is("message", "jabber:client"));
        assert!(kids[1].is("auth", "urn:ietf:params:xml:ns:xmpp-sasl"));
    }

    #[test]
    fn rejects_wrong_root_and_garbage() {
        assert!(parse(b"<message xmlns='jabber:client'/>", &Limits::default()).is_err());
        assert!(parse(
            b"<body xmlns='http://jabber.org/protocol/httpbind'>",
            &Limits::default()
        )
        .is_err());
        assert!(parse(
            b"<!-- x --><body xmlns='http://jabber.org/protocol/httpbind'/>",
            &Limits::default()
        )
        .is_err());
        assert!(parse(b"", &Limits::default()).is_err());
    }

    #[test]
    fn renders_terminal_conditions() {
        assert_eq!(
            String::from_utf8(terminal(Terminal::ItemNotFound)).unwrap(),
            "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>"
        );
    }
}
