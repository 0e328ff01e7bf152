//! Answering archive queries (XEP-0313 §4): resolving the request against the archive,
//! sending each hit as an XEP-0297 `<forwarded/>` result, then the `<fin/>` with the XEP-0059
//! `<set/>`; and the archive metadata of §5 (#extended).

use std::time::Duration;

use jid::{BareJid, Jid};
use minidom::Element;
use tracing::{debug, warn};

use tern_router::registry::SendError;
use tern_router::time::format_micros;
use tern_router::xml::BuilderExt;
use tern_router::{Condition, Ctx, Kind, Origin, Router, SessionHandle, Stanza, StanzaError};
use tern_storage::{ArchiveItem, ArchivePage, ArchiveQuery, ArchiveStore, StoreError};
use tern_stream::NS_CLIENT;

use crate::archive::STORE;
use crate::form::{Request, NS_RSM};
use crate::{MamConfig, NS_MAM};

/// XEP-0297 namespace.
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";
/// XEP-0203 namespace.
pub const NS_DELAY: &str = "urn:xmpp:delay";

/// How long a page may wait for room in the requester's queue before it is abandoned.
const SEND_PATIENCE: Duration = Duration::from_secs(30);

fn internal(owner: &BareJid, e: StoreError) -> StanzaError {
    warn!(jid = %owner, "archive query failed: {e}");
    StanzaError::new(Condition::InternalServerError)
}

/// §4.1.3, §4.3.2: an id the archive does not hold is item-not-found.
fn lookup_error(owner: &BareJid, e: StoreError) -> StanzaError {
    match e {
        StoreError::NotFound => {
            StanzaError::new(Condition::ItemNotFound).with_text("no such id in the archive")
        }
        e => internal(owner, e),
    }
}

/// The archive a query runs on: an account's, or a MUC room's (`owner` is then the room JID).
pub struct Archive<'a> {
    /// The store.
    pub store: &'a dyn ArchiveStore,
    /// Whose archive: host and user of the store items.
    pub owner: &'a BareJid,
    /// Page size and retention.
    pub config: &'a MamConfig,
}

impl Archive<'_> {
    fn host_user(&self) -> (&str, &str) {
        (
            self.owner.domain().as_str(),
            self.owner.node().map_or("", |n| n.as_str()),
        )
    }

    async fn run(&self, q: &ArchiveQuery) -> Result<ArchivePage, StoreError> {
        let (host, user) = self.host_user();
        self.store.query(host, STORE, user, q).await
    }

    /// Two cursors for one side of the range (a form id and an RSM id): both must exist, and
    /// the narrower one applies, i.e. the later `after` or the earlier `before`.
    async fn bound(
        &self,
        a: Option<&String>,
        b: Option<&String>,
        later: bool,
    ) -> Result<Option<String>, StanzaError> {
        let (a, b) = match (a, b) {
            (Some(a), Some(b)) if a != b => (a, b),
            (a, b) => return Ok(a.or(b).cloned()),
        };
        let q = ArchiveQuery {
            ids: vec![a.clone(), b.clone()],
            ..ArchiveQuery::default()
        };
        let page = self.run(&q).await.map_err(|e| internal(self.owner, e))?;
        if page.items.len() < 2 {
            return Err(lookup_error(self.owner, StoreError::NotFound));
        }
        let pick = if later {
            page.items.last()
        } else {
            page.items.first()
        };
        Ok(pick.map(|i| i.id.clone()))
    }

    /// Resolves a request into one page, or the error to answer with. Nothing has been sent
    /// yet when this fails, so the IQ error is the whole answer.
    pub async fn page(&self, req: &Request) -> Result<ArchivePage, StanzaError> {
        let cfg = self.config;
        if req.ids.len() > cfg.max_page {
            return Err(StanzaError::new(Condition::PolicyViolation)
                .with_text(format!("at most {} ids in one query", cfg.max_page)));
        }
        if !req.ids.is_empty() {
            // §4.1.3: every requested id must exist, even outside the other filters.
            let q = ArchiveQuery {
                ids: req.ids.clone(),
                ..ArchiveQuery::default()
            };
            let found = self.run(&q).await.map_err(|e| internal(self.owner, e))?;
            if req
                .ids
                .iter()
                .any(|id| !found.items.iter().any(|i| i.id == *id))
            {
                return Err(lookup_error(self.owner, StoreError::NotFound));
            }
        }
        let after_id = self
            .bound(req.after_id.as_ref(), req.after.as_ref(), true)
            .await?;
        let before_id = self
            .bound(req.before_id.as_ref(), req.before.as_ref(), false)
            .await?;
        let q = ArchiveQuery {
            with: req.with.as_ref().map(|j| j.to_bare().to_string()),
            start: match (req.start, cfg.cutoff()) {
                (Some(s), Some(c)) => Some(s.max(c)),
                (s, c) => s.or(c),
            },
            end: req.end,
            after_id,
            before_id,
            ids: req.ids.clone(),
            limit: Some(req.max.unwrap_or(cfg.max_page).min(cfg.max_page)),
            from_end: req.backward,
        };
        let full = req.with.as_ref().filter(|j| j.resource().is_some());
        match full {
            None => self.run(&q).await,
            Some(full) => self.page_with_full_jid(q, full).await,
        }
        .map_err(|e| lookup_error(self.owner, e))
    }

    /// §4.1.1: a full JID in `with` matches only messages to or from exactly it. The store
    /// filters by bare peer, so this pages through that peer's items in batches and keeps the
    /// matching ones until one more than the page size is found (which also settles
    /// `complete`) or the range is exhausted.
    async fn page_with_full_jid(
        &self,
        mut q: ArchiveQuery,
        full: &Jid,
    ) -> Result<ArchivePage, StoreError> {
        let want = q.limit.unwrap_or(self.config.max_page);
        q.limit = Some(want.clamp(50, 500));
        let mut picked: Vec<ArchiveItem> = Vec::new();
        let complete = loop {
            let batch = self.run(&q).await?;
            let mut items = batch.items;
            if q.from_end {
                items.reverse();
            }
            let cursor = items.last().map(|i| i.id.clone());
            picked.extend(items.into_iter().filter(|i| involves(i, full)));
            if picked.len() > want {
                picked.truncate(want);
                break false;
            }
            if batch.complete || cursor.is_none() {
                break true;
            }
            if q.from_end {
                q.before_id = cursor;
            } else {
                q.after_id = cursor;
            }
        };
        if q.from_end {
            picked.reverse();
        }
        Ok(ArchivePage {
            items: picked,
            complete,
        })
    }

    /// RSM `<count/>`, only where it is exact and cheap: an unfiltered query with no
    /// retention window is the whole archive.
    pub async fn count(&self, req: &Request) -> Option<u64> {
        if req.filtered() || self.config.cutoff().is_some() {
            return None;
        }
        let (host, user) = self.host_user();
        self.store.count(host, STORE, user).await.ok()
    }

    /// §5 (#extended): the first and last item; an empty archive gives an empty element.
    pub async fn metadata(&self) -> Result<Element, StanzaError> {
        let mut md = Element::builder("metadata", NS_MAM).build();
        for (name, from_end) in [("start", false), ("end", true)] {
            let q = ArchiveQuery {
                start: self.config.cutoff(),
                limit: Some(1),
                from_end,
                ..ArchiveQuery::default()
            };
            let page = self.run(&q).await.map_err(|e| internal(self.owner, e))?;
            let Some(item) = page.items.first() else {
                return Ok(Element::builder("metadata", NS_MAM).build());
            };
            md.append_child(
                Element::builder(name, NS_MAM)
                    .a("id", item.id.as_str())
                    .a("timestamp", format_micros(item.when))
                    .build(),
            );
        }
        Ok(md)
    }
}

/// Whether a stored message is to or from exactly `full`.
fn involves(item: &ArchiveItem, full: &Jid) -> bool {
    let Some(el) = parse_item(item) else {
        return false;
    };
    ["to", "from"].into_iter().any(|a| {
        el.attr(a)
            .and_then(|v| Jid::new(v).ok())
            .is_some_and(|j| j == *full)
    })
}

fn parse_item(item: &ArchiveItem) -> Option<Element> {
    std::str::from_utf8(&item.data).ok()?.parse().ok()
}

/// One result message (§4.2). An unreadable stored message is sent without its `<message/>`
/// (allowed by §3.2), keeping its id and time so paging stays consistent.
fn result_message(to: &Jid, owner: &BareJid, queryid: Option<&str>, item: &ArchiveItem) -> Element {
    let mut forwarded = Element::builder("forwarded", NS_FORWARD)
        .append(
            Element::builder("delay", NS_DELAY)
                .a("stamp", format_micros(item.when))
                .build(),
        )
        .build();
    match parse_item(item) {
        Some(m) => {
            forwarded.append_child(m);
        }
        None => {
            warn!(jid = %owner, id = %item.id, "unreadable archived message sent without content")
        }
    }
    Element::builder("message", NS_CLIENT)
        .a("to", to.as_str())
        .a("from", owner.as_str())
        .a("id", format!("mam-{}", item.id))
        .append(
            Element::builder("result", NS_MAM)
                .a_opt("queryid", queryid)
                .a("id", item.id.as_str())
                .append(forwarded)
                .build(),
        )
        .build()
}

/// The `<fin/>` of §4.3 with the XEP-0059 `<set/>`.
pub(crate) fn fin(page: &ArchivePage, req: &Request, count: Option<u64>) -> Element {
    let mut set = Element::builder("set", NS_RSM).build();
    if let (Some(first), Some(last)) = (page.items.first(), page.items.last()) {
        set.append_child(
            Element::builder("first", NS_RSM)
                .a_opt(
                    "index",
                    first_index(page, req, count).map(|i| i.to_string()),
                )
                .append(first.id.as_str())
                .build(),
        );
        set.append_child(
            Element::builder("last", NS_RSM)
                .append(last.id.as_str())
                .build(),
        );
    }
    if let Some(c) = count {
        set.append_child(
            Element::builder("count", NS_RSM)
                .append(c.to_string())
                .build(),
        );
    }
    Element::builder("fin", NS_MAM)
        .a("complete", if page.complete { "true" } else { "false" })
        .append(set)
        .build()
}

/// XEP-0059 §2.3 `index`, where it is known without counting: 0 at the start of the result
/// set, count minus the page size at its end.
fn first_index(page: &ArchivePage, req: &Request, count: Option<u64>) -> Option<u64> {
    let at_start = if req.backward {
        page.complete
    } else {
        req.after.is_none()
    };
    let at_end = if req.backward {
        req.before.is_none()
    } else {
        page.complete
    };
    if at_start {
        Some(0)
    } else if at_end {
        count.map(|c| c.saturating_sub(page.items.len() as u64))
    } else {
        None
    }
}

/// Sends the page and then the IQ result from a task of its own: the requester's session reads
/// its queue only between stanzas, so waiting for room inside the handler would wait forever.
pub fn send_page(
    ctx: &Ctx<'_>,
    st: &Stanza,
    owner: &BareJid,
    req: &Request,
    page: ArchivePage,
    count: Option<u64>,
) {
    let fin = st.iq_result(Some(fin(&page, req, count)));
    let to = st.from.clone();
    let session = ctx.origin.session().filter(|s| *s.jid() == to).cloned();
    let router = ctx.router.clone();
    let owner = owner.clone();
    let queryid = req.queryid.clone();
    let flip = req.flip;
    tokio::spawn(async move {
        let mut items = page.items;
        // §4.3.3: a flipped page has the same items, sent newest first.
        if flip {
            items.reverse();
        }
        for item in &items {
            let msg = result_message(&to, &owner, queryid.as_deref(), item);
            if !send(&router, session.as_ref(), &owner, &to, Kind::Message, msg).await {
                return;
            }
        }
        send(&router, session.as_ref(), &owner, &to, Kind::Iq, fin).await;
    });
}

/// Queues on the requesting session, waiting while its queue is full; other requesters (none
/// today: only the owner's own sessions query) go through the router.
async fn send(
    router: &std::sync::Arc<Router>,
    session: Option<&SessionHandle>,
    owner: &BareJid,
    to: &Jid,
    kind: Kind,
    el: Element,
) -> bool {
    let Some(s) = session else {
        let st = Stanza::new(kind, Jid::from(owner.clone()), Some(to.clone()), el);
        router.route(Origin::Local, st).await;
        return true;
    };
    let deadline = tokio::time::Instant::now() + SEND_PATIENCE;
    loop {
        match s.send(el.clone()) {
            Ok(()) => return true,
            Err(SendError::Full) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => {
                debug!(to = %to, "archive results abandoned: {e:?}");
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> ArchiveItem {
        ArchiveItem {
            id: id.into(),
            when: 1_278_803_305_000_000,
            with: "romeo@montague.lit".into(),
            data: b"<message xmlns='jabber:client' from='romeo@montague.lit/orchard' to='juliet@capulet.lit/balcony' type='chat'><body>Hail</body></message>".to_vec(),
        }
    }

    #[test]
    fn result_and_fin_shapes() {
        let to = Jid::new("juliet@capulet.lit/chamber").unwrap();
        let owner = BareJid::new("juliet@capulet.lit").unwrap();
        let m = result_message(&to, &owner, Some("f27"), &item("28482-98726-73623"));
        let r = m.get_child("result", NS_MAM).unwrap();
        assert_eq!(
            (r.attr("queryid"), r.attr("id")),
            (Some("f27"), Some("28482-98726-73623"))
        );
        let f = r.get_child("forwarded", NS_FORWARD).unwrap();
        assert_eq!(
            f.get_child("delay", NS_DELAY).unwrap().attr("stamp"),
            Some("2010-07-10T23:08:25.000Z")
        );
        let inner = f.get_child("message", NS_CLIENT).unwrap();
        assert_eq!(inner.get_child("body", NS_CLIENT).unwrap().text(), "Hail");
        assert!(involves(
            &item("x"),
            &Jid::new("romeo@montague.lit/orchard").unwrap()
        ));
        assert!(!involves(
            &item("x"),
            &Jid::new("romeo@montague.lit/other").unwrap()
        ));

        let page = ArchivePage {
            items: vec![item("a"), item("b")],
            complete: true,
        };
        let req = Request::default();
        let f = fin(&page, &req, Some(2));
        assert_eq!(f.attr("complete"), Some("true"));
        let set = f.get_child("set", NS_RSM).unwrap();
        assert_eq!(
            set.get_child("first", NS_RSM).unwrap().attr("index"),
            Some("0")
        );
        assert_eq!(set.get_child("last", NS_RSM).unwrap().text(), "b");
        assert_eq!(set.get_child("count", NS_RSM).unwrap().text(), "2");
        // An empty page has neither first nor last (XEP-0059 §2.2).
        let empty = fin(&ArchivePage::default(), &req, None);
        assert!(empty
            .get_child("set", NS_RSM)
            .unwrap()
            .children()
            .next()
            .is_none());
    }

    #[test]
    fn index_only_where_known() {
        let page = |complete| ArchivePage {
            items: vec![item("a"), item("b")],
            complete,
        };
        let fwd_after = Request {
            after: Some("z".into()),
            ..Request::default()
        };
        assert_eq!(first_index(&page(false), &fwd_after, Some(10)), None);
        assert_eq!(first_index(&page(true), &fwd_after, Some(10)), Some(8));
        let last_page = Request {
            backward: true,
            ..Request::default()
        };
        assert_eq!(first_index(&page(false), &last_page, Some(10)), Some(8));
        assert_eq!(first_index(&page(false), &last_page, None), None);
        let back = Request {
            backward: true,
            before: Some("z".into()),
            ..Request::default()
        };
        assert_eq!(first_index(&page(true), &back, None), Some(0));
    }
}
