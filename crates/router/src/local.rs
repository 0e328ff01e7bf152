//! How modules reach each other without calling each other (DESIGN.md §1), besides questions
//! (`Router::ask`): announcements (`Router::announce`) and server-internal IQ requests.
//!
//! Server-internal IQ requests (`Router::request`): a module asks another local entity
//! something in XMPP terms — typically acting as an account, e.g. XEP-0398 reading the
//! account's vCard and publishing to its PEP service — and the answer comes back in-process
//! instead of being routed. Modules stay decoupled (DESIGN.md §1): the asker knows only the
//! protocol, not the module that answers.
//!
//! Only answers the server itself produces (`Origin::Local`) are caught, so a client cannot
//! slip a forged response into a pending request; ids are random for the same reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::oneshot;

use crate::module::{Ctx, Event, Origin};
use crate::router::Router;
use crate::stanza::{Kind, Stanza};

/// Why a server-internal request produced no response.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Only IQ get/set stanzas can be requests.
    #[error("not an IQ request")]
    NotARequest,
    /// Nobody answered in time (a module that never replies, or a stanza that left the server).
    #[error("no response within the time allowed")]
    Timeout,
}

/// Requests waiting for their response, by IQ id.
#[derive(Default)]
pub(crate) struct Pending {
    map: Mutex<HashMap<String, oneshot::Sender<Stanza>>>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Stanza>>> {
        // Inserts and removals are single steps: a poisoned map is still consistent.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh id and the receiver its response will arrive on.
    pub(crate) fn register(&self) -> (String, oneshot::Receiver<Stanza>) {
        let id = format!(
            "tern-{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id.clone(), tx);
        (id, rx)
    }

    /// Drops a request that timed out.
    pub(crate) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The waiting request `st` answers, if it is a response to one (removed from the table).
    pub(crate) fn take(&self, st: &Stanza) -> Option<oneshot::Sender<Stanza>> {
        if st.kind != Kind::Iq || !matches!(st.type_(), "result" | "error") {
            return None;
        }
        st.id().and_then(|id| self.lock().remove(id))
    }
}

impl Router {
    /// Publishes an [`Event::Named`] announcement: something happened that other modules may
    /// act on (e.g. "vcard.changed"). Unlike [`Router::ask`], every hooked module runs,
    /// whatever it answers.
    pub async fn announce(self: &Arc<Self>, name: &'static str, st: &mut Stanza) {
        let event = Event::Named(name);
        let ctx = Ctx {
            router: self,
            origin: &Origin::Local,
        };
        for m in self.hooks.handlers(&event) {
            m.on_stanza(&event, &ctx, st).await;
        }
    }

    /// Sends an IQ get/set on the server's own behalf — `from` is usually an account's bare
    /// JID, so the answering module treats it as the account's own request — and returns the
    /// response (result or error) instead of routing it. Its `id` is replaced by a fresh one.
    /// Only responses the server's modules produce are caught: a request to a client or a
    /// remote entity ends in [`RequestError::Timeout`].
    pub async fn request(
        self: &Arc<Self>,
        mut st: Stanza,
        timeout: Duration,
    ) -> Result<Stanza, RequestError> {
        if !st.is_iq_request() {
            return Err(RequestError::NotARequest);
        }
        let (id, rx) = self.pending.register();
        crate::xml::set_attr(&mut st.el, "id", Some(&id));
        self.route(Origin::Local, st).await;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            _ => {
                self.pending.forget(&id);
                Err(RequestError::Timeout)
            }
        }
    }
}
