//! XEP-0363 HTTP File Upload: the XMPP service on `upload.<host>` hands out slots, and
//! [`routes`] serves them on Tern's HTTP(S) listener (crates/http).
//!
//! A slot is a random, unguessable id plus the file name. The PUT URL carries the slot's
//! expiry and an HMAC-SHA256 over everything the client asked for (owner, slot, name, size,
//! content type, expiry), so the HTTP side needs no shared state to check it; a tampered or
//! expired URL is refused with 403. The GET URL is the slot path without the signature.
//! Files are streamed to disk as they arrive (never held in memory) under
//! `<storage>/<slot>/`, with a small JSON record beside them; quotas per account and for the
//! whole server are enforced when the slot is requested and again while bytes arrive.

mod files;
mod http;
mod service;

pub use files::{Files, UploadLimits};
pub use http::routes;
pub use service::{UploadService, NS_UPLOAD};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a PUT URL's signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotClaim {
    /// Bare JID of the account the slot was given to.
    pub owner: String,
    /// Random slot id (hex).
    pub slot: String,
    /// File name as requested (URL path segment, percent-decoded).
    pub filename: String,
    /// Announced size in bytes.
    pub size: u64,
    /// Announced content type ("" when none).
    pub content_type: String,
    /// Unix time after which the PUT URL is refused.
    pub expires: u64,
}

impl SlotClaim {
    /// HMAC-SHA256 over the claim, hex.
    pub fn sign(&self, secret: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        // NUL separators: none of the fields can contain one.
        for part in [
            self.owner.as_str(),
            self.slot.as_str(),
            self.filename.as_str(),
            &self.size.to_string(),
            self.content_type.as_str(),
            &self.expires.to_string(),
        ] {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `sig` is this claim's signature (constant-time comparison).
    pub fn verify(&self, secret: &[u8], sig: &str) -> bool {
        let want = self.sign(secret);
        want.len() == sig.len()
            && want
                .bytes()
                .zip(sig.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encodes a file name for one URL path segment (RFC 3986 unreserved kept).
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Unix time now.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> SlotClaim {
        SlotClaim {
            owner: "alice@example.org".into(),
            slot: "00ff".into(),
            filename: "photo 1.jpg".into(),
            size: 1234,
            content_type: "image/jpeg".into(),
            expires: 1_800_000_000,
        }
    }

    #[test]
    fn signature_covers_every_field() {
        let c = claim();
        let sig = c.sign(b"k");
        assert!(c.verify(b"k", &sig));
        assert!(!c.verify(b"other key", &sig));
        for tamper in [
            SlotClaim {
                size: 1235,
                ..claim()
            },
            SlotClaim {
                expires: 1_800_000_001,
                ..claim()
            },
            SlotClaim {
                filename: "photo 2.jpg".into(),
                ..claim()
            },
            SlotClaim {
                content_type: "text/html".into(),
                ..claim()
            },
            SlotClaim {
                owner: "mallory@example.org".into(),
                ..claim()
            },
        ] {
            assert!(!tamper.verify(b"k", &sig), "{tamper:?}");
        }
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("a b/c?.jpg"), "a%20b%2Fc%3F.jpg");
        assert_eq!(encode_segment("Ünï.txt"), "%C3%9Cn%C3%AF.txt");
    }
}
