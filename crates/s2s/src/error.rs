//! Why a server-to-server connection failed, worded for the operator's log line and mapped to
//! the stanza error its queued stanzas bounce with (RFC 6120 §8.3.3.15–16).

use std::io;

use tern_router::{Condition, StanzaError};
use tern_stream::StreamError;

/// A failure to reach, secure, authenticate or keep a stream with a remote server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S2sError {
    /// Name resolution failed (no SRV/A/AAAA record, NXDOMAIN, resolver failure).
    #[error("DNS: {0}")]
    Dns(String),
    /// No address could be connected to.
    #[error("connection failed: {0}")]
    Connect(String),
    /// Something took longer than allowed.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// A whole connection attempt took longer than allowed; says what it was waiting for.
    #[error("timed out after s2s.connect_timeout_secs while {0}")]
    Stalled(String),
    /// The TLS handshake failed.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The peer's certificate is not acceptable for its domain and policy requires it to be.
    #[error("TLS: certificate of {domain} not trusted: {problem}")]
    Certificate {
        /// The domain the certificate had to be valid for.
        domain: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The peer refused our authentication (SASL failure, dialback invalid or error).
    #[error("authentication refused by peer: {0}")]
    AuthRefused(String),
    /// Neither side has an authentication method the other accepts.
    #[error("no usable authentication method: {0}")]
    NoAuth(String),
    /// The peer ended the stream with an error.
    #[error("peer sent {0}")]
    PeerStreamError(StreamError),
    /// We ended the stream with this error (already written).
    #[error("we sent {0}")]
    Sent(StreamError),
    /// The peer did something the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The peer closed the stream or the connection.
    #[error("connection closed by peer")]
    Closed,
    /// A socket error on an established connection.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl S2sError {
    /// Whether trying again soon may help (not for answers that will not change).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            S2sError::Connect(_)
                | S2sError::Timeout(_)
                | S2sError::Stalled(_)
                | S2sError::Io(_)
                | S2sError::Closed
        )
    }

    /// The bounce for stanzas that could not be delivered because of this.
    pub fn stanza_error(&self, domain: &str) -> StanzaError {
        let condition = match self {
            S2sError::Timeout(_) | S2sError::Stalled(_) => Condition::RemoteServerTimeout,
            _ => Condition::RemoteServerNotFound,
        };
        StanzaError::new(condition).with_text(format!("cannot reach {domain}: {self}"))
    }
}
