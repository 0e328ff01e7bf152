//! XEP-0045 §5: affiliations (long-lived, per bare JID) and roles (per visit), and the rules of
//! who may change whose (§5.1.3, §5.2.1, §8, §9, §10). Pure logic, so the tables are tested
//! here rather than through a server.

use serde::{Deserialize, Serialize};

use tern_router::{Condition, StanzaError};

/// A user's long-lived standing in a room (§5.2), lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affiliation {
    /// Banned.
    Outcast,
    /// No affiliation.
    None,
    /// Member.
    Member,
    /// Admin.
    Admin,
    /// Owner.
    Owner,
}

impl Affiliation {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Affiliation> {
        Some(match s {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "admin" => Affiliation::Admin,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }
}

/// An occupant's role during one visit (§5.1), lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Not in the room.
    None,
    /// May not speak in a moderated room.
    Visitor,
    /// May speak.
    Participant,
    /// May kick, grant and revoke voice.
    Moderator,
}

impl Role {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "none" => Role::None,
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }
}

/// §5.1.2 (Table 4): the role an occupant with this affiliation gets on entering.
pub fn default_role(aff: Affiliation, moderated: bool) -> Role {
    match aff {
        Affiliation::Owner | Affiliation::Admin => Role::Moderator,
        Affiliation::Member => Role::Participant,
        Affiliation::None if moderated => Role::Visitor,
        Affiliation::None => Role::Participant,
        Affiliation::Outcast => Role::None,
    }
}

fn not_allowed(text: &str) -> StanzaError {
    StanzaError::new(Condition::NotAllowed).with_text(text)
}

fn forbidden(text: &str) -> StanzaError {
    StanzaError::new(Condition::Forbidden).with_text(text)
}

/// §8.2, §8.3-§8.6, §9.6, §9.7: may an occupant with (`actor_aff`, `actor_role`) give `target`
/// (currently `target_aff`, `target_role`) the role `new`? `Forbidden` when the actor lacks
/// the privilege altogether, `NotAllowed` when the target's standing protects it.
pub fn may_set_role(
    actor_aff: Affiliation,
    actor_role: Role,
    target_aff: Affiliation,
    target_role: Role,
    new: Role,
) -> Result<(), StanzaError> {
    if actor_role != Role::Moderator {
        return Err(forbidden("only moderators may change roles"));
    }
    // Granting or revoking moderator status is for admins and owners (§9.6, §9.7).
    if (new == Role::Moderator || target_role == Role::Moderator) && actor_aff < Affiliation::Admin
    {
        return Err(forbidden(
            "only admins and owners may grant or revoke moderator status",
        ));
    }
    // Admins and owners keep their moderator role and cannot be kicked or silenced (§8.2,
    // §8.4, §9.7), and nobody acts on a user of higher affiliation.
    if new != Role::Moderator && target_aff >= Affiliation::Admin {
        return Err(not_allowed("admins and owners keep their role"));
    }
    if target_aff > actor_aff {
        return Err(not_allowed("the target's affiliation is higher than yours"));
    }
    Ok(())
}

/// §9 and §10: may a user with `actor` affiliation change someone's affiliation from `old` to
/// `new`? Owners may do anything (the last-owner rule is checked by the room); admins may
/// manage outcasts, members and the unaffiliated, never admins or owners.
pub fn may_set_affiliation(
    actor: Affiliation,
    old: Affiliation,
    new: Affiliation,
) -> Result<(), StanzaError> {
    match actor {
        Affiliation::Owner => Ok(()),
        Affiliation::Admin if old < Affiliation::Admin && new < Affiliation::Admin => Ok(()),
        Affiliation::Admin => Err(not_allowed(
            "only owners may change admin and owner affiliations",
        )),
        _ => Err(forbidden("only admins and owners may change affiliations")),
    }
}

/// §9.5, §10.5, §10.8, §8.5: who may read which list.
pub fn may_list_affiliation(actor: Affiliation, list: Affiliation) -> Result<(), StanzaError> {
    let need = match list {
        Affiliation::Owner | Affiliation::Admin => Affiliation::Owner,
        _ => Affiliation::Admin,
    };
    // Admins may read the admin and owner lists too: clients show them in room settings, and
    // the lists reveal nothing an admin cannot learn from presence.
    if actor >= need || (actor == Affiliation::Admin && list >= Affiliation::Admin) {
        Ok(())
    } else {
        Err(forbidden("you may not read this list"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Affiliation as A;
    use Role as R;

    fn cond(r: Result<(), StanzaError>) -> Option<Condition> {
        r.err().map(|e| e.condition)
    }

    #[test]
    fn entry_roles() {
        assert_eq!(default_role(A::Owner, true), R::Moderator);
        assert_eq!(default_role(A::Member, true), R::Participant);
        assert_eq!(default_role(A::None, true), R::Visitor);
        assert_eq!(default_role(A::None, false), R::Participant);
    }

    #[test]
    fn role_changes() {
        // A participant moderator-less user cannot kick.
        assert_eq!(
            cond(may_set_role(
                A::Member,
                R::Participant,
                A::None,
                R::Participant,
                R::None
            )),
            Some(Condition::Forbidden)
        );
        // §8.2: a moderator kicks a participant, but not an admin or owner.
        assert_eq!(
            cond(may_set_role(
                A::Admin,
                R::Moderator,
                A::None,
                R::Participant,
                R::None
            )),
            None
        );
        assert_eq!(
            cond(may_set_role(
                A::Admin,
                R::Moderator,
                A::Owner,
                R::Moderator,
                R::None
            )),
            Some(Condition::NotAllowed)
        );
        // A member made moderator may silence a newcomer but not revoke another moderator.
        assert_eq!(
            cond(may_set_role(
                A::Member,
                R::Moderator,
                A::None,
                R::Participant,
                R::Visitor
            )),
            None
        );
        assert_eq!(
            cond(may_set_role(
                A::Member,
                R::Moderator,
                A::Member,
                R::Moderator,
                R::Participant
            )),
            Some(Condition::Forbidden)
        );
        // §9.6: admins grant moderator status.
        assert_eq!(
            cond(may_set_role(
                A::Admin,
                R::Moderator,
                A::Member,
                R::Participant,
                R::Moderator
            )),
            None
        );
        // Nobody acts on a higher affiliation.
        assert_eq!(
            cond(may_set_role(
                A::None,
                R::Moderator,
                A::Member,
                R::Participant,
                R::None
            )),
            Some(Condition::NotAllowed)
        );
    }

    #[test]
    fn affiliation_changes_and_lists() {
        assert_eq!(
            cond(may_set_affiliation(A::Admin, A::None, A::Outcast)),
            None
        );
        assert_eq!(
            cond(may_set_affiliation(A::Admin, A::Member, A::None)),
            None
        );
        assert_eq!(
            cond(may_set_affiliation(A::Admin, A::Admin, A::Outcast)),
            Some(Condition::NotAllowed)
        );
        assert_eq!(
            cond(may_set_affiliation(A::Admin, A::None, A::Admin)),
            Some(Condition::NotAllowed)
        );
        assert_eq!(
            cond(may_set_affiliation(A::Member, A::None, A::Member)),
            Some(Condition::Forbidden)
        );
        assert_eq!(
            cond(may_set_affiliation(A::Owner, A::Owner, A::Admin)),
            None
        );
        assert_eq!(cond(may_list_affiliation(A::Admin, A::Outcast)), None);
        assert_eq!(
            cond(may_list_affiliation(A::Member, A::Member)),
            Some(Condition::Forbidden)
        );
        assert_eq!(cond(may_list_affiliation(A::Owner, A::Owner)), None);
    }
}
