//! Tern presence: RFC 6121 §3 (subscriptions) and §4 (presence) as a module.
//!
//! Layout: [`transitions`] is the subscription state machine as pure functions over roster
//! items (RFC 6121 Appendix A); `subscription` applies it to outbound and inbound
//! subscription stanzas and stores the result on the roster; `broadcast` sends initial,
//! subsequent and unavailable presence; `probe` answers probes and tracks directed presence;
//! [`module`] hooks the router's presence events and session lifecycle and dispatches to them.
//! Subscription state lives in the roster (`tern-roster`); who is online and with which
//! presence lives in the session registry, never in storage.

mod broadcast;
mod last;
pub mod module;
mod probe;
mod subscription;
pub mod transitions;

pub use module::{PresenceModule, NS_PRE_APPROVAL};
