//! Opening a stream to a remote server (RFC 6120 §4–§6 as the initiating entity): resolve,
//! connect, TLS (STARTTLS or direct), then authenticate with SASL EXTERNAL (XEP-0178) when
//! the peer's certificate is valid for its domain, else dialback (XEP-0220) where policy
//! allows. The same opening, without authentication, serves dialback verification.

use std::time::Duration;

use base64::Engine;
use minidom::Element;
use tracing::debug;

use tern_stream::{StreamError, StreamErrorCondition as Sec, StreamEvent, NS_STREAMS};

use crate::dialback::{self, NS_DB, NS_DB_FEATURE};
use crate::error::S2sError;
use crate::resolve::Target;
use crate::stream::{tls_connect, Transport, XmlStream};
use crate::Inner;

/// STARTTLS namespace (RFC 6120 §5.4).
pub(crate) const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// SASL namespace (RFC 6120 §6.4).
pub(crate) const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// An encrypted stream to a remote server, before authentication.
pub(crate) struct Opened {
    pub stream: XmlStream,
    /// The receiving server's stream id (the dialback key is bound to it).
    pub id: String,
    /// Its stream features.
    pub features: Element,
    /// Where we connected.
    pub target: String,
}

/// What an attempt is waiting for, so a timeout can say where it stalled.
pub(crate) type Stage = std::sync::Mutex<String>;

fn set(stage: &Stage, what: String) {
    *stage.lock().unwrap_or_else(|e| e.into_inner()) = what;
}

/// Resolves `remote` and opens an encrypted stream from `local` to it.
pub(crate) async fn open(
    inner: &Inner,
    local: &str,
    remote: &str,
    stage: &Stage,
) -> Result<Opened, S2sError> {
    set(stage, format!("resolving {remote}"));
    let targets = inner.resolver.targets(remote).await?;
    let mut errors: Vec<S2sError> = Vec::new();
    for target in &targets {
        set(
            stage,
            format!("connecting to {}:{}", target.host, target.port),
        );
        let addrs = match inner.resolver.addresses(target).await {
            Ok(a) => a,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let (tcp, addr) = match crate::resolve::happy_eyeballs(&addrs).await {
            Ok(x) => x,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        debug!(%remote, %addr, direct_tls = target.direct_tls, "connected");
        set(
            stage,
            format!("waiting for {addr} to open the stream and TLS"),
        );
        let opened = negotiate_tls(inner, tcp, addr, target, local, remote).await?;
        set(stage, format!("authenticating with {addr}"));
        return Ok(opened);
    }
    // A refused connection says more than a missing record for some other target.
    let pos = errors
        .iter()
        .position(|e| matches!(e, S2sError::Connect(_)))
        .unwrap_or(0);
    Err(if errors.is_empty() {
        S2sError::Dns(format!("no server found for {remote}"))
    } else {
        errors.swap_remove(pos)
    })
}

async fn negotiate_tls(
    inner: &Inner,
    tcp: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
    target: &Target,
    local: &str,
    remote: &str,
) -> Result<Opened, S2sError> {
    let timeout = inner.config.connect_timeout();
    let key = (inner.certs.lookup)(local);
    let limits = inner.limits.clone();
    let mut stream = if target.direct_tls {
        let config = inner.trust.client_config(key, true);
        let tls = tls_connect(tcp, config, remote, timeout).await?;
        XmlStream::new(Transport::Client(Box::new(tls)), limits, addr)
    } else {
        let mut s = XmlStream::new(Transport::Plain(tcp), limits, addr);
        let (_, features) = exchange_headers(&mut s, local, remote, timeout).await?;
        if features
            .get_child("starttls", crate::connect::NS_TLS)
            .is_none()
        {
            let _ = s.close().await;
            return Err(S2sError::Tls(format!(
                "{remote} does not offer STARTTLS, and we never federate unencrypted"
            )));
        }
        s.send(&Element::bare("starttls", NS_TLS)).await?;
        let answer = s.read_element(timeout).await?;
        if !answer.is("proceed", NS_TLS) {
            return Err(S2sError::Tls(format!("{remote} refused STARTTLS")));
        }
        let config = inner.trust.client_config(key, false);
        s.start_tls_client(config, remote, timeout).await?
    };
    let (id, features) = exchange_headers(&mut stream, local, remote, timeout).await?;
    Ok(Opened {
        stream,
        id,
        features,
        target: format!("{}:{} ({addr})", target.host, target.port),
    })
}

/// Sends our header, reads the peer's and its features (none from a pre-1.0 peer).
async fn exchange_headers(
    s: &mut XmlStream,
    local: &str,
    remote: &str,
    timeout: Duration,
) -> Result<(String, Element), S2sError> {
    s.send_header(local, Some(remote), "").await?;
    let header = match s.read_event(timeout).await? {
        StreamEvent::Header(h) => h,
        _ => return Err(S2sError::Protocol("expected a stream header".into())),
    };
    let id = header.id.clone().unwrap_or_default();
    if header.version.as_deref().map(|v| v.starts_with("1.")) != Some(true) {
        return Ok((id, Element::bare("features", NS_STREAMS)));
    }
    let features = s.read_element(timeout).await?;
    if !features.is("features", NS_STREAMS) {
        return Err(S2sError::Protocol(format!(
            "expected stream features, got <{}/>",
            features.name()
        )));
    }
    Ok((id, features))
}

/// How an outgoing stream was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AuthMethod {
    /// SASL EXTERNAL with the certificate (XEP-0178).
    SaslExternal,
    /// Server dialback (XEP-0220), over TLS.
    Dialback,
}

impl std::fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthMethod::SaslExternal => "SASL EXTERNAL",
            AuthMethod::Dialback => "dialback",
        })
    }
}

/// Authenticates an opened stream as `local` towards `remote`.
pub(crate) async fn authenticate(
    inner: &Inner,
    o: &mut Opened,
    local: &str,
    remote: &str,
) -> Result<AuthMethod, S2sError> {
    let timeout = inner.config.connect_timeout();
    let certs = o.stream.io.peer_certs().unwrap_or_default();
    let cert = inner.trust.verify(&certs, remote);
    let offers_external = o
        .features
        .get_child("mechanisms", NS_SASL)
        .is_some_and(|m| m.children().any(|c| c.text().trim() == "EXTERNAL"));
    let offers_dialback = o.features.get_child("dialback", NS_DB_FEATURE).is_some();
    let mut refused = None;
    if cert.is_ok() && offers_external {
        match sasl_external(o, local, remote, timeout).await? {
            Ok(()) => return Ok(AuthMethod::SaslExternal),
            Err(reason) => refused = Some(reason),
        }
    }
    if let Err(problem) = &cert {
        if inner.config.require_verified(remote) {
            let _ = o
                .stream
                .fail(StreamError::with_text(
                    Sec::PolicyViolation,
                    "your certificate is not trusted here",
                ))
                .await;
            return Err(S2sError::Certificate {
                domain: remote.to_owned(),
                problem: problem.clone(),
            });
        }
    }
    // XEP-0220 §2.1.1: a peer that does not advertise the feature may still support
    // dialback (it predates the feature), so it is tried whenever policy allows.
    if inner.config.dialback_allowed(remote) {
        if !offers_dialback {
            debug!(%remote, "trying dialback although the peer does not advertise it");
        }
        dialback(inner, o, local, remote, timeout).await?;
        return Ok(AuthMethod::Dialback);
    }
    let _ = o.stream.close().await;
    Err(match refused {
        Some(r) => S2sError::AuthRefused(r),
        None => S2sError::NoAuth(format!(
            "{remote} offers {}; our policy allows only SASL EXTERNAL{}",
            offered(offers_external, offers_dialback),
            if cert.is_ok() {
                ""
            } else {
                " with a trusted certificate"
            }
        )),
    })
}

fn offered(external: bool, dialback: bool) -> &'static str {
    match (external, dialback) {
        (true, true) => "SASL EXTERNAL and dialback",
        (true, false) => "only SASL EXTERNAL",
        (false, true) => "only dialback",
        (false, false) => "no authentication method we support",
    }
}

/// XEP-0178 §3: `<auth mechanism='EXTERNAL'>` with our domain as authorization identity.
/// The inner result is the peer's refusal, the outer one a broken stream.
async fn sasl_external(
    o: &mut Opened,
    local: &str,
    remote: &str,
    timeout: Duration,
) -> Result<Result<(), String>, S2sError> {
    let authzid = base64::engine::general_purpose::STANDARD.encode(local);
    let auth = Element::builder("auth", NS_SASL)
        .attr(
            minidom::rxml::NcName::try_from("mechanism").expect("valid name"),
            "EXTERNAL",
        )
        .append(authzid)
        .build();
    o.stream.send(&auth).await?;
    let answer = o.stream.read_element(timeout).await?;
    if answer.is("success", NS_SASL) {
        o.stream.restart();
        let (id, features) = exchange_headers(&mut o.stream, local, remote, timeout).await?;
        o.id = id;
        o.features = features;
        return Ok(Ok(()));
    }
    if answer.is("failure", NS_SASL) {
        let cond = answer
            .children()
            .find(|c| c.name() != "text")
            .map(|c| c.name().to_owned())
            .unwrap_or_else(|| "no condition".into());
        return Ok(Err(format!("SASL EXTERNAL failed: <{cond}/>")));
    }
    Err(S2sError::Protocol(format!(
        "unexpected <{}/> in answer to SASL EXTERNAL",
        answer.name()
    )))
}

/// XEP-0220 §2.1: send our key, wait for the peer's verdict (it asks our authoritative
/// server, i.e. our listener, meanwhile).
async fn dialback(
    inner: &Inner,
    o: &mut Opened,
    local: &str,
    remote: &str,
    timeout: Duration,
) -> Result<(), S2sError> {
    let key = inner.secret.key(remote, local, &o.id);
    o.stream
        .send(&dialback::result_request(local, remote, &key))
        .await?;
    loop {
        let el = o.stream.read_element(timeout).await?;
        if el.is("verify", NS_DB) && el.attr("type").is_none() {
            // A verification request piggybacked on this stream (XEP-0220 §2.2).
            let answer = crate::inbound::answer_verify(inner, &el);
            o.stream.send(&answer).await?;
            continue;
        }
        if !el.is("result", NS_DB) {
            return Err(S2sError::Protocol(format!(
                "unexpected <{}/> while waiting for the dialback result",
                el.name()
            )));
        }
        return match el.attr("type") {
            Some("valid") => Ok(()),
            Some("invalid") => Err(S2sError::AuthRefused(format!(
                "{remote} found our dialback key invalid"
            ))),
            Some("error") => Err(S2sError::AuthRefused(format!(
                "dialback error from {remote}: {}",
                dialback::error_reason(&el)
            ))),
            other => Err(S2sError::Protocol(format!(
                "dialback result of type {other:?}"
            ))),
        };
    }
}

/// Asks `remote`'s authoritative server whether `key` is the one it gave for a stream we
/// received with id `id` (XEP-0220 §2.2).
pub(crate) async fn verify_key(
    inner: &Inner,
    local: &str,
    remote: &str,
    id: &str,
    key: &str,
) -> Result<bool, S2sError> {
    let timeout = inner.config.connect_timeout();
    let mut o = open(inner, local, remote, &Stage::default()).await?;
    o.stream
        .send(&dialback::verify_request(local, remote, id, key))
        .await?;
    let result = loop {
        let el = o.stream.read_element(timeout).await?;
        if el.is("verify", NS_DB) && el.attr("id") == Some(id) {
            break match el.attr("type") {
                Some("valid") => Ok(true),
                Some("invalid") => Ok(false),
                _ => Err(S2sError::AuthRefused(format!(
                    "{remote} could not check the key: {}",
                    dialback::error_reason(&el)
                ))),
            };
        }
    };
    let _ = o.stream.close().await;
    result
}
