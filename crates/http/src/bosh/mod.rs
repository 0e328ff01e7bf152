//! XEP-0124 (BOSH) and XEP-0206 (XMPP over BOSH) at `/http-bind`.
//!
//! `body` parses and renders the `<body/>` wrapper, `session` is one session's request
//! window, held requests and response cache, `link` runs the c2s session machinery over it.
//! This file is the HTTP side: session creation (§7.1, XEP-0206 §3), lookup by `sid`, the
//! wait for a held request's answer, CORS, and the sweep of inactive sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use minidom::Element;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use tern_stream::{StreamEvent, StreamHeader, NS_CLIENT, NS_XML};

use crate::{cors, AppState, ConnInfo, BOSH_PATH};

mod body;
mod link;
mod session;

use body::{terminal, Terminal, NS_XBOSH};
use session::{BoshSession, Kind, Params, Reply, Request};

/// Batches queued for a c2s session that has not taken them yet; beyond it the client is
/// sending faster than its session is processing, which ends the BOSH session.
const LINK_QUEUE: usize = 64;

/// The table of live sessions by `sid`.
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Arc<BoshSession>>>,
}

impl Sessions {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Sessions {
            map: Mutex::new(HashMap::new()),
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<BoshSession>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, sid: &str) -> Option<Arc<BoshSession>> {
        self.map().get(sid).cloned()
    }
}

/// Drops inactive and ended sessions once a second; ends all at shutdown.
pub(crate) async fn reaper(sessions: Arc<Sessions>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {
                // c2s ends each stream with <system-shutdown/>; this only catches sessions
                // without a running c2s side. Give c2s a moment to go first.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let all: Vec<_> = sessions.map().drain().map(|(_, s)| s).collect();
                for s in all {
                    s.shutdown();
                }
                return;
            }
        }
        let now = Instant::now();
        let list: Vec<_> = sessions.map().values().cloned().collect();
        let dead: Vec<String> = list
            .into_iter()
            .filter(|s| s.expired(now))
            .map(|s| s.sid.clone())
            .collect();
        if !dead.is_empty() {
            let mut map = sessions.map();
            for sid in dead {
                map.remove(&sid);
            }
        }
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route(
        BOSH_PATH,
        post(handle)
            .get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "XMPP over BOSH (XEP-0206): POST <body/> elements here.\n",
                )
            })
            .options(|State(s): State<AppState>, h: HeaderMap| async move {
                cors::preflight(&s.config, &h)
            }),
    )
}

fn xml_response(state: &AppState, headers: &HeaderMap, body: Vec<u8>) -> Response {
    let mut resp = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/xml; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response();
    cors::decorate(&state.config, headers, &mut resp);
    resp
}

async fn handle(
    State(state): State<AppState>,
    Extension(info): Extension<ConnInfo>,
    headers: HeaderMap,
    raw: axum::body::Body,
) -> Response {
    if !cors::allowed(&state.config, &headers) {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let reply = match axum::body::to_bytes(raw, state.config.bosh_max_body_bytes).await {
        Ok(bytes) => dispatch(&state, &info, &bytes).await,
        Err(_) => terminal(Terminal::PolicyViolation),
    };
    xml_response(&state, &headers, reply)
}

/// One request: create a session or hand the request to its session, then wait for the
/// answer.
async fn dispatch(state: &AppState, info: &ConnInfo, bytes: &Bytes) -> Vec<u8> {
    let body = match body::parse(bytes, &state.c2s.config.limits) {
        Ok(b) => b,
        Err(e) => {
            debug!(peer = %info.peer, "bad BOSH request: {e}");
            return terminal(Terminal::BadRequest);
        }
    };
    let Some(rid) = body.attr("rid").and_then(|r| r.parse::<u64>().ok()) else {
        return terminal(Terminal::BadRequest);
    };
    let (session, reply) = match body.attr("sid") {
        None => match create(state, info, &body, rid, bytes.len()) {
            Ok(x) => x,
            Err(t) => return terminal(t),
        },
        Some(sid) => {
            let Some(session) = state.bosh.get(sid) else {
                return terminal(Terminal::ItemNotFound);
            };
            let req = match request(body, rid, bytes.len(), &session.host()) {
                Ok(r) => r,
                Err(t) => return terminal(t),
            };
            let reply = session.request(req);
            (session, reply)
        }
    };
    match reply {
        Reply::Now(b) => b,
        Reply::Wait(rid, mut rx) => {
            tokio::select! {
                r = &mut rx => r.unwrap_or_else(|_| body::render(&[], b"")),
                _ = tokio::time::sleep(session.params.wait) => {
                    session.expire(rid);
                    rx.await.unwrap_or_else(|_| body::render(&[], b""))
                }
            }
        }
    }
}

/// A request on an existing session: its payload, restart (XEP-0206 §5), terminate (§12)
/// or pause (§10).
fn request(body: Element, rid: u64, bytes: usize, host: &str) -> Result<Request, Terminal> {
    let mut events: Vec<StreamEvent> = body
        .children()
        .map(|c| StreamEvent::Element(c.clone()))
        .collect();
    let restart = matches!(body.attr_ns(NS_XBOSH, "restart"), Some("true" | "1"));
    let kind = match (body.attr("type"), body.attr("pause")) {
        (Some("terminate"), _) => Kind::Terminate,
        (Some(_), _) => return Err(Terminal::BadRequest),
        (None, Some(p)) => Kind::Pause(p.parse().map_err(|_| Terminal::BadRequest)?),
        (None, None) => Kind::Normal,
    };
    if restart {
        // XEP-0206 §5: a restart request carries nothing else.
        if !events.is_empty() || kind != Kind::Normal {
            return Err(Terminal::BadRequest);
        }
        let mut header = header_of(&body, Some(body.attr("to").unwrap_or(host)));
        // The version was negotiated at session creation; restarts do not repeat it.
        header.version = Some("1.0".into());
        events.push(StreamEvent::Header(header));
    }
    if kind == Kind::Terminate {
        events.push(StreamEvent::Close);
    }
    Ok(Request {
        rid,
        events,
        bytes,
        kind,
        creation: false,
    })
}

/// The stream header the client would have sent on TCP.
fn header_of(body: &Element, to: Option<&str>) -> StreamHeader {
    StreamHeader {
        to: to.map(str::to_owned),
        from: body.attr("from").map(str::to_owned),
        id: None,
        version: body.attr_ns(NS_XBOSH, "version").map(str::to_owned),
        lang: body.attr_ns(NS_XML, "lang").map(str::to_owned),
        default_ns: Some(NS_CLIENT.to_owned()),
    }
}

/// Session creation (XEP-0124 §7.1, XEP-0206 §3).
fn create(
    state: &AppState,
    info: &ConnInfo,
    body: &Element,
    rid: u64,
    bytes: usize,
) -> Result<(Arc<BoshSession>, Reply), Terminal> {
    let cfg = &state.config;
    let Some(to) = body.attr("to").filter(|t| !t.is_empty()) else {
        return Err(Terminal::ImproperAddressing);
    };
    let to = to.to_ascii_lowercase();
    if !state.c2s.router.is_local(&to) {
        return Err(Terminal::HostUnknown);
    }
    let num = |name: &str| body.attr(name).map(|v| v.parse::<u64>());
    let wait = match num("wait") {
        Some(Ok(w)) => w.min(cfg.bosh_max_wait_secs),
        Some(Err(_)) => return Err(Terminal::BadRequest),
        None => cfg.bosh_max_wait_secs,
    };
    let hold = match num("hold") {
        Some(Ok(h)) => h.min(cfg.bosh_max_hold as u64),
        Some(Err(_)) => return Err(Terminal::BadRequest),
        None => 1u64.min(cfg.bosh_max_hold as u64),
    };
    let params = Params {
        wait: Duration::from_secs(wait),
        hold: hold as usize,
        requests: hold + 1,
        inactivity: Duration::from_secs(cfg.bosh_inactivity_secs),
        polling: Duration::from_secs(cfg.bosh_polling_secs),
        maxpause: cfg.bosh_max_pause_secs,
        max_pending: cfg.bosh_max_pending_bytes,
    };
    let sid = random_sid();
    let (tx, rx) = mpsc::channel(LINK_QUEUE);
    let session = BoshSession::new(sid.clone(), params, rid, to.clone(), tx);
    state.bosh.map().insert(sid.clone(), session.clone());
    info!(peer = %info.peer, %sid, wait, hold, "BOSH session created");
    let link = link::BoshLink::new(session.clone(), rx, info.secure);
    tokio::spawn(
        state
            .c2s
            .clone()
            .run_link(Box::new(link), info.peer, "bosh"),
    );
    let first = Request {
        rid,
        events: vec![StreamEvent::Header(header_of(body, Some(&to)))],
        bytes,
        kind: Kind::Normal,
        creation: true,
    };
    let reply = session.request(first);
    Ok((session, reply))
}

fn random_sid() -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}
