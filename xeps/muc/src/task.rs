//! A room's task: loads the room (from storage when it is persistent), handles its commands one
//! at a time, and ends when the room is empty (a temporary room is then destroyed, a persistent
//! one unloaded until it is needed again) or destroyed.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use tern_router::{Condition, Kind, Router, StanzaError};

use crate::room::Room;
use crate::service::{Cmd, Shared};

/// Runs one room until it empties or is destroyed.
pub(crate) async fn run(
    svc: Arc<Shared>,
    router: Arc<Router>,
    name: String,
    mut rx: mpsc::Receiver<Cmd>,
    stored: bool,
) {
    let mut room = if stored {
        match Room::load(&svc, &router, &name).await {
            Ok(r) => r,
            Err(e) => {
                warn!(room = %name, domain = %svc.domain, "cannot load room: {e}");
                None
            }
        }
    } else {
        None
    };
    loop {
        let Some(cmd) = rx.recv().await else { break };
        match (&mut room, cmd) {
            (Some(r), cmd) => r.handle(cmd).await,
            (None, Cmd::Stanza(origin, st)) if st.kind == Kind::Presence => {
                room = Room::create(&svc, &router, &name, &origin, &st).await;
            }
            (None, Cmd::Stanza(_, st)) => refuse_missing(&router, &st).await,
            (None, Cmd::Shutdown(done)) => {
                let _ = done.send(());
            }
            (None, Cmd::Gone(_)) => {}
        }
        if room.as_ref().is_some_and(|r| r.destroyed) {
            room = None;
        }
        let idle = room.as_ref().is_none_or(|r| r.occupants.is_empty());
        if !idle {
            continue;
        }
        if let Some(r) = &room {
            // A reload must find every message in the archive.
            r.flush_archive().await;
        }
        let persistent = room
            .as_ref()
            .is_some_and(|r| r.config.persistent && !r.locked);
        if !persistent {
            if let Some(r) = room.take() {
                // A temporary room ends with its last occupant (§10.9 does not apply: nobody
                // is left to tell).
                r.forget().await;
            }
        }
        if svc.try_unload(&name, &rx, persistent) {
            debug!(room = %name, domain = %svc.domain, persistent, "room task ends");
            break;
        }
    }
    // Commands sent just before the task left the table: a new task takes them.
    rx.close();
    while let Ok(cmd) = rx.try_recv() {
        svc.to_room(&router, &name, cmd).await;
    }
}

/// A stanza for a room that does not exist (and is not a join that creates it).
async fn refuse_missing(router: &Arc<Router>, st: &tern_router::Stanza) {
    match (st.kind, st.type_()) {
        (Kind::Presence, "unavailable") | (_, "error") | (Kind::Iq, "result") => {}
        _ => {
            router
                .bounce(
                    st,
                    StanzaError::new(Condition::ItemNotFound).with_text("no such room"),
                )
                .await
        }
    }
}
