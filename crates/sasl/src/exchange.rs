//! One server-side SASL negotiation (RFC 4422 §3, as profiled by RFC 6120 §6.4): a state
//! machine the caller feeds with `<auth/>`, `<response/>` and `<abort/>` payloads and with the
//! account record it looked up, answering each with a [`Step`].
//!
//! The account lookup is the caller's (it is async and this crate does no I/O): SCRAM asks for
//! it after the client-first-message, PLAIN after its single message. Any call out of order,
//! and every call after a terminal step, ends in `malformed-request`.

use std::fmt;

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use rand::RngCore;

use crate::credentials::fake_credentials;
use crate::scram::{self, ClientFirst, Issued};
use crate::{
    derive, plain, saslprep, verify_password, AccountRecord, ChannelBindings, Failure, Hash,
    Mechanism, Step, DEFAULT_ITERATIONS,
};

/// Random bytes in the server's part of the SCRAM nonce (base64-encoded on the wire).
const SERVER_NONCE_BYTES: usize = 24;

/// One server-side SASL exchange. The caller drives it and does the (async) account lookup
/// between steps.
///
/// ```
/// use tern_sasl::{new_account_record, ChannelBindings, Exchange, Mechanism, Step};
///
/// let record = new_account_record("pencil", 4096, 0).unwrap();
/// let mut ex = Exchange::new(Mechanism::Plain, ChannelBindings::default(), false, true);
/// let Step::NeedCredentials { username } = ex.start(Some(b"\0user\0pencil")) else {
///     panic!("expected a lookup");
/// };
/// assert_eq!(username, "user");
/// // ... look `username` up in the AccountStore (async), then hand the record over:
/// assert!(matches!(ex.credentials(Some(&record)), Step::Success { .. }));
/// ```
pub struct Exchange {
    mech: Mechanism,
    bindings: ChannelBindings,
    advertised_plus: bool,
    tls: bool,
    domain: Option<String>,
    server_nonce: Option<String>,
    state: State,
}

/// Where the exchange is; the comment names the call expected next.
enum State {
    /// `start`.
    Fresh,
    /// `response` with the SCRAM client-first-message.
    ScramFirst,
    /// `credentials` for the SCRAM user.
    ScramLookup(Box<ClientFirst>),
    /// `response` with the SCRAM client-final-message.
    ScramFinal(Box<Issued>),
    /// `response` with the PLAIN message.
    PlainMessage,
    /// `credentials` for the PLAIN user.
    PlainLookup { username: String, password: String },
    /// Nothing: the exchange succeeded or failed.
    Done,
}

impl Exchange {
    /// `advertised_plus`: whether the server offered any -PLUS mechanism on this stream (used
    /// for the 'y' downgrade check, RFC 5802 §6). `tls`: whether the stream is encrypted (PLAIN
    /// without TLS → EncryptionRequired as the caller may also enforce).
    pub fn new(
        mech: Mechanism,
        bindings: ChannelBindings,
        advertised_plus: bool,
        tls: bool,
    ) -> Self {
        Exchange {
            mech,
            bindings,
            advertised_plus,
            tls,
            domain: None,
            server_nonce: None,
            state: State::Fresh,
        }
    }

    /// Sets the stream's domain, so an authzid `user@domain` must name it (without it any domain
    /// is accepted here and the caller should check).
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Replaces the random server part of the SCRAM nonce: tests use it to replay the RFC 5802
    /// §5 and RFC 7677 §3 examples. Never use a fixed nonce in production.
    ///
    /// # Panics
    /// If `nonce` is empty or not printable ASCII without ',' (RFC 5802 §7).
    pub fn with_server_nonce(mut self, nonce: impl Into<String>) -> Self {
        let nonce = nonce.into();
        assert!(
            scram::is_nonce(&nonce),
            "a SCRAM nonce is printable ASCII without ','"
        );
        self.server_nonce = Some(nonce);
        self
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// Whether the exchange has ended (success or failure).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Initial response (from `<auth/>`; None if absent, in which case for SCRAM answer
    /// Challenge(empty) and expect the client-first in the next response; an empty-but-present
    /// initial response "=" arrives as Some(vec![])).
    pub fn start(&mut self, initial: Option<&[u8]>) -> Step {
        if !matches!(self.state, State::Fresh) {
            return self.fail(Failure::MalformedRequest);
        }
        match (self.mech, initial) {
            // RFC 4616 §6: PLAIN sends the password in the clear; refuse it before it arrives.
            (Mechanism::Plain, _) if !self.tls => self.fail(Failure::EncryptionRequired),
            // RFC 6120 §6.4.2: without an initial response the server sends an empty challenge.
            (Mechanism::Plain, None) => {
                self.proceed(State::PlainMessage, Step::Challenge(Vec::new()))
            }
            (Mechanism::Plain, Some(msg)) => self.plain_message(msg),
            (_, None) => self.proceed(State::ScramFirst, Step::Challenge(Vec::new())),
            (_, Some(msg)) => self.client_first(msg),
        }
    }

    /// Client's `<response/>` payload.
    pub fn response(&mut self, data: &[u8]) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::ScramFirst => self.client_first(data),
            State::PlainMessage => self.plain_message(data),
            State::ScramFinal(issued) => match scram::client_final(&issued, data) {
                Ok(additional_data) => Step::Success {
                    username: issued.username.clone(),
                    additional_data,
                },
                Err(f) => self.fail(f),
            },
            _ => self.fail(Failure::MalformedRequest),
        }
    }

    /// Provide the account record requested by NeedCredentials (None: unknown user — continue
    /// with a fake deterministic-per-user salt so the exchange cannot reveal whether the account
    /// exists, and fail with NotAuthorized at the end).
    pub fn credentials(&mut self, record: Option<&AccountRecord>) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::ScramLookup(first) => {
                let Some(hash) = self.mech.hash() else {
                    return self.fail(Failure::MalformedRequest);
                };
                let (creds, known) = match record {
                    Some(r) => {
                        let c = match hash {
                            Hash::Sha1 => &r.scram_sha1,
                            Hash::Sha256 => &r.scram_sha256,
                        };
                        if !scram::usable(hash, c) {
                            return self.fail(Failure::TemporaryAuthFailure);
                        }
                        (c.clone(), true)
                    }
                    None => (fake_credentials(hash, &first.username), false),
                };
                let nonce = self.server_nonce.clone().unwrap_or_else(random_nonce);
                let (issued, msg) = scram::server_first(hash, *first, creds, known, &nonce);
                self.proceed(State::ScramFinal(Box::new(issued)), Step::Challenge(msg))
            }
            State::PlainLookup { username, password } => match record {
                Some(r) if verify_password(r, &password) => Step::Success {
                    username,
                    additional_data: Vec::new(),
                },
                Some(_) => self.fail(Failure::NotAuthorized),
                None => {
                    // Spend the same PBKDF2 time as for a real account, so the response time
                    // does not tell whether the user exists.
                    let salt = fake_credentials(Hash::Sha256, &username).salt;
                    let _ = derive(Hash::Sha256, &password, &salt, DEFAULT_ITERATIONS);
                    self.fail(Failure::NotAuthorized)
                }
            },
            _ => self.fail(Failure::MalformedRequest),
        }
    }

    /// Client sent `<abort/>`: Failure(Aborted), or MalformedRequest once already over.
    pub fn abort(&mut self) -> Step {
        if self.is_done() {
            return Step::Failure(Failure::MalformedRequest);
        }
        self.fail(Failure::Aborted)
    }

    /// Handles a SCRAM client-first-message: parse, check authzid, ask for the account.
    fn client_first(&mut self, msg: &[u8]) -> Step {
        let settings = scram::Settings {
            plus: self.mech.is_plus(),
            bindings: &self.bindings,
            advertised_plus: self.advertised_plus,
        };
        let first = match scram::client_first(&settings, msg) {
            Ok(first) => first,
            Err(f) => return self.fail(f),
        };
        if let Some(authzid) = &first.authzid {
            if !authzid_allowed(authzid, &first.username, self.domain.as_deref()) {
                return self.fail(Failure::InvalidAuthzid);
            }
        }
        let username = first.username.clone();
        self.proceed(
            State::ScramLookup(Box::new(first)),
            Step::NeedCredentials { username },
        )
    }

    /// Handles the PLAIN message: parse, check authzid, ask for the account.
    fn plain_message(&mut self, msg: &[u8]) -> Step {
        let m = match plain::parse(msg) {
            Ok(m) => m,
            Err(f) => return self.fail(f),
        };
        if !m.authzid.is_empty() && !authzid_allowed(&m.authzid, &m.authcid, self.domain.as_deref())
        {
            return self.fail(Failure::InvalidAuthzid);
        }
        let username = m.authcid.clone();
        let state = State::PlainLookup {
            username: m.authcid,
            password: m.password,
        };
        self.proceed(state, Step::NeedCredentials { username })
    }

    fn proceed(&mut self, state: State, step: Step) -> Step {
        self.state = state;
        step
    }

    fn fail(&mut self, failure: Failure) -> Step {
        self.state = State::Done;
        Step::Failure(failure)
    }
}

impl fmt::Debug for Exchange {
    // By hand: the state holds passwords (PLAIN) and keys, which must not reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Fresh => "fresh",
            State::ScramFirst => "scram-first",
            State::ScramLookup(_) => "scram-lookup",
            State::ScramFinal(_) => "scram-final",
            State::PlainMessage => "plain-message",
            State::PlainLookup { .. } => "plain-lookup",
            State::Done => "done",
        };
        f.debug_struct("Exchange")
            .field("mech", &self.mech)
            .field("state", &state)
            .finish()
    }
}

/// The server part of a SCRAM nonce: 24 random bytes, base64 (printable, no ',').
fn random_nonce() -> String {
    let mut bytes = [0u8; SERVER_NONCE_BYTES];
    rand::thread_rng().fill_bytes(&mut bytes);
    B64.encode(bytes)
}

/// Whether a client may ask for this authorization identity.
///
/// RFC 6120 §6.3.8 lets a server refuse any authzid it does not authorize; we authorize a user
/// only as itself: the authzid must be its localpart, or its bare JID (domain checked when
/// known). A full JID, or any other user, is `invalid-authzid`.
fn authzid_allowed(authzid: &str, username: &str, domain: Option<&str>) -> bool {
    let (local, dom) = match authzid.split_once('@') {
        Some((local, dom)) => (local, Some(dom)),
        None => (authzid, None),
    };
    if let Some(dom) = dom {
        if dom.is_empty() || dom.contains(['/', '@']) {
            return false;
        }
        if domain.is_some_and(|want| !dom.eq_ignore_ascii_case(want)) {
            return false;
        }
    }
    saslprep(local).is_ok_and(|local| local == username)
}

#[cfg(test)]
mod tests;
