//! The room's archive and its history on join (XEP-0045 §7.2.13-§7.2.15): every groupchat
//! message with a body is appended to the room's XEP-0313 archive (`tern_mam`'s store, under
//! the room's JID) when logging is on; the newest `max_history` are also kept in memory,
//! serialized once with their delay stamp, so a join costs no store query. A room loaded
//! from storage refills that cache from the archive.

use std::sync::Arc;

use jid::BareJid;
use minidom::Element;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use tern_router::time::{format_micros, parse_datetime};
use tern_router::xml::BuilderExt;
use tern_router::SharedStanza;
use tern_storage::{ArchiveItem, ArchiveQuery};

use crate::ns::{self, DELAY, MUC};
use crate::room::Room;

/// One message of the history cache.
pub(crate) struct HistItem {
    /// Archive id (XEP-0359 stanza id), when archived.
    pub id: Option<String>,
    /// Unix microseconds.
    pub when: i64,
    /// The message with `<delay/>` and `<stanza-id/>`, as history sends it.
    pub stanza: Arc<SharedStanza>,
}

/// What a joining client asked for (`<history/>`, §7.2.14); `None` fields are unlimited.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct HistoryRequest {
    pub maxchars: Option<usize>,
    pub maxstanzas: Option<usize>,
    /// Oldest time wanted, Unix microseconds (from `seconds` or `since`).
    pub since: Option<i64>,
}

impl HistoryRequest {
    /// Reads the `<history/>` child of a join's `<x xmlns='…muc'/>`; unparsable attributes are
    /// ignored (§7.2.14 gives no error for them).
    pub fn from_join(x: Option<&Element>, now: i64) -> HistoryRequest {
        let Some(h) = x.and_then(|x| x.get_child("history", MUC)) else {
            return HistoryRequest::default();
        };
        let num = |a: &str| h.attr(a).and_then(|v| v.trim().parse::<usize>().ok());
        let seconds = num("seconds").map(|s| now - (s as i64).saturating_mul(1_000_000));
        let since = h.attr("since").and_then(parse_datetime);
        HistoryRequest {
            maxchars: num("maxchars"),
            maxstanzas: num("maxstanzas"),
            since: match (seconds, since) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// The history to send: the newest items within every limit, oldest first. `maxchars`
/// counts the bytes of each stanza as sent.
pub(crate) fn select(
    items: &[&HistItem],
    default_len: usize,
    req: &HistoryRequest,
) -> Vec<Arc<SharedStanza>> {
    let max = req.maxstanzas.unwrap_or(default_len).min(default_len);
    let mut chars = 0usize;
    let mut out: Vec<Arc<SharedStanza>> = Vec::new();
    for it in items.iter().rev() {
        if out.len() >= max || req.since.is_some_and(|s| it.when < s) {
            break;
        }
        chars += it.stanza.len();
        if req.maxchars.is_some_and(|m| chars > m) {
            break;
        }
        out.push(it.stanza.clone());
    }
    out.reverse();
    out
}

/// The history form of a reflected message: with the room's delay stamp and the stanza id.
pub(crate) fn history_stanza(
    room: &BareJid,
    el: &Element,
    id: Option<&str>,
    when: i64,
) -> Arc<SharedStanza> {
    let mut h = el.clone();
    h.append_child(
        Element::builder("delay", DELAY)
            .a("from", room.as_str())
            .a("stamp", format_micros(when))
            .build(),
    );
    if let Some(id) = id {
        h.append_child(tern_mam::archive::stanza_id(id, room));
    }
    Arc::new(SharedStanza::new(h))
}

impl Room {
    /// Keeps a message for history, dropping the oldest beyond the room's length.
    pub(crate) fn remember(&mut self, item: HistItem) {
        self.history.push_back(item);
        let keep = self.config.history_length.min(self.svc.config.max_history);
        while self.history.len() > keep {
            self.history.pop_front();
        }
    }

    /// Queues a reflected message (without its stanza id) for the room's archive; returns
    /// its archive id and time at once. `None` when logging is off. The write itself is done
    /// by the room's archive writer, in order, so a room's fan-out never waits for the disk;
    /// readers of the archive call [`Room::flush_archive`] first.
    pub(crate) async fn archive(&mut self, el: &Element) -> Option<(String, i64)> {
        if !self.config.logging {
            return None;
        }
        let mut data = Vec::new();
        if let Err(e) = el.write_to(&mut data) {
            warn!(room = %self.jid, "cannot serialize room message: {e}");
            return None;
        }
        let when = tern_mam::archive::next_when();
        let item = ArchiveItem {
            id: tern_mam::archive::new_id(when),
            when,
            with: self.jid.to_string(),
            data,
        };
        let id = item.id.clone();
        if self.writer.is_none() {
            let node = self.node().to_owned();
            self.writer = Some(Writer::spawn(
                self.svc.storage.clone(),
                self.svc.domain.clone(),
                node,
            ));
        }
        let writer = self.writer.as_ref()?;
        if writer.tx.send(WriterCmd::Append(item)).await.is_err() {
            warn!(room = %self.jid, "room archive writer ended; message not archived");
            return None;
        }
        Some((id, when))
    }

    /// Waits until every queued archive write is done (before reading or deleting the
    /// archive).
    pub(crate) async fn flush_archive(&self) {
        let Some(w) = &self.writer else { return };
        let (done, wait) = oneshot::channel();
        if w.tx.send(WriterCmd::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Refills the history cache from the archive (room loaded from storage).
    pub(crate) async fn load_history(&mut self) {
        let keep = self.config.history_length.min(self.svc.config.max_history);
        if keep == 0 || !self.config.logging {
            return;
        }
        let q = ArchiveQuery {
            limit: Some(keep),
            from_end: true,
            ..ArchiveQuery::default()
        };
        let page = match self
            .svc
            .storage
            .archive
            .query(&self.svc.domain, tern_mam::archive::STORE, self.node(), &q)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                warn!(room = %self.jid, "cannot read the room archive for history: {e}");
                return;
            }
        };
        for item in page.items {
            if let Some(el) = parse(&item) {
                let stanza = history_stanza(&self.jid, &el, Some(&item.id), item.when);
                self.history.push_back(HistItem {
                    id: Some(item.id),
                    when: item.when,
                    stanza,
                });
            }
        }
    }

    /// The history a joining occupant gets.
    pub(crate) fn history_for(&self, req: &HistoryRequest) -> Vec<Arc<SharedStanza>> {
        let items: Vec<&HistItem> = self.history.iter().collect();
        select(&items, self.config.history_length, req)
    }

    /// The subject message sent last on join (§7.2.15) and on change (§8.1): an empty
    /// `<subject/>` when none is set.
    pub(crate) fn subject_stanza(&self) -> Arc<SharedStanza> {
        let from = match &self.subject.by {
            Some(nick) => self.occupant_jid(nick),
            None => self.jid.clone().into(),
        };
        let el = ns::stanza("message")
            .a("from", from.as_str())
            .a("type", "groupchat")
            .a("id", super::random_id())
            .append(ns::text_el(
                "subject",
                tern_stream::NS_CLIENT,
                &self.subject.text,
            ))
            .build();
        Arc::new(SharedStanza::new(el))
    }

    /// One archived message, by id.
    pub(crate) async fn archived(&self, id: &str) -> Option<ArchiveItem> {
        self.flush_archive().await;
        let q = ArchiveQuery {
            ids: vec![id.to_owned()],
            ..ArchiveQuery::default()
        };
        self.svc
            .storage
            .archive
            .query(&self.svc.domain, tern_mam::archive::STORE, self.node(), &q)
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    }

    /// Replaces an archived message with a tombstone (XEP-0424 §5.1, XEP-0425 §5): same id and
    /// time, the payload swapped for `<retracted/>`; the history cache follows.
    pub(crate) async fn tombstone(&mut self, item: &ArchiveItem, retracted: Element) {
        let Some(old) = parse(item) else { return };
        let mut el = ns::stanza("message").build();
        for name in ["from", "type", "id"] {
            tern_router::xml::set_attr(&mut el, name, old.attr(name));
        }
        el.append_child(retracted);
        if let Some(oid) = old.get_child("occupant-id", crate::ns::OCCUPANT_ID) {
            el.append_child(oid.clone());
        }
        let mut data = Vec::new();
        if el.write_to(&mut data).is_err() {
            return;
        }
        let store = &self.svc.storage.archive;
        let (host, user) = (self.svc.domain.as_str(), self.node());
        let new = ArchiveItem {
            data,
            ..item.clone()
        };
        let ids = [item.id.clone()];
        if let Err(e) = store
            .delete(host, tern_mam::archive::STORE, user, Some(&ids))
            .await
        {
            warn!(room = %self.jid, "cannot remove a retracted message: {e}");
            return;
        }
        if let Err(e) = store
            .append(host, tern_mam::archive::STORE, user, &new)
            .await
        {
            warn!(room = %self.jid, "cannot store a tombstone: {e}");
        }
        let room = self.jid.clone();
        for h in self
            .history
            .iter_mut()
            .filter(|h| h.id.as_deref() == Some(&item.id))
        {
            h.stanza = history_stanza(&room, &el, Some(&item.id), item.when);
        }
    }
}

/// Archive writes queued per room before senders wait: the disk may lag the room by this much.
const WRITER_QUEUE: usize = 4096;

/// What the archive writer is asked to do.
pub(crate) enum WriterCmd {
    /// Append one item.
    Append(ArchiveItem),
    /// Answer once everything before has been written.
    Flush(oneshot::Sender<()>),
}

/// A room's archive writer: a task appending items in order; it ends when the room drops it,
/// after the writes still queued.
pub(crate) struct Writer {
    tx: mpsc::Sender<WriterCmd>,
}

impl Writer {
    fn spawn(storage: tern_storage::Storage, domain: String, room: String) -> Writer {
        let (tx, mut rx) = mpsc::channel(WRITER_QUEUE);
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    WriterCmd::Append(item) => {
                        if let Err(e) = storage
                            .archive
                            .append(&domain, tern_mam::archive::STORE, &room, &item)
                            .await
                        {
                            warn!(room = %room, domain = %domain, "cannot archive room message: {e}");
                        }
                    }
                    WriterCmd::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Writer { tx }
    }
}

/// A stored message.
pub(crate) fn parse(item: &ArchiveItem) -> Option<Element> {
    std::str::from_utf8(&item.data).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(when: i64, body: &str) -> HistItem {
        let el: Element = format!(
            "<message xmlns='jabber:client' from='r@m/n' type='groupchat'><body>{body}</body></message>"
        )
        .parse()
        .unwrap();
        HistItem {
            id: None,
            when,
            stanza: Arc::new(SharedStanza::new(el)),
        }
    }

    #[test]
    fn xep0045_history_limits() {
        let items: Vec<HistItem> = (0..10)
            .map(|i| item(i * 1_000_000, &format!("m{i}")))
            .collect();
        let refs: Vec<&HistItem> = items.iter().collect();
        let body = |s: &Arc<SharedStanza>| {
            s.element()
                .get_child("body", "jabber:client")
                .unwrap()
                .text()
        };
        // The room's default length.
        let all = select(&refs, 5, &HistoryRequest::default());
        assert_eq!(
            all.iter().map(body).collect::<Vec<_>>(),
            ["m5", "m6", "m7", "m8", "m9"]
        );
        // §7.2.14 examples: maxstanzas, maxchars=0 (none), seconds/since.
        let r = HistoryRequest {
            maxstanzas: Some(2),
            ..Default::default()
        };
        assert_eq!(
            select(&refs, 5, &r).iter().map(body).collect::<Vec<_>>(),
            ["m8", "m9"]
        );
        let r = HistoryRequest {
            maxchars: Some(0),
            ..Default::default()
        };
        assert!(select(&refs, 5, &r).is_empty());
        let one = items[9].stanza.len();
        let r = HistoryRequest {
            maxchars: Some(one * 2 + 1),
            ..Default::default()
        };
        assert_eq!(select(&refs, 5, &r).len(), 2);
        let r = HistoryRequest {
            since: Some(8_000_000),
            ..Default::default()
        };
        assert_eq!(
            select(&refs, 5, &r).iter().map(body).collect::<Vec<_>>(),
            ["m8", "m9"]
        );
        // A client cannot ask for more than the room keeps.
        let r = HistoryRequest {
            maxstanzas: Some(100),
            ..Default::default()
        };
        assert_eq!(select(&refs, 3, &r).len(), 3);
    }

    #[test]
    fn parses_history_element() {
        let x: Element = "<x xmlns='http://jabber.org/protocol/muc'><history maxchars='65000' maxstanzas='20' seconds='180' since='1970-01-01T00:00:10Z'/></x>"
            .parse()
            .unwrap();
        let r = HistoryRequest::from_join(Some(&x), 200_000_000);
        assert_eq!(r.maxchars, Some(65000));
        assert_eq!(r.maxstanzas, Some(20));
        assert_eq!(r.since, Some(20_000_000), "the later of seconds and since");
        assert_eq!(
            HistoryRequest::from_join(None, 0),
            HistoryRequest::default()
        );
    }
}
