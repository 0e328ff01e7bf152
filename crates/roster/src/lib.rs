//! Tern roster: RFC 6121 §2 roster management and XEP-0237 versioning.
//!
//! Layout: [`item`] is the stored roster item with its subscription state; [`store`] keeps
//! rosters on the `Map` store with the version counter beside the items, written atomically
//! and serialized per account; [`push`] sends roster pushes to interested resources;
//! [`module`] answers `jabber:iq:roster` gets and sets. The presence crate uses the same item,
//! store and push for the subscription state machine of RFC 6121 §3.

pub mod item;
pub mod module;
pub mod push;
pub mod store;

pub use item::{RosterItem, Subscription, NS_ROSTER};
pub use module::{stream_feature, RosterConfig, RosterModule, NS_ROSTERVER};
pub use push::{push, push_item, roster_of};
pub use store::RosterStore;
