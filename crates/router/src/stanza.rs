//! Thin typed views over stanza elements (RFC 6120 §8) and stanza errors (RFC 6120 §8.3).

use jid::Jid;
use minidom::Element;

use tern_stream::NS_CLIENT;

use crate::xml::{set_attr, BuilderExt};

/// Namespace of stanza error conditions (RFC 6120 §8.3.3).
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// The three stanza kinds (RFC 6120 §8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `<message/>`
    Message,
    /// `<presence/>`
    Presence,
    /// `<iq/>`
    Iq,
}

impl Kind {
    /// The kind of a top-level element in the client or server namespace, if it is a stanza.
    pub fn of(el: &Element) -> Option<Kind> {
        let ns = el.ns();
        if ns != NS_CLIENT && ns != tern_stream::NS_SERVER {
            return None;
        }
        match el.name() {
            "message" => Some(Kind::Message),
            "presence" => Some(Kind::Presence),
            "iq" => Some(Kind::Iq),
            _ => None,
        }
    }
}

/// A stanza on its way through the router: the element plus its parsed addresses.
#[derive(Debug, Clone)]
pub struct Stanza {
    /// Message, presence or IQ.
    pub kind: Kind,
    /// The sender, stamped by the session that received it.
    pub from: Jid,
    /// The addressee; `None` means "the sender's own account" or a presence broadcast (RFC 6120 §10.3).
    pub to: Option<Jid>,
    /// The element itself; its `from`/`to` attributes match the fields above.
    pub el: Element,
}

impl Stanza {
    /// Wraps an element whose addresses the caller has already validated and stamped.
    pub fn new(kind: Kind, from: Jid, to: Option<Jid>, mut el: Element) -> Stanza {
        set_attr(&mut el, "from", Some(from.as_str()));
        if let Some(to) = &to {
            set_attr(&mut el, "to", Some(to.as_str()));
        }
        Stanza { kind, from, to, el }
    }

    /// The `type` attribute, or the RFC default when absent ("normal" for messages,
    /// "available" for presence, "" for IQ which must carry one).
    pub fn type_(&self) -> &str {
        match (self.el.attr("type"), self.kind) {
            (Some(t), _) => t,
            (None, Kind::Message) => "normal",
            (None, Kind::Presence) => "available",
            (None, Kind::Iq) => "",
        }
    }

    /// The `id` attribute.
    pub fn id(&self) -> Option<&str> {
        self.el.attr("id")
    }

    /// Whether this is an error stanza: errors are never answered with errors (RFC 6120 §8.3.1).
    pub fn is_error(&self) -> bool {
        self.el.attr("type") == Some("error")
    }

    /// For IQ get/set: the single payload child (RFC 6120 §8.2.3).
    pub fn iq_payload(&self) -> Option<&Element> {
        self.el.children().next()
    }

    /// Whether this is an IQ request (get or set) that must be answered.
    pub fn is_iq_request(&self) -> bool {
        self.kind == Kind::Iq && matches!(self.type_(), "get" | "set")
    }

    /// Builds an IQ result for this request, addressed back to the sender.
    pub fn iq_result(&self, payload: Option<Element>) -> Element {
        let mut b = Element::builder("iq", NS_CLIENT)
            .a("type", "result")
            .a_opt("id", self.id())
            .a("to", self.from.as_str())
            .a_opt("from", self.to.as_ref().map(|j| j.as_str()));
        if let Some(p) = payload {
            b = b.append(p);
        }
        b.build()
    }

    /// Builds the error reply to this stanza (RFC 6120 §8.3.1): addresses swapped, type
    /// "error", the original payload kept so the sender can correlate it.
    pub fn error_reply(&self, err: &StanzaError) -> Element {
        let mut reply = self.el.clone();
        set_attr(&mut reply, "type", Some("error"));
        set_attr(&mut reply, "to", Some(self.from.as_str()));
        set_attr(&mut reply, "from", self.to.as_ref().map(|j| j.as_str()));
        reply.append_child(err.to_element());
        reply
    }
}

/// Error types (RFC 6120 §8.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// Retry after providing credentials.
    Auth,
    /// Do not retry.
    Cancel,
    /// Proceed; the condition was only a warning.
    Continue,
    /// Retry after changing the data sent.
    Modify,
    /// Retry after waiting.
    Wait,
}

impl ErrorType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// Defined stanza error conditions (RFC 6120 §8.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Condition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    Gone,
    InternalServerError,
    ItemNotFound,
    JidMalformed,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    PolicyViolation,
    RecipientUnavailable,
    Redirect,
    RegistrationRequired,
    RemoteServerNotFound,
    RemoteServerTimeout,
    ResourceConstraint,
    ServiceUnavailable,
    SubscriptionRequired,
    UndefinedCondition,
    UnexpectedRequest,
}

impl Condition {
    /// Wire name of the condition element.
    pub fn as_str(self) -> &'static str {
        use Condition::*;
        match self {
            BadRequest => "bad-request",
            Conflict => "conflict",
            FeatureNotImplemented => "feature-not-implemented",
            Forbidden => "forbidden",
            Gone => "gone",
            InternalServerError => "internal-server-error",
            ItemNotFound => "item-not-found",
            JidMalformed => "jid-malformed",
            NotAcceptable => "not-acceptable",
            NotAllowed => "not-allowed",
            NotAuthorized => "not-authorized",
            PolicyViolation => "policy-violation",
            RecipientUnavailable => "recipient-unavailable",
            Redirect => "redirect",
            RegistrationRequired => "registration-required",
            RemoteServerNotFound => "remote-server-not-found",
            RemoteServerTimeout => "remote-server-timeout",
            ResourceConstraint => "resource-constraint",
            ServiceUnavailable => "service-unavailable",
            SubscriptionRequired => "subscription-required",
            UndefinedCondition => "undefined-condition",
            UnexpectedRequest => "unexpected-request",
        }
    }

    /// The error type RFC 6120 §8.3.3 gives in its examples for this condition.
    pub fn default_type(self) -> ErrorType {
        use Condition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation | Redirect => {
                ErrorType::Modify
            }
            NotAuthorized | Forbidden | RegistrationRequired | SubscriptionRequired => {
                ErrorType::Auth
            }
            InternalServerError | RecipientUnavailable | RemoteServerTimeout
            | ResourceConstraint | UnexpectedRequest => ErrorType::Wait,
            _ => ErrorType::Cancel,
        }
    }
}

/// A stanza error: type, defined condition and optional human-readable text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    /// What the sender should do.
    pub type_: ErrorType,
    /// The defined condition.
    pub condition: Condition,
    /// Optional explanation for humans.
    pub text: Option<String>,
    /// Optional application-specific condition (RFC 6120 §8.3.4), e.g. XEP-0191's `<blocked/>`.
    pub app: Option<Box<Element>>,
}

impl StanzaError {
    /// An error with the condition's usual type.
    pub fn new(condition: Condition) -> Self {
        StanzaError {
            type_: condition.default_type(),
            condition,
            text: None,
            app: None,
        }
    }

    /// Adds an application-specific condition element.
    pub fn with_app(mut self, app: Element) -> Self {
        self.app = Some(Box::new(app));
        self
    }

    /// Changes the error type.
    pub fn with_type(mut self, type_: ErrorType) -> Self {
        self.type_ = type_;
        self
    }

    /// Adds an explanation.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// The `<error/>` child element.
    pub fn to_element(&self) -> Element {
        let mut b = Element::builder("error", NS_CLIENT)
            .a("type", self.type_.as_str())
            .append(Element::bare(self.condition.as_str(), NS_STANZAS));
        if let Some(t) = &self.text {
            b = b.append(
                Element::builder("text", NS_STANZAS)
                    .append(t.as_str())
                    .build(),
            );
        }
        if let Some(app) = &self.app {
            b = b.append((**app).clone());
        }
        b.build()
    }
}

impl From<Condition> for StanzaError {
    fn from(c: Condition) -> Self {
        StanzaError::new(c)
    }
}
