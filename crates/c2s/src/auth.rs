//! SASL negotiation on the wire (RFC 6120 §6.4): drives a `tern_sasl::Exchange` with
//! `<auth/>`, `<challenge/>`, `<response/>`, `<abort/>`, `<success/>` and `<failure/>`.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use minidom::Element;
use tracing::{info, warn};

use tern_router::BareJid;
use tern_sasl::{ChannelBindings, Exchange, Failure, Mechanism, Step};
use tern_stream::{StreamError, StreamErrorCondition as Sec, StreamEvent};

use crate::conn::{ConnError, XmlConn};
use crate::negotiate::NS_SASL;
use crate::C2s;

/// Pause after a failed attempt, to slow password guessing on one stream.
const FAILURE_DELAY: Duration = Duration::from_millis(300);

/// Runs one SASL exchange started by `auth`. `Ok(Some)` is success; `Ok(None)` a failure the
/// client may retry after; `Err` ends the stream.
pub(crate) async fn authenticate(
    c2s: &Arc<C2s>,
    conn: &mut XmlConn,
    auth: &Element,
    offered: &[Mechanism],
    bindings: ChannelBindings,
    advertised_plus: bool,
) -> Result<Option<BareJid>, ConnError> {
    let host = conn.host.clone().unwrap_or_default();
    let mech = auth
        .attr("mechanism")
        .and_then(Mechanism::from_name)
        .filter(|m| offered.contains(m));
    let Some(mech) = mech else {
        send_failure(conn, Failure::InvalidMechanism).await?;
        return Ok(None);
    };
    let mut ex = Exchange::new(mech, bindings, advertised_plus, conn.link.is_secure())
        .with_domain(host.clone());
    // RFC 6120 §6.4.2: no text means no initial response; "=" means an empty one.
    let mut step = match auth.text().trim() {
        "" => ex.start(None),
        t => match decode(t) {
            Some(d) => ex.start(Some(&d)),
            None => Step::Failure(Failure::IncorrectEncoding),
        },
    };
    let mut user_jid: Option<BareJid> = None;
    loop {
        step = match step {
            Step::Challenge(data) => {
                let el = Element::builder("challenge", NS_SASL)
                    .append(encode(&data))
                    .build();
                conn.send(&el).await?;
                let reply = match conn.read_event(c2s.config.preauth_timeout).await? {
                    StreamEvent::Element(el) => el,
                    _ => return Err(conn.fail(StreamError::new(Sec::NotWellFormed)).await),
                };
                if reply.is("response", NS_SASL) {
                    match decode(reply.text().trim()) {
                        Some(d) => ex.response(&d),
                        None => Step::Failure(Failure::IncorrectEncoding),
                    }
                } else if reply.is("abort", NS_SASL) {
                    ex.abort()
                } else {
                    return Err(conn.fail(StreamError::new(Sec::NotAuthorized)).await);
                }
            }
            Step::NeedCredentials { username } => {
                user_jid = account_jid(&username, &host);
                let record = match &user_jid {
                    Some(j) => {
                        let node = j.node().map(|n| n.as_str()).unwrap_or_default();
                        match c2s.router.storage().accounts.get(&host, node).await {
                            Ok(r) => r,
                            Err(e) => {
                                warn!("account lookup failed: {e}");
                                send_failure(conn, Failure::TemporaryAuthFailure).await?;
                                return Ok(None);
                            }
                        }
                    }
                    None => None,
                };
                ex.credentials(record.as_ref())
            }
            Step::Success {
                username,
                additional_data,
            } => {
                let Some(jid) = user_jid.or_else(|| account_jid(&username, &host)) else {
                    send_failure(conn, Failure::NotAuthorized).await?;
                    return Ok(None);
                };
                let mut el = Element::builder("success", NS_SASL);
                if !additional_data.is_empty() {
                    el = el.append(encode(&additional_data));
                }
                conn.send(&el.build()).await?;
                info!(jid = %jid, mechanism = mech.name(), "SASL success");
                return Ok(Some(jid));
            }
            Step::Failure(f) => {
                info!(
                    mechanism = mech.name(),
                    condition = f.as_str(),
                    "SASL failure"
                );
                tokio::time::sleep(FAILURE_DELAY).await;
                send_failure(conn, f).await?;
                return Ok(None);
            }
        };
    }
}

/// The account JID for a SASL username: it must be a valid localpart (nodeprep applied).
fn account_jid(username: &str, host: &str) -> Option<BareJid> {
    if username.is_empty() || username.contains(['@', '/']) {
        return None;
    }
    BareJid::new(&format!("{username}@{host}")).ok()
}

async fn send_failure(conn: &mut XmlConn, f: Failure) -> Result<(), ConnError> {
    let el = Element::builder("failure", NS_SASL)
        .append(Element::bare(f.as_str(), NS_SASL))
        .build();
    conn.send(&el).await?;
    Ok(())
}

fn decode(t: &str) -> Option<Vec<u8>> {
    if t == "=" {
        return Some(Vec::new());
    }
    B64.decode(t).ok()
}

fn encode(d: &[u8]) -> String {
    if d.is_empty() {
        "=".to_owned()
    } else {
        B64.encode(d)
    }
}
