//! The framing must not depend on how input is split: byte by byte, at random points, or in
//! one read, the results (events and the error, if any) are identical.

mod common;

use common::*;
use proptest::prelude::*;
use tern_stream::{StreamEvent, NS_CLIENT};

/// Invalid streams: each must fail the same way however it is split.
fn invalid_streams() -> Vec<String> {
    let mut v = Vec::new();
    for stanza in [
        "<message><!-- c --></message>",
        "<message><body>&custom;</body></message>",
        "<message></presence>",
        "<message><body>\u{1}</body></message>",
        "<foo:bar/>",
        "<message to='a' to='b'/>",
        "text<presence/>",
        "<presence/>junk",
        "<?pi?>",
        "<!DOCTYPE x>",
        "<message><![CDATA[x]]]></message></message>",
        "<presence/></stream:flow>",
    ] {
        v.push(format!(
            "{C2S_HEADER}<presence/>{stanza}<presence/></stream:stream>"
        ));
    }
    v.push("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'><presence/>".into());
    v.push("<?xml version='1.0' encoding='latin1'?><stream:stream>".into());
    v.push("\u{FEFF}\u{FEFF}".into());
    v
}

#[test]
fn valid_fixtures_parse_completely() {
    for (stream, ns) in valid_streams() {
        let events = whole(ns, stream.as_bytes());
        assert!(
            matches!(events.first(), Some(Ok(StreamEvent::Header(_)))),
            "{stream}"
        );
        assert_eq!(
            events.last(),
            Some(&Ok(StreamEvent::Close)),
            "{stream}: {events:?}"
        );
        assert!(events.iter().all(Result::is_ok), "{stream}: {events:?}");
    }
}

#[test]
fn byte_by_byte_equals_whole_for_every_fixture() {
    for (stream, ns) in valid_streams() {
        assert_eq!(
            bytewise(ns, stream.as_bytes()),
            whole(ns, stream.as_bytes()),
            "{stream}"
        );
    }
    for stream in invalid_streams() {
        let w = whole(NS_CLIENT, stream.as_bytes());
        assert!(w.last().is_some_and(Result::is_err), "{stream}: {w:?}");
        assert_eq!(bytewise(NS_CLIENT, stream.as_bytes()), w, "{stream}");
    }
}

#[test]
fn every_single_split_point_of_the_combined_fixture() {
    let (stream, ns) = valid_streams()
        .into_iter()
        .find(|(s, _)| s.matches("<message").count() > 3)
        .unwrap();
    let expected = whole(ns, stream.as_bytes());
    for cut in 0..=stream.len() {
        assert_eq!(
            split_at(ns, stream.as_bytes(), &[cut]),
            expected,
            "cut at {cut}"
        );
    }
}

/// Bytes that steer the scanner into different states when inserted.
const INTERESTING: &[u8] = b"<>/!?&;'\"=[]- \t\r\nx:\x00\xff\xc3\xa9";

fn corpus() -> Vec<(Vec<u8>, &'static str)> {
    let mut all: Vec<(Vec<u8>, &'static str)> = valid_streams()
        .into_iter()
        .map(|(s, ns)| (s.into_bytes(), ns))
        .collect();
    all.extend(
        invalid_streams()
            .into_iter()
            .map(|s| (s.into_bytes(), NS_CLIENT)),
    );
    all
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_splits_of_fixtures(
        pick in any::<prop::sample::Index>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let corpus = corpus();
        let (input, ns) = &corpus[pick.index(corpus.len())];
        let points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        prop_assert_eq!(split_at(ns, input, &points), whole(ns, input));
    }

    #[test]
    fn random_splits_of_mutated_fixtures(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 0u8..3), 1..4),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 1..8),
    ) {
        let corpus = corpus();
        let (original, ns) = &corpus[pick.index(corpus.len())];
        let mut input = original.clone();
        for (at, byte, op) in edits {
            let at = at.index(input.len() + 1);
            let b = INTERESTING[byte.index(INTERESTING.len())];
            match op {
                0 => input.insert(at, b),
                1 if at < input.len() => input[at] = b,
                _ if at < input.len() => { input.remove(at); }
                _ => {}
            }
        }
        let points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        prop_assert_eq!(split_at(ns, &input, &points), whole(ns, &input));
    }
}
