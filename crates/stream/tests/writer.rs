//! Writer: output shape, and that everything written reads back to the same element.

mod common;

use common::*;
use minidom::rxml::{Namespace, NcName};
use minidom::Element;
use proptest::prelude::*;
use tern_stream::{
    stream_header, to_bytes, write_element, Limits, StreamError, StreamErrorCondition, StreamEvent,
    StreamReader, NS_CLIENT, NS_SERVER, NS_STREAMS, NS_XML, STREAM_CLOSE,
};

/// Parses `bytes` as the single element of a stream opened by our own [`stream_header`].
fn read_back(bytes: &[u8], ns: &'static str) -> Element {
    let mut input = stream_header(ns, Some("example.com"), None, "abc", Some("en")).into_bytes();
    input.extend_from_slice(bytes);
    input.extend_from_slice(STREAM_CLOSE.as_bytes());
    let events = whole(ns, &input);
    match &events[..] {
        [Ok(StreamEvent::Header(_)), Ok(StreamEvent::Element(el)), Ok(StreamEvent::Close)] => {
            el.clone()
        }
        other => panic!("{}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn round_trip_every_fixture() {
    for stanza in C2S_STANZAS {
        let el = parse_one(stanza).unwrap();
        let bytes = to_bytes(&el, NS_CLIENT);
        assert_eq!(
            read_back(&bytes, NS_CLIENT),
            el,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn output_is_stream_relative() {
    let el = parse_one(C2S_STANZAS[3]).unwrap();
    assert_eq!(
        String::from_utf8(to_bytes(&el, NS_CLIENT)).unwrap(),
        "<message from='juliet@im.example.com/balcony' id='ju2ba41c' to='romeo@example.net' \
         type='chat' xml:lang='en'>\n  <body>Art thou not Romeo, and a Montague?</body>\n</message>"
    );
    // On a server stream the same element needs its namespace spelled out.
    assert!(to_bytes(&el, NS_SERVER).starts_with(b"<message xmlns='jabber:client' "));
    let features = parse_one(C2S_STANZAS[10]).unwrap();
    assert_eq!(
        String::from_utf8(to_bytes(&features, NS_CLIENT)).unwrap(),
        "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>\
         </starttls></stream:features>"
    );
    let ext = parse_one(C2S_STANZAS[9]).unwrap();
    let out = String::from_utf8(to_bytes(&ext, NS_CLIENT)).unwrap();
    assert!(
        out.contains("xmlns:ns0='urn:example:ext' ns0:flag='on'"),
        "{out}"
    );
    let nons = parse_one(C2S_STANZAS[13]).unwrap();
    let out = String::from_utf8(to_bytes(&nons, NS_CLIENT)).unwrap();
    assert!(
        out.contains("<nons xmlns=''><child a='x&#10;y z'/></nons>"),
        "{out}"
    );
}

#[test]
fn write_element_appends() {
    let mut out = b"prefix".to_vec();
    write_element(&Element::bare("presence", NS_CLIENT), NS_CLIENT, &mut out);
    assert_eq!(out, b"prefix<presence/>");
}

#[test]
fn stream_header_reads_back() {
    let h = stream_header(
        NS_CLIENT,
        Some("im.example.com"),
        Some("juliet@im.example.com"),
        "t'<&\"",
        Some("en"),
    );
    assert!(h.starts_with("<?xml version='1.0'?><stream:stream "));
    let events = whole(NS_CLIENT, h.as_bytes());
    let Some(Ok(StreamEvent::Header(header))) = events.first() else {
        panic!("{events:?}")
    };
    assert_eq!(header.from.as_deref(), Some("im.example.com"));
    assert_eq!(header.to.as_deref(), Some("juliet@im.example.com"));
    assert_eq!(header.id.as_deref(), Some("t'<&\""));
    assert_eq!(header.version.as_deref(), Some("1.0"));
    assert_eq!(header.lang.as_deref(), Some("en"));
    assert_eq!(header.default_ns.as_deref(), Some(NS_CLIENT));
    let events = whole(
        NS_SERVER,
        stream_header(NS_SERVER, None, None, "", None).as_bytes(),
    );
    let Some(Ok(StreamEvent::Header(header))) = events.first() else {
        panic!("{events:?}")
    };
    assert_eq!(header.id, None);
}

#[test]
fn stream_error_bytes() {
    let e = StreamError::new(StreamErrorCondition::NotWellFormed);
    assert_eq!(
        String::from_utf8(e.to_bytes()).unwrap(),
        "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
    );
    let e = StreamError::with_text(StreamErrorCondition::PolicyViolation, "too <big> & bad");
    assert_eq!(
        String::from_utf8(e.to_bytes()).unwrap(),
        "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
         <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>too &lt;big&gt; &amp; bad</text></stream:error>"
    );
    for c in StreamErrorCondition::ALL {
        let e = StreamError::with_text(*c, "why");
        let el = read_back(&e.to_bytes(), NS_SERVER);
        assert_eq!(StreamError::from_element(&el), Some(e));
    }
}

#[test]
fn reader_and_writer_converse() {
    // A whole exchange written by us is read by us, split in odd places.
    let mut out = stream_header(NS_CLIENT, Some("a"), None, "id1", None).into_bytes();
    for stanza in C2S_STANZAS {
        write_element(&parse_one(stanza).unwrap(), NS_CLIENT, &mut out);
    }
    out.extend_from_slice(
        StreamError::new(StreamErrorCondition::SystemShutdown)
            .to_bytes()
            .as_slice(),
    );
    out.extend_from_slice(STREAM_CLOSE.as_bytes());
    let mut r = StreamReader::new(Limits::default(), NS_CLIENT);
    let mut n = 0;
    for chunk in out.chunks(7) {
        r.feed(chunk).unwrap();
        while let Some(ev) = r.next_event().unwrap() {
            n += 1;
            if n == C2S_STANZAS.len() + 3 {
                assert_eq!(ev, StreamEvent::Close);
            }
        }
    }
    assert_eq!(n, C2S_STANZAS.len() + 3);
}

const NAMES: &[&str] = &[
    "message", "body", "x", "item", "features", "error", "a-b.c_d",
];
const NAMESPACES: &[&str] = &[
    NS_CLIENT,
    NS_SERVER,
    NS_STREAMS,
    "",
    "urn:example:a",
    "urn:example:b?x=1&y='2'",
];
const ATTR_NAMESPACES: &[&str] = &["", "", NS_XML, "urn:example:a", "urn:example:c"];
const ATTR_NAMES: &[&str] = &["to", "from", "lang", "id", "type", "flag"];

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "a", " ", "<", ">", "&", "'", "\"", "\r", "\n", "\r\n", "\t", "]]>", "é", "😀",
            "\u{FFFD}", "&amp;",
        ]),
        1..6,
    )
    .prop_map(|parts| parts.concat())
}

fn element() -> impl Strategy<Value = Element> {
    let leaf = (
        prop::sample::select(NAMES),
        prop::sample::select(NAMESPACES),
        prop::collection::vec(
            (
                prop::sample::select(ATTR_NAMESPACES),
                prop::sample::select(ATTR_NAMES),
                text(),
            ),
            0..4,
        ),
        prop::option::of(text()),
    )
        .prop_map(|(name, ns, attrs, txt)| {
            let mut el = Element::bare(name, ns);
            for (ans, aname, value) in attrs {
                let ans = if ans.is_empty() {
                    Namespace::NONE
                } else {
                    Namespace::from(ans.to_owned())
                };
                el.attrs_mut()
                    .insert(ans, NcName::try_from(aname).unwrap(), value);
            }
            if let Some(t) = txt {
                el.append_text(t);
            }
            el
        });
    leaf.prop_recursive(4, 24, 4, |inner| {
        (
            inner.clone(),
            prop::collection::vec((inner, prop::option::of(text())), 0..4),
        )
            .prop_map(|(mut parent, children)| {
                for (child, txt) in children {
                    parent.append_child(child);
                    if let Some(t) = txt {
                        parent.append_text(t);
                    }
                }
                parent
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn written_elements_read_back_equal(el in element(), server in any::<bool>()) {
        let ns = if server { NS_SERVER } else { NS_CLIENT };
        let bytes = to_bytes(&el, ns);
        prop_assert_eq!(read_back(&bytes, ns), el);
    }
}

#[test]
fn recorded_prefixes_are_reused_when_safe() {
    // Elements parsed by minidom itself keep their prefixes; the writer reuses them.
    let el: Element =
        "<m xmlns='jabber:client' xmlns:x='urn:x' xmlns:stream='urn:y' x:a='1' stream:b='2'/>"
            .parse()
            .unwrap();
    let out = String::from_utf8(to_bytes(&el, NS_CLIENT)).unwrap();
    assert!(out.contains("xmlns:x='urn:x' x:a='1'"), "{out}");
    // `stream` must stay bound to the streams namespace, so it is not reused.
    assert!(out.contains("xmlns:ns0='urn:y' ns0:b='2'"), "{out}");
    assert_eq!(read_back(out.as_bytes(), NS_CLIENT), el);
}
