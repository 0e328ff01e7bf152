//! The HTTP side of XEP-0363: PUT stores a file in a signed slot, GET serves it.
//!
//! Responses follow XEP-0363 §5 and §6: 201 on a stored upload; 403 for a bad or expired
//! signature; 400 for a size or content-type mismatch with the slot; 409 when the slot is
//! already used; 413 for too much data; 507 when a quota fills up meanwhile. Downloads carry
//! the stored content type, `nosniff`, a sandboxing CSP and long-lived caching (a slot never
//! changes). CORS headers let web clients upload and download.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::Router;
use tokio_util::io::ReaderStream;
use tracing::{debug, info, warn};

use super::files::{valid_slot, PutError};
use super::{now_secs, Files, SlotClaim};

/// Where the routes live; the service builds its URLs under the same prefix.
pub(crate) const PREFIX: &str = "/upload";

#[derive(Clone)]
struct UploadState {
    files: Arc<Files>,
    secret: Arc<Vec<u8>>,
}

/// The upload routes, to mount on the HTTP listener (`tern_http::Http::mount`).
pub fn routes(files: Arc<Files>, secret: Arc<Vec<u8>>) -> Router {
    Router::new()
        .route(
            &format!("{PREFIX}/{{slot}}/{{filename}}"),
            put(put_file).get(get_file).options(preflight),
        )
        .with_state(UploadState { files, secret })
}

fn cors(h: &mut HeaderMap) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, PUT, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("7200"),
    );
}

fn status(code: StatusCode, why: &str) -> Response {
    let mut r = (code, format!("{why}\n")).into_response();
    cors(r.headers_mut());
    r
}

async fn preflight() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    cors(r.headers_mut());
    r
}

async fn put_file(
    State(st): State<UploadState>,
    Path((slot, filename)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let field = |k: &str| q.get(k).cloned().unwrap_or_default();
    let claim = SlotClaim {
        owner: field("o"),
        slot: slot.clone(),
        filename,
        size: field("s").parse().unwrap_or(u64::MAX),
        content_type: field("t"),
        expires: field("e").parse().unwrap_or(0),
    };
    if !valid_slot(&slot) || !claim.verify(&st.secret, &field("sig")) {
        warn!(slot = %slot, "upload refused: bad signature");
        return status(StatusCode::FORBIDDEN, "invalid upload URL");
    }
    if claim.expires < now_secs() {
        return status(StatusCode::FORBIDDEN, "this upload URL has expired");
    }
    // §5: the request must match the slot it was granted for.
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|l| l != claim.size) {
        return status(
            StatusCode::BAD_REQUEST,
            "Content-Length differs from the requested size",
        );
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !claim.content_type.is_empty() && !ctype.eq_ignore_ascii_case(&claim.content_type) {
        return status(
            StatusCode::BAD_REQUEST,
            "Content-Type differs from the requested one",
        );
    }
    match st.files.put(&claim, body.into_data_stream()).await {
        Ok(()) => {
            info!(owner = %claim.owner, slot = %slot, bytes = claim.size, "file uploaded");
            status(StatusCode::CREATED, "created")
        }
        Err(PutError::Conflict) => status(StatusCode::CONFLICT, "this slot is already used"),
        Err(PutError::TooLarge) => {
            status(StatusCode::PAYLOAD_TOO_LARGE, "more data than announced")
        }
        Err(PutError::Incomplete) => status(StatusCode::BAD_REQUEST, "less data than announced"),
        Err(PutError::Quota(why)) => status(StatusCode::INSUFFICIENT_STORAGE, &why),
        Err(PutError::Io(e)) => {
            debug!(slot = %slot, "upload failed: {e}");
            status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the upload could not be stored",
            )
        }
    }
}

async fn get_file(
    State(st): State<UploadState>,
    Path((slot, filename)): Path<(String, String)>,
    method: Method,
) -> Response {
    let Some((record, path)) = st.files.get(&slot, &filename).await else {
        return status(StatusCode::NOT_FOUND, "no such file");
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => return status(StatusCode::NOT_FOUND, "no such file"),
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from_stream(ReaderStream::with_capacity(file, 64 * 1024))
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    cors(h);
    if let Ok(v) = HeaderValue::from_str(&record.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(record.size));
    // A slot's content never changes.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"{slot}\"")) {
        h.insert(header::ETAG, v);
    }
    // Uploaded content is untrusted: never sniffed, never run as a page of this origin.
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    r
}
