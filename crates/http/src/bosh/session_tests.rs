//! Unit tests of the BOSH request window, held requests and response cache.

use super::*;
use minidom::Element;
use tern_c2s::Framing;

fn session() -> (Arc<BoshSession>, mpsc::Receiver<Batch>) {
    let params = Params {
        wait: Duration::from_secs(30),
        hold: 1,
        requests: 2,
        inactivity: Duration::from_secs(60),
        polling: Duration::from_secs(0),
        maxpause: 120,
        max_pending: 1 << 20,
    };
    let (tx, rx) = mpsc::channel(16);
    (
        BoshSession::new("sid".into(), params, 10, "localhost".into(), tx),
        rx,
    )
}

fn req(rid: u64, payload: &[&str]) -> Request {
    Request {
        rid,
        events: payload
            .iter()
            .map(|p| {
                let el = format!("<message xmlns='jabber:client'><body>{p}</body></message>");
                StreamEvent::Element(el.parse::<Element>().unwrap())
            })
            .collect(),
        bytes: 1,
        kind: Kind::Normal,
        creation: false,
    }
}

fn wait(reply: Reply) -> (u64, oneshot::Receiver<Vec<u8>>) {
    match reply {
        Reply::Wait(rid, rx) => (rid, rx),
        Reply::Now(b) => panic!("answered at once: {}", String::from_utf8_lossy(&b)),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

fn bodies(rx: &mut mpsc::Receiver<Batch>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok((evs, _)) = rx.try_recv() {
        for ev in evs {
            if let StreamEvent::Element(el) = ev {
                out.push(el.get_child("body", "jabber:client").unwrap().text());
            }
        }
    }
    out
}

fn output(s: &BoshSession, xml: &str) {
    let mut out = Outbox::new(Framing::Standalone);
    out.element(&xml.parse::<Element>().unwrap());
    s.push(&out).unwrap();
}

#[test]
fn requests_are_processed_in_rid_order() {
    let (s, mut link) = session();
    let (_, mut r11) = wait(s.request(req(11, &["b"])));
    assert!(bodies(&mut link).is_empty(), "11 waits for 10");
    let (_, mut r10) = wait(s.request(req(10, &["a"])));
    assert_eq!(bodies(&mut link), ["a", "b"]);
    // Two held with hold=1: the older one is answered at once, empty.
    assert_eq!(
        text(&r10.try_recv().unwrap()),
        "<body xmlns='http://jabber.org/protocol/httpbind'/>"
    );
    assert!(r11.try_recv().is_err(), "11 is held");
}

#[test]
fn output_goes_to_the_held_request_and_is_cached_for_a_repeat() {
    let (s, _link) = session();
    let (_, mut r10) = wait(s.request(req(10, &[])));
    output(
        &s,
        "<message xmlns='jabber:client'><body>hi</body></message>",
    );
    let first = r10.try_recv().unwrap();
    assert!(text(&first).contains("<body>hi</body>"));
    match s.request(req(10, &[])) {
        Reply::Now(again) => assert_eq!(again, first),
        Reply::Wait(..) => panic!("a repeated rid is answered from the cache"),
    }
}

#[test]
fn window_and_unknown_repeats_are_item_not_found() {
    let (s, _link) = session();
    match s.request(req(12, &[])) {
        Reply::Now(b) => assert!(text(&b).contains("item-not-found"), "{}", text(&b)),
        Reply::Wait(..) => panic!("rid 12 is outside the window [10, 12)"),
    }
    let (s, _link) = session();
    for rid in 10..14 {
        let (_, mut rx) = wait(s.request(req(rid, &[])));
        s.expire(rid);
        assert!(rx.try_recv().is_ok());
    }
    match s.request(req(10, &[])) {
        Reply::Now(b) => assert!(text(&b).contains("item-not-found")),
        Reply::Wait(..) => panic!("rid 10 left the cache of 2"),
    }
}

#[test]
fn an_expired_out_of_order_request_keeps_its_payload() {
    let (s, mut link) = session();
    let (_, mut r11) = wait(s.request(req(11, &["late"])));
    s.expire(11);
    assert!(
        r11.try_recv().is_ok(),
        "answered empty when its wait ran out"
    );
    let _ = s.request(req(10, &["early"]));
    assert_eq!(bodies(&mut link), ["early", "late"]);
}

#[test]
fn stream_errors_end_in_a_remote_stream_error_body() {
    let (s, _link) = session();
    let (_, mut r10) = wait(s.request(req(10, &[])));
    let mut out = Outbox::new(Framing::Standalone);
    out.stream_error(&tern_stream::StreamError::new(
        tern_stream::StreamErrorCondition::SystemShutdown,
    ));
    s.end(&out);
    let b = text(&r10.try_recv().unwrap());
    assert!(
        b.contains("type='terminate'") && b.contains("condition='remote-stream-error'"),
        "{b}"
    );
    assert!(b.contains("<system-shutdown"), "{b}");
    match s.request(req(11, &[])) {
        Reply::Now(again) => assert_eq!(text(&again), b),
        Reply::Wait(..) => panic!("an ended session answers at once"),
    }
}
