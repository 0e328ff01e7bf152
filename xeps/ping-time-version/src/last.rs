//! XEP-0012: Last Activity. To the server: its uptime (§5). To an account's bare JID: seconds
//! since the account's last session ended and the status it left with (§4), or 0 while a
//! resource is available — only to the account itself and to entities allowed to see its
//! presence (a `from` subscription); everyone else gets `<forbidden/>`. Queries to a full JID
//! are the client's to answer and pass through.
//!
//! The time is recorded in the `KeyVal` store ("lastactivity") when an account's last session
//! closes, with the status of the unavailable presence it sent, if any.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use minidom::Element;
use tern_router::Spec;
use tracing::warn;

use tern_roster::roster_of;
use tern_router::time::now_micros;
use tern_router::xml::BuilderExt;
use tern_router::{
    BareJid, Condition, Ctx, Event, Flow, Hooks, Kind, Module, Router, SessionEvent, SessionHandle,
    Stanza, StanzaError, Target,
};

/// XEP-0012 namespace.
pub const NS_LAST: &str = "jabber:iq:last";
const STORE: &str = "lastactivity";

/// The last activity module.
pub struct LastActivity {
    started: Instant,
    /// Status text of the unavailable presence each session sent, by session id.
    status: Mutex<HashMap<u64, String>>,
}

impl Default for LastActivity {
    fn default() -> Self {
        LastActivity {
            started: Instant::now(),
            status: Mutex::new(HashMap::new()),
        }
    }
}

fn query(seconds: u64, text: Option<&str>) -> Element {
    let mut q = Element::builder("query", NS_LAST)
        .a("seconds", seconds.to_string())
        .build();
    if let Some(t) = text.filter(|t| !t.is_empty()) {
        q.append_text_node(t);
    }
    q
}

impl LastActivity {
    fn statuses(&self) -> std::sync::MutexGuard<'_, HashMap<u64, String>> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `asker` may learn when `owner` was last online (§4, §9).
    async fn allowed(router: &Router, owner: &BareJid, asker: &BareJid) -> bool {
        if owner == asker {
            return true;
        }
        let Some(roster) = roster_of(router, owner) else {
            return false;
        };
        match roster.get(asker.as_str()).await {
            Ok(Some(item)) => item.subscription.has_from(),
            Ok(None) => false,
            Err(e) => {
                warn!(jid = %owner, "cannot read roster: {e}");
                false
            }
        }
    }

    async fn account(&self, router: &Router, st: &Stanza) -> Result<Element, StanzaError> {
        let owner = st
            .to
            .as_ref()
            .map(|t| t.to_bare())
            .unwrap_or_else(|| st.from.to_bare());
        if !Self::allowed(router, &owner, &st.from.to_bare()).await {
            return Err(StanzaError::new(Condition::Forbidden));
        }
        if router
            .sessions()
            .resources(&owner)
            .iter()
            .any(|s| s.presence().available())
        {
            return Ok(query(0, None));
        }
        let user = owner.node().map(|n| n.as_str()).unwrap_or_default();
        let stored = router
            .storage()
            .keyval
            .get(owner.domain().as_str(), STORE, user)
            .await
            .map_err(|e| {
                warn!(jid = %owner, "cannot read last activity: {e}");
                StanzaError::new(Condition::InternalServerError)
            })?;
        let Some((at, status)) = stored.as_deref().and_then(decode) else {
            // Never logged in since the server kept track.
            return Err(StanzaError::new(Condition::ItemNotFound));
        };
        let secs = (now_micros() - at).max(0) as u64 / 1_000_000;
        Ok(query(secs, Some(&status)))
    }
}

fn encode(at_micros: i64, status: &str) -> Vec<u8> {
    format!("{at_micros}\n{status}").into_bytes()
}

fn decode(b: &[u8]) -> Option<(i64, String)> {
    let s = std::str::from_utf8(b).ok()?;
    let (at, status) = s.split_once('\n').unwrap_or((s, ""));
    Some((at.parse().ok()?, status.to_owned()))
}

#[async_trait]
impl Module for LastActivity {
    fn name(&self) -> &'static str {
        "last"
    }

    fn specs(&self) -> Vec<Spec> {
        vec![Spec::xep(12, "2.0")]
    }

    fn features(&self) -> Vec<&'static str> {
        vec![NS_LAST]
    }

    fn account_features(&self) -> Vec<&'static str> {
        vec![NS_LAST]
    }

    fn register(&self, hooks: &mut Hooks) {
        hooks.on(Event::Iq(Target::Host, NS_LAST.into()));
        hooks.on(Event::Iq(Target::Bare, NS_LAST.into()));
        // Observes unavailable broadcasts for their status; answers Continue.
        hooks.on(Event::Outgoing(Kind::Presence));
        hooks.on_session();
    }

    async fn on_stanza(&self, event: &Event, ctx: &Ctx<'_>, st: &mut Stanza) -> Flow {
        match event {
            Event::Outgoing(_) => {
                if st.to.is_none() && st.type_() == "unavailable" {
                    if let Some(s) = ctx.origin.session() {
                        let text = st
                            .el
                            .get_child("status", tern_stream::NS_CLIENT)
                            .map(|t| t.text())
                            .unwrap_or_default();
                        self.statuses().insert(s.id(), text);
                    }
                }
                Flow::Continue
            }
            Event::Iq(target, _) => {
                let r = if st.type_() != "get" {
                    Err(StanzaError::new(Condition::BadRequest))
                } else if *target == Target::Host {
                    Ok(query(self.started.elapsed().as_secs(), None))
                } else {
                    self.account(ctx.router, st).await
                };
                match r {
                    Ok(q) => ctx.router.reply_result(st, Some(q)).await,
                    Err(e) => ctx.router.bounce(st, e).await,
                }
                Flow::Handled
            }
            _ => Flow::Continue,
        }
    }

    async fn on_session(&self, event: SessionEvent, router: &Arc<Router>, session: &SessionHandle) {
        if event != SessionEvent::Closed {
            return;
        }
        let status = self.statuses().remove(&session.id()).unwrap_or_default();
        let bare = session.jid().to_bare();
        if !router.sessions().resources(&bare).is_empty() {
            return;
        }
        let user = bare.node().map(|n| n.as_str()).unwrap_or_default();
        if let Err(e) = router
            .storage()
            .keyval
            .set(
                bare.domain().as_str(),
                STORE,
                user,
                Some(&encode(now_micros(), &status)),
            )
            .await
        {
            warn!(jid = %bare, "cannot store last activity: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_roundtrips() {
        assert_eq!(
            decode(&encode(42, "Heading home")),
            Some((42, "Heading home".into()))
        );
        assert_eq!(decode(&encode(7, "")), Some((7, String::new())));
        assert_eq!(decode(b"junk"), None);
    }
}
