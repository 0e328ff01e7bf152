//! Tern roster: RFC 6121 §2 roster management and XEP-0237 versioning.
//!
//! Layout: [`item`] is the stored roster item with its subscription state; [`store`] keeps
//! rosters on the `Map` store with the version counter beside the items, written atomically
//! and serialized per account; [`module`] answers `jabber:iq:roster` gets and sets and sends
//! roster pushes. The presence crate uses the same item and store types for the subscription
//! state machine of RFC 6121 §3.

pub mod item;
pub mod module;
pub mod store;

pub use item::{RosterItem, Subscription, NS_ROSTER};
pub use module::{push, roster_of, RosterConfig, RosterModule, NS_ROSTERVER};
pub use store::RosterStore;
