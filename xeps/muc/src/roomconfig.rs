//! A room's configuration (XEP-0045 §10.2), its `muc#roomconfig` form for owners, and the
//! `muc#roominfo` form and feature list of disco#info (§6.4). Pure: no storage, no routing.

use jid::BareJid;
use minidom::Element;
use serde::{Deserialize, Serialize};

use tern_router::xml::BuilderExt;
use tern_router::{Condition, StanzaError};

use crate::config::{AllowPm, RoomDefaults, Whois};
use crate::ns::{self, field, list_field, DATA};

/// `FORM_TYPE` of the configuration form.
pub const FORM_CONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
/// `FORM_TYPE` of the room information form.
pub const FORM_INFO: &str = "http://jabber.org/protocol/muc#roominfo";

/// The configuration of one room, as stored for persistent rooms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomConfig {
    /// Natural-language name.
    pub name: String,
    /// Short description.
    pub description: String,
    /// Language of the discussion (RFC 5646 tag), may be empty.
    pub language: String,
    /// Survives the last occupant leaving and restarts.
    pub persistent: bool,
    /// Listed in disco#items.
    pub public: bool,
    /// Only members may enter.
    pub members_only: bool,
    /// Visitors may not speak.
    pub moderated: bool,
    /// The password, when the room is password-protected.
    pub password: Option<String>,
    /// Most occupants.
    pub max_users: usize,
    /// Who sees real JIDs.
    pub whois: Whois,
    /// Participants may change the subject.
    pub change_subject: bool,
    /// Participants may invite.
    pub allow_invites: bool,
    /// Who may send private messages.
    pub allow_pm: AllowPm,
    /// History messages sent on join by default.
    pub history_length: usize,
    /// Messages are archived (XEP-0313) and history survives restarts.
    pub logging: bool,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig::from(&RoomDefaults::default())
    }
}

impl From<&RoomDefaults> for RoomConfig {
    fn from(d: &RoomDefaults) -> Self {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            language: String::new(),
            persistent: d.persistent,
            public: d.public,
            members_only: d.members_only,
            moderated: d.moderated,
            password: None,
            max_users: d.max_users,
            whois: d.whois,
            change_subject: d.change_subject,
            allow_invites: d.allow_invites,
            allow_pm: d.allow_pm,
            history_length: d.history_length,
            logging: d.logging,
        }
    }
}

/// Service limits a configuration must respect.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Highest `max_users`.
    pub max_occupants: usize,
    /// Highest `history_length`.
    pub max_history: usize,
}

/// A submitted configuration form: the new configuration and, when the form carried them, the
/// new owner and admin lists.
#[derive(Debug)]
pub struct Submitted {
    /// The configuration to apply.
    pub config: RoomConfig,
    /// `muc#roomconfig_roomowners`.
    pub owners: Option<Vec<BareJid>>,
    /// `muc#roomconfig_roomadmins`.
    pub admins: Option<Vec<BareJid>>,
}

fn b(v: bool) -> &'static str {
    if v {
        "1"
    } else {
        "0"
    }
}

const MAX_USERS_OPTIONS: &[usize] = &[10, 20, 30, 50, 100, 200, 500, 1000, 5000];

/// The form an owner fetches (§10.2), filled with the current values.
pub fn config_form(
    c: &RoomConfig,
    limits: Limits,
    owners: &[BareJid],
    admins: &[BareJid],
) -> Element {
    let max_users = c.max_users.to_string();
    let options: Vec<(String, String)> = MAX_USERS_OPTIONS
        .iter()
        .filter(|&&n| n < limits.max_occupants)
        .chain(std::iter::once(&limits.max_occupants))
        .map(|n| (n.to_string(), n.to_string()))
        .collect();
    let options: Vec<(&str, &str)> = options
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let history = c.history_length.to_string();
    let owners: Vec<&str> = owners.iter().map(|j| j.as_str()).collect();
    let admins: Vec<&str> = admins.iter().map(|j| j.as_str()).collect();
    let fields = vec![
        field("FORM_TYPE", "hidden", None, &[FORM_CONFIG]),
        field(
            "muc#roomconfig_roomname",
            "text-single",
            Some("Name"),
            &[&c.name],
        ),
        field(
            "muc#roomconfig_roomdesc",
            "text-single",
            Some("Description"),
            &[&c.description],
        ),
        field(
            "muc#roomconfig_lang",
            "text-single",
            Some("Language"),
            &[&c.language],
        ),
        field(
            "muc#roomconfig_persistentroom",
            "boolean",
            Some("Persistent"),
            &[b(c.persistent)],
        ),
        field(
            "muc#roomconfig_publicroom",
            "boolean",
            Some("Listed in the directory"),
            &[b(c.public)],
        ),
        field(
            "muc#roomconfig_membersonly",
            "boolean",
            Some("Members only"),
            &[b(c.members_only)],
        ),
        field(
            "muc#roomconfig_moderatedroom",
            "boolean",
            Some("Moderated"),
            &[b(c.moderated)],
        ),
        field(
            "muc#roomconfig_passwordprotectedroom",
            "boolean",
            Some("Password required"),
            &[b(c.password.is_some())],
        ),
        field(
            "muc#roomconfig_roomsecret",
            "text-private",
            Some("Password"),
            &[c.password.as_deref().unwrap_or("")],
        ),
        list_field(
            "muc#roomconfig_maxusers",
            "Maximum occupants",
            &max_users,
            &options,
        ),
        list_field(
            "muc#roomconfig_whois",
            "Who may see real JIDs",
            match c.whois {
                Whois::Moderators => "moderators",
                Whois::Anyone => "anyone",
            },
            &[("moderators", "Moderators only"), ("anyone", "Anyone")],
        ),
        field(
            "muc#roomconfig_changesubject",
            "boolean",
            Some("Participants may change the subject"),
            &[b(c.change_subject)],
        ),
        field(
            "muc#roomconfig_allowinvites",
            "boolean",
            Some("Participants may invite"),
            &[b(c.allow_invites)],
        ),
        list_field(
            "muc#roomconfig_allowpm",
            "Who may send private messages",
            c.allow_pm.as_str(),
            &[
                ("anyone", "Anyone"),
                ("participants", "Participants"),
                ("moderators", "Moderators"),
                ("none", "Nobody"),
            ],
        ),
        field(
            "muc#roomconfig_historylength",
            "text-single",
            Some("History messages sent on entering"),
            &[&history],
        ),
        field(
            "muc#maxhistoryfetch",
            "text-single",
            Some("History messages sent on entering"),
            &[&history],
        ),
        field(
            "muc#roomconfig_enablelogging",
            "boolean",
            Some("Archive messages"),
            &[b(c.logging)],
        ),
        field(
            "muc#roomconfig_roomowners",
            "jid-multi",
            Some("Owners"),
            &owners,
        ),
        field(
            "muc#roomconfig_roomadmins",
            "jid-multi",
            Some("Admins"),
            &admins,
        ),
    ];
    let mut x = Element::builder("x", DATA)
        .a("type", "form")
        .append(ns::text_el("title", DATA, "Room configuration"))
        .build();
    for f in fields {
        x.append_child(f);
    }
    x
}

fn unacceptable(text: String) -> StanzaError {
    StanzaError::new(Condition::NotAcceptable).with_text(text)
}

fn one<'a>(var: &str, values: &'a [String]) -> Result<&'a str, StanzaError> {
    match values {
        [] => Ok(""),
        [v] => Ok(v.as_str()),
        _ => Err(unacceptable(format!("field '{var}' takes one value"))),
    }
}

fn boolean(var: &str, values: &[String]) -> Result<bool, StanzaError> {
    ns::parse_bool(one(var, values)?)
        .ok_or_else(|| unacceptable(format!("field '{var}' is not a boolean")))
}

fn jids(var: &str, values: &[String]) -> Result<Vec<BareJid>, StanzaError> {
    values
        .iter()
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            BareJid::new(v.trim())
                .map_err(|_| unacceptable(format!("field '{var}': {v:?} is not a bare JID")))
        })
        .collect()
}

/// Applies a submitted form (§10.2) to `current`. Fields not in the form keep their values;
/// unknown fields are ignored (clients send fields of other servers' forms).
pub fn apply_form(
    current: &RoomConfig,
    x: &Element,
    limits: Limits,
) -> Result<Submitted, StanzaError> {
    if x.attr("type") != Some("submit") {
        return Err(
            StanzaError::new(Condition::BadRequest).with_text("expected a form of type 'submit'")
        );
    }
    let mut c = current.clone();
    let mut owners = None;
    let mut admins = None;
    let mut protected = current.password.is_some();
    let mut secret = current.password.clone();
    for (var, values) in ns::form_values(x) {
        let v = &values;
        match var.as_str() {
            "FORM_TYPE" if one(&var, v)? != FORM_CONFIG => {
                return Err(StanzaError::new(Condition::BadRequest)
                    .with_text(format!("FORM_TYPE must be {FORM_CONFIG}")));
            }
            "muc#roomconfig_roomname" => c.name = one(&var, v)?.to_owned(),
            "muc#roomconfig_roomdesc" => c.description = one(&var, v)?.to_owned(),
            "muc#roomconfig_lang" => c.language = one(&var, v)?.to_owned(),
            "muc#roomconfig_persistentroom" => c.persistent = boolean(&var, v)?,
            "muc#roomconfig_publicroom" => c.public = boolean(&var, v)?,
            "muc#roomconfig_membersonly" => c.members_only = boolean(&var, v)?,
            "muc#roomconfig_moderatedroom" => c.moderated = boolean(&var, v)?,
            "muc#roomconfig_passwordprotectedroom" => protected = boolean(&var, v)?,
            "muc#roomconfig_roomsecret" => {
                let s = one(&var, v)?;
                secret = (!s.is_empty()).then(|| s.to_owned());
            }
            "muc#roomconfig_maxusers" => {
                let s = one(&var, v)?;
                c.max_users = match s {
                    "" | "none" => limits.max_occupants,
                    s => s
                        .parse::<usize>()
                        .ok()
                        .filter(|&n| n >= 1 && n <= limits.max_occupants)
                        .ok_or_else(|| {
                            unacceptable(format!(
                                "maxusers must be between 1 and {}",
                                limits.max_occupants
                            ))
                        })?,
                };
            }
            "muc#roomconfig_whois" => {
                c.whois = match one(&var, v)? {
                    "moderators" => Whois::Moderators,
                    "anyone" => Whois::Anyone,
                    other => {
                        return Err(unacceptable(format!(
                            "whois {other:?}: expected moderators or anyone"
                        )))
                    }
                }
            }
            "muc#roomconfig_changesubject" => c.change_subject = boolean(&var, v)?,
            "muc#roomconfig_allowinvites" => c.allow_invites = boolean(&var, v)?,
            "muc#roomconfig_allowpm" => {
                let s = one(&var, v)?;
                c.allow_pm = AllowPm::parse(s).ok_or_else(|| {
                    unacceptable(format!(
                        "allowpm {s:?}: expected anyone, participants, moderators or none"
                    ))
                })?;
            }
            "muc#roomconfig_historylength" | "muc#maxhistoryfetch" => {
                let s = one(&var, v)?;
                if !s.is_empty() {
                    c.history_length = s
                        .parse::<usize>()
                        .map_err(|_| unacceptable(format!("{var} is not a number")))?
                        .min(limits.max_history);
                }
            }
            "muc#roomconfig_enablelogging" | "muc#roomconfig_enablearchiving" | "mam" => {
                c.logging = boolean(&var, v)?
            }
            "muc#roomconfig_roomowners" => owners = Some(jids(&var, v)?),
            "muc#roomconfig_roomadmins" => admins = Some(jids(&var, v)?),
            _ => {}
        }
    }
    c.password = match (protected, secret) {
        (true, Some(s)) => Some(s),
        (true, None) => {
            return Err(unacceptable(
                "a password-protected room needs a password".into(),
            ))
        }
        (false, _) => None,
    };
    if owners.as_ref().is_some_and(|o| o.is_empty()) {
        return Err(unacceptable("a room needs at least one owner".into()));
    }
    Ok(Submitted {
        config: c,
        owners,
        admins,
    })
}

/// The `muc_*` features of disco#info (§6.4) for a configuration.
pub fn features(c: &RoomConfig) -> Vec<&'static str> {
    vec![
        if c.public { "muc_public" } else { "muc_hidden" },
        if c.persistent {
            "muc_persistent"
        } else {
            "muc_temporary"
        },
        if c.members_only {
            "muc_membersonly"
        } else {
            "muc_open"
        },
        if c.moderated {
            "muc_moderated"
        } else {
            "muc_unmoderated"
        },
        match c.whois {
            Whois::Anyone => "muc_nonanonymous",
            Whois::Moderators => "muc_semianonymous",
        },
        if c.password.is_some() {
            "muc_passwordprotected"
        } else {
            "muc_unsecured"
        },
    ]
}

/// The `muc#roominfo` form of disco#info (§6.4).
pub fn info_form(c: &RoomConfig, occupants: usize, subject: &str, subject_mod: bool) -> Element {
    let occupants = occupants.to_string();
    let history = c.history_length.to_string();
    let max_users = c.max_users.to_string();
    let mut x = Element::builder("x", DATA).a("type", "result").build();
    for f in [
        field("FORM_TYPE", "hidden", None, &[FORM_INFO]),
        field(
            "muc#roomconfig_roomname",
            "text-single",
            Some("Name"),
            &[&c.name],
        ),
        field(
            "muc#roominfo_description",
            "text-single",
            Some("Description"),
            &[&c.description],
        ),
        field(
            "muc#roominfo_lang",
            "text-single",
            Some("Language"),
            &[&c.language],
        ),
        field(
            "muc#roominfo_occupants",
            "text-single",
            Some("Occupants"),
            &[&occupants],
        ),
        field(
            "muc#roominfo_subject",
            "text-single",
            Some("Subject"),
            &[subject],
        ),
        field(
            "muc#roominfo_subjectmod",
            "boolean",
            Some("Participants may change the subject"),
            &[b(subject_mod)],
        ),
        field(
            "muc#maxhistoryfetch",
            "text-single",
            Some("History messages sent on entering"),
            &[&history],
        ),
        field(
            "muc#roomconfig_maxusers",
            "text-single",
            Some("Maximum occupants"),
            &[&max_users],
        ),
        field(
            "muc#roomconfig_allowinvites",
            "boolean",
            Some("Participants may invite"),
            &[b(c.allow_invites)],
        ),
        field(
            "muc#roomconfig_allowpm",
            "list-single",
            Some("Who may send private messages"),
            &[c.allow_pm.as_str()],
        ),
        field(
            "muc#roomconfig_changesubject",
            "boolean",
            Some("Participants may change the subject"),
            &[b(c.change_subject)],
        ),
    ] {
        x.append_child(f);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_occupants: 300,
        max_history: 50,
    };

    fn submit(fields: &str) -> Element {
        format!(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>{FORM_CONFIG}</value></field>{fields}</x>"
        )
        .parse()
        .unwrap()
    }

    #[test]
    fn xep0045_example_163_form_round_trip() {
        let c = RoomConfig::default();
        let owner = BareJid::new("crone1@shakespeare.lit").unwrap();
        let form = config_form(&c, LIMITS, std::slice::from_ref(&owner), &[]);
        // What the owner sends back unchanged (as type submit) leaves the config as it was.
        let mut back = form.clone();
        tern_router::xml::set_attr(&mut back, "type", Some("submit"));
        let s = apply_form(&c, &back, LIMITS).unwrap();
        assert_eq!(s.config, c);
        assert_eq!(s.owners, Some(vec![owner]));
        assert_eq!(s.admins, Some(vec![]));
    }

    #[test]
    fn fields_apply_and_bad_values_are_refused() {
        let c = RoomConfig::default();
        let s = apply_form(
            &c,
            &submit(
                "<field var='muc#roomconfig_roomname'><value>A Dark Cave</value></field>\
                 <field var='muc#roomconfig_persistentroom'><value>1</value></field>\
                 <field var='muc#roomconfig_membersonly'><value>true</value></field>\
                 <field var='muc#roomconfig_passwordprotectedroom'><value>1</value></field>\
                 <field var='muc#roomconfig_roomsecret'><value>cauldronburn</value></field>\
                 <field var='muc#roomconfig_maxusers'><value>none</value></field>\
                 <field var='muc#roomconfig_whois'><value>anyone</value></field>\
                 <field var='muc#roomconfig_historylength'><value>500</value></field>\
                 <field var='x-unknown'><value>ignored</value></field>",
            ),
            LIMITS,
        )
        .unwrap()
        .config;
        assert_eq!(c.name, "");
        assert_eq!(s.name, "A Dark Cave");
        assert!(s.persistent && s.members_only);
        assert_eq!(s.password.as_deref(), Some("cauldronburn"));
        assert_eq!(s.max_users, 300);
        assert_eq!(s.whois, Whois::Anyone);
        assert_eq!(s.history_length, 50, "capped at the service's max_history");
        let cond = |f: &str| apply_form(&c, &submit(f), LIMITS).unwrap_err().condition;
        assert_eq!(
            cond("<field var='muc#roomconfig_passwordprotectedroom'><value>1</value></field>"),
            Condition::NotAcceptable
        );
        assert_eq!(
            cond("<field var='muc#roomconfig_maxusers'><value>301</value></field>"),
            Condition::NotAcceptable
        );
        assert_eq!(
            cond("<field var='muc#roomconfig_publicroom'><value>maybe</value></field>"),
            Condition::NotAcceptable
        );
        assert_eq!(
            cond("<field var='muc#roomconfig_roomowners'></field>"),
            Condition::NotAcceptable
        );
        let form_type: Element = "<x xmlns='jabber:x:data' type='form'/>".parse().unwrap();
        assert_eq!(
            apply_form(&c, &form_type, LIMITS).unwrap_err().condition,
            Condition::BadRequest
        );
    }

    #[test]
    fn disco_features_follow_config() {
        let mut c = RoomConfig::default();
        assert!(features(&c).contains(&"muc_temporary"));
        c.persistent = true;
        c.password = Some("x".into());
        let f = features(&c);
        assert!(f.contains(&"muc_persistent") && f.contains(&"muc_passwordprotected"));
    }
}
