//! Uploaded files on disk and the quotas over them.
//!
//! Layout: `<root>/<slot>/data` and `<root>/<slot>/meta.json`. A file is first written to
//! `data.part` (created exclusively, so two PUTs to one slot cannot interleave) and renamed
//! once complete; only then is `meta.json` written, so a slot directory without it is an
//! unfinished upload and is removed at start-up.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use super::{now_secs, SlotClaim};

/// Limits of the upload service.
#[derive(Debug, Clone)]
pub struct UploadLimits {
    /// Largest file, bytes.
    pub max_file_size: u64,
    /// Bytes one account may keep stored.
    pub quota_per_user: u64,
    /// Bytes all files together may take.
    pub global_quota: u64,
    /// Content types accepted (empty: any).
    pub allowed_types: Vec<String>,
    /// Lifetime of a PUT URL.
    pub slot_ttl: Duration,
    /// Age after which files are deleted (None: kept).
    pub expire_after: Option<Duration>,
}

/// What is known about a stored file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// Uploader's bare JID.
    pub owner: String,
    /// File name.
    pub filename: String,
    /// Size in bytes.
    pub size: u64,
    /// Content type served.
    pub content_type: String,
    /// Unix time of the upload.
    pub created: u64,
}

/// Why a PUT was refused.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// Something is already stored (or being stored) in this slot.
    #[error("slot already used")]
    Conflict,
    /// The body was larger than announced.
    #[error("body larger than the announced size")]
    TooLarge,
    /// The body ended before the announced size.
    #[error("body shorter than the announced size")]
    Incomplete,
    /// A quota would be exceeded.
    #[error("{0}")]
    Quota(String),
    /// The disk failed, or the client's body stream did.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

#[derive(Default)]
struct Usage {
    total: u64,
    per_user: HashMap<String, u64>,
}

/// The store of uploaded files.
pub struct Files {
    root: PathBuf,
    /// Limits in force.
    pub limits: UploadLimits,
    usage: Mutex<Usage>,
}

/// Whether `s` is a slot id this service makes (32 lower-case hex digits).
pub(crate) fn valid_slot(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Files {
    /// Opens (creating) the store at `root`, removing unfinished uploads and counting usage.
    pub fn open(root: &Path, limits: UploadLimits) -> io::Result<Files> {
        std::fs::create_dir_all(root)?;
        let mut usage = Usage::default();
        for entry in std::fs::read_dir(root)? {
            let entry = entry?;
            let dir = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !valid_slot(&name) || !dir.is_dir() {
                continue;
            }
            match read_record(&dir) {
                Some(r) => {
                    usage.total += r.size;
                    *usage.per_user.entry(r.owner).or_default() += r.size;
                }
                None => {
                    warn!(slot = %name, "removing an unfinished upload");
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
        info!(root = %root.display(), bytes = usage.total, "upload store open");
        Ok(Files {
            root: root.to_owned(),
            limits,
            usage: Mutex::new(usage),
        })
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `owner` may store `size` more bytes now; the refusal says which quota.
    pub fn check_quota(&self, owner: &str, size: u64) -> Result<(), String> {
        let u = self.usage();
        let mine = u.per_user.get(owner).copied().unwrap_or(0);
        if mine + size > self.limits.quota_per_user {
            return Err(format!(
                "your uploads would exceed your quota of {} bytes ({} in use)",
                self.limits.quota_per_user, mine
            ));
        }
        if u.total + size > self.limits.global_quota {
            return Err("the server's upload storage is full".into());
        }
        Ok(())
    }

    /// Bytes an account has stored.
    pub fn used_by(&self, owner: &str) -> u64 {
        self.usage().per_user.get(owner).copied().unwrap_or(0)
    }

    /// Streams a body into the slot named by `claim`.
    pub async fn put<S, E>(&self, claim: &SlotClaim, mut body: S) -> Result<(), PutError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let dir = self.root.join(&claim.slot);
        if dir.join("meta.json").exists() {
            return Err(PutError::Conflict);
        }
        self.check_quota(&claim.owner, claim.size)
            .map_err(PutError::Quota)?;
        tokio::fs::create_dir_all(&dir).await?;
        let part = dir.join("data.part");
        let mut file = match tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&part)
            .await
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(PutError::Conflict),
            Err(e) => return Err(e.into()),
        };
        let mut written = 0u64;
        let result: Result<(), PutError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| io::Error::other(e.to_string()))?;
                written += chunk.len() as u64;
                if written > claim.size {
                    return Err(PutError::TooLarge);
                }
                file.write_all(&chunk).await?;
            }
            if written < claim.size {
                return Err(PutError::Incomplete);
            }
            file.sync_all().await?;
            Ok(())
        }
        .await;
        drop(file);
        if let Err(e) = result {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(e);
        }
        tokio::fs::rename(&part, dir.join("data")).await?;
        let record = Record {
            owner: claim.owner.clone(),
            filename: claim.filename.clone(),
            size: claim.size,
            content_type: if claim.content_type.is_empty() {
                "application/octet-stream".into()
            } else {
                claim.content_type.clone()
            },
            created: now_secs(),
        };
        let json = serde_json::to_vec(&record).map_err(io::Error::other)?;
        tokio::fs::write(dir.join("meta.json"), json).await?;
        let mut u = self.usage();
        u.total += record.size;
        *u.per_user.entry(record.owner.clone()).or_default() += record.size;
        Ok(())
    }

    /// A stored file: its record and its path, if `slot`/`filename` names one.
    pub async fn get(&self, slot: &str, filename: &str) -> Option<(Record, PathBuf)> {
        if !valid_slot(slot) {
            return None;
        }
        let dir = self.root.join(slot);
        let dir2 = dir.clone();
        let record = tokio::task::spawn_blocking(move || read_record(&dir2))
            .await
            .ok()??;
        (record.filename == filename).then(|| (record, dir.join("data")))
    }

    /// Deletes files older than the configured age; returns how many.
    pub async fn purge_expired(&self) -> usize {
        let Some(max_age) = self.limits.expire_after else {
            return 0;
        };
        let cutoff = now_secs().saturating_sub(max_age.as_secs());
        let root = self.root.clone();
        let old: Vec<(PathBuf, Record)> = tokio::task::spawn_blocking(move || {
            let mut v = Vec::new();
            if let Ok(rd) = std::fs::read_dir(&root) {
                for e in rd.flatten() {
                    if let Some(r) = read_record(&e.path()) {
                        if r.created < cutoff {
                            v.push((e.path(), r));
                        }
                    }
                }
            }
            v
        })
        .await
        .unwrap_or_default();
        let mut n = 0;
        for (dir, r) in old {
            if tokio::fs::remove_dir_all(&dir).await.is_ok() {
                n += 1;
                let mut u = self.usage();
                u.total = u.total.saturating_sub(r.size);
                if let Some(m) = u.per_user.get_mut(&r.owner) {
                    *m = m.saturating_sub(r.size);
                }
            }
        }
        n
    }
}

fn read_record(dir: &Path) -> Option<Record> {
    let bytes = std::fs::read(dir.join("meta.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}
