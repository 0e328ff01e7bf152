//! Tern presence: RFC 6121 §3 (subscriptions) and §4 (presence) as a module.
//!
//! Layout: [`transitions`] is the subscription state machine as pure functions over roster
//! items (RFC 6121 Appendix A); `broadcast` sends initial, subsequent and unavailable
//! presence, answers probes and revokes directed presence; [`module`] hooks the router's
//! presence events and dispatches to both. Subscription state lives in the roster
//! (`tern-roster`); who is online and with which presence lives in the session registry.

mod broadcast;
pub mod module;
pub mod transitions;

pub use module::PresenceModule;
