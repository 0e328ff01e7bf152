//! XEP-0441: Message Archive Management Preferences (XEP-0313 §6 before its split): the
//! account's default policy and its always/never lists, kept as one JSON document per account
//! in the KeyVal store, and the decision whether a message with a given peer is archived.

use jid::{BareJid, Jid};
use minidom::Element;
use serde::{Deserialize, Serialize};
use tracing::warn;

use tern_router::xml::BuilderExt;
use tern_router::{Condition, Router, StanzaError};

use crate::NS_MAM;

/// KeyVal store name of the preferences.
const STORE: &str = "mam_prefs";

/// What to do with a peer that is in neither list (XEP-0441 §2.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Archive every message.
    Always,
    /// Archive nothing.
    Never,
    /// Archive messages with contacts on the account's roster.
    Roster,
}

impl Policy {
    /// The wire value of the `default` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Always => "always",
            Policy::Never => "never",
            Policy::Roster => "roster",
        }
    }

    /// Reads a wire (or configuration) value.
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "always" => Some(Policy::Always),
            "never" => Some(Policy::Never),
            "roster" => Some(Policy::Roster),
            _ => None,
        }
    }
}

/// One account's preferences; JIDs are stored normalized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Prefs {
    pub default: Policy,
    #[serde(default)]
    pub always: Vec<String>,
    #[serde(default)]
    pub never: Vec<String>,
}

/// The outcome of the lists and the default, before any roster lookup.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Archive,
    Skip,
    /// `default='roster'` and the peer is in neither list: archive if it is on the roster.
    IfInRoster,
}

/// XEP-0441 §2.3.1: a listed JID with a resource matches the target as-is, a bare one matches
/// the target's bare JID.
fn listed(list: &[String], target: &Jid) -> bool {
    list.iter().any(|entry| match Jid::new(entry) {
        Ok(j) if j.resource().is_some() => j == *target,
        Ok(j) => j.to_bare() == target.to_bare(),
        Err(_) => false,
    })
}

impl Prefs {
    /// Preferences of an account that never set any.
    pub fn with_default(default: Policy) -> Prefs {
        Prefs {
            default,
            always: Vec::new(),
            never: Vec::new(),
        }
    }

    /// Decides for a peer (`to` of an outgoing message, `from` of an incoming one, §2.3.2-3).
    /// A peer on both lists is not archived: the narrower wish wins.
    pub fn decide(&self, owner: &BareJid, target: &Jid) -> Decision {
        if listed(&self.never, target) {
            return Decision::Skip;
        }
        if listed(&self.always, target) {
            return Decision::Archive;
        }
        match self.default {
            Policy::Always => Decision::Archive,
            Policy::Never => Decision::Skip,
            // Notes to self are archived: the account is trivially known to itself.
            Policy::Roster if target.to_bare() == *owner => Decision::Archive,
            Policy::Roster => Decision::IfInRoster,
        }
    }

    /// The `<prefs/>` element of a result; both lists are always present (§2.1).
    pub fn to_element(&self) -> Element {
        let list = |name: &str, jids: &[String]| {
            let mut el = Element::builder(name, NS_MAM).build();
            for j in jids {
                el.append_child(Element::builder("jid", NS_MAM).append(j.as_str()).build());
            }
            el
        };
        Element::builder("prefs", NS_MAM)
            .a("default", self.default.as_str())
            .append(list("always", &self.always))
            .append(list("never", &self.never))
            .build()
    }

    /// Applies a `<prefs/>` set to `current`: a missing `default` keeps the current one, a
    /// missing list is empty (§2.1.2-3). Invalid values are `bad-request`, too many JIDs
    /// `policy-violation`.
    pub fn from_element(
        el: &Element,
        current: Policy,
        max_jids: usize,
    ) -> Result<Prefs, StanzaError> {
        let default = match el.attr("default") {
            None => current,
            Some(v) => Policy::parse(v).ok_or_else(|| {
                StanzaError::new(Condition::BadRequest)
                    .with_text("'default' must be 'always', 'never' or 'roster'")
            })?,
        };
        let list = |name: &str| -> Result<Vec<String>, StanzaError> {
            let mut out: Vec<String> = Vec::new();
            for j in el
                .get_child(name, NS_MAM)
                .into_iter()
                .flat_map(|l| l.children().filter(|c| c.is("jid", NS_MAM)))
            {
                let jid = Jid::new(j.text().trim()).map_err(|_| {
                    StanzaError::new(Condition::JidMalformed)
                        .with_text(format!("<{name}/> holds an invalid JID"))
                })?;
                let s = jid.to_string();
                if !out.contains(&s) {
                    out.push(s);
                }
            }
            Ok(out)
        };
        let (always, never) = (list("always")?, list("never")?);
        if always.len() + never.len() > max_jids {
            return Err(StanzaError::new(Condition::PolicyViolation)
                .with_text(format!("at most {max_jids} JIDs in the preferences")));
        }
        Ok(Prefs {
            default,
            always,
            never,
        })
    }
}

fn parts(owner: &BareJid) -> (&str, &str) {
    (
        owner.domain().as_str(),
        owner.node().map_or("", |n| n.as_str()),
    )
}

/// The account's preferences, or the server default when it never set any (or the stored
/// document is unreadable, which is logged).
pub(crate) async fn load(router: &Router, owner: &BareJid, default: Policy) -> Prefs {
    let (host, user) = parts(owner);
    match router.storage().keyval.get(host, STORE, user).await {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            warn!(jid = %owner, "unreadable archiving preferences, using the default: {e}");
            Prefs::with_default(default)
        }),
        Ok(None) => Prefs::with_default(default),
        Err(e) => {
            warn!(jid = %owner, "cannot read archiving preferences, using the default: {e}");
            Prefs::with_default(default)
        }
    }
}

/// Stores the account's preferences.
pub(crate) async fn save(
    router: &Router,
    owner: &BareJid,
    prefs: &Prefs,
) -> Result<(), tern_storage::StoreError> {
    let (host, user) = parts(owner);
    let bytes =
        serde_json::to_vec(prefs).map_err(|e| tern_storage::StoreError::Backend(e.to_string()))?;
    router
        .storage()
        .keyval
        .set(host, STORE, user, Some(&bytes))
        .await
}

/// Whether a message between `owner` and `peer` goes into the owner's archive.
pub(crate) async fn allows(router: &Router, owner: &BareJid, peer: &Jid, prefs: &Prefs) -> bool {
    match prefs.decide(owner, peer) {
        Decision::Archive => true,
        Decision::Skip => false,
        Decision::IfInRoster => {
            let Some(roster) = tern_roster::roster_of(router, owner) else {
                return false;
            };
            // XEP-0441 §2.3.1: the roster comparison uses the bare JID.
            match roster.get(peer.to_bare().as_str()).await {
                Ok(item) => item.is_some_and(|i| i.listed),
                Err(e) => {
                    warn!(jid = %owner, "cannot read roster for archiving preferences: {e}");
                    false
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::new(s).unwrap()
    }

    #[test]
    fn xep0441_example_round_trip_and_matching() {
        // XEP-0441 Example 4.
        let set: Element = "<prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>romeo@montague.lit</jid></always><never><jid>montague@montague.lit</jid></never></prefs>"
            .parse()
            .unwrap();
        let p = Prefs::from_element(&set, Policy::Always, 10).unwrap();
        assert_eq!(p.default, Policy::Roster);
        assert_eq!(p.always, vec!["romeo@montague.lit"]);
        assert_eq!(
            Prefs::from_element(&p.to_element(), Policy::Never, 10).unwrap(),
            p
        );
        let owner = BareJid::new("juliet@capulet.lit").unwrap();
        assert_eq!(
            p.decide(&owner, &jid("romeo@montague.lit/orchard")),
            Decision::Archive
        );
        assert_eq!(
            p.decide(&owner, &jid("montague@montague.lit")),
            Decision::Skip
        );
        assert_eq!(
            p.decide(&owner, &jid("nurse@capulet.lit")),
            Decision::IfInRoster
        );
        assert_eq!(
            p.decide(&owner, &jid("juliet@capulet.lit/b")),
            Decision::Archive
        );
    }

    #[test]
    fn resources_lists_and_errors() {
        let owner = BareJid::new("a@h").unwrap();
        let p = Prefs {
            default: Policy::Always,
            always: vec!["b@h".into()],
            never: vec!["b@h/secret".into(), "c@h".into()],
        };
        assert_eq!(p.decide(&owner, &jid("b@h/secret")), Decision::Skip);
        assert_eq!(p.decide(&owner, &jid("b@h/other")), Decision::Archive);
        assert_eq!(p.decide(&owner, &jid("c@h/x")), Decision::Skip);
        // Missing default keeps the current one; missing lists are empty.
        let e: Element = "<prefs xmlns='urn:xmpp:mam:2'/>".parse().unwrap();
        assert_eq!(
            Prefs::from_element(&e, Policy::Never, 10).unwrap(),
            Prefs::with_default(Policy::Never)
        );
        let bad: Element = "<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>"
            .parse()
            .unwrap();
        let err = Prefs::from_element(&bad, Policy::Never, 10).unwrap_err();
        assert_eq!(err.condition, Condition::BadRequest);
        let many: Element =
            "<prefs xmlns='urn:xmpp:mam:2'><always><jid>a@b</jid><jid>c@d</jid></always></prefs>"
                .parse()
                .unwrap();
        let err = Prefs::from_element(&many, Policy::Never, 1).unwrap_err();
        assert_eq!(err.condition, Condition::PolicyViolation);
    }
}
