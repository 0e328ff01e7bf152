//! Stream negotiation (RFC 6120 §4.3): header, STARTTLS (§5), SASL (§6), then binding (§7).

use std::net::SocketAddr;
use std::sync::Arc;

use minidom::Element;
use rustls::ProtocolVersion;
use tokio::net::TcpStream;
use tracing::{debug, info};

use tern_router::xml::BuilderExt;
use tern_router::{BareJid, PreAuth};
use tern_sasl::{ChannelBindings, Mechanism};
use tern_stream::{
    StreamError, StreamErrorCondition as Sec, StreamEvent, StreamReader, NS_CLIENT, NS_STREAMS,
};

use crate::conn::{ConnError, XmlConn};
use crate::transport::Transport;
use crate::{auth, bind, session, C2s, ListenerKind};

/// STARTTLS namespace (RFC 6120 §5.4).
pub(crate) const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// SASL namespace (RFC 6120 §6.4).
pub(crate) const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// XEP-0440: SASL channel-binding type capability.
const NS_SASL_CB: &str = "urn:xmpp:sasl-cb:0";

/// Runs one client connection from accept to close.
pub(crate) async fn run(c2s: Arc<C2s>, tcp: TcpStream, peer: SocketAddr, kind: ListenerKind) {
    let transport = match kind {
        ListenerKind::StartTls => Transport::Plain(tcp),
        ListenerKind::DirectTls => match tls_accept(&c2s, tcp).await {
            Some(t) => t,
            None => return,
        },
    };
    let reader = StreamReader::new(c2s.config.limits.clone(), NS_CLIENT);
    let conn = XmlConn::new(transport, reader, peer);
    let (conn, bare, bindings) = match negotiate(&c2s, conn).await {
        Ok(x) => x,
        Err(e) => {
            debug!("connection ended before authentication: {e}");
            return;
        }
    };
    let _ = bindings;
    match bind::bind(&c2s, conn, bare).await {
        Ok(bind::Bound::New(conn, handle, rx)) => session::run(c2s, *conn, handle, rx).await,
        Ok(bind::Bound::Resumed) => {}
        Err(e) => debug!("connection ended before binding: {e}"),
    }
}

async fn tls_accept(c2s: &C2s, tcp: TcpStream) -> Option<Transport> {
    let tls = c2s.tls.as_ref()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    match tokio::time::timeout(c2s.config.tls_handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => Some(Transport::Tls(Box::new(s))),
        Ok(Err(e)) => {
            info!("TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            info!("TLS handshake timed out");
            None
        }
    }
}

/// Channel-binding data of a TLS connection: tls-exporter on TLS 1.3 (RFC 9266), and
/// tls-server-end-point (RFC 5929) whenever we know the certificate.
fn channel_bindings(c2s: &C2s, io: &Transport) -> ChannelBindings {
    let mut b = ChannelBindings::default();
    let (Transport::Tls(s), Some(settings)) = (io, c2s.tls.as_ref()) else {
        return b;
    };
    let (_, sc) = s.get_ref();
    if sc.protocol_version() == Some(ProtocolVersion::TLSv1_3) {
        if let Ok(out) = sc.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None) {
            b.tls_exporter = Some(out.to_vec());
        }
    }
    b.tls_server_end_point = (settings.end_point_hash)(sc.server_name());
    b
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
        secure: conn.io.is_tls(),
        peer: conn.peer,
    }
}

/// Negotiates TLS and SASL; returns the authenticated account.
async fn negotiate(
    c2s: &Arc<C2s>,
    mut conn: XmlConn,
) -> Result<(XmlConn, BareJid, ChannelBindings), ConnError> {
    let mut failures = 0;
    loop {
        open_stream(c2s, &mut conn).await?;
        let tls = conn.io.is_tls();
        let bindings = channel_bindings(c2s, &conn.io);
        let can_starttls = !tls && c2s.tls.is_some();
        let must_starttls = can_starttls && c2s.config.require_encryption;
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
                let Transport::Plain(tcp) = conn.io else {
                    unreachable!("can_starttls implies plain")
                };
                let io = tls_accept(c2s, tcp).await.ok_or(ConnError::Closed)?;
                let mut reader = conn.reader;
                reader.restart();
                conn = XmlConn::new(io, reader, conn.peer).with_host(conn.host);
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
                        conn.reader.restart();
                        conn.header_sent = false;
                        open_stream(c2s, &mut conn).await?;
                        return Ok((conn, bare, bindings));
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
