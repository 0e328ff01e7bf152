//! XEP-0045: Multi-User Chat, as a service on its own domain (`conference.<host>`), with the
//! room archive (XEP-0313, XEP-0359 stanza ids), self-ping (XEP-0410), occupant ids
//! (XEP-0421) and moderation (XEP-0425 with XEP-0424 tombstones).
//!
//! Layout: [`config`] is `[muc]`; [`affiliation`] the role and affiliation rules (§5) as pure
//! functions; [`roomconfig`] a room's configuration and its forms; `service` the room table
//! and the service's own disco; `task` one task per room; `room` the room itself, split by
//! use case (join, message, admin, owner, iq, history); `store` persistence of persistent
//! rooms. [`MucService`] is the `tern_router::Service` the router hands every stanza for the
//! domain; [`MucModule`] tells rooms about client sessions that end without unavailable
//! presence. Fan-out serializes each room stanza once and queues the same bytes on every
//! occupant's session (`tern_router::SharedStanza`).

pub mod affiliation;
pub mod config;
pub mod roomconfig;

mod ns;
mod room;
mod service;
mod store;
mod task;

use std::sync::Arc;

use async_trait::async_trait;
use tracing::info;

use tern_router::{Hooks, Module, Origin, Router, Service, SessionEvent, SessionHandle, Stanza};
use tern_storage::{Storage, StoreError};

pub use config::{ConfigError, MucConfig};

use service::{room_name, Cmd, Shared};

/// The MUC service of one host.
#[derive(Clone)]
pub struct MucService {
    shared: Arc<Shared>,
}

impl MucService {
    /// The service for `host` (on `config.domain_for(host)`), knowing its stored rooms.
    pub async fn new(
        config: MucConfig,
        host: &str,
        storage: Storage,
    ) -> Result<MucService, StoreError> {
        let shared = Shared::load(config, host, storage).await?;
        info!(domain = %shared.domain, "multi-user chat service ready");
        Ok(MucService { shared })
    }

    /// The domain it serves.
    pub fn domain(&self) -> &str {
        &self.shared.domain
    }

    /// Tells every occupant of every running room that the server is stopping (status 332)
    /// and waits until each room has sent it.
    pub async fn shutdown(&self) {
        for tx in self.shared.running() {
            let (done, wait) = tokio::sync::oneshot::channel();
            if tx.send(Cmd::Shutdown(done)).await.is_ok() {
                let _ = wait.await;
            }
        }
    }
}

#[async_trait]
impl Service for MucService {
    fn name(&self) -> &'static str {
        "muc"
    }

    fn item_name(&self) -> Option<String> {
        Some(self.shared.config.name.clone())
    }

    fn specs(&self) -> Vec<tern_router::Spec> {
        use tern_router::Spec;
        vec![
            Spec::xep(45, "1.35.5"),
            Spec::xep(249, "1.2"),
            Spec::xep(410, "1.1.0"),
            Spec::xep(421, "1.0.1"),
            Spec::xep(424, "0.5.0"),
            Spec::xep(425, "0.3.0"),
        ]
    }

    async fn handle(&self, router: &Arc<Router>, origin: &Origin, stanza: Stanza) {
        let Some(name) = stanza.to.as_ref().and_then(room_name) else {
            return self.shared.handle_service(router, stanza).await;
        };
        self.shared
            .to_room(router, &name, Cmd::Stanza(origin.clone(), stanza))
            .await;
    }
}

/// Session events for the MUC services of every host.
pub struct MucModule {
    services: Vec<MucService>,
}

impl MucModule {
    /// A module for these services.
    pub fn new(services: Vec<MucService>) -> Self {
        MucModule { services }
    }
}

#[async_trait]
impl Module for MucModule {
    fn name(&self) -> &'static str {
        "muc"
    }

    fn register(&self, hooks: &mut Hooks) {
        hooks.on_session();
    }

    async fn on_session(&self, event: SessionEvent, router: &Arc<Router>, session: &SessionHandle) {
        if event != SessionEvent::Closed {
            return;
        }
        // The presence module has already sent unavailable to rooms the session sent presence
        // to; a room it never told (no initial presence) learns of the end here. Either way
        // the occupant leaves once.
        for svc in &self.services {
            for room in svc.shared.rooms_of(session.jid()) {
                svc.shared
                    .to_room(router, &room, Cmd::Gone(session.jid().clone()))
                    .await;
            }
        }
    }
}
