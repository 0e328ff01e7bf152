//! Shared fixtures (RFC 6120/6121 examples) and drivers for the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use tern_stream::{Limits, ParseError, StreamEvent, StreamReader, NS_CLIENT};

/// RFC 6120 §9.1.1: the client's initial stream header.
pub const C2S_HEADER: &str = "<?xml version='1.0'?>\n\
<stream:stream\n    from='juliet@im.example.com'\n    to='im.example.com'\n    version='1.0'\n    \
xml:lang='en'\n    xmlns='jabber:client'\n    xmlns:stream='http://etherx.jabber.org/streams'>";

/// A server-to-server header declaring the dialback prefix (XEP-0220 / RFC 6120 §9.2.1).
pub const S2S_HEADER: &str = "<?xml version='1.0'?><stream:stream from='example.net' \
to='im.example.com' version='1.0' xmlns='jabber:server' xmlns:db='jabber:server:dialback' \
xmlns:stream='http://etherx.jabber.org/streams'>";

/// Valid top-level elements for a jabber:client stream, mostly from RFC 6120 §9 and RFC 6121.
pub const C2S_STANZAS: &[&str] = &[
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    "<auth xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\" mechanism=\"SCRAM-SHA-1\">\
     biwsbj1qdWxpZXQscj1vTXNUQUF3QUFBQU1BQUFBTlAwVEFBQUFBQUJQVTBBQQ==</auth>",
    "<iq id='yhc13a95' type='set'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
     <resource>balcony</resource></bind></iq>",
    "<message from='juliet@im.example.com/balcony' id='ju2ba41c' to='romeo@example.net' \
     type='chat' xml:lang='en'>\n  <body>Art thou not Romeo, and a Montague?</body>\n</message>",
    "<presence xml:lang='en'><show>dnd</show><status>Wooing Juliet</status>\
     <status xml:lang='cs'>Dvo&#x0159;&#xED;m se Julii</status></presence>",
    "<iq from='juliet@example.com/balcony' id='bv1bs71f' type='get'>\
     <query xmlns='jabber:iq:roster'/></iq>",
    "<message to='romeo@example.net' type='chat'><body>hi</body>\
     <html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>\
     <p style='font-weight:bold'>hi <em>there</em></p></body></html></message>",
    "<message to='a@b'><body>a &lt; b &amp;&amp; c &gt; d &quot;q&quot; &apos;s&apos; &#65;&#x42;</body></message>",
    "<message to='a@b'><body><![CDATA[<not> & markup ]] >]]></body></message>",
    "<message to='a@b'><x:ext xmlns:x='urn:example:ext' x:flag='on' plain='1'>\
     <x:inner/><plain/></x:ext></message>",
    "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
     </stream:features>",
    "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
    "<iq type='result' id='p1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
     <items node='urn:xmpp:microblog:0'><item id='1'><entry xmlns='http://www.w3.org/2005/Atom'>\
     <title type='text'>hello\r\nworld</title></entry></item></items></pubsub></iq>",
    "<message to='a@b'><nons xmlns=''><child a='x&#10;y\tz'/></nons></message>",
    "<r xmlns='urn:xmpp:sm:3'/>",
    "<message to='\u{00e9}l\u{00e8}ve@example.com'><body>\u{1F600} \u{4F60}\u{597D}</body></message>",
];

/// Valid top-level elements for the jabber:server stream opened by [`S2S_HEADER`].
pub const S2S_STANZAS: &[&str] = &[
    "<db:result from='example.net' to='im.example.com'>\
     b4835385f37fe2895af6c196b59097b16862406db80559900d596a7c3e1b26ee</db:result>",
    "<message from='romeo@example.net/orchard' to='juliet@im.example.com' type='chat'>\
     <body>Neither, fair saint, if either thee dislike.</body></message>",
];

/// Every valid fixture as a complete stream: header, stanzas separated by keepalives, close.
pub fn valid_streams() -> Vec<(String, &'static str)> {
    let mut streams = Vec::new();
    let mut all = String::from(C2S_HEADER);
    for s in C2S_STANZAS {
        all.push_str(s);
        all.push_str(" \n\t");
        streams.push((format!("{C2S_HEADER}{s}</stream:stream>"), NS_CLIENT));
    }
    all.push_str("</stream:stream>");
    streams.push((all, NS_CLIENT));
    let mut s2s = String::from(S2S_HEADER);
    for s in S2S_STANZAS {
        s2s.push_str(s);
    }
    s2s.push_str("</stream:stream>");
    streams.push((s2s, tern_stream::NS_SERVER));
    streams
}

/// Feeds `chunks` in order, draining events after each; stops at the first error.
pub fn run_with(
    limits: Limits,
    ns: &'static str,
    chunks: &[&[u8]],
) -> Vec<Result<StreamEvent, ParseError>> {
    let mut reader = StreamReader::new(limits, ns);
    let mut out = Vec::new();
    for chunk in chunks {
        if let Err(e) = reader.feed(chunk) {
            out.push(Err(e));
            return out;
        }
        loop {
            match reader.next_event() {
                Ok(Some(ev)) => out.push(Ok(ev)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

/// The whole input in one feed, default limits.
pub fn whole(ns: &'static str, input: &[u8]) -> Vec<Result<StreamEvent, ParseError>> {
    run_with(Limits::default(), ns, &[input])
}

/// One byte per feed, default limits.
pub fn bytewise(ns: &'static str, input: &[u8]) -> Vec<Result<StreamEvent, ParseError>> {
    let chunks: Vec<&[u8]> = input.chunks(1).collect();
    run_with(Limits::default(), ns, &chunks)
}

/// Splits at the given (sorted or not, possibly repeated) offsets.
pub fn split_at(
    ns: &'static str,
    input: &[u8],
    points: &[usize],
) -> Vec<Result<StreamEvent, ParseError>> {
    let mut cuts: Vec<usize> = points.iter().map(|&p| p.min(input.len())).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut prev = 0;
    for c in cuts {
        chunks.push(&input[prev..c]);
        prev = c;
    }
    chunks.push(&input[prev..]);
    run_with(Limits::default(), ns, &chunks)
}

/// Parses `header + stanza` on a client stream and returns the single element.
pub fn parse_one(stanza: &str) -> Result<minidom::Element, ParseError> {
    let input = format!("{C2S_HEADER}{stanza}");
    let mut events = whole(NS_CLIENT, input.as_bytes()).into_iter();
    assert!(matches!(events.next(), Some(Ok(StreamEvent::Header(_)))));
    match events.next() {
        Some(Ok(StreamEvent::Element(el))) => Ok(el),
        Some(Err(e)) => Err(e),
        other => panic!("expected one element, got {other:?}"),
    }
}

/// The error a client stream with `stanza` after the header ends in.
pub fn stanza_error(stanza: &str) -> ParseError {
    match parse_one(stanza) {
        Err(e) => e,
        Ok(el) => panic!("accepted {stanza:?} as {el:?}"),
    }
}

/// The error (if any) a client stream starting with `prologue` produces.
pub fn header_result(prologue: &str) -> Result<tern_stream::StreamHeader, ParseError> {
    match whole(NS_CLIENT, prologue.as_bytes()).into_iter().next() {
        Some(Ok(StreamEvent::Header(h))) => Ok(h),
        Some(Err(e)) => Err(e),
        other => panic!("unexpected {other:?}"),
    }
}
