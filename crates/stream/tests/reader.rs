//! Reading valid streams: headers, stanzas, namespaces, text, close, restart.

mod common;

use common::*;
use minidom::Element;
use tern_stream::{
    Limits, StreamEvent, StreamHeader, StreamReader, NS_CLIENT, NS_SERVER, NS_STREAMS, NS_XML,
};

fn element(ev: &Result<StreamEvent, tern_stream::ParseError>) -> &Element {
    match ev {
        Ok(StreamEvent::Element(el)) => el,
        other => panic!("expected element, got {other:?}"),
    }
}

#[test]
fn c2s_header_fields() {
    let h = header_result(C2S_HEADER).unwrap();
    assert_eq!(
        h,
        StreamHeader {
            to: Some("im.example.com".into()),
            from: Some("juliet@im.example.com".into()),
            id: None,
            version: Some("1.0".into()),
            lang: Some("en".into()),
            default_ns: Some(NS_CLIENT.into()),
        }
    );
}

#[test]
fn header_variants_accepted() {
    // No declaration, BOM, double quotes, encoding/standalone, another stream prefix.
    for prologue in [
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
        "\u{FEFF}<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
        "<?xml version=\"1.0\" encoding=\"utf-8\" standalone=\"yes\"?>\r\n\n<stream:stream xmlns=\"jabber:client\" xmlns:stream=\"http://etherx.jabber.org/streams\">",
        "<?xml version='1.0' encoding='UTF-8'?><s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:client' id='x' unknown='ignored'>",
    ] {
        let h = header_result(prologue).unwrap_or_else(|e| panic!("{prologue}: {e}"));
        assert_eq!(h.default_ns.as_deref(), Some(NS_CLIENT));
    }
}

#[test]
fn server_stream_with_dialback_prefix() {
    let input = format!("{S2S_HEADER}{}", S2S_STANZAS[0]);
    let events = whole(NS_SERVER, input.as_bytes());
    let el = element(&events[1]);
    assert!(el.is("result", "jabber:server:dialback"));
    assert_eq!(el.attr("from"), Some("example.net"));
}

#[test]
fn message_with_nested_namespaces() {
    let el = parse_one(C2S_STANZAS[6]).unwrap();
    assert!(el.is("message", NS_CLIENT));
    assert_eq!(el.get_child("body", NS_CLIENT).unwrap().text(), "hi");
    let html = el
        .get_child("html", "http://jabber.org/protocol/xhtml-im")
        .unwrap();
    let body = html
        .get_child("body", "http://www.w3.org/1999/xhtml")
        .unwrap();
    let p = body.get_child("p", "http://www.w3.org/1999/xhtml").unwrap();
    assert_eq!(p.attr("style"), Some("font-weight:bold"));
    assert_eq!(p.text(), "hi ");
    assert!(p.has_child("em", "http://www.w3.org/1999/xhtml"));
}

#[test]
fn iq_bind_and_roster() {
    let el = parse_one(C2S_STANZAS[2]).unwrap();
    assert!(el.is("iq", NS_CLIENT));
    let bind = el
        .get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
        .unwrap();
    assert_eq!(
        bind.get_child("resource", "urn:ietf:params:xml:ns:xmpp-bind")
            .unwrap()
            .text(),
        "balcony"
    );
    let el = parse_one(C2S_STANZAS[5]).unwrap();
    assert!(el.has_child("query", "jabber:iq:roster"));
}

#[test]
fn prefixed_payload_and_attributes() {
    let el = parse_one(C2S_STANZAS[9]).unwrap();
    let ext = el.get_child("ext", "urn:example:ext").unwrap();
    assert_eq!(ext.attr_ns("urn:example:ext", "flag"), Some("on"));
    assert_eq!(ext.attr("flag"), None);
    assert_eq!(ext.attr("plain"), Some("1"));
    assert!(ext.has_child("inner", "urn:example:ext"));
    // An unprefixed child of a prefixed element is in the inherited default namespace.
    assert!(ext.has_child("plain", NS_CLIENT));
    // Declarations are not attributes.
    assert_eq!(ext.attrs().len(), 2);
}

#[test]
fn xml_lang_is_an_xml_namespace_attribute() {
    let el = parse_one(C2S_STANZAS[4]).unwrap();
    assert_eq!(el.attr_ns(NS_XML, "lang"), Some("en"));
    assert_eq!(el.attr("xml:lang"), None);
    let cs = el
        .children()
        .filter(|c| c.name() == "status")
        .nth(1)
        .unwrap();
    assert_eq!(cs.attr_ns(NS_XML, "lang"), Some("cs"));
    assert_eq!(cs.text(), "Dvořím se Julii");
}

#[test]
fn predefined_entities_char_refs_and_cdata() {
    let el = parse_one(C2S_STANZAS[7]).unwrap();
    assert_eq!(
        el.get_child("body", NS_CLIENT).unwrap().text(),
        "a < b && c > d \"q\" 's' AB"
    );
    let el = parse_one(C2S_STANZAS[8]).unwrap();
    assert_eq!(
        el.get_child("body", NS_CLIENT).unwrap().text(),
        "<not> & markup ]] >"
    );
}

#[test]
fn line_ends_and_attribute_normalization() {
    let el = parse_one(C2S_STANZAS[12]).unwrap();
    let title = el
        .get_child("pubsub", "http://jabber.org/protocol/pubsub")
        .unwrap()
        .get_child("items", "http://jabber.org/protocol/pubsub")
        .unwrap()
        .get_child("item", "http://jabber.org/protocol/pubsub")
        .unwrap()
        .get_child("entry", "http://www.w3.org/2005/Atom")
        .unwrap()
        .get_child("title", "http://www.w3.org/2005/Atom")
        .unwrap();
    assert_eq!(title.text(), "hello\nworld");
    let el = parse_one(C2S_STANZAS[13]).unwrap();
    let nons = el.get_child("nons", "").unwrap();
    assert_eq!(nons.ns(), "");
    assert_eq!(
        nons.get_child("child", "").unwrap().attr("a"),
        Some("x\ny z")
    );
}

#[test]
fn stream_namespace_elements_resolve_through_header() {
    let el = parse_one(C2S_STANZAS[10]).unwrap();
    assert!(el.is("features", NS_STREAMS));
    assert!(el
        .get_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
        .unwrap()
        .has_child("required", "urn:ietf:params:xml:ns:xmpp-tls"));
    let el = parse_one(C2S_STANZAS[11]).unwrap();
    let err = tern_stream::StreamError::from_element(&el).unwrap();
    assert_eq!(
        err.condition,
        tern_stream::StreamErrorCondition::NotWellFormed
    );
}

#[test]
fn keepalives_close_and_order() {
    let input = format!(
        "{C2S_HEADER} \n <presence/>\n\n\t <message to='a@b'/>  </stream:stream>trailing <junk"
    );
    let events = whole(NS_CLIENT, input.as_bytes());
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(element(&events[1]).is("presence", NS_CLIENT));
    assert!(element(&events[2]).is("message", NS_CLIENT));
    assert_eq!(events[3], Ok(StreamEvent::Close));
}

#[test]
fn after_close_input_is_ignored() {
    let mut r = StreamReader::new(Limits::default(), NS_CLIENT);
    r.feed(format!("{C2S_HEADER}</stream:stream>").as_bytes())
        .unwrap();
    assert!(matches!(r.next_event(), Ok(Some(StreamEvent::Header(_)))));
    assert_eq!(r.next_event(), Ok(Some(StreamEvent::Close)));
    r.feed(b"<message/><!-- nope -->").unwrap();
    assert_eq!(r.next_event(), Ok(None));
    assert_eq!(r.buffered(), 0);
}

#[test]
fn self_closing_stream_header_is_header_then_close() {
    let input =
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'/>";
    let events = whole(NS_CLIENT, input.as_bytes());
    assert!(matches!(events[0], Ok(StreamEvent::Header(_))));
    assert_eq!(events[1], Ok(StreamEvent::Close));
}

#[test]
fn need_more_bytes_is_none() {
    let mut r = StreamReader::new(Limits::default(), NS_CLIENT);
    assert_eq!(r.next_event(), Ok(None));
    let (a, b) = C2S_HEADER.as_bytes().split_at(40);
    r.feed(a).unwrap();
    assert_eq!(r.next_event(), Ok(None));
    r.feed(b).unwrap();
    assert!(matches!(r.next_event(), Ok(Some(StreamEvent::Header(_)))));
    r.feed(b"<message><body>hi</bo").unwrap();
    assert_eq!(r.next_event(), Ok(None));
    r.feed(b"dy></message>").unwrap();
    assert!(matches!(r.next_event(), Ok(Some(StreamEvent::Element(_)))));
}

#[test]
fn restart_expects_a_new_header() {
    let mut r = StreamReader::new(Limits::default(), NS_CLIENT);
    r.feed(format!("{C2S_HEADER}{}", C2S_STANZAS[0]).as_bytes())
        .unwrap();
    assert!(matches!(r.next_event(), Ok(Some(StreamEvent::Header(_)))));
    assert!(matches!(r.next_event(), Ok(Some(StreamEvent::Element(_)))));
    // Bytes pipelined after <starttls/> are dropped by the restart.
    r.feed(b"<message>").unwrap();
    r.restart();
    assert_eq!(r.buffered(), 0);
    assert_eq!(r.next_event(), Ok(None));
    assert!(r.header().is_none());
    r.feed(format!("{C2S_HEADER}<presence/>").as_bytes())
        .unwrap();
    assert!(matches!(r.next_event(), Ok(Some(StreamEvent::Header(_)))));
    assert!(matches!(r.next_event(), Ok(Some(StreamEvent::Element(_)))));
    // Restarting twice works the same; no XML declaration is needed.
    r.restart();
    r.feed(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
    )
    .unwrap();
    assert!(matches!(r.next_event(), Ok(Some(StreamEvent::Header(_)))));
}

#[test]
fn buffer_is_compacted_between_stanzas() {
    let mut r = StreamReader::new(Limits::default(), NS_CLIENT);
    r.feed(C2S_HEADER.as_bytes()).unwrap();
    while r.next_event().unwrap().is_some() {}
    for _ in 0..1000 {
        r.feed(C2S_STANZAS[3].as_bytes()).unwrap();
        r.feed(b" ").unwrap();
        assert!(r.next_event().unwrap().is_some());
        assert_eq!(r.next_event(), Ok(None));
        assert_eq!(r.buffered(), 0);
    }
    r.feed(b"<message><body>partial").unwrap();
    assert_eq!(r.next_event(), Ok(None));
    assert_eq!(r.buffered(), "<message><body>partial".len());
}

#[test]
fn header_accessor_after_header() {
    let mut r = StreamReader::new(Limits::default(), NS_CLIENT);
    r.feed(C2S_HEADER.as_bytes()).unwrap();
    assert!(r.header().is_none());
    r.next_event().unwrap();
    assert_eq!(r.header().unwrap().to.as_deref(), Some("im.example.com"));
}

#[test]
fn byte_by_byte_large_stanza_is_linear() {
    // Quadratic re-scanning would make this take minutes; linear framing takes milliseconds.
    let mut stanza = String::from("<message><body>");
    while stanza.len() < 250_000 {
        stanza.push_str("lorem <b>ipsum</b> &amp; dolor ");
    }
    stanza.push_str("</body></message>");
    let mut r = StreamReader::new(Limits::default(), NS_CLIENT);
    r.feed(C2S_HEADER.as_bytes()).unwrap();
    assert!(matches!(r.next_event(), Ok(Some(StreamEvent::Header(_)))));
    let start = std::time::Instant::now();
    let mut got = None;
    for b in stanza.as_bytes() {
        r.feed(std::slice::from_ref(b)).unwrap();
        if let Some(ev) = r.next_event().unwrap() {
            got = Some(ev);
        }
    }
    assert!(matches!(got, Some(StreamEvent::Element(_))));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}
