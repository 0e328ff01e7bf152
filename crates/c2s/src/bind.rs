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
use crate::{random_id, C2s, ConflictPolicy};

/// Resource binding namespace.
pub(crate) const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// RFC 3921 session establishment, still sent by older clients; we answer it as a no-op.
pub(crate) const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";

/// Offers binding and waits for the client to bind a resource; registers the session.
pub(crate) async fn bind(
    c2s: &Arc<C2s>,
    mut conn: XmlConn,
    bare: BareJid,
) -> Result<(XmlConn, SessionHandle, mpsc::Receiver<Outbound>), ConnError> {
    let session = Element::builder("session", NS_SESSION)
        .append(Element::bare("optional", NS_SESSION))
        .build();
    let mut features = Element::builder("features", NS_STREAMS)
        .append(Element::bare("bind", NS_BIND))
        .append(session)
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
                return Ok((conn, handle, rx));
            }
            Err(e) => conn.send(&bind_error(&id, e)).await?,
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
                let _ = old.send_raw(Outbound::Close(StreamError::with_text(
                    Sec::Conflict,
                    "replaced by a new connection with the same resource",
                )));
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
