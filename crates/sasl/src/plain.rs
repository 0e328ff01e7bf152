//! PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`, all UTF-8. The server keeps no
//! plaintext, so the password is checked by deriving SCRAM-SHA-256 keys from it
//! ([`crate::verify_password`]); offered only over TLS (RFC 4616 §6).

use crate::{saslprep, Failure};

/// A parsed PLAIN message.
pub(crate) struct PlainMessage {
    /// Authorization identity; empty when absent.
    pub(crate) authzid: String,
    /// Authentication identity, SASLprep'd.
    pub(crate) authcid: String,
    /// The password as sent; `derive` applies SASLprep to it.
    pub(crate) password: String,
}

/// Parses the client's message (RFC 4616 §2); any syntax error is `malformed-request`.
pub(crate) fn parse(msg: &[u8]) -> Result<PlainMessage, Failure> {
    let msg = std::str::from_utf8(msg).map_err(|_| Failure::MalformedRequest)?;
    let mut fields = msg.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(Failure::MalformedRequest);
    };
    // authcid and passwd are 1*SAFE: both must be present.
    if authcid.is_empty() || password.is_empty() {
        return Err(Failure::MalformedRequest);
    }
    let authcid = saslprep(authcid).map_err(|_| Failure::MalformedRequest)?;
    Ok(PlainMessage {
        authzid: authzid.to_owned(),
        authcid,
        password: password.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc4616_examples() {
        // RFC 4616 §4: "\0tim\0tanstaaftanstaaf" and "Ursel\0Kurt\0xipj3plmq".
        let m = parse(b"\0tim\0tanstaaftanstaaf").ok().unwrap();
        assert_eq!((m.authzid.as_str(), m.authcid.as_str()), ("", "tim"));
        assert_eq!(m.password, "tanstaaftanstaaf");
        let m = parse(b"Ursel\0Kurt\0xipj3plmq").ok().unwrap();
        assert_eq!((m.authzid.as_str(), m.authcid.as_str()), ("Ursel", "Kurt"));
    }

    #[test]
    fn prepares_authcid() {
        let m = parse("\0I\u{00AD}X\0pw".as_bytes()).ok().unwrap();
        assert_eq!(m.authcid, "IX");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b""[..],
            b"user",
            b"\0user",
            b"\0\0pw",
            b"\0user\0",
            b"a\0user\0pw\0extra",
            b"\0us\xffer\0pw",
            b"\0\x07\0pw",
        ] {
            assert_eq!(parse(bad).err(), Some(Failure::MalformedRequest), "{bad:?}");
        }
    }
}
