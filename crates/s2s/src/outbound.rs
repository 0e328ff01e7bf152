//! Outgoing streams: one per (local domain, remote domain) pair, reused for all traffic.
//!
//! The first stanza for a pair starts a task that connects and authenticates (with bounded
//! retries and doubling delays) while later stanzas wait in a bounded queue. If it cannot,
//! one log line says why and every queued stanza bounces with the RFC 6120 §8.3.3 condition
//! that fits. Once up, the task coalesces the queue into one write per wakeup and closes the
//! stream after `idle_timeout` without stanzas; stanzas still queued (or in a write that
//! failed) when a stream ends go through a new one.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

use tern_router::{Condition, StanzaError};
use tern_stream::{StreamError, StreamErrorCondition as Sec, StreamEvent, STREAM_CLOSE};

use crate::connect::{self, AuthMethod, Opened};
use crate::dialback::NS_DB;
use crate::error::S2sError;
use crate::stream::encode;
use crate::Inner;

/// The queue of one pair's stream.
pub(crate) struct Link {
    tx: mpsc::Sender<Element>,
    id: u64,
    up: Arc<OnceLock<AuthMethod>>,
}

impl Link {
    /// How the stream was authenticated, once it is (not while still connecting).
    pub(crate) fn method(&self) -> Option<AuthMethod> {
        self.up.get().copied()
    }
}

/// Queues a stanza for `remote`, starting a connection if there is none.
pub(crate) fn enqueue(
    inner: &Arc<Inner>,
    local: String,
    remote: String,
    el: Element,
) -> Result<(), StanzaError> {
    let key = (local, remote);
    let mut links = inner.links.lock().unwrap_or_else(|e| e.into_inner());
    let mut el = el;
    if let Some(link) = links.get(&key) {
        match link.tx.try_send(el) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(_)) => {
                warn!(local = %key.0, remote = %key.1, "s2s queue to {} is full ({} stanzas); bouncing", key.1, inner.config.queue_size);
                return Err(StanzaError::new(Condition::ResourceConstraint)
                    .with_text(format!("too many stanzas waiting for {}", key.1)));
            }
            // The stream just ended; start a new one.
            Err(TrySendError::Closed(back)) => el = back,
        }
    }
    let (tx, rx) = mpsc::channel(inner.config.queue_size);
    let id = inner
        .next_link
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let up = Arc::new(OnceLock::new());
    if tx.try_send(el).is_err() {
        return Err(StanzaError::new(Condition::InternalServerError));
    }
    links.insert(
        key.clone(),
        Link {
            tx,
            id,
            up: up.clone(),
        },
    );
    drop(links);
    let span = tracing::info_span!("s2s_out", local = %key.0, remote = %key.1);
    tokio::spawn(run(inner.clone(), key.0, key.1, rx, id, up).instrument(span));
    Ok(())
}

async fn run(
    inner: Arc<Inner>,
    local: String,
    remote: String,
    mut rx: mpsc::Receiver<Element>,
    id: u64,
    up: Arc<OnceLock<AuthMethod>>,
) {
    match establish(&inner, &local, &remote).await {
        Err(e) => {
            warn!("cannot deliver to {remote}: {e}");
            let err = e.stanza_error(&remote);
            let pending = finish(&inner, &local, &remote, id, &mut rx);
            for el in pending {
                crate::bounce(&inner, el, err.clone()).await;
            }
        }
        Ok((opened, method)) => {
            let _ = up.set(method);
            info!(target_addr = %opened.target, "s2s stream to {remote} established ({method})");
            let (reason, mut unsent) = pump(&inner, opened, &mut rx).await;
            info!("s2s stream to {remote} ended: {reason}");
            unsent.extend(finish(&inner, &local, &remote, id, &mut rx));
            for el in unsent {
                if let Err(e) = enqueue(&inner, local.clone(), remote.clone(), el.clone()) {
                    crate::bounce(&inner, el, e).await;
                }
            }
        }
    }
}

/// Connects and authenticates, retrying what may succeed later.
async fn establish(
    inner: &Inner,
    local: &str,
    remote: &str,
) -> Result<(Opened, AuthMethod), S2sError> {
    let mut delay = Duration::from_secs(inner.config.retry_delay_secs);
    let mut attempt = 0;
    loop {
        let stage = connect::Stage::default();
        let r = tokio::time::timeout(inner.config.connect_timeout(), async {
            let mut o = connect::open(inner, local, remote, &stage).await?;
            let m = connect::authenticate(inner, &mut o, local, remote).await?;
            Ok((o, m))
        })
        .await
        .unwrap_or_else(|_| {
            let at = stage.into_inner().unwrap_or_else(|e| e.into_inner());
            Err(S2sError::Stalled(at))
        });
        match r {
            Err(e) if e.retryable() && attempt < inner.config.connect_retries => {
                attempt += 1;
                info!(
                    "attempt {attempt} to reach {remote} failed: {e}; retrying in {}s",
                    delay.as_secs()
                );
                let mut shutdown = inner.shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return Err(S2sError::Closed),
                }
                delay *= 2;
            }
            other => return other,
        }
    }
}

/// Unregisters the link and takes what is still queued.
fn finish(
    inner: &Inner,
    local: &str,
    remote: &str,
    id: u64,
    rx: &mut mpsc::Receiver<Element>,
) -> Vec<Element> {
    {
        let mut links = inner.links.lock().unwrap_or_else(|e| e.into_inner());
        let key = (local.to_owned(), remote.to_owned());
        if links.get(&key).map(|l| l.id) == Some(id) {
            links.remove(&key);
        }
    }
    rx.close();
    let mut pending = Vec::new();
    while let Ok(el) = rx.try_recv() {
        pending.push(el);
    }
    pending
}

/// Runs an authenticated stream: queue to socket, and answers to what the peer sends on it.
/// Returns why it ended and stanzas that may not have been written.
async fn pump(
    inner: &Inner,
    opened: Opened,
    rx: &mut mpsc::Receiver<Element>,
) -> (String, Vec<Element>) {
    let (io, mut reader) = opened.stream.into_parts();
    let (mut rd, mut wr) = tokio::io::split(io);
    let idle = inner.config.idle_timeout();
    let mut last = Instant::now();
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::new();
    let mut shutdown = inner.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                let mut bytes = StreamError::new(Sec::SystemShutdown).to_bytes();
                bytes.extend_from_slice(STREAM_CLOSE.as_bytes());
                let _ = tokio::time::timeout(Duration::from_secs(5), wr.write_all(&bytes)).await;
                return ("server shutdown".into(), Vec::new());
            }
            item = rx.recv() => {
                let Some(el) = item else { return ("queue closed".into(), Vec::new()) };
                let mut batch = vec![el];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                for el in &batch {
                    encode(el, &mut out);
                }
                let written = async {
                    wr.write_all(&out).await?;
                    wr.flush().await
                }
                .await;
                out.clear();
                if let Err(e) = written {
                    return (format!("write failed: {e}"), batch);
                }
                last = Instant::now();
            }
            r = rd.read(&mut buf) => {
                let n = match r {
                    Ok(0) => return ("connection closed by peer".into(), Vec::new()),
                    Ok(n) => n,
                    Err(e) => return (format!("read failed: {e}"), Vec::new()),
                };
                if let Err(e) = reader.feed(&buf[..n]) {
                    let _ = wr.write_all(&StreamError::from(&e).to_bytes()).await;
                    return (format!("peer sent bad XML: {e}"), Vec::new());
                }
                loop {
                    match reader.next_event() {
                        Ok(None) => break,
                        Ok(Some(StreamEvent::Close)) => {
                            let _ = wr.write_all(STREAM_CLOSE.as_bytes()).await;
                            return ("closed by peer".into(), Vec::new());
                        }
                        Ok(Some(StreamEvent::Element(el))) => {
                            if let Some(e) = StreamError::from_element(&el) {
                                return (format!("peer sent {e}"), Vec::new());
                            }
                            if el.is("verify", NS_DB) && el.attr("type").is_none() {
                                let mut answer = Vec::new();
                                encode(&crate::inbound::answer_verify(inner, &el), &mut answer);
                                if wr.write_all(&answer).await.is_err() {
                                    return ("write failed".into(), Vec::new());
                                }
                            } else {
                                debug!("ignoring <{}/> on an outgoing stream", el.name());
                            }
                        }
                        Ok(Some(StreamEvent::Header(_))) => {}
                        Err(e) => return (format!("peer sent bad XML: {e}"), Vec::new()),
                    }
                }
            }
            _ = tokio::time::sleep_until(last + idle) => {
                let _ = tokio::time::timeout(Duration::from_secs(5), wr.write_all(STREAM_CLOSE.as_bytes())).await;
                return (format!("idle for {}s", idle.as_secs()), Vec::new());
            }
        }
    }
}
