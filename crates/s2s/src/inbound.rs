//! Incoming server streams (RFC 6120 as the receiving entity): STARTTLS or direct TLS, then
//! SASL EXTERNAL for a peer whose certificate is valid for the domain it claims (XEP-0178),
//! or dialback (XEP-0220) checked with the claimed domain's authoritative server. Stanzas
//! are routed only for the (remote, local) domain pairs the stream has authenticated; any
//! other `from` ends the stream with `<invalid-from/>` (RFC 6120 §4.9.3.9).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use minidom::Element;
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use tern_router::xml::renamespace;
use tern_router::{Jid, Kind, Stanza};
use tern_stream::{
    StreamError, StreamErrorCondition as Sec, StreamEvent, NS_CLIENT, NS_SERVER, NS_STREAMS,
};

use crate::connect::{verify_key, NS_SASL, NS_TLS};
use crate::dialback::{self, NS_DB, NS_DB_FEATURE};
use crate::error::S2sError;
use crate::stream::{random_id, tls_accept, Transport, XmlStream};
use crate::{Inner, ListenerKind};

/// What one incoming connection has established so far.
#[derive(Default)]
struct State {
    /// Our domain, from the first stream header's `to`.
    local: Option<String>,
    /// The domain the peer claims in its header's `from`.
    claimed: Option<String>,
    /// Our current stream id (dialback keys are bound to it).
    id: String,
    /// Authenticated with SASL EXTERNAL (no more features after the restart).
    sasl_done: bool,
    /// Authenticated (remote, local) pairs.
    pairs: HashSet<(String, String)>,
}

/// Runs one incoming connection to its end.
pub(crate) async fn run(inner: Arc<Inner>, tcp: TcpStream, peer: SocketAddr, kind: ListenerKind) {
    let timeout = inner.config.connect_timeout();
    let io = match kind {
        ListenerKind::StartTls => Transport::Plain(tcp),
        ListenerKind::DirectTls => match tls_accept(tcp, inner.server_tls.clone(), timeout).await {
            Ok(s) => Transport::Server(Box::new(s)),
            Err(e) => {
                info!("incoming s2s connection failed: {e}");
                return;
            }
        },
    };
    let s = XmlStream::new(io, inner.limits.clone(), peer);
    let mut state = State::default();
    match serve(&inner, s, &mut state).await {
        Ok(()) | Err(S2sError::Closed) => {
            debug!(from = ?state.claimed, "incoming s2s stream closed")
        }
        Err(e) => info!(from = ?state.claimed, "incoming s2s stream ended: {e}"),
    }
}

async fn serve(inner: &Inner, mut s: XmlStream, st: &mut State) -> Result<(), S2sError> {
    let mut shutdown = inner.shutdown.clone();
    loop {
        open_stream(inner, &mut s, st).await?;
        loop {
            let authenticated = !st.pairs.is_empty();
            let wait = if authenticated {
                inner.config.idle_timeout()
            } else {
                inner.config.connect_timeout()
            };
            let read = tokio::select! {
                r = s.read_event(wait) => Some(r),
                _ = shutdown.changed() => None,
            };
            let Some(read) = read else {
                return Err(s.fail(StreamError::new(Sec::SystemShutdown)).await);
            };
            let el = match read {
                Ok(StreamEvent::Element(el)) => el,
                Ok(_) => {
                    return Err(s
                        .fail(StreamError::with_text(
                            Sec::NotWellFormed,
                            "unexpected header",
                        ))
                        .await)
                }
                // An idle authenticated stream is simply closed (the peer reconnects when it
                // has something to send); one that never authenticated gets an error.
                Err(S2sError::Timeout(_)) if authenticated => {
                    let _ = s.close().await;
                    debug!(from = ?st.claimed, "closing an idle incoming s2s stream");
                    return Ok(());
                }
                Err(S2sError::Timeout(_)) => {
                    let text = "authentication took too long";
                    return Err(s
                        .fail(StreamError::with_text(Sec::ConnectionTimeout, text))
                        .await);
                }
                Err(e) => return Err(e),
            };
            let tls = s.io.is_tls();
            if el.is("starttls", NS_TLS) && !tls {
                s.send(&Element::bare("proceed", NS_TLS)).await?;
                s = s
                    .start_tls_server(inner.server_tls.clone(), inner.config.connect_timeout())
                    .await?;
                break;
            } else if el.is("verify", NS_DB) && el.attr("type").is_none() {
                s.send(&answer_verify(inner, &el)).await?;
            } else if !tls {
                let text = "STARTTLS is required";
                return Err(s
                    .fail(StreamError::with_text(Sec::PolicyViolation, text))
                    .await);
            } else if el.is("auth", NS_SASL) && !st.sasl_done {
                if sasl_external(inner, &mut s, st, &el).await? {
                    s.restart();
                    break;
                }
            } else if el.is("result", NS_DB) && el.attr("type").is_none() {
                db_result(inner, &mut s, st, &el).await?;
            } else if Kind::of(&el).is_some() && el.ns() == NS_SERVER {
                if !authenticated {
                    let text = "authenticate first";
                    return Err(s
                        .fail(StreamError::with_text(Sec::NotAuthorized, text))
                        .await);
                }
                stanza(inner, &mut s, st, el).await?;
            } else {
                let text = format!("<{}/> is not supported here", el.name());
                return Err(s
                    .fail(StreamError::with_text(Sec::UnsupportedStanzaType, text))
                    .await);
            }
        }
    }
}

/// Reads the peer's header, answers with ours and the features for this stage.
async fn open_stream(inner: &Inner, s: &mut XmlStream, st: &mut State) -> Result<(), S2sError> {
    let header = match s.read_event(inner.config.connect_timeout()).await? {
        StreamEvent::Header(h) => h,
        _ => return Err(s.fail(StreamError::new(Sec::NotWellFormed)).await),
    };
    let to = header.to.as_deref().map(str::to_ascii_lowercase);
    let to = match (to, &st.local) {
        (Some(to), None) if inner.serves(&to) => to,
        (Some(to), Some(local)) if &to == local => to,
        (to, _) => {
            let text = format!(
                "this server does not serve {}",
                to.as_deref().unwrap_or("(no 'to')")
            );
            return Err(s.fail(StreamError::with_text(Sec::HostUnknown, text)).await);
        }
    };
    st.local = Some(to.clone());
    if let Some(from) = header.from.as_deref() {
        let from = from.to_ascii_lowercase();
        tracing::Span::current().record("from", from.as_str());
        if inner.config.is_blocked(&from) {
            info!("refusing a stream from {from}: blocked by s2s.blocked");
            let text = "federation with your domain is blocked by policy";
            return Err(s
                .fail(StreamError::with_text(Sec::PolicyViolation, text))
                .await);
        }
        st.claimed = Some(from);
    }
    st.id = random_id();
    s.send_header(&to, st.claimed.as_deref(), &st.id).await?;
    if header.version.as_deref().map(|v| v.starts_with("1.")) != Some(true) {
        let text = "version 1.0 is required";
        return Err(s
            .fail(StreamError::with_text(Sec::UnsupportedVersion, text))
            .await);
    }
    let mut features = Element::builder("features", NS_STREAMS).build();
    if !s.io.is_tls() {
        features.append_child(
            Element::builder("starttls", NS_TLS)
                .append(Element::bare("required", NS_TLS))
                .build(),
        );
    } else if !st.sasl_done {
        if let Some(claimed) = &st.claimed {
            let certs = s.io.peer_certs().unwrap_or_default();
            if inner.trust.verify(&certs, claimed).is_ok() {
                features.append_child(
                    Element::builder("mechanisms", NS_SASL)
                        .append(
                            Element::builder("mechanism", NS_SASL)
                                .append("EXTERNAL")
                                .build(),
                        )
                        .build(),
                );
            }
        }
        let dialback = st
            .claimed
            .as_deref()
            .map_or(inner.config.allow_dialback, |c| {
                inner.config.dialback_allowed(c)
            });
        if dialback {
            features.append_child(
                Element::builder("dialback", NS_DB_FEATURE)
                    .append(Element::bare("errors", NS_DB_FEATURE))
                    .build(),
            );
        }
    }
    s.send(&features).await?;
    Ok(())
}

/// XEP-0178 §3 as the receiver: the certificate must be valid for the claimed domain, and an
/// authorization identity, if given, must be that domain. Returns whether it succeeded.
async fn sasl_external(
    inner: &Inner,
    s: &mut XmlStream,
    st: &mut State,
    el: &Element,
) -> Result<bool, S2sError> {
    let fail = |cond: &str| {
        Element::builder("failure", NS_SASL)
            .append(Element::bare(cond, NS_SASL))
            .build()
    };
    if el.attr("mechanism") != Some("EXTERNAL") {
        s.send(&fail("invalid-mechanism")).await?;
        return Ok(false);
    }
    let Some(claimed) = st.claimed.clone() else {
        s.send(&fail("not-authorized")).await?;
        return Ok(false);
    };
    let text = el.text();
    let text = text.trim();
    let authzid = if text.is_empty() || text == "=" {
        None
    } else {
        match base64::engine::general_purpose::STANDARD.decode(text) {
            Ok(b) => Some(String::from_utf8_lossy(&b).to_ascii_lowercase()),
            Err(_) => {
                s.send(&fail("incorrect-encoding")).await?;
                return Ok(false);
            }
        }
    };
    if authzid.as_deref().is_some_and(|a| a != claimed) {
        s.send(&fail("invalid-authzid")).await?;
        return Ok(false);
    }
    let certs = s.io.peer_certs().unwrap_or_default();
    if let Err(problem) = inner.trust.verify(&certs, &claimed) {
        warn!("SASL EXTERNAL from {claimed} refused: certificate {problem}");
        s.send(&fail("not-authorized")).await?;
        return Ok(false);
    }
    s.send(&Element::bare("success", NS_SASL)).await?;
    let local = st.local.clone().unwrap_or_default();
    info!("incoming s2s stream from {claimed} to {local} authenticated (SASL EXTERNAL)");
    st.pairs.insert((claimed, local));
    st.sasl_done = true;
    Ok(true)
}

/// XEP-0220 §2.1.2–2.4 as the receiving server: check the key with the authoritative server
/// of the domain it claims, then tell the peer.
async fn db_result(
    inner: &Inner,
    s: &mut XmlStream,
    st: &mut State,
    el: &Element,
) -> Result<(), S2sError> {
    let (Some(from), Some(to)) = (el.attr("from"), el.attr("to")) else {
        let text = "db:result needs 'from' and 'to'";
        return Err(s
            .fail(StreamError::with_text(Sec::ImproperAddressing, text))
            .await);
    };
    let (remote, local) = (from.to_ascii_lowercase(), to.to_ascii_lowercase());
    let refuse =
        |cond: &str, text: &str| dialback::error_answer("result", &local, &remote, cond, text);
    if !inner.serves(&local) {
        return Ok(s
            .send(&refuse("item-not-found", "not a domain of this server"))
            .await?);
    }
    if inner.config.is_blocked(&remote) {
        return Ok(s
            .send(&refuse("forbidden", "your domain is blocked by policy"))
            .await?);
    }
    if !inner.config.dialback_allowed(&remote) {
        return Ok(s
            .send(&refuse(
                "policy-violation",
                "dialback is not allowed for your domain",
            ))
            .await?);
    }
    if inner.config.require_verified(&remote) {
        let certs = s.io.peer_certs().unwrap_or_default();
        if let Err(problem) = inner.trust.verify(&certs, &remote) {
            warn!("dialback from {remote} refused: its certificate is {problem} and s2s.require_verified_certificates is on");
            let text = format!("a trusted certificate is required; yours is {problem}");
            return Ok(s.send(&refuse("not-authorized", &text)).await?);
        }
    }
    let key = el.text();
    let timeout = inner.config.connect_timeout();
    let verdict = tokio::time::timeout(
        timeout,
        verify_key(inner, &local, &remote, &st.id, key.trim()),
    )
    .await
    .unwrap_or(Err(S2sError::Timeout("verifying the dialback key")));
    match verdict {
        Ok(true) => {
            info!("incoming s2s stream from {remote} to {local} authenticated (dialback)");
            st.pairs.insert((remote.clone(), local.clone()));
            s.send(&dialback::result_answer(&local, &remote, true))
                .await?;
        }
        Ok(false) => {
            warn!(
                "dialback from {remote} refused: its authoritative server says the key is invalid"
            );
            s.send(&dialback::result_answer(&local, &remote, false))
                .await?;
        }
        Err(e) => {
            warn!("dialback from {remote} could not be verified: {e}");
            let cond = match e {
                S2sError::Timeout(_) => "remote-server-timeout",
                _ => "remote-server-not-found",
            };
            s.send(&refuse(cond, &e.to_string())).await?;
        }
    }
    Ok(())
}

/// XEP-0220 §2.2.2 as the authoritative server: is this the key we made?
pub(crate) fn answer_verify(inner: &Inner, el: &Element) -> Element {
    let receiving = el.attr("from").unwrap_or_default().to_ascii_lowercase();
    let originating = el.attr("to").unwrap_or_default().to_ascii_lowercase();
    let id = el.attr("id").unwrap_or_default();
    if !inner.serves(&originating) {
        return dialback::error_answer(
            "verify",
            &originating,
            &receiving,
            "item-not-found",
            "not a domain of this server",
        );
    }
    let valid = inner
        .secret
        .check(el.text().trim(), &receiving, &originating, id);
    debug!(%receiving, %originating, valid, "answered a dialback verification");
    dialback::verify_answer(&originating, &receiving, id, valid)
}

/// Checks a stanza's addresses against what the stream authenticated and routes it.
async fn stanza(inner: &Inner, s: &mut XmlStream, st: &State, el: Element) -> Result<(), S2sError> {
    // RFC 6120 §8.1.1.1 / §8.1.2.1: both addresses are mandatory between servers.
    let (Some(from), Some(to)) = (el.attr("from"), el.attr("to")) else {
        let text = "stanzas between servers need 'from' and 'to'";
        return Err(s
            .fail(StreamError::with_text(Sec::ImproperAddressing, text))
            .await);
    };
    let Ok(from) = Jid::new(from) else {
        return Err(s
            .fail(StreamError::with_text(Sec::InvalidFrom, "malformed 'from'"))
            .await);
    };
    let Ok(to) = Jid::new(to) else {
        let text = "malformed 'to'";
        return Err(s
            .fail(StreamError::with_text(Sec::ImproperAddressing, text))
            .await);
    };
    let pair = (
        from.domain().as_str().to_ascii_lowercase(),
        to.domain().as_str().to_ascii_lowercase(),
    );
    if !st.pairs.contains(&pair) {
        if !inner.serves(&pair.1) {
            let text = format!("this server does not serve {}", pair.1);
            return Err(s.fail(StreamError::with_text(Sec::HostUnknown, text)).await);
        }
        warn!(
            "stream authenticated as {:?} sent a stanza from {}",
            st.pairs, pair.0
        );
        let text = format!(
            "this stream is not authenticated for {} to {}",
            pair.0, pair.1
        );
        return Err(s.fail(StreamError::with_text(Sec::InvalidFrom, text)).await);
    }
    let Some(kind) = Kind::of(&el) else {
        return Ok(());
    };
    let el = renamespace(&el, NS_SERVER, NS_CLIENT).into_owned();
    debug!(?kind, from = %from, to = %to, "stanza from remote server");
    crate::route_remote(inner, &pair.0, Stanza::new(kind, from, Some(to), el)).await;
    Ok(())
}
