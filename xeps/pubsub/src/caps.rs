//! XEP-0115 entity capabilities for PEP's filtered notifications (XEP-0163 §4.3.2): which full
//! JIDs an account hears available presence from (its contacts and its own resources), which
//! caps `ver` each announced, and what each `ver` means, learnt once per `ver` by asking the
//! client's disco#info (§6.2) and verified by recomputing the hash (§5.1) before it is shared
//! by every JID announcing it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jid::{BareJid, FullJid};
use minidom::Element;

use crate::ns::{NS_CAPS, NS_DISCO_INFO};

/// A client's disco#info features.
pub type Features = HashSet<String>;

/// How long an unanswered disco#info query is remembered.
const PENDING_TTL: Duration = Duration::from_secs(60);
/// Most unanswered queries at once; beyond it new `ver`s are not asked about until some expire.
const MAX_PENDING: usize = 1024;

#[derive(Default)]
struct Seen {
    ver: Option<String>,
    features: Option<Arc<Features>>,
}

struct Pending {
    jid: FullJid,
    ver: String,
    hash: Option<String>,
    waiters: Vec<(BareJid, FullJid)>,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    /// Account → full JIDs it has available presence from.
    seen: HashMap<BareJid, HashMap<FullJid, Seen>>,
    /// Verified `ver` → features.
    cache: HashMap<String, Arc<Features>>,
    /// Query id → what was asked.
    pending: HashMap<String, Pending>,
}

/// What the caller must do after a presence was observed.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing.
    Nothing,
    /// The features are known and the JID is new or changed: deliver last items to it.
    Deliver,
    /// Ask this disco#info (`id`, caps `node#ver`) of the JID.
    Query { id: String, node: String },
}

/// Presence and capabilities tracker shared by the PEP module's hooks.
pub struct Caps {
    inner: Mutex<Inner>,
    max_cache: usize,
}

impl Caps {
    /// A tracker remembering at most `max_cache` verified hashes.
    pub fn new(max_cache: usize) -> Self {
        Caps {
            inner: Mutex::new(Inner::default()),
            max_cache,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The maps stay consistent at every await-free step, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Available presence from `from` reached `owner` (or is `owner`'s own resource's).
    pub fn available(&self, owner: &BareJid, from: &FullJid, presence: &Element) -> Next {
        let c = presence.get_child("c", NS_CAPS);
        let ver = c.and_then(|c| c.attr("ver")).map(str::to_owned);
        let node = c.and_then(|c| c.attr("node")).unwrap_or("").to_owned();
        let hash = c.and_then(|c| c.attr("hash")).map(str::to_owned);
        let mut g = self.lock();
        let inner = &mut *g;
        let known = ver.as_ref().and_then(|v| inner.cache.get(v).cloned());
        let per_owner = inner.seen.entry(owner.clone()).or_default();
        let prev = per_owner.get(from);
        let changed = prev.is_none_or(|p| p.ver != ver);
        let features = known.or_else(|| {
            prev.filter(|p| p.ver == ver)
                .and_then(|p| p.features.clone())
        });
        let has_features = features.is_some();
        per_owner.insert(
            from.clone(),
            Seen {
                ver: ver.clone(),
                features,
            },
        );
        if has_features {
            return if changed {
                Next::Deliver
            } else {
                Next::Nothing
            };
        }
        let Some(ver) = ver else {
            return Next::Nothing;
        };
        let now = Instant::now();
        inner
            .pending
            .retain(|_, p| now.duration_since(p.at) < PENDING_TTL);
        if let Some(p) = inner.pending.values_mut().find(|p| p.ver == ver) {
            p.waiters.push((owner.clone(), from.clone()));
            return Next::Nothing;
        }
        if inner.pending.len() >= MAX_PENDING {
            return Next::Nothing;
        }
        let id = format!("pepcaps-{:016x}", rand::random::<u64>());
        inner.pending.insert(
            id.clone(),
            Pending {
                jid: from.clone(),
                ver: ver.clone(),
                hash,
                waiters: vec![(owner.clone(), from.clone())],
                at: now,
            },
        );
        Next::Query {
            id,
            node: format!("{node}#{ver}"),
        }
    }

    /// Unavailable presence from `from` reached `owner`.
    pub fn unavailable(&self, owner: &BareJid, from: &FullJid) {
        let mut g = self.lock();
        if let Some(m) = g.seen.get_mut(owner) {
            m.remove(from);
            if m.is_empty() {
                g.seen.remove(owner);
            }
        }
    }

    /// Whether `id` is one of our queries (so its response is ours to consume).
    pub fn is_ours(&self, id: &str) -> bool {
        self.lock().pending.contains_key(id)
    }

    /// The response to a query: returns the (account, JID) pairs that just learnt their
    /// features, to which last items should now go. A response from anyone but the queried
    /// JID, or an error, teaches nothing.
    pub fn response(
        &self,
        id: &str,
        from: &FullJid,
        query: Option<&Element>,
    ) -> Vec<(BareJid, FullJid)> {
        let mut g = self.lock();
        let Some(p) = g.pending.remove(id) else {
            return Vec::new();
        };
        let Some(query) = query.filter(|_| p.jid == *from) else {
            return Vec::new();
        };
        let features: Arc<Features> = Arc::new(
            query
                .children()
                .filter(|f| f.is("feature", NS_DISCO_INFO))
                .filter_map(|f| f.attr("var").map(str::to_owned))
                .collect(),
        );
        let verified = p.hash.as_deref() == Some("sha-1") && compute_ver(query) == p.ver;
        let waiters: Vec<(BareJid, FullJid)> = if verified {
            if g.cache.len() >= self.max_cache {
                g.cache.clear();
            }
            g.cache.insert(p.ver.clone(), features.clone());
            p.waiters
        } else {
            // §5.4: an unverifiable answer is believed for the JID that gave it only.
            p.waiters.into_iter().filter(|(_, j)| *j == p.jid).collect()
        };
        let mut out = Vec::new();
        for (owner, jid) in waiters {
            if let Some(s) = g.seen.get_mut(&owner).and_then(|m| m.get_mut(&jid)) {
                if s.ver.as_deref() == Some(p.ver.as_str()) {
                    s.features = Some(features.clone());
                    out.push((owner, jid));
                }
            }
        }
        out
    }

    /// The features `owner` knows for `jid`, if any.
    pub fn features(&self, owner: &BareJid, jid: &FullJid) -> Option<Arc<Features>> {
        self.lock().seen.get(owner)?.get(jid)?.features.clone()
    }

    /// The full JIDs `owner` hears from whose features include `<node>+notify`.
    pub fn interested(&self, owner: &BareJid, node: &str) -> Vec<FullJid> {
        let want = format!("{node}+notify");
        let g = self.lock();
        let Some(m) = g.seen.get(owner) else {
            return Vec::new();
        };
        m.iter()
            .filter(|(_, s)| s.features.as_ref().is_some_and(|f| f.contains(&want)))
            .map(|(j, _)| j.clone())
            .collect()
    }
}

/// XEP-0115 §5.1 verification string hashed with SHA-1, base64-encoded (shared with the
/// server's own capabilities, so both sides hash alike).
pub use tern_router::caps::ver as compute_ver;

#[cfg(test)]
mod tests {
    use super::*;

    /// A client whose identities carry xml:lang (XEP-0115 §5.3) is verified, not just believed
    /// for itself: its features are shared by every JID announcing the same ver.
    #[test]
    fn identities_with_xml_lang_verify() {
        let caps = Caps::new(10);
        let owner = BareJid::new("a@h").unwrap();
        let (b1, b2) = (
            FullJid::new("b@h/1").unwrap(),
            FullJid::new("b@h/2").unwrap(),
        );
        // XEP-0115 §5.3's example as a client sends it, with the ver it announces.
        let q: Element = "<query xmlns='http://jabber.org/protocol/disco#info'>\
            <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
            <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>\
            <feature var='http://jabber.org/protocol/caps'/>\
            <feature var='http://jabber.org/protocol/disco#info'/>\
            <feature var='http://jabber.org/protocol/disco#items'/>\
            <feature var='http://jabber.org/protocol/muc'/>\
            <x xmlns='jabber:x:data' type='result'>\
            <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
            <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>\
            <field var='os'><value>Mac</value></field>\
            <field var='os_version'><value>10.5.1</value></field>\
            <field var='software'><value>Psi</value></field>\
            <field var='software_version'><value>0.11</value></field></x></query>"
            .parse()
            .unwrap();
        let ver = "q07IKJEyjvHSyhy//CH0CxmKi8w=";
        let pres: Element = format!(
            "<presence xmlns='jabber:client'><c xmlns='{NS_CAPS}' hash='sha-1' node='n' ver='{ver}'/></presence>"
        )
        .parse()
        .unwrap();
        let Next::Query { id, .. } = caps.available(&owner, &b1, &pres) else {
            panic!("expected a query");
        };
        assert_eq!(caps.available(&owner, &b2, &pres), Next::Nothing);
        assert_eq!(
            caps.response(&id, &b1, Some(&q)).len(),
            2,
            "both JIDs learnt"
        );
    }

    #[test]
    fn query_once_per_ver_then_cached() {
        let caps = Caps::new(10);
        let owner = BareJid::new("a@h").unwrap();
        let b1 = FullJid::new("b@h/1").unwrap();
        let b2 = FullJid::new("b@h/2").unwrap();
        let q: Element = "<query xmlns='http://jabber.org/protocol/disco#info'>\
            <identity category='client' type='pc'/>\
            <feature var='urn:x+notify'/></query>"
            .parse()
            .unwrap();
        let ver = compute_ver(&q);
        let pres: Element = format!(
            "<presence xmlns='jabber:client'><c xmlns='{NS_CAPS}' hash='sha-1' node='n' ver='{ver}'/></presence>"
        )
        .parse()
        .unwrap();
        let Next::Query { id, node } = caps.available(&owner, &b1, &pres) else {
            panic!("expected a query");
        };
        assert_eq!(node, format!("n#{ver}"));
        assert_eq!(caps.available(&owner, &b2, &pres), Next::Nothing);
        let learnt = caps.response(&id, &b1, Some(&q));
        assert_eq!(learnt.len(), 2);
        let mut got = caps.interested(&owner, "urn:x");
        got.sort();
        assert_eq!(got, vec![b1.clone(), b2.clone()]);
        // Cached: a new JID with the same ver needs no query.
        let b3 = FullJid::new("b@h/3").unwrap();
        assert_eq!(caps.available(&owner, &b3, &pres), Next::Deliver);
        assert_eq!(caps.available(&owner, &b3, &pres), Next::Nothing);
        caps.unavailable(&owner, &b3);
        assert_eq!(caps.interested(&owner, "urn:x").len(), 2);
    }
}
