//! XEP-0156: discovering the WebSocket and BOSH endpoints through `/.well-known/host-meta`
//! (RFC 6415 XRD) and `/.well-known/host-meta.json` (JRD), with CORS so that web clients on
//! other origins can read them (XEP-0156 §3.2).

use axum::extract::State;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use crate::{cors, AppState, ConnInfo, BOSH_PATH, WEBSOCKET_PATH};

/// XEP-0156 link relation of a BOSH endpoint.
const REL_BOSH: &str = "urn:xmpp:alt-connections:xbosh";
/// XEP-0156 link relation of a WebSocket endpoint (RFC 7395 §4).
const REL_WEBSOCKET: &str = "urn:xmpp:alt-connections:websocket";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/.well-known/host-meta",
            get(xrd).options(|State(s): State<AppState>, h: HeaderMap| async move {
                cors::preflight(&s.config, &h)
            }),
        )
        .route(
            "/.well-known/host-meta.json",
            get(jrd).options(|State(s): State<AppState>, h: HeaderMap| async move {
                cors::preflight(&s.config, &h)
            }),
        )
}

/// The endpoint URLs (BOSH, WebSocket) as seen by this request.
fn endpoints(state: &AppState, info: &ConnInfo, headers: &HeaderMap) -> Option<(String, String)> {
    let base = match &state.config.public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let host = headers.get(header::HOST)?.to_str().ok()?;
            // A Host header is a host name or address with an optional port, nothing more.
            let ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
            if !ok {
                return None;
            }
            let scheme = if info.tls { "https" } else { "http" };
            format!("{scheme}://{host}")
        }
    };
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        format!("ws://{}", base.trim_start_matches("http://"))
    };
    Some((
        format!("{base}{BOSH_PATH}"),
        format!("{ws}{WEBSOCKET_PATH}"),
    ))
}

fn respond(state: &AppState, headers: &HeaderMap, ctype: &'static str, body: String) -> Response {
    let mut resp = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(ctype))],
        body,
    )
        .into_response();
    cors::decorate(&state.config, headers, &mut resp);
    resp
}

async fn xrd(
    State(state): State<AppState>,
    Extension(info): Extension<ConnInfo>,
    headers: HeaderMap,
) -> Response {
    let Some((bosh, ws)) = endpoints(&state, &info, &headers) else {
        return (StatusCode::BAD_REQUEST, "missing or invalid Host header").into_response();
    };
    let body = format!(
        "<?xml version='1.0' encoding='utf-8'?>\n\
         <XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n  \
         <Link rel='{REL_BOSH}' href='{}'/>\n  \
         <Link rel='{REL_WEBSOCKET}' href='{}'/>\n</XRD>\n",
        xml_escape(&bosh),
        xml_escape(&ws)
    );
    respond(&state, &headers, "application/xrd+xml; charset=utf-8", body)
}

async fn jrd(
    State(state): State<AppState>,
    Extension(info): Extension<ConnInfo>,
    headers: HeaderMap,
) -> Response {
    let Some((bosh, ws)) = endpoints(&state, &info, &headers) else {
        return (StatusCode::BAD_REQUEST, "missing or invalid Host header").into_response();
    };
    let body = serde_json::json!({
        "links": [
            { "rel": REL_BOSH, "href": bosh },
            { "rel": REL_WEBSOCKET, "href": ws },
        ]
    });
    respond(&state, &headers, "application/json", body.to_string())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('\'', "&apos;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
