//! Stream negotiation (RFC 6120 §4.3): header, STARTTLS (§5), SASL (§6), then binding (§7).

use std::net::SocketAddr;
use std::sync::Arc;

use minidom::Element;
use tokio::net::TcpStream;
use tracing::{debug, info};

use tern_router::xml::BuilderExt;
use tern_router::{BareJid, PreAuth};
use tern_sasl::Mechanism;
use tern_stream::{StreamError, StreamErrorCondition as Sec, StreamEvent, NS_CLIENT, NS_STREAMS};

use crate::conn::{ConnError, XmlConn};
use crate::link::Link;
use crate::tcp::TcpLink;
use crate::transport::Transport;
use crate::{auth, bind, session, C2s, ListenerKind};

/// STARTTLS namespace (RFC 6120 §5.4).
pub(crate) const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// SASL namespace (RFC 6120 §6.4).
pub(crate) const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// XEP-0440: SASL channel-binding type capability.
const NS_SASL_CB: &str = "urn:xmpp:sasl-cb:0";

/// Runs one TCP client connection from accept to close.
pub(crate) async fn run(c2s: Arc<C2s>, tcp: TcpStream, peer: SocketAddr, kind: ListenerKind) {
    let mut link = TcpLink::new(Transport::Plain(tcp), c2s.config.limits.clone());
    if kind == ListenerKind::DirectTls {
        let Some(tls) = c2s.tls.as_ref() else { return };
        if !link.starttls(tls, c2s.config.tls_handshake_timeout).await {
            return;
        }
    }
    run_link(c2s, Box::new(link), peer).await;
}

/// Runs the session machinery over any link, from the first header to the end of the session.
pub(crate) async fn run_link(c2s: Arc<C2s>, link: Box<dyn Link>, peer: SocketAddr) {
    let conn = XmlConn::new(link, peer);
    let (conn, bare) = match negotiate(&c2s, conn).await {
        Ok(x) => x,
        Err(e) => {
            debug!("connection ended before authentication: {e}");
            return;
        }
    };
    match bind::bind(&c2s, conn, bare).await {
        Ok(bind::Bound::New(conn, handle, rx)) => session::run(c2s, *conn, handle, rx).await,
        Ok(bind::Bound::Resumed) => {}
        Err(e) => debug!("connection ended before binding: {e}"),
    }
}

/// Reads the client's stream header and answers with ours (RFC 6120 §4.7).
pub(crate) async fn open_stream(c2s: &C2s, conn: &mut XmlConn) -> Result<(), ConnError> {
    let first = conn.host.is_none();
    let header = match conn.read_event(c2s.config.preauth_timeout).await? {
        StreamEvent::Header(h) => h,
        _ => return Err(conn.fail(StreamError::new(Sec::NotWellFormed)).await),
    };
    let to = header.to.as_deref().map(str::to_ascii_lowercase);
    match (&to, &conn.host) {
        (Some(to), None) if c2s.router.is_local(to) => conn.host = Some(to.clone()),
        // After a restart the stream must stay on the host it was negotiated for.
        (Some(to), Some(host)) if to == host => {}
        _ => {
            let text = format!(
                "this server does not serve {}",
                to.as_deref().unwrap_or("(no 'to')")
            );
            return Err(conn
                .fail(StreamError::with_text(Sec::HostUnknown, text))
                .await);
        }
    }
    let host = conn.host.clone().unwrap_or_default();
    conn.send_header(&host, header.from.as_deref()).await?;
    // The span keeps the first stream's id for the whole connection: recording again at each
    // restart would repeat the field on every log line.
    if first {
        tracing::Span::current().record("stream", conn.stream_id.as_str());
    }
    let major = header
        .version
        .as_deref()
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
    if major != Some(1) {
        return Err(conn
            .fail(StreamError::with_text(
                Sec::UnsupportedVersion,
                "version 1.0 is required",
            ))
            .await);
    }
    Ok(())
}

fn features(children: Vec<Element>) -> Element {
    let mut f = Element::builder("features", NS_STREAMS).build();
    for c in children {
        f.append_child(c);
    }
    f
}

fn preauth_info(c2s: &C2s, conn: &XmlConn) -> PreAuth {
    let _ = c2s;
    PreAuth {
        host: conn.host.clone().unwrap_or_default(),
        secure: conn.link.is_secure(),
        peer: conn.peer,
    }
}

/// Negotiates TLS and SASL; returns the authenticated account.
async fn negotiate(c2s: &Arc<C2s>, mut conn: XmlConn) -> Result<(XmlConn, BareJid), ConnError> {
    let mut failures = 0;
    loop {
        open_stream(c2s, &mut conn).await?;
        let tls = conn.link.is_secure();
        let bindings = conn.link.channel_bindings(c2s.tls.as_ref());
        let can_starttls = conn.link.can_starttls() && c2s.tls.is_some();
        let must_starttls = can_starttls && c2s.config.require_encryption;
        if !tls && !conn.link.can_starttls() && c2s.tls.is_some() && c2s.config.require_encryption {
            // A transport without STARTTLS that is not secure (plain HTTP not trusted as
            // such): with encryption required it has nothing to negotiate (RFC 6120 §5.3.1).
            let err = StreamError::with_text(
                Sec::PolicyViolation,
                "encryption is required: connect over TLS (https, wss)",
            );
            return Err(conn.fail(err).await);
        }
        // -PLUS only with channel-binding data (which only TLS gives), PLAIN only over TLS.
        let mechs = Mechanism::available(&bindings, tls);
        let mut children = Vec::new();
        if can_starttls {
            let mut st = Element::builder("starttls", NS_TLS);
            if must_starttls {
                st = st.append(Element::bare("required", NS_TLS));
            }
            children.push(st.build());
        }
        if !must_starttls {
            let mut m = Element::builder("mechanisms", NS_SASL);
            for mech in &mechs {
                m = m.append(
                    Element::builder("mechanism", NS_SASL)
                        .append(mech.name())
                        .build(),
                );
            }
            children.push(m.build());
            if !bindings.types().is_empty() {
                let mut cb = Element::builder("sasl-channel-binding", NS_SASL_CB);
                for t in bindings.types() {
                    cb = cb.append(
                        Element::builder("channel-binding", NS_SASL_CB)
                            .a("type", t)
                            .build(),
                    );
                }
                children.push(cb.build());
            }
            children.extend(c2s.router.preauth_features(&preauth_info(c2s, &conn)));
        }
        conn.send(&features(children)).await?;

        // Elements until the next stream restart.
        loop {
            let el = match conn.read_event(c2s.config.preauth_timeout).await? {
                StreamEvent::Element(el) => el,
                _ => return Err(conn.fail(StreamError::new(Sec::NotWellFormed)).await),
            };
            if el.is("starttls", NS_TLS) && can_starttls {
                conn.send(&Element::bare("proceed", NS_TLS)).await?;
                let settings = c2s.tls.as_ref().ok_or(ConnError::Closed)?;
                if !conn
                    .link
                    .starttls(settings, c2s.config.tls_handshake_timeout)
                    .await
                {
                    return Err(ConnError::Closed);
                }
                conn.header_sent = false;
                break;
            } else if el.is("auth", NS_SASL) && !must_starttls {
                let advertised_plus = mechs.iter().any(Mechanism::is_plus);
                match auth::authenticate(
                    c2s,
                    &mut conn,
                    &el,
                    &mechs,
                    bindings.clone(),
                    advertised_plus,
                )
                .await?
                {
                    Some(bare) => {
                        info!(jid = %bare, "authenticated");
                        conn.link.restart();
                        conn.header_sent = false;
                        open_stream(c2s, &mut conn).await?;
                        return Ok((conn, bare));
                    }
                    None => {
                        failures += 1;
                        if failures >= c2s.config.max_auth_failures {
                            let err = StreamError::with_text(
                                Sec::PolicyViolation,
                                "too many failed authentication attempts",
                            );
                            return Err(conn.fail(err).await);
                        }
                    }
                }
            } else if el.is("iq", NS_CLIENT) && !must_starttls {
                let info = preauth_info(c2s, &conn);
                match c2s.router.preauth_iq(&info, &el).await {
                    Some(reply) => conn.send(&reply).await?,
                    None => return Err(conn.fail(StreamError::new(Sec::NotAuthorized)).await),
                }
            } else if must_starttls {
                let err = StreamError::with_text(Sec::PolicyViolation, "STARTTLS is required");
                return Err(conn.fail(err).await);
            } else {
                return Err(conn.fail(StreamError::new(Sec::NotAuthorized)).await);
            }
        }
    }
}
