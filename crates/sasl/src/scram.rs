//! SCRAM (RFC 5802) over SHA-1 and SHA-256 (RFC 7677), with channel binding for the -PLUS
//! variants (RFC 5056; types `tls-exporter`, RFC 9266, and `tls-server-end-point`, RFC 5929):
//! the message syntax of RFC 5802 §7 and the server's computations of §3. The order of steps
//! lives in `exchange.rs`.
//!
//! Which failure condition we send, where RFC 6120 §6.5 leaves the choice to us:
//! - syntax errors, a reserved `m=` extension (§5.1), `p=` with a non-PLUS mechanism, a -PLUS
//!   mechanism without `p=`, and a binding type this connection cannot provide (malformed or
//!   unknown name, `tls-unique`, or no TLS data): `malformed-request` — the client broke the
//!   protocol or asked for something we never advertised, and a retry will not help;
//! - gs2 flag `y` although we advertised a -PLUS mechanism (§6: a downgrade attack), a `c=`
//!   that does not match the gs2 header and binding data, a wrong nonce, a wrong proof, and an
//!   unknown user: `not-authorized`.

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use subtle::ConstantTimeEq;

use crate::{ChannelBindings, Failure, Hash, ScramCredentials};

/// What the exchange knows of its mechanism and connection when parsing a client-first.
pub(crate) struct Settings<'a> {
    /// Whether the mechanism is a -PLUS variant.
    pub(crate) plus: bool,
    /// Binding data of this connection.
    pub(crate) bindings: &'a ChannelBindings,
    /// Whether any -PLUS mechanism was offered on this stream.
    pub(crate) advertised_plus: bool,
}

/// What a valid client-first-message told us.
#[derive(Debug)]
pub(crate) struct ClientFirst {
    /// The authorization identity from `a=`, decoded.
    pub(crate) authzid: Option<String>,
    /// The username from `n=`, decoded and SASLprep'd.
    pub(crate) username: String,
    /// gs2 header then binding data: what `c=` must carry (RFC 5802 §7 cbind-input).
    cbind_input: Vec<u8>,
    /// client-first-message-bare, verbatim, for AuthMessage.
    bare: String,
    /// The client's nonce.
    client_nonce: String,
}

/// The state after the server-first-message: everything the client-final is checked against.
pub(crate) struct Issued {
    hash: Hash,
    /// The authenticated name if the proof verifies.
    pub(crate) username: String,
    cbind_input: Vec<u8>,
    /// client-first-message-bare "," server-first-message ",": the AuthMessage prefix.
    auth_prefix: String,
    /// Client nonce followed by server nonce.
    nonce: String,
    creds: ScramCredentials,
    /// False for an unknown user: the exchange runs to the end and then fails.
    known: bool,
}

/// Parses a client-first-message (RFC 5802 §5.1, §7) and applies the channel-binding policy.
pub(crate) fn client_first(s: &Settings<'_>, msg: &[u8]) -> Result<ClientFirst, Failure> {
    use Failure::{MalformedRequest as Malformed, NotAuthorized};
    let msg = std::str::from_utf8(msg).map_err(|_| Malformed)?;
    let (flag, rest) = msg.split_once(',').ok_or(Malformed)?;
    let (authz, bare) = rest.split_once(',').ok_or(Malformed)?;
    let gs2_header = &msg[..msg.len() - bare.len()];

    // gs2-cbind-flag = ("p=" cb-name) / "n" / "y"
    let cb_name = match flag {
        "n" | "y" => None,
        _ => match flag.strip_prefix("p=") {
            Some(name) if is_cb_name(name) => Some(name),
            _ => return Err(Malformed),
        },
    };
    let authzid = match authz {
        "" => None,
        _ => Some(
            authz
                .strip_prefix("a=")
                .and_then(decode_saslname)
                .ok_or(Malformed)?,
        ),
    };

    // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
    let mut attrs = bare.split(',');
    let first = attrs.next().unwrap_or_default();
    if first.starts_with("m=") {
        // A mandatory extension we do not know: RFC 5802 §5.1 says we MUST fail.
        return Err(Malformed);
    }
    let raw_name = first
        .strip_prefix("n=")
        .and_then(decode_saslname)
        .ok_or(Malformed)?;
    let username = crate::saslprep(&raw_name).map_err(|_| Malformed)?;
    let client_nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(Malformed)?;
    if !is_nonce(client_nonce) || !attrs.all(is_extension) {
        return Err(Malformed);
    }

    // Channel-binding policy (RFC 5802 §6). -PLUS requires binding; binding requires -PLUS.
    let cb_data: &[u8] = match (cb_name, s.plus) {
        (Some(name), true) => s.bindings.get(name).ok_or(Malformed)?,
        (Some(_), false) | (None, true) => return Err(Malformed),
        // 'y': the client could bind but believes we cannot. We offered -PLUS, so someone
        // stripped it from our feature list: fail (RFC 5802 §6).
        (None, false) if flag == "y" && s.advertised_plus => return Err(NotAuthorized),
        (None, false) => &[],
    };
    let mut cbind_input = gs2_header.as_bytes().to_vec();
    cbind_input.extend_from_slice(cb_data);
    Ok(ClientFirst {
        authzid,
        username,
        cbind_input,
        bare: bare.to_owned(),
        client_nonce: client_nonce.to_owned(),
    })
}

/// Builds the server-first-message from the credentials to use (real or fake).
pub(crate) fn server_first(
    hash: Hash,
    first: ClientFirst,
    creds: ScramCredentials,
    known: bool,
    server_nonce: &str,
) -> (Issued, Vec<u8>) {
    let nonce = format!("{}{}", first.client_nonce, server_nonce);
    let msg = format!(
        "r={},s={},i={}",
        nonce,
        B64.encode(&creds.salt),
        creds.iterations
    );
    let issued = Issued {
        hash,
        username: first.username,
        cbind_input: first.cbind_input,
        auth_prefix: format!("{},{},", first.bare, msg),
        nonce,
        creds,
        known,
    };
    (issued, msg.into_bytes())
}

/// Checks a client-final-message (RFC 5802 §5.1, §3); on success returns the server-final
/// message (`v=` ServerSignature) to send as additional data with `<success/>`.
pub(crate) fn client_final(issued: &Issued, msg: &[u8]) -> Result<Vec<u8>, Failure> {
    use Failure::{MalformedRequest as Malformed, NotAuthorized};
    let msg = std::str::from_utf8(msg).map_err(|_| Malformed)?;
    // client-final-message = client-final-message-without-proof "," proof; proof comes last.
    let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(Malformed)?;
    let proof = B64.decode(proof).map_err(|_| Malformed)?;
    let mut attrs = without_proof.split(',');
    let cbind = attrs
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or(Malformed)?;
    let cbind = B64.decode(cbind).map_err(|_| Malformed)?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(Malformed)?;
    if !attrs.all(is_extension) {
        return Err(Malformed);
    }
    // c= must repeat the gs2 header, so a man in the middle cannot have changed the flag, and
    // for -PLUS carry the binding of *our* TLS session (RFC 5802 §6, RFC 5056).
    if cbind != issued.cbind_input || nonce != issued.nonce {
        return Err(NotAuthorized);
    }

    let hash = issued.hash;
    let auth_message = format!("{}{}", issued.auth_prefix, without_proof);
    // RFC 5802 §3: ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the proof is
    // good when H(ClientKey) = StoredKey.
    let client_sig = hash.hmac(&issued.creds.stored_key, auth_message.as_bytes());
    if proof.len() != client_sig.len() {
        return Err(NotAuthorized);
    }
    let client_key: Vec<u8> = proof.iter().zip(&client_sig).map(|(p, s)| p ^ s).collect();
    let matches = hash.digest(&client_key).ct_eq(&issued.creds.stored_key);
    if !bool::from(matches & subtle::Choice::from(u8::from(issued.known))) {
        return Err(NotAuthorized);
    }
    let server_sig = hash.hmac(&issued.creds.server_key, auth_message.as_bytes());
    Ok(format!("v={}", B64.encode(server_sig)).into_bytes())
}

/// Whether stored credentials are usable with this hash (a corrupt record must not panic or
/// silently fail every login with `not-authorized`).
pub(crate) fn usable(hash: Hash, c: &ScramCredentials) -> bool {
    c.iterations > 0
        && !c.salt.is_empty()
        && c.stored_key.len() == hash.output_len()
        && c.server_key.len() == hash.output_len()
}

/// Decodes a saslname (RFC 5802 §5.1): `=2C` is ',', `=3D` is '=', any other '=' is an error.
pub(crate) fn decode_saslname(s: &str) -> Option<String> {
    if s.is_empty() || s.contains('\0') {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i + 1..i + 3)?;
        out.push(match esc {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// Encodes a saslname, the inverse of [`decode_saslname`].
#[cfg(test)]
pub(crate) fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// cb-name = 1*(ALPHA / DIGIT / "." / "-")
fn is_cb_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// c-nonce = printable = %x21-2B / %x2D-7E (no comma)
pub(crate) fn is_nonce(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// attr-val = ALPHA "=" value: an optional extension, which we ignore.
fn is_extension(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b'=' && !s.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(bindings: &ChannelBindings, plus: bool, advertised_plus: bool) -> Settings<'_> {
        Settings {
            plus,
            bindings,
            advertised_plus,
        }
    }

    #[test]
    fn saslname_escapes() {
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(decode_saslname("=3D=3D").as_deref(), Some("=="));
        for bad in ["", "a=", "a=2", "a=2c", "a=41", "=", "a\0b"] {
            assert_eq!(decode_saslname(bad), None, "{bad:?}");
        }
        assert_eq!(encode_saslname("a,b=c"), "a=2Cb=3Dc");
    }

    #[test]
    fn parses_client_first() {
        let none = ChannelBindings::default();
        let f = client_first(&settings(&none, false, false), b"n,,n=user,r=abc").unwrap();
        assert_eq!((f.username.as_str(), f.authzid), ("user", None));
        assert_eq!(
            (f.bare.as_str(), f.cbind_input.as_slice()),
            ("n=user,r=abc", &b"n,,"[..])
        );

        let f = client_first(
            &settings(&none, false, false),
            b"y,a=u=2Cv,n=u=3D,r=x,q=ext",
        )
        .unwrap();
        assert_eq!(
            (f.username.as_str(), f.authzid.as_deref()),
            ("u=", Some("u,v"))
        );
        assert_eq!(f.cbind_input, b"y,a=u=2Cv,");
    }

    #[test]
    fn rejects_malformed_client_first() {
        let none = ChannelBindings::default();
        let s = settings(&none, false, false);
        for bad in [
            &b""[..],
            b"n",
            b"n,",
            b"x,,n=user,r=abc",
            b"n,b=x,n=user,r=abc",
            b"n,a=,n=user,r=abc",
            b"n,,m=ext,n=user,r=abc",
            b"n,,n=,r=abc",
            b"n,,n=us=er,r=abc",
            b"n,,n=user",
            b"n,,n=user,r=",
            b"n,,n=user,r=a\x7fb",
            b"n,,r=abc,n=user",
            b"n,,n=user,r=abc,=x",
            b"n,,n=\xff,r=abc",
            b"n,,n=\x07,r=abc",
            b"p=tls-exporter,,n=user,r=abc",
        ] {
            assert_eq!(
                client_first(&s, bad).err(),
                Some(Failure::MalformedRequest),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn channel_binding_policy() {
        let cb = ChannelBindings {
            tls_exporter: Some(b"EKM".to_vec()),
            tls_server_end_point: None,
        };
        let f = client_first(&settings(&cb, true, true), b"p=tls-exporter,,n=u,r=a").unwrap();
        assert_eq!(f.cbind_input, b"p=tls-exporter,,EKM");
        let err = |s: &Settings<'_>, m: &[u8]| client_first(s, m).err();
        let m = Some(Failure::MalformedRequest);
        assert_eq!(err(&settings(&cb, true, true), b"n,,n=u,r=a"), m);
        assert_eq!(err(&settings(&cb, true, true), b"y,,n=u,r=a"), m);
        assert_eq!(
            err(
                &settings(&cb, true, true),
                b"p=tls-server-end-point,,n=u,r=a"
            ),
            m
        );
        assert_eq!(err(&settings(&cb, true, true), b"p=tls-unique,,n=u,r=a"), m);
        assert_eq!(err(&settings(&cb, true, true), b"p=bad_name,,n=u,r=a"), m);
        assert_eq!(
            err(&settings(&cb, false, true), b"p=tls-exporter,,n=u,r=a"),
            m
        );
        assert_eq!(
            err(&settings(&cb, false, true), b"y,,n=u,r=a"),
            Some(Failure::NotAuthorized)
        );
        assert!(client_first(&settings(&cb, false, false), b"y,,n=u,r=a").is_ok());
    }
}
