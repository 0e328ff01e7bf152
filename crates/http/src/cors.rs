//! Origin checks and CORS headers (Fetch standard) for the browser-facing endpoints: BOSH and
//! host-meta answer cross-origin requests from allowed origins; WebSocket upgrades from other
//! origins are refused (browsers send `Origin` but do not apply CORS to WebSockets).
//!
//! No endpoint uses cookies or other ambient credentials (XMPP authenticates in-band with
//! SASL), so allowing an origin exposes nothing a script could not get by connecting itself.

use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::config::HttpConfig;

/// The request's `Origin`, if it sent one.
pub(crate) fn origin(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}

/// Whether the request may proceed: no `Origin` (not a browser) or an allowed one.
pub(crate) fn allowed(config: &HttpConfig, headers: &HeaderMap) -> bool {
    origin(headers).is_none_or(|o| config.origin_allowed(o))
}

/// Adds `Access-Control-Allow-Origin` (and friends) for an allowed origin.
pub(crate) fn decorate(config: &HttpConfig, headers: &HeaderMap, resp: &mut Response) {
    let Some(o) = origin(headers).filter(|o| config.origin_allowed(o)) else {
        return;
    };
    let h = resp.headers_mut();
    let value = if config.allowed_origins.iter().any(|a| a == "*") {
        HeaderValue::from_static("*")
    } else {
        match HeaderValue::from_str(o) {
            Ok(v) => v,
            Err(_) => return,
        }
    };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// Answers a CORS preflight (`OPTIONS`).
pub(crate) fn preflight(config: &HttpConfig, headers: &HeaderMap) -> Response {
    if !allowed(config, headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    decorate(config, headers, &mut resp);
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    resp
}
