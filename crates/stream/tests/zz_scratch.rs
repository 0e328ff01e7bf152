mod common;
use common::*;
use tern_stream::{StreamEvent, NS_CLIENT};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
#[test]
fn rate() {
    let tokens: &[&str] = &["<a>", "</a>", "<b/>", "text", "&amp;", "&#0;", "<!--c-->", "]]>", "<g q:a='1'/>", "'", ">", "\r\n"];
    let mut runner = TestRunner::default();
    let strat = prop::collection::vec(prop::sample::select(tokens), 0..10);
    let (mut ok, mut total) = (0, 0);
    for _ in 0..2000 {
        let v = strat.new_tree(&mut runner).unwrap().current();
        let s = format!("{C2S_HEADER}<message>{}</message>", v.concat());
        total += 1;
        if matches!(whole(NS_CLIENT, s.as_bytes()).get(1), Some(Ok(StreamEvent::Element(_)))) { ok += 1; }
    }
    println!("ok {ok}/{total}");
}
