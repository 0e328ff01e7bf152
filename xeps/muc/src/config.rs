//! `[muc]` in the server configuration: the service's domain, who may create rooms, the
//! limits, and the configuration new rooms start with.

use serde::Deserialize;

/// Who may create rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CreatePolicy {
    /// Any account of the service's own host (the default).
    #[default]
    Local,
    /// Anyone who can reach the service, remote users included.
    Anyone,
    /// Only the JIDs listed in `admins`.
    Admins,
}

/// Who sees occupants' real JIDs (`muc#roomconfig_whois`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Whois {
    /// Moderators only: a semi-anonymous room (the default).
    #[default]
    Moderators,
    /// Every occupant: a non-anonymous room.
    Anyone,
}

/// Who may send private messages to occupants (`muc#roomconfig_allowpm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AllowPm {
    /// Every occupant (the default).
    #[default]
    Anyone,
    /// Participants and moderators, not visitors.
    Participants,
    /// Moderators only.
    Moderators,
    /// Nobody.
    None,
}

impl AllowPm {
    /// Form value.
    pub fn as_str(self) -> &'static str {
        match self {
            AllowPm::Anyone => "anyone",
            AllowPm::Participants => "participants",
            AllowPm::Moderators => "moderators",
            AllowPm::None => "none",
        }
    }

    /// Parses a form value.
    pub fn parse(s: &str) -> Option<AllowPm> {
        Some(match s {
            "anyone" => AllowPm::Anyone,
            "participants" => AllowPm::Participants,
            "moderators" => AllowPm::Moderators,
            "none" => AllowPm::None,
            _ => return None,
        })
    }
}

/// `[muc.default_room]`: the configuration a new room starts with (owners change it with the
/// `muc#roomconfig` form).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomDefaults {
    /// Kept when the last occupant leaves, and across restarts.
    pub persistent: bool,
    /// Listed in the service's disco#items.
    pub public: bool,
    /// Only members may enter.
    pub members_only: bool,
    /// Only participants (not visitors) may speak; new non-members enter as visitors.
    pub moderated: bool,
    /// Who sees real JIDs: `moderators` or `anyone`.
    pub whois: Whois,
    /// Whether participants (not only moderators) may change the subject.
    pub change_subject: bool,
    /// Whether participants may invite others.
    pub allow_invites: bool,
    /// Who may send private messages: `anyone`, `participants`, `moderators`, `none`.
    pub allow_pm: AllowPm,
    /// Most occupants (owners and admins may still enter a full room).
    pub max_users: usize,
    /// Messages sent to a joining occupant by default (at most `muc.max_history`).
    pub history_length: usize,
    /// Keep a permanent archive of the room's messages (served with XEP-0313, status 170).
    pub logging: bool,
}

impl Default for RoomDefaults {
    fn default() -> Self {
        RoomDefaults {
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            whois: Whois::Moderators,
            change_subject: false,
            allow_invites: false,
            allow_pm: AllowPm::Anyone,
            max_users: 200,
            history_length: 20,
            logging: true,
        }
    }
}

/// `[muc]`: the multi-user chat service (XEP-0045) on its own domain under every host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MucConfig {
    /// Run the service at all.
    pub enabled: bool,
    /// The service's domain; `{host}` stands for each served host.
    pub domain: String,
    /// The service's name in disco (XEP-0030 identity and the host's items).
    pub name: String,
    /// Who may create rooms: `local` (accounts of the host), `anyone`, or `admins`.
    pub create_rooms: CreatePolicy,
    /// Bare JIDs that administer the service: they may create rooms under any policy and are
    /// owners of every room.
    pub admins: Vec<String>,
    /// Most rooms one user may have created that still exist (0: no limit; admins exempt).
    pub max_rooms_per_user: usize,
    /// Most rooms the service holds (0: no limit).
    pub max_rooms: usize,
    /// Highest `max_users` an owner may configure.
    pub max_occupants: usize,
    /// Most messages a room keeps for history on join (the cap of `history_length`).
    pub max_history: usize,
    /// Groupchat messages per second one occupant may send on average (0: no limit).
    pub message_rate: f64,
    /// Messages one occupant may send in a burst above that rate.
    pub message_burst: u32,
    /// Most results in one room archive (XEP-0313) page.
    pub max_archive_page: usize,
    /// Configuration of new rooms.
    pub default_room: RoomDefaults,
}

impl Default for MucConfig {
    fn default() -> Self {
        MucConfig {
            enabled: true,
            domain: "conference.{host}".into(),
            name: "Chatrooms".into(),
            create_rooms: CreatePolicy::Local,
            admins: Vec::new(),
            max_rooms_per_user: 100,
            max_rooms: 10_000,
            max_occupants: 1000,
            max_history: 50,
            message_rate: 5.0,
            message_burst: 20,
            max_archive_page: 250,
            default_room: RoomDefaults::default(),
        }
    }
}

/// A `[muc]` value that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("muc.{key} = {value}: expected {expected}")]
pub struct ConfigError {
    /// The key, below `muc.`.
    pub key: &'static str,
    /// The value as written.
    pub value: String,
    /// What would have been accepted.
    pub expected: &'static str,
}

impl MucConfig {
    /// The service domain for one host.
    pub fn domain_for(&self, host: &str) -> String {
        self.domain.replace("{host}", host).to_ascii_lowercase()
    }

    /// Checks what serde's types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, value: String, expected| {
            Err(ConfigError {
                key,
                value,
                expected,
            })
        };
        let probe = self.domain_for("example.org");
        if jid::BareJid::new(&probe).map_or(true, |j| j.node().is_some()) || !probe.contains('.') {
            return err(
                "domain",
                format!("{:?}", self.domain),
                "a domain such as \"conference.{host}\"",
            );
        }
        for a in &self.admins {
            if jid::BareJid::new(a).is_err() {
                return err(
                    "admins",
                    format!("{a:?}"),
                    "bare JIDs such as \"admin@example.org\"",
                );
            }
        }
        if self.max_occupants == 0 {
            return err("max_occupants", "0".into(), "at least 1");
        }
        if self.default_room.max_users == 0 || self.default_room.max_users > self.max_occupants {
            return err(
                "default_room.max_users",
                self.default_room.max_users.to_string(),
                "between 1 and muc.max_occupants",
            );
        }
        if !(self.message_rate >= 0.0 && self.message_rate.is_finite()) {
            return err(
                "message_rate",
                self.message_rate.to_string(),
                "a number >= 0",
            );
        }
        if self.message_rate > 0.0 && self.message_burst == 0 {
            return err(
                "message_burst",
                "0".into(),
                "at least 1 when message_rate is set",
            );
        }
        if self.max_archive_page == 0 {
            return err("max_archive_page", "0".into(), "at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_domain_pattern_applies() {
        let c = MucConfig::default();
        c.validate().unwrap();
        assert_eq!(c.domain_for("Example.org"), "conference.example.org");
        let bad = MucConfig {
            domain: "room@{host}".into(),
            ..MucConfig::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("muc.domain") && e.contains("room@"), "{e}");
        let bad = MucConfig {
            max_occupants: 10,
            ..MucConfig::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("default_room.max_users"));
    }
}
