//! Server-internal requests (`Router::request`) and announcements (`Router::announce`)
//! through the real router: answers come back in-process, unanswered requests time out, a
//! client's forged response does not complete a pending request, and every listener of an
//! announcement runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use minidom::Element;
use tokio::sync::mpsc;

use tern_router::{
    Ctx, Event, Flow, FullJid, Hooks, Jid, Kind, LocalRegistry, Module, Origin, RequestError,
    Router, SessionHandle, Stanza,
};
use tern_storage::Storage;

const ECHO: &str = "urn:example:echo";
const SWALLOW: &str = "urn:example:swallow";

/// Answers `echo` IQs to the host with their payload; swallows `swallow` IQs; counts
/// "test.happened" announcements and answers them `Handled` (which must not stop others).
struct Echo {
    heard: AtomicUsize,
    forge_to: Option<SessionHandle>,
}

#[async_trait]
impl Module for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn register(&self, hooks: &mut Hooks) {
        hooks.on(Event::Iq(tern_router::Target::Host, ECHO.into()));
        hooks.on(Event::Iq(tern_router::Target::Host, SWALLOW.into()));
        hooks.on(Event::Named("test.happened"));
    }

    async fn on_stanza(&self, event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        match event {
            Event::Iq(_, ns) if ns == ECHO => {
                ctx.router.reply_result(st, st.iq_payload().cloned()).await;
            }
            Event::Iq(_, _) => {
                // A client answering in the request's place: delivered to it, never taken as
                // the response.
                if let Some(s) = &self.forge_to {
                    let forged = Stanza::new(
                        Kind::Iq,
                        Jid::from(s.jid().clone()),
                        Some(st.from.clone()),
                        st.iq_result(None),
                    );
                    ctx.router.route(Origin::Client(s.clone()), forged).await;
                }
            }
            Event::Named(_) => {
                self.heard.fetch_add(1, Ordering::SeqCst);
            }
            _ => return Flow::Continue,
        }
        Flow::Handled
    }
}

fn router(modules: Vec<Arc<Echo>>) -> Arc<Router> {
    let mut b =
        Router::builder(Storage::memory(), Arc::new(LocalRegistry::default())).host("example.com");
    for m in modules {
        b = b.module(m);
    }
    b.build()
}

fn iq(ns: &str) -> Stanza {
    let el: Element =
        format!("<iq xmlns='jabber:client' type='get' id='mine'><q xmlns='{ns}'><v>1</v></q></iq>")
            .parse()
            .unwrap();
    let host = Jid::new("example.com").unwrap();
    Stanza::new(Kind::Iq, host.clone(), Some(host), el)
}

#[tokio::test]
async fn request_gets_the_answer_in_process() {
    let r = router(vec![Arc::new(Echo {
        heard: AtomicUsize::new(0),
        forge_to: None,
    })]);
    let resp = r.request(iq(ECHO), Duration::from_secs(5)).await.unwrap();
    assert_eq!(resp.type_(), "result");
    assert_ne!(resp.id(), Some("mine"), "a fresh id is used");
    let q = resp.el.get_child("q", ECHO).unwrap();
    assert_eq!(q.get_child("v", ECHO).unwrap().text(), "1");

    // Errors are responses too: nobody handles this namespace.
    let resp = r
        .request(iq("urn:example:nobody"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(resp.type_(), "error");

    let mut not_request = iq(ECHO);
    tern_router::xml::set_attr(&mut not_request.el, "type", Some("result"));
    assert!(matches!(
        r.request(not_request, Duration::from_secs(1)).await,
        Err(RequestError::NotARequest)
    ));
}

#[tokio::test]
async fn unanswered_and_forged_responses_time_out() {
    let (tx, mut rx) = mpsc::channel(4);
    let client = SessionHandle::new(FullJid::new("mallory@example.com/x").unwrap(), tx);
    let r = router(vec![Arc::new(Echo {
        heard: AtomicUsize::new(0),
        forge_to: Some(client.clone()),
    })]);
    let got = r.request(iq(SWALLOW), Duration::from_millis(200)).await;
    assert!(matches!(got, Err(RequestError::Timeout)), "{got:?}");
    // The forged response went nowhere near the request (it was routed to the host and
    // dropped there, as IQ responses to a server are).
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn announce_runs_every_listener() {
    let a = Arc::new(Echo {
        heard: AtomicUsize::new(0),
        forge_to: None,
    });
    let b = Arc::new(Echo {
        heard: AtomicUsize::new(0),
        forge_to: None,
    });
    let r = router(vec![a.clone(), b.clone()]);
    let mut st = iq(ECHO);
    r.announce("test.happened", &mut st).await;
    assert_eq!(a.heard.load(Ordering::SeqCst), 1);
    assert_eq!(b.heard.load(Ordering::SeqCst), 1);
    // A question stops at the first yes.
    r.ask("test.happened", &mut st).await;
    assert_eq!(
        a.heard.load(Ordering::SeqCst) + b.heard.load(Ordering::SeqCst),
        3
    );
}
