//! Rejections: header errors, RFC 6120 §11 restricted XML, well-formedness, limits.

mod common;

use common::*;
use tern_stream::{
    Limits, ParseError, StreamErrorCondition as C, StreamEvent, StreamReader, NS_CLIENT,
};

fn cond(e: &ParseError) -> C {
    e.condition()
}

const SHDR: &str = "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'";

#[test]
fn header_namespace_errors() {
    let cases: &[(&str, C)] = &[
        // Wrong stream namespace.
        ("<stream:stream xmlns='jabber:client' xmlns:stream='http://wrong.example/streams'>", C::InvalidNamespace),
        // Wrong default namespace (a server stream on a client port).
        ("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>", C::InvalidNamespace),
        // Missing default namespace.
        ("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>", C::InvalidNamespace),
        // Undeclared stream prefix.
        ("<stream:stream xmlns='jabber:client'>", C::BadNamespacePrefix),
        // Undeclared attribute prefix.
        ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' foo:bar='1'>", C::BadNamespacePrefix),
        // Right namespace, wrong name.
        ("<stream:flow xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", C::NotWellFormed),
        // Stream element in the default namespace.
        ("<stream xmlns='http://etherx.jabber.org/streams'>", C::InvalidNamespace),
        // Declaration problems.
        ("<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", C::UnsupportedEncoding),
        ("<?xml version='1.1'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", C::NotWellFormed),
        ("<?xml encoding='UTF-8'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", C::NotWellFormed),
        ("<?xml version='1.0' standalone='maybe'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", C::NotWellFormed),
        (" <?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", C::RestrictedXml),
        ("<?xml-stylesheet href='x'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", C::RestrictedXml),
        // Junk before the header.
        ("hello<stream:stream>", C::NotWellFormed),
        ("</stream:stream>", C::NotWellFormed),
        ("\u{FEFF}\u{FEFF}<stream:stream>", C::NotWellFormed),
        ("<stream:stream xmlns='jabber:client' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", C::NotWellFormed),
    ];
    for (prologue, expected) in cases {
        match header_result(prologue) {
            Err(e) => assert_eq!(cond(&e), *expected, "{prologue}: {e}"),
            Ok(h) => panic!("accepted {prologue}: {h:?}"),
        }
    }
}

#[test]
fn restricted_xml() {
    for stanza in [
        "<message><!-- a comment --></message>",
        "<message><?php echo 1; ?></message>",
        "<message><body>&nbsp;</body></message>",
        "<message><body>&custom;</body></message>",
        "<message><body a='&custom;'/></message>",
        "<!DOCTYPE message>",
    ] {
        let e = stanza_error(stanza);
        assert_eq!(cond(&e), C::RestrictedXml, "{stanza}: {e}");
    }
    // Comments and DTDs before the header too.
    assert_eq!(
        cond(&header_result("<!-- hi --><stream:stream>").unwrap_err()),
        C::RestrictedXml
    );
}

#[test]
fn billion_laughs_rejected_at_the_doctype() {
    let mut bomb =
        String::from("<?xml version='1.0'?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n");
    bomb.push_str(" <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n");
    for i in 2..10 {
        let prev = format!("&lol{};", i - 1).repeat(10);
        bomb.push_str(&format!(" <!ENTITY lol{i} \"{prev}\">\n"));
    }
    bomb.push_str("]>\n<stream:stream>&lol9;");
    let mut r = StreamReader::new(Limits::default(), NS_CLIENT);
    let e = r.feed(bomb.as_bytes()).unwrap_err();
    assert_eq!(cond(&e), C::RestrictedXml);
    assert!(r.buffered() < 64, "buffered {}", r.buffered());
    // The same inside the stream, where a DOCTYPE can only be an attack.
    let e = stanza_error("<!DOCTYPE lolz [<!ENTITY lol 'lol'>]><message>&lol;</message>");
    assert_eq!(cond(&e), C::RestrictedXml);
}

#[test]
fn invalid_characters() {
    for stanza in [
        "<message><body>&#0;</body></message>",
        "<message><body>&#1;</body></message>",
        "<message><body>&#xFFFE;</body></message>",
        "<message><body>&#xD800;</body></message>",
        "<message><body>&#x110000;</body></message>",
        "<message><body>\u{1}</body></message>",
        "<message><body>\u{0}</body></message>",
        "<message><body>\u{FFFF}</body></message>",
        "<message to='\u{7}'/>",
        "<message to='&#8;'/>",
    ] {
        let e = stanza_error(stanza);
        assert_eq!(cond(&e), C::NotWellFormed, "{stanza:?}: {e}");
    }
}

#[test]
fn invalid_utf8() {
    for bad in [
        &b"\xff"[..],
        b"\xc3\x28",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xc0\xaf",
    ] {
        let mut input = format!("{C2S_HEADER}<message><body>").into_bytes();
        input.extend_from_slice(bad);
        input.extend_from_slice(b"</body></message>");
        let events = whole(NS_CLIENT, &input);
        let e = events.last().unwrap().as_ref().unwrap_err();
        assert_eq!(cond(e), C::NotWellFormed);
    }
    // In the header too.
    let e = header_result("<stream:stream xmlns='jabber:client' to='\u{FFFF}' xmlns:stream='http://etherx.jabber.org/streams'>").unwrap_err();
    assert_eq!(cond(&e), C::NotWellFormed);
}

#[test]
fn not_well_formed() {
    for stanza in [
        "<message></presence>",
        "<message><body></message></body>",
        "<message><a><b></a></b></message>",
        "<1message/>",
        "<message to='a' to='b'/>",
        "<message a:x='1' b:x='2' xmlns:a='urn:x' xmlns:b='urn:x'/>",
        "<message to=unquoted/>",
        "<message to='a'type='b'/>",
        "<message to='a<b'/>",
        "<message><body>a & b</body></message>",
        "<message><body>a &amp b</body></message>",
        "<message><body>]]></body></message>",
        "<message><bo dy/></message>",
        "<message><:body/></message>",
        "<message><a:b:c xmlns:a='urn:a'/></message>",
        "<message xmlns:p=''/>",
        "<message xmlns:xml='urn:not-xml'/>",
        "<message xmlns:xmlns='urn:x'/>",
        "<xmlns:message/>",
        "< message/>",
        "<message/ >",
        "<message><xml:x/></message>",
    ] {
        let input = format!("{C2S_HEADER}{stanza}</stream:stream>");
        let events = whole(NS_CLIENT, input.as_bytes());
        let last = events.last().unwrap();
        match last {
            Err(e) => assert_eq!(cond(e), C::NotWellFormed, "{stanza}: {e}"),
            Ok(ev) => panic!("{stanza}: ended with {ev:?}"),
        }
    }
}

#[test]
fn undeclared_prefixes() {
    for stanza in [
        "<foo:message/>",
        "<message><x:y/></message>",
        "<message x:a='1'/>",
        "<message><x:y xmlns:x='urn:x'/><x:z/></message>",
    ] {
        assert_eq!(
            cond(&stanza_error(stanza)),
            C::BadNamespacePrefix,
            "{stanza}"
        );
    }
}

#[test]
fn text_at_top_level() {
    let input = format!("{C2S_HEADER}  <presence/>hello<presence/>");
    let events = whole(NS_CLIENT, input.as_bytes());
    assert!(matches!(events[1], Ok(StreamEvent::Element(_))));
    assert_eq!(cond(events[2].as_ref().unwrap_err()), C::NotWellFormed);
    for junk in ["&amp;", "<![CDATA[ ]]>", "</stream:flow>", "</stream>"] {
        let input = format!("{C2S_HEADER}{junk}");
        let events = whole(NS_CLIENT, input.as_bytes());
        assert_eq!(
            cond(events.last().unwrap().as_ref().unwrap_err()),
            C::NotWellFormed,
            "{junk}"
        );
    }
}

#[test]
fn errors_are_sticky() {
    let mut r = StreamReader::new(Limits::default(), NS_CLIENT);
    r.feed(format!("{C2S_HEADER}<presence/><!--").as_bytes())
        .unwrap();
    assert!(matches!(r.next_event(), Ok(Some(StreamEvent::Header(_)))));
    assert!(matches!(r.next_event(), Ok(Some(StreamEvent::Element(_)))));
    let e = r.next_event().unwrap_err();
    assert_eq!(cond(&e), C::RestrictedXml);
    assert_eq!(r.next_event(), Err(e.clone()));
    assert_eq!(r.feed(b"<presence/>"), Err(e));
}

fn small(max_stanza_bytes: usize, max_depth: usize, max_attributes: usize) -> Limits {
    Limits {
        max_stanza_bytes,
        max_depth,
        max_attributes,
        ..Limits::default()
    }
}

#[test]
fn depth_limit() {
    let nested = |n: usize| format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
    let ok = format!("{C2S_HEADER}{}", nested(4));
    let events = run_with(small(1 << 20, 4, 64), NS_CLIENT, &[ok.as_bytes()]);
    assert!(
        matches!(events[1], Ok(StreamEvent::Element(_))),
        "{events:?}"
    );
    let bad = format!("{C2S_HEADER}{}", nested(5));
    let events = run_with(small(1 << 20, 4, 64), NS_CLIENT, &[bad.as_bytes()]);
    assert_eq!(
        cond(events.last().unwrap().as_ref().unwrap_err()),
        C::PolicyViolation
    );
    // An empty element at the limit counts too, and deep nesting is caught before it closes.
    let bad = format!("{C2S_HEADER}<a><a><a><a><b/>");
    let events = run_with(small(1 << 20, 4, 64), NS_CLIENT, &[bad.as_bytes()]);
    assert_eq!(
        cond(events.last().unwrap().as_ref().unwrap_err()),
        C::PolicyViolation
    );
    // The default limit (32) against a deep attack.
    let attack = format!("{C2S_HEADER}{}", "<a>".repeat(100_000));
    let events = whole(NS_CLIENT, attack.as_bytes());
    assert_eq!(
        cond(events.last().unwrap().as_ref().unwrap_err()),
        C::PolicyViolation
    );
}

#[test]
fn attribute_limit() {
    let attrs = |n: usize| (0..n).map(|i| format!(" a{i}='v'")).collect::<String>();
    let ok = format!("<stream:stream {SHDR}><message{}/>", attrs(3));
    assert!(matches!(
        run_with(small(1 << 20, 8, 3), NS_CLIENT, &[ok.as_bytes()])[1],
        Ok(StreamEvent::Element(_))
    ));
    let bad = format!("<stream:stream {SHDR}><message{}/>", attrs(4));
    let events = run_with(small(1 << 20, 8, 3), NS_CLIENT, &[bad.as_bytes()]);
    assert_eq!(
        cond(events.last().unwrap().as_ref().unwrap_err()),
        C::PolicyViolation
    );
    // Namespace declarations count; so does the header (C2S_HEADER has six attributes).
    let bad =
        format!("<stream:stream {SHDR}><message xmlns:a='1' xmlns:b='2' xmlns:c='3' xmlns:d='4'/>");
    let events = run_with(small(1 << 20, 8, 3), NS_CLIENT, &[bad.as_bytes()]);
    assert_eq!(
        cond(events.last().unwrap().as_ref().unwrap_err()),
        C::PolicyViolation
    );
    let events = run_with(small(1 << 20, 8, 3), NS_CLIENT, &[C2S_HEADER.as_bytes()]);
    assert_eq!(cond(events[0].as_ref().unwrap_err()), C::PolicyViolation);
}

#[test]
fn stanza_size_limit_exact() {
    let stanza = "<message><body>0123456789</body></message>";
    let input = format!("{C2S_HEADER}{stanza}");
    let events = run_with(small(stanza.len(), 8, 8), NS_CLIENT, &[input.as_bytes()]);
    assert!(
        matches!(events[1], Ok(StreamEvent::Element(_))),
        "{events:?}"
    );
    let events = run_with(
        small(stanza.len() - 1, 8, 8),
        NS_CLIENT,
        &[input.as_bytes()],
    );
    assert_eq!(cond(events[1].as_ref().unwrap_err()), C::PolicyViolation);
    // Many small stanzas in one feed are fine even if together they exceed the limit.
    let many = format!("{C2S_HEADER}{}", stanza.repeat(100));
    let events = run_with(small(stanza.len(), 8, 8), NS_CLIENT, &[many.as_bytes()]);
    assert_eq!(events.len(), 101);
    assert!(events.iter().all(|e| e.is_ok()));
}

#[test]
fn ten_megabyte_stanza_rejected_early() {
    let mut r = StreamReader::new(Limits::default(), NS_CLIENT);
    r.feed(C2S_HEADER.as_bytes()).unwrap();
    assert!(matches!(r.next_event(), Ok(Some(StreamEvent::Header(_)))));
    let mut body = b"<message><body>".to_vec();
    body.resize(10 * 1024 * 1024, b'a');
    let mut fed = 0;
    let mut err = None;
    for chunk in body.chunks(16 * 1024) {
        match r.feed(chunk) {
            Ok(()) => {
                fed += chunk.len();
                assert_eq!(r.next_event(), Ok(None));
                assert!(r.buffered() <= Limits::default().max_stanza_bytes);
            }
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert_eq!(cond(&err.expect("must be rejected")), C::PolicyViolation);
    assert!(fed <= 256 * 1024, "fed {fed} bytes before the error");
    assert!(r.buffered() <= Limits::default().max_stanza_bytes);
}

#[test]
fn huge_single_feed_is_not_copied_whole() {
    let mut input = format!("{C2S_HEADER}<message><body>").into_bytes();
    input.resize(10 * 1024 * 1024, b'a');
    let mut r = StreamReader::new(Limits::default(), NS_CLIENT);
    // The header is queued, so the error waits behind it.
    r.feed(&input).unwrap();
    assert!(r.buffered() <= Limits::default().max_stanza_bytes + 16 * 1024);
    assert!(matches!(r.next_event(), Ok(Some(StreamEvent::Header(_)))));
    assert_eq!(cond(&r.next_event().unwrap_err()), C::PolicyViolation);
}

#[test]
fn header_size_limit() {
    let long = format!(
        "<stream:stream {SHDR} to='{}'>",
        "x".repeat(Limits::default().max_header_bytes)
    );
    let e = header_result(&long).unwrap_err();
    assert_eq!(cond(&e), C::PolicyViolation);
    // Endless whitespace before the header is bounded by the same limit.
    let mut r = StreamReader::new(Limits::default(), NS_CLIENT);
    let mut result = Ok(());
    for _ in 0..100 {
        result = r.feed(&[b' '; 1024]);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(cond(&result.unwrap_err()), C::PolicyViolation);
}

#[test]
fn mismatched_end_tag_is_reported_without_waiting_for_more_input() {
    // The element never returns to depth zero, so a depth-only framer would wait forever.
    for split in [false, true] {
        let mut r = StreamReader::new(Limits::default(), NS_CLIENT);
        let input = format!("<stream:stream {SHDR}><message><body>hi</message>");
        let mut result = Ok(None);
        if split {
            for b in input.as_bytes() {
                if let Err(e) = r.feed(std::slice::from_ref(b)) {
                    result = Err(e);
                    break;
                }
            }
        } else {
            r.feed(input.as_bytes()).unwrap();
        }
        assert!(matches!(r.next_event(), Ok(Some(StreamEvent::Header(_)))));
        if result.is_ok() {
            result = r.next_event();
        }
        let e = result.expect_err("a mismatched end tag is an error at once");
        assert_eq!(cond(&e), C::NotWellFormed, "{e}");
    }
}
