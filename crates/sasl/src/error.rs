//! Errors: RFC 6120 §6.5 SASL failure conditions for the wire, and [`CredentialError`] for
//! turning a password (or username) into stored keys.

use std::fmt;

/// RFC 6120 §6.5 SASL failure conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// §6.5.1: the client sent `<abort/>`.
    Aborted,
    /// §6.5.2: the account exists but is disabled.
    AccountDisabled,
    /// §6.5.3: the credentials have expired.
    CredentialsExpired,
    /// §6.5.4: the mechanism (PLAIN) may only be used over TLS.
    EncryptionRequired,
    /// §6.5.5: the payload was not valid base64 (detected by the caller).
    IncorrectEncoding,
    /// §6.5.6: the authorization identity is not one this user may act as.
    InvalidAuthzid,
    /// §6.5.7: the requested mechanism is not offered.
    InvalidMechanism,
    /// §6.5.8: the request does not follow the mechanism's syntax or was out of order.
    MalformedRequest,
    /// §6.5.9: the mechanism is weaker than policy allows for this account.
    MechanismTooWeak,
    /// §6.5.10: wrong credentials, unknown user, or failed channel binding.
    NotAuthorized,
    /// §6.5.11: a temporary server-side problem (e.g. unusable stored keys).
    TemporaryAuthFailure,
}

impl Failure {
    /// The element name of the condition, e.g. `not-authorized`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Failure::Aborted => "aborted",
            Failure::AccountDisabled => "account-disabled",
            Failure::CredentialsExpired => "credentials-expired",
            Failure::EncryptionRequired => "encryption-required",
            Failure::IncorrectEncoding => "incorrect-encoding",
            Failure::InvalidAuthzid => "invalid-authzid",
            Failure::InvalidMechanism => "invalid-mechanism",
            Failure::MalformedRequest => "malformed-request",
            Failure::MechanismTooWeak => "mechanism-too-weak",
            Failure::NotAuthorized => "not-authorized",
            Failure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a password or username could not be prepared or turned into SCRAM keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// SASLprep rejected the string (prohibited character, bidi rule, unassigned code point).
    #[error("string rejected by SASLprep: {0}")]
    Prohibited(String),
    /// The string is empty after SASLprep (RFC 4013 §2 maps some characters to nothing).
    #[error("string is empty after SASLprep")]
    Empty,
    /// The PBKDF2 iteration count is below the allowed minimum.
    #[error("iteration count {got} is below the minimum {min}")]
    TooFewIterations {
        /// The count asked for.
        got: u32,
        /// The least count accepted.
        min: u32,
    },
    /// The salt is empty.
    #[error("salt is empty")]
    EmptySalt,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_names() {
        assert_eq!(Failure::NotAuthorized.as_str(), "not-authorized");
        assert_eq!(
            Failure::TemporaryAuthFailure.to_string(),
            "temporary-auth-failure"
        );
        assert_eq!(Failure::InvalidAuthzid.as_str(), "invalid-authzid");
    }
}
