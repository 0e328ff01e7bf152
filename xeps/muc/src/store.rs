//! Persistence of persistent rooms (DESIGN.md §4): one `Map` item per room under the service
//! domain (store `muc_rooms`, user `""`, key = room name) holding its configuration, subject and
//! creator; one `Map` per room for affiliations (store `muc_affiliations`, user = room name,
//! key = bare JID). Messages go to the archive store as XEP-0313 items of the room JID
//! (`tern_mam`'s store). Temporary rooms are never written here, except their archive.

use std::collections::HashMap;

use jid::BareJid;
use serde::{Deserialize, Serialize};
use tracing::warn;

use tern_storage::{Storage, StoreError};

use crate::affiliation::Affiliation;
use crate::roomconfig::RoomConfig;

const ROOMS: &str = "muc_rooms";
const AFFILIATIONS: &str = "muc_affiliations";

/// One affiliation entry (§5.2), with the nick it reserves and the reason given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AffItem {
    /// The affiliation.
    pub affiliation: Affiliation,
    /// Reserved room nick, if any (§7.10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
    /// Reason given when it was set (shown in lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What is stored of a persistent room besides affiliations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredRoom {
    /// Configuration.
    pub config: RoomConfig,
    /// Subject text.
    #[serde(default)]
    pub subject: String,
    /// Nick that set the subject.
    #[serde(default)]
    pub subject_by: Option<String>,
    /// Creator's bare JID.
    pub creator: String,
    /// Occupant id secret.
    pub secret: String,
    /// Creation time, Unix seconds.
    #[serde(default)]
    pub created: i64,
}

fn backend(e: serde_json::Error) -> StoreError {
    StoreError::Backend(format!("stored room is unreadable: {e}"))
}

/// Every stored room, by name; unreadable entries are logged and skipped.
pub(crate) async fn all_rooms(
    storage: &Storage,
    domain: &str,
) -> Result<Vec<(String, StoredRoom)>, StoreError> {
    let items = storage.map.all(domain, ROOMS, "").await?;
    Ok(items
        .into_iter()
        .filter_map(|(k, v)| match serde_json::from_slice(&v) {
            Ok(r) => Some((k, r)),
            Err(e) => {
                warn!(room = %k, domain, "skipping unreadable stored room: {e}");
                None
            }
        })
        .collect())
}

/// One stored room.
pub(crate) async fn load_room(
    storage: &Storage,
    domain: &str,
    room: &str,
) -> Result<Option<StoredRoom>, StoreError> {
    match storage.map.get(domain, ROOMS, "", room).await? {
        Some(v) => serde_json::from_slice(&v).map(Some).map_err(backend),
        None => Ok(None),
    }
}

/// A room's affiliations.
pub(crate) async fn load_affiliations(
    storage: &Storage,
    domain: &str,
    room: &str,
) -> Result<HashMap<BareJid, AffItem>, StoreError> {
    let mut out = HashMap::new();
    for (k, v) in storage.map.all(domain, AFFILIATIONS, room).await? {
        match (BareJid::new(&k), serde_json::from_slice::<AffItem>(&v)) {
            (Ok(j), Ok(a)) => {
                out.insert(j, a);
            }
            _ => warn!(room, jid = %k, "skipping unreadable stored affiliation"),
        }
    }
    Ok(out)
}

/// Writes the room record.
pub(crate) async fn save_room(
    storage: &Storage,
    domain: &str,
    room: &str,
    r: &StoredRoom,
) -> Result<(), StoreError> {
    let v = serde_json::to_vec(r).map_err(backend)?;
    storage
        .map
        .set_many(domain, ROOMS, "", &[(room.to_owned(), Some(v))])
        .await
}

/// Writes (or with `None`, removes) affiliation entries.
pub(crate) async fn save_affiliations(
    storage: &Storage,
    domain: &str,
    room: &str,
    items: &[(BareJid, Option<AffItem>)],
) -> Result<(), StoreError> {
    let mut rows = Vec::with_capacity(items.len());
    for (j, a) in items {
        let v = match a {
            Some(a) => Some(serde_json::to_vec(a).map_err(backend)?),
            None => None,
        };
        rows.push((j.to_string(), v));
    }
    storage
        .map
        .set_many(domain, AFFILIATIONS, room, &rows)
        .await
}

/// Replaces all affiliations (when a temporary room becomes persistent).
pub(crate) async fn replace_affiliations(
    storage: &Storage,
    domain: &str,
    room: &str,
    all: &HashMap<BareJid, AffItem>,
) -> Result<(), StoreError> {
    storage.map.clear(domain, AFFILIATIONS, room).await?;
    let items: Vec<(BareJid, Option<AffItem>)> = all
        .iter()
        .map(|(j, a)| (j.clone(), Some(a.clone())))
        .collect();
    save_affiliations(storage, domain, room, &items).await
}

/// Forgets a room: record, affiliations and, with `archive`, its messages.
pub(crate) async fn delete_room(
    storage: &Storage,
    domain: &str,
    room: &str,
    archive: bool,
) -> Result<(), StoreError> {
    storage
        .map
        .set_many(domain, ROOMS, "", &[(room.to_owned(), None)])
        .await?;
    storage.map.clear(domain, AFFILIATIONS, room).await?;
    if archive {
        storage
            .archive
            .delete(domain, tern_mam::archive::STORE, room, None)
            .await?;
    }
    Ok(())
}
