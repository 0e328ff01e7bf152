//! XEP-0220: Server Dialback — keys (XEP-0185) and the `db:result`/`db:verify` elements.
//!
//! The key proves that whoever sent it can reach the authoritative server of the domain it
//! claims: only that server knows the secret, so only it can confirm the key when the
//! receiving server asks it back over a connection the receiver opened itself (via DNS or
//! its static routes).

use hmac::{Hmac, Mac};
use minidom::Element;
use sha2::{Digest, Sha256};

use tern_router::xml::BuilderExt;

/// The dialback namespace (bound to the `db` prefix in stream headers).
pub const NS_DB: &str = "jabber:server:dialback";
/// Stream feature advertising dialback, with XEP-0220 §2.4 error support.
pub const NS_DB_FEATURE: &str = "urn:xmpp:features:dialback";
/// RFC 6120 stanza error namespace, used inside dialback errors.
const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// The secret our keys are made with; random per process (XEP-0185 §2 allows that: a key
/// only has to be checked while its stream is being set up).
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// A fresh random secret.
    pub fn random() -> Secret {
        let bytes: [u8; 32] = rand::random();
        Secret(hex::encode(bytes))
    }

    /// A fixed secret (tests, or several nodes of one cluster sharing it).
    pub fn from_string(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    fn mac(&self, receiving: &str, originating: &str, stream_id: &str) -> Hmac<Sha256> {
        let hashed = hex::encode(Sha256::digest(self.0.as_bytes()));
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(hashed.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(format!("{receiving} {originating} {stream_id}").as_bytes());
        mac
    }

    /// XEP-0185 §2: HMAC-SHA256 keyed with hex(SHA256(secret)) over
    /// "Receiving Originating StreamID", in hex.
    pub fn key(&self, receiving: &str, originating: &str, stream_id: &str) -> String {
        hex::encode(
            self.mac(receiving, originating, stream_id)
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether `key` is the one we would have made, compared in constant time.
    pub fn check(&self, key: &str, receiving: &str, originating: &str, stream_id: &str) -> bool {
        match hex::decode(key.trim()) {
            Ok(raw) => self
                .mac(receiving, originating, stream_id)
                .verify_slice(&raw)
                .is_ok(),
            Err(_) => false,
        }
    }
}

/// `<db:result from to>key</db:result>`: the originating server's claim (XEP-0220 §2.1.1).
pub fn result_request(from: &str, to: &str, key: &str) -> Element {
    Element::builder("result", NS_DB)
        .a("from", from)
        .a("to", to)
        .append(key)
        .build()
}

/// `<db:result type='valid|invalid'/>`: the receiving server's verdict (§2.1.3).
pub fn result_answer(from: &str, to: &str, valid: bool) -> Element {
    Element::builder("result", NS_DB)
        .a("from", from)
        .a("to", to)
        .a("type", if valid { "valid" } else { "invalid" })
        .build()
}

/// `<db:verify from to id>key</db:verify>`: the receiving server asks the authoritative one.
pub fn verify_request(from: &str, to: &str, id: &str, key: &str) -> Element {
    Element::builder("verify", NS_DB)
        .a("from", from)
        .a("to", to)
        .a("id", id)
        .append(key)
        .build()
}

/// `<db:verify type='valid|invalid'/>`: the authoritative server's answer (§2.2.2).
pub fn verify_answer(from: &str, to: &str, id: &str, valid: bool) -> Element {
    Element::builder("verify", NS_DB)
        .a("from", from)
        .a("to", to)
        .a("id", id)
        .a("type", if valid { "valid" } else { "invalid" })
        .build()
}

/// A dialback error reply (XEP-0220 §2.4) with a stanza error condition, e.g.
/// `item-not-found` for a domain we do not serve or `remote-server-not-found`. The `<error/>`
/// is in the stream's content namespace (unprefixed in the XEP's examples), written here as
/// `jabber:client` like every stanza child inside Tern.
pub fn error_answer(name: &str, from: &str, to: &str, condition: &str, text: &str) -> Element {
    let error = Element::builder("error", "jabber:client")
        .a("type", "cancel")
        .append(Element::bare(condition, NS_STANZAS))
        .append(Element::builder("text", NS_STANZAS).append(text).build())
        .build();
    Element::builder(name, NS_DB)
        .a("from", from)
        .a("to", to)
        .a("type", "error")
        .append(error)
        .build()
}

/// The condition and text of a dialback error reply, for the log.
pub fn error_reason(el: &Element) -> String {
    let Some(err) = el.children().find(|c| c.name() == "error") else {
        return "no error details".into();
    };
    let cond = err
        .children()
        .find(|c| c.ns() == NS_STANZAS && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".into());
    match err.get_child("text", NS_STANZAS) {
        Some(t) => format!("{cond} ({})", t.text()),
        None => cond,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of XEP-0185 §3.
    #[test]
    fn xep_0185_example_key() {
        let s = Secret::from_string("s3cr3tf0rd14lb4ck");
        let key = s.key("xmpp.example.com", "example.org", "D60000229F");
        assert_eq!(
            key,
            "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"
        );
        assert!(s.check(&key, "xmpp.example.com", "example.org", "D60000229F"));
        assert!(s.check(
            &format!("\n  {key}\n"),
            "xmpp.example.com",
            "example.org",
            "D60000229F"
        ));
        assert!(!s.check(&key, "xmpp.example.com", "example.org", "D60000229E"));
        assert!(!s.check(&key, "example.org", "xmpp.example.com", "D60000229F"));
        assert!(!s.check("zz", "xmpp.example.com", "example.org", "D60000229F"));
        let other = Secret::random();
        assert!(!other.check(&key, "xmpp.example.com", "example.org", "D60000229F"));
    }

    #[test]
    fn error_reason_reads_condition_and_text() {
        let e = error_answer("result", "a", "b", "item-not-found", "no such host");
        assert_eq!(error_reason(&e), "item-not-found (no such host)");
        assert_eq!(e.attr("type"), Some("error"));
    }
}
