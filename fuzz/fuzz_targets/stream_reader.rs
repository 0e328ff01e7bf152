//! Fuzzes `tern_stream::StreamReader`: it must never panic, the results must not depend on
//! how the input is split across feeds, and every element it accepts must survive a round trip
//! through the writer.
//!
//! Input layout: the first byte is a selector, the rest is stream input.
//! - bit 7: prepend a valid client stream header, so the fuzzer starts inside the stream;
//! - bit 6: use tight limits, to exercise the limit paths;
//! - bits 0..=5: where to split the input in two (as a fraction of its length).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_stream::{
    to_bytes, Limits, ParseError, StreamEvent, StreamReader, NS_CLIENT, STREAM_CLOSE,
};

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream to='example.com' version='1.0' \
xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

fn run(limits: &Limits, chunks: &[&[u8]]) -> Vec<Result<StreamEvent, ParseError>> {
    let mut reader = StreamReader::new(limits.clone(), NS_CLIENT);
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

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let mut input = Vec::with_capacity(HEADER.len() + body.len());
    if selector & 0x80 != 0 {
        input.extend_from_slice(HEADER);
    }
    input.extend_from_slice(body);
    let limits = if selector & 0x40 != 0 {
        Limits {
            max_stanza_bytes: 256,
            max_depth: 4,
            max_attributes: 4,
            max_header_bytes: 256,
        }
    } else {
        Limits::default()
    };
    let at = input.len() * usize::from(selector & 0x3f) / 0x3f;

    let whole = run(&limits, &[&input]);
    let split = run(&limits, &[&input[..at], &input[at..]]);
    assert_eq!(whole, split, "results depend on the split point {at}");

    // Whatever was accepted must be written back readably and equal.
    let roomy = Limits {
        max_stanza_bytes: usize::MAX / 2,
        max_attributes: usize::MAX,
        ..limits.clone()
    };
    for event in &whole {
        if let Ok(StreamEvent::Element(el)) = event {
            let mut again = HEADER.to_vec();
            again.extend_from_slice(&to_bytes(el, NS_CLIENT));
            again.extend_from_slice(STREAM_CLOSE.as_bytes());
            let events = run(&roomy, &[&again]);
            assert!(
                matches!(&events[..], [Ok(StreamEvent::Header(_)), Ok(StreamEvent::Element(back)), Ok(StreamEvent::Close)] if back == el),
                "round trip of {el:?} gave {events:?}"
            );
        }
    }
});
