//! PubSub errors (XEP-0060 §7–§8 error cases): a stanza error condition plus the optional
//! application-specific condition in `http://jabber.org/protocol/pubsub#errors`.

use std::sync::Arc;

use minidom::Element;

use tern_router::xml::BuilderExt;
use tern_router::{Condition, Kind, Origin, Router, Stanza, StanzaError};
use tern_stream::NS_CLIENT;

use crate::ns::NS_ERRORS;

/// A pubsub request failed; answered as an IQ error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{}", cond.as_str(), app.map(|a| format!(" ({a})")).unwrap_or_default())]
pub struct PsError {
    /// The RFC 6120 condition.
    pub cond: Condition,
    /// The pubsub#errors child, e.g. `precondition-not-met`.
    pub app: Option<&'static str>,
    /// For `<unsupported/>`: the pubsub feature name.
    pub feature: Option<&'static str>,
    /// Explanation for humans.
    pub text: Option<String>,
}

/// Result of pubsub operations.
pub type PsResult<T> = Result<T, PsError>;

impl PsError {
    /// A plain condition.
    pub fn new(cond: Condition) -> Self {
        PsError {
            cond,
            app: None,
            feature: None,
            text: None,
        }
    }

    /// A condition with a pubsub#errors child.
    pub fn app(cond: Condition, app: &'static str) -> Self {
        PsError {
            app: Some(app),
            ..PsError::new(cond)
        }
    }

    /// `<feature-not-implemented/>` with `<unsupported feature='…'/>` (XEP-0060 §7.1.3.x etc.).
    pub fn unsupported(feature: &'static str) -> Self {
        PsError {
            app: Some("unsupported"),
            feature: Some(feature),
            ..PsError::new(Condition::FeatureNotImplemented)
        }
    }

    /// Adds an explanation.
    pub fn text(mut self, t: impl Into<String>) -> Self {
        self.text = Some(t.into());
        self
    }

    /// `<item-not-found/>`.
    pub fn not_found() -> Self {
        PsError::new(Condition::ItemNotFound)
    }

    /// `<bad-request/>` with text.
    pub fn bad(t: impl Into<String>) -> Self {
        PsError::new(Condition::BadRequest).text(t)
    }

    /// `<internal-server-error/>` for a failed store; the cause is logged, not sent.
    pub fn storage(e: tern_storage::StoreError) -> Self {
        tracing::warn!("pubsub storage error: {e}");
        PsError::new(Condition::InternalServerError)
    }

    fn app_element(&self) -> Option<Element> {
        let app = self.app?;
        Some(
            Element::builder(app, NS_ERRORS)
                .a_opt("feature", self.feature)
                .build(),
        )
    }
}

impl From<tern_storage::StoreError> for PsError {
    fn from(e: tern_storage::StoreError) -> Self {
        PsError::storage(e)
    }
}

/// Answers a request with a pubsub error (RFC 6120 §8.3 plus the XEP-0060 application
/// condition inside `<error/>`).
pub async fn reply_error(router: &Arc<Router>, st: &Stanza, e: &PsError) {
    if st.is_error() || (st.kind == Kind::Iq && st.type_() == "result") {
        return;
    }
    let mut err = StanzaError::new(e.cond);
    if let Some(t) = &e.text {
        err = err.with_text(t.clone());
    }
    let mut reply = st.error_reply(&err);
    if let (Some(app), Some(error)) = (e.app_element(), reply.get_child_mut("error", NS_CLIENT)) {
        error.append_child(app);
    }
    let from = st
        .to
        .clone()
        .unwrap_or_else(|| jid::Jid::from(st.from.to_bare()));
    let reply = Stanza::new(st.kind, from, Some(st.from.clone()), reply);
    router.route(Origin::Local, reply).await;
}
