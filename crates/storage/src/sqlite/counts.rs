//! Archive sizes kept by the writer task, so that an RSM `<count/>` (which the MAM module adds
//! to every unfiltered query) does not scan a user's whole archive index each time: at a
//! million messages that scan took ~150 ms (docs/benchmarks.md, archive).
//!
//! Only the writer task loads or changes an entry, after its batch committed, so an entry is
//! always the size as of the last commit; readers only look entries up.

use std::collections::HashMap;
use std::sync::Mutex;

use super::ops::{Slot, WriteOp};
use crate::Result;

/// Most archives whose size is kept; past it the table starts over (sizes reload on demand).
const MAX_ENTRIES: usize = 100_000;

type Key = (String, String, String);

fn key(slot: &Slot) -> Key {
    (slot.host.clone(), slot.store.clone(), slot.user.clone())
}

/// Sizes of the archives counted so far, by (host, store, user).
#[derive(Debug, Default)]
pub(crate) struct ArchiveCounts {
    sizes: Mutex<HashMap<Key, u64>>,
}

impl ArchiveCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, u64>> {
        // The map holds no invariant a panic could break halfway; keep using it.
        self.sizes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The size of an archive, if it is kept.
    pub fn get(&self, slot: &Slot) -> Option<u64> {
        self.lock().get(&key(slot)).copied()
    }

    /// Keeps a size the writer task just counted.
    pub fn insert(&self, slot: &Slot, n: u64) {
        let mut sizes = self.lock();
        if sizes.len() >= MAX_ENTRIES {
            sizes.clear();
        }
        sizes.insert(key(slot), n);
    }

    /// Follows a committed write: appends and deletions adjust the size, account deletion and
    /// expiry (which touch archives the op does not name one by one) drop the entries.
    pub fn apply(&self, op: &WriteOp, result: &Result<u64>) {
        let Ok(n) = result else { return };
        let mut sizes = self.lock();
        match op {
            WriteOp::Append { slot, .. } => {
                if let Some(size) = sizes.get_mut(&key(slot)) {
                    *size += 1;
                }
            }
            WriteOp::DeleteArchive { slot, .. } => {
                if let Some(size) = sizes.get_mut(&key(slot)) {
                    *size = size.saturating_sub(*n);
                }
            }
            WriteOp::DeleteAccount { host, user } => {
                sizes.retain(|(h, _, u), _| !(h == host && u == user));
            }
            WriteOp::Expire { store, .. } => sizes.retain(|(_, s, _), _| s != store),
            _ => {}
        }
    }
}
