//! SASLprep (RFC 4013): the stringprep profile SCRAM (RFC 5802 §2.2) and PLAIN (RFC 4616 §2)
//! apply to usernames and passwords before comparing or hashing them.
//!
//! We use the RFC 4013 "stored strings" rules (unassigned code points are rejected) rather than
//! RFC 7613's OpaqueString: the two agree on ASCII and on the common cases, and RFC 5802 clients
//! hash with RFC 4013, so keys derived here match what those clients compute.

use crate::CredentialError;

/// Applies SASLprep (RFC 4013); a string that is empty after preparation is an error.
pub fn saslprep(s: &str) -> Result<String, CredentialError> {
    let prepped =
        stringprep::saslprep(s).map_err(|e| CredentialError::Prohibited(e.to_string()))?;
    if prepped.is_empty() {
        return Err(CredentialError::Empty);
    }
    Ok(prepped.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of RFC 4013 §3.
    #[test]
    fn rfc4013_examples() {
        // 1: SOFT HYPHEN mapped to nothing.
        assert_eq!(saslprep("I\u{00AD}X").unwrap(), "IX");
        // 2: no transformation.
        assert_eq!(saslprep("user").unwrap(), "user");
        // 3: case preserved, will not match #2.
        assert_eq!(saslprep("USER").unwrap(), "USER");
        // 4: output is NFKC, input in ISO 8859-1.
        assert_eq!(saslprep("\u{00AA}").unwrap(), "a");
        // 5: output is NFKC, will match #1.
        assert_eq!(saslprep("\u{2168}").unwrap(), "IX");
        // 6: error, prohibited character.
        assert!(matches!(
            saslprep("\u{0007}"),
            Err(CredentialError::Prohibited(_))
        ));
        // 7: error, prohibited bidirectional check.
        assert!(matches!(
            saslprep("\u{0627}\u{0031}"),
            Err(CredentialError::Prohibited(_))
        ));
    }

    #[test]
    fn spaces_and_empty() {
        // Non-ASCII spaces map to U+0020 (RFC 4013 §2.1).
        assert_eq!(saslprep("a\u{00A0}b").unwrap(), "a b");
        assert_eq!(saslprep(""), Err(CredentialError::Empty));
        assert_eq!(saslprep("\u{00AD}"), Err(CredentialError::Empty));
        assert!(saslprep("a\u{0000}b").is_err());
        // A well-formed right-to-left string passes the bidi rule.
        assert!(saslprep("\u{0627}\u{0031}\u{0628}").is_ok());
    }
}
