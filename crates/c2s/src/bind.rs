//! Resource binding (RFC 6120 §7) on the restarted, authenticated stream.

use std::sync::Arc;

use minidom::Element;
use tokio::sync::mpsc;
use tracing::info;

use tern_router::xml::BuilderExt;
use tern_router::{
    BareJid, Condition, FullJid, Outbound, SessionEvent, SessionHandle, StanzaError,
};
use tern_stream::{StreamError, StreamErrorCondition as Sec, StreamEvent, NS_CLIENT, NS_STREAMS};

use crate::conn::{ConnError, XmlConn};
use crate::sm::{failed, ResumeRequest, NS_SM};
use crate::{random_id, C2s, ConflictPolicy};

/// Resource binding namespace.
pub(crate) const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// RFC 3921 session establishment, still sent by older clients; we answer it as a no-op.
pub(crate) const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";

/// Offers binding and waits for the client to bind a resource; registers the session.
/// How the authenticated stream continues.
pub(crate) enum Bound {
    /// A new session with a bound resource.
    New(Box<XmlConn>, SessionHandle, mpsc::Receiver<Outbound>),
    /// The connection was handed to an earlier session it resumed (XEP-0198).
    Resumed,
}

pub(crate) async fn bind(
    c2s: &Arc<C2s>,
    mut conn: XmlConn,
    bare: BareJid,
) -> Result<Bound, ConnError> {
    let session = Element::builder("session", NS_SESSION)
        .append(Element::bare("optional", NS_SESSION))
        .build();
    let mut features = Element::builder("features", NS_STREAMS)
        .append(Element::bare("bind", NS_BIND))
        .append(session)
        .append(Element::bare("sm", NS_SM))
        .append(Element::bare("csi", crate::csi::NS_CSI))
        .build();
    for f in c2s.router.session_features() {
        features.append_child(f);
    }
    conn.send(&features).await?;
    loop {
        let el = match conn.read_event(c2s.config.preauth_timeout).await? {
            StreamEvent::Element(el) => el,
            _ => return Err(conn.fail(StreamError::new(Sec::NotWellFormed)).await),
        };
        if el.is("resume", NS_SM) {
            match resume(c2s, conn, &bare, &el).await? {
                None => return Ok(Bound::Resumed),
                Some(c) => {
                    conn = c;
                    continue;
                }
            }
        }
        if el.is("enable", NS_SM) {
            // XEP-0198 §3: stream management needs a bound resource first.
            conn.send(&failed("unexpected-request", None)).await?;
            continue;
        }
        let request = el.get_child("bind", NS_BIND).filter(|_| {
            el.is("iq", NS_CLIENT) && el.attr("type") == Some("set") && el.attr("id").is_some()
        });
        let Some(request) = request else {
            // RFC 6120 §7.1: nothing but binding is allowed before a resource is bound.
            return Err(conn
                .fail(StreamError::with_text(
                    Sec::NotAuthorized,
                    "bind a resource first",
                ))
                .await);
        };
        let id = el.attr("id").unwrap_or_default().to_owned();
        let wanted = request
            .get_child("resource", NS_BIND)
            .map(|r| r.text())
            .unwrap_or_default();
        let wanted = wanted.trim();
        let full = if wanted.is_empty() {
            bare.with_resource_str(&random_id(12)).ok()
        } else {
            bare.with_resource_str(wanted).ok()
        };
        let Some(full) = full else {
            conn.send(&bind_error(
                &id,
                StanzaError::new(Condition::BadRequest).with_text("invalid resource"),
            ))
            .await?;
            continue;
        };
        let (tx, rx) = mpsc::channel(c2s.config.queue_size);
        match register(c2s, full, tx).await {
            Ok(handle) => {
                let jid = Element::builder("jid", NS_BIND)
                    .append(handle.jid().to_string())
                    .build();
                let b = Element::builder("bind", NS_BIND).append(jid).build();
                let reply = Element::builder("iq", NS_CLIENT)
                    .a("type", "result")
                    .a("id", id)
                    .append(b)
                    .build();
                conn.send(&reply).await?;
                tracing::Span::current().record("jid", handle.jid().as_str());
                info!(jid = %handle.jid(), "resource bound");
                c2s.router.session_event(SessionEvent::Bound, &handle).await;
                return Ok(Bound::New(Box::new(conn), handle, rx));
            }
            Err(e) => conn.send(&bind_error(&id, e)).await?,
        }
    }
}

/// Hands the connection to the session named by `previd` if it belongs to this account
/// (`None`); otherwise answers `<failed/>` and gives the connection back (XEP-0198 §5).
async fn resume(
    c2s: &Arc<C2s>,
    mut conn: XmlConn,
    bare: &BareJid,
    el: &Element,
) -> Result<Option<XmlConn>, ConnError> {
    let previd = el.attr("previd").unwrap_or_default();
    let h = el.attr("h").and_then(|h| h.parse::<u32>().ok());
    let slot = c2s.resumable_get(previd).filter(|(owner, _)| owner == bare);
    let (Some((_, tx)), Some(h)) = (slot, h) else {
        info!(jid = %bare, "resumption failed: unknown or expired session");
        conn.send(&failed("item-not-found", None)).await?;
        return Ok(Some(conn));
    };
    match tx.try_send(ResumeRequest { conn, h }) {
        Ok(()) => Ok(None),
        Err(e) => {
            let mut conn = e.into_inner().conn;
            conn.send(&failed("item-not-found", None)).await?;
            Ok(Some(conn))
        }
    }
}

/// Applies the configured conflict policy (RFC 6120 §7.7.2.2).
async fn register(
    c2s: &Arc<C2s>,
    full: FullJid,
    tx: mpsc::Sender<Outbound>,
) -> Result<SessionHandle, StanzaError> {
    let reg = c2s.router.sessions();
    let handle = SessionHandle::new(full.clone(), tx.clone());
    match c2s.config.resource_conflict {
        ConflictPolicy::KickOld => {
            if let Some(old) = reg.replace(handle.clone()) {
                info!(jid = %full, "resource conflict: replacing the older session");
                let _ = old.send_raw(Outbound::Close(Box::new(StreamError::with_text(
                    Sec::Conflict,
                    "replaced by a new connection with the same resource",
                ))));
            }
            Ok(handle)
        }
        ConflictPolicy::Reject => reg
            .try_insert(handle.clone())
            .map(|()| handle)
            .map_err(|_| StanzaError::new(Condition::Conflict).with_text("resource in use")),
        ConflictPolicy::Rename => match reg.try_insert(handle.clone()) {
            Ok(()) => Ok(handle),
            Err(_) => {
                let renamed = full
                    .to_bare()
                    .with_resource_str(&format!("{}.{}", full.resource().as_str(), random_id(6)))
                    .map_err(|_| StanzaError::new(Condition::Conflict))?;
                let h = SessionHandle::new(renamed, tx);
                reg.try_insert(h.clone())
                    .map(|()| h)
                    .map_err(|_| StanzaError::new(Condition::Conflict))
            }
        },
    }
}

fn bind_error(id: &str, err: StanzaError) -> Element {
    Element::builder("iq", NS_CLIENT)
        .a("type", "error")
        .a("id", id)
        .append(err.to_element())
        .build()
}
