//! Tern SASL: the server side of SASL (RFC 4422) as XMPP uses it (RFC 6120 §6), and the SCRAM
//! credentials stored for every account. Pure logic: no I/O, no async, no base64 framing.
//!
//! Layout: [`Exchange`] (in `exchange.rs`) drives one negotiation step by step and hands the
//! account lookup back to the caller as [`Step::NeedCredentials`], so the async store stays
//! outside. The mechanisms live beside it: `scram.rs` parses and answers SCRAM-SHA-1/256 and
//! their -PLUS variants (RFC 5802, RFC 7677, channel binding per RFC 5056/5929/9266), `plain.rs`
//! parses PLAIN (RFC 4616). `credentials.rs` turns a password into the salted keys the store
//! keeps ([`derive`], [`new_account_record`], [`verify_password`]); `saslprep.rs` normalises
//! usernames and passwords (RFC 4013); `error.rs` holds the RFC 6120 §6.5 [`Failure`]
//! conditions and [`CredentialError`]. This file holds the small shared vocabulary.

mod credentials;
mod error;
mod exchange;
mod plain;
mod saslprep;
mod scram;

pub use credentials::{
    derive, new_account_record, verify_password, DEFAULT_ITERATIONS, MIN_ITERATIONS,
};
pub use error::{CredentialError, Failure};
pub use exchange::Exchange;
pub use saslprep::saslprep;
pub use tern_storage::{AccountRecord, ScramCredentials};

/// The hash function a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hash {
    /// SHA-1 (SCRAM-SHA-1, RFC 5802).
    Sha1,
    /// SHA-256 (SCRAM-SHA-256, RFC 7677).
    Sha256,
}

impl Hash {
    /// Digest size in bytes: the length of StoredKey, ServerKey and ClientProof.
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
        }
    }
}

/// A SASL mechanism this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// SCRAM-SHA-1 (RFC 5802).
    ScramSha1,
    /// SCRAM-SHA-1-PLUS: SCRAM-SHA-1 with channel binding.
    ScramSha1Plus,
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
    /// SCRAM-SHA-256-PLUS: SCRAM-SHA-256 with channel binding.
    ScramSha256Plus,
    /// PLAIN (RFC 4616): only over TLS.
    Plain,
}

impl Mechanism {
    /// All mechanisms in preference order (strongest first).
    ///
    /// Channel binding outranks the hash: a -PLUS exchange defeats a TLS man in the middle,
    /// which a stronger hash alone does not.
    pub const ALL: [Mechanism; 5] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The IANA-registered name, as sent in `<mechanism/>` and `<auth mechanism=".."/>`.
    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// Parses a mechanism name; exact match, since RFC 4422 §3.1 names are upper case.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Whether this is a channel-binding (-PLUS) variant.
    pub fn is_plus(&self) -> bool {
        matches!(self, Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus)
    }

    /// The SCRAM hash, or `None` for PLAIN.
    pub fn hash(&self) -> Option<Hash> {
        match self {
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(Hash::Sha1),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(Hash::Sha256),
            Mechanism::Plain => None,
        }
    }

    /// The mechanisms worth offering on a stream, in preference order: -PLUS only when the TLS
    /// layer supplied some channel-binding data, PLAIN only over TLS (RFC 4616 §6).
    pub fn available(bindings: &ChannelBindings, tls: bool) -> Vec<Mechanism> {
        Self::ALL
            .into_iter()
            .filter(|m| !m.is_plus() || !bindings.is_empty())
            .filter(|m| *m != Mechanism::Plain || tls)
            .collect()
    }
}

/// Channel-binding data the TLS layer offers for this connection.
///
/// Only set `tls_exporter` where RFC 9266 §3 allows it: TLS 1.3, or TLS 1.2 with the extended
/// master secret extension. `tls-unique` is deliberately absent: TLS 1.3 has no such value.
#[derive(Debug, Clone, Default)]
pub struct ChannelBindings {
    /// `tls-exporter` (RFC 9266): 32 bytes exported with label "EXPORTER-Channel-Binding".
    pub tls_exporter: Option<Vec<u8>>,
    /// `tls-server-end-point` (RFC 5929 §4): hash of the server certificate.
    pub tls_server_end_point: Option<Vec<u8>>,
}

impl ChannelBindings {
    /// Type name of RFC 9266 tls-exporter binding.
    pub const TLS_EXPORTER: &'static str = "tls-exporter";
    /// Type name of RFC 5929 tls-server-end-point binding.
    pub const TLS_SERVER_END_POINT: &'static str = "tls-server-end-point";

    /// Supported type names, preferred first, for XEP-0440 `<sasl-channel-binding/>`.
    pub fn types(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.tls_exporter.is_some() {
            out.push(Self::TLS_EXPORTER);
        }
        if self.tls_server_end_point.is_some() {
            out.push(Self::TLS_SERVER_END_POINT);
        }
        out
    }

    /// The data for a type name a client asked for in its gs2 header, if we have it.
    pub fn get(&self, type_name: &str) -> Option<&[u8]> {
        match type_name {
            Self::TLS_EXPORTER => self.tls_exporter.as_deref(),
            Self::TLS_SERVER_END_POINT => self.tls_server_end_point.as_deref(),
            _ => None,
        }
    }

    /// True when no channel binding is available (plain TCP, or TLS without exported data).
    pub fn is_empty(&self) -> bool {
        self.tls_exporter.is_none() && self.tls_server_end_point.is_none()
    }
}

/// What the caller must do after feeding an [`Exchange`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send `<challenge/>` with these bytes (base64-encoded by the caller).
    Challenge(Vec<u8>),
    /// Authentication succeeded: send `<success/>` with these additional-data bytes (may be
    /// empty), for this username (SASLprep'd, otherwise as the client sent it).
    Success {
        /// The authenticated username; the caller still applies JID nodeprep.
        username: String,
        /// Additional data with success: SCRAM's server-final-message, empty for PLAIN.
        additional_data: Vec<u8>,
    },
    /// The exchange needs the stored account for `username` (None if no such account): call
    /// [`Exchange::credentials`] next.
    NeedCredentials {
        /// The SASLprep'd username to look up.
        username: String,
    },
    /// Send `<failure/>` with this condition; the exchange is over.
    Failure(Failure),
}

impl Step {
    /// Whether the exchange has ended with this step (success or failure).
    pub fn is_terminal(&self) -> bool {
        matches!(self, Step::Success { .. } | Step::Failure(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
        }
        assert_eq!(Mechanism::from_name("scram-sha-1"), None);
        assert_eq!(Mechanism::from_name("DIGEST-MD5"), None);
        assert_eq!(Mechanism::ScramSha256Plus.name(), "SCRAM-SHA-256-PLUS");
        assert!(Mechanism::ScramSha1Plus.is_plus() && !Mechanism::ScramSha256.is_plus());
        assert_eq!(Mechanism::Plain.hash(), None);
    }

    #[test]
    fn available_depends_on_tls_and_bindings() {
        let none = ChannelBindings::default();
        assert_eq!(
            Mechanism::available(&none, false),
            vec![Mechanism::ScramSha256, Mechanism::ScramSha1]
        );
        let cb = ChannelBindings {
            tls_exporter: Some(vec![1; 32]),
            tls_server_end_point: None,
        };
        assert_eq!(Mechanism::available(&cb, true), Mechanism::ALL.to_vec());
        assert_eq!(cb.types(), vec!["tls-exporter"]);
        assert_eq!(cb.get("tls-exporter"), Some(&[1u8; 32][..]));
        assert_eq!(cb.get("tls-unique"), None);
    }

    #[test]
    fn exchange_can_cross_tasks() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Exchange>();
        assert_send_sync::<Step>();
    }
}
