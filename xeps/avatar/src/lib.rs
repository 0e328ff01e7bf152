//! XEP-0398 User Avatar to vCard-Based Avatars Conversion, with the server side of XEP-0153
//! (the avatar hash in presence).
//!
//! The module owns neither avatars nor vCards: it listens to the announcements of the modules
//! that do (`pep.published` from PEP, `vcard.changed` from vcard-temp; docs/hooks.md) and acts
//! on them as the account would, with server-internal IQ requests (`Router::request`): it reads
//! the vCard and the avatar nodes and writes the other side. Each direction first compares the
//! image hash with what the other side already holds, so a conversion never triggers another.
//!
//! Layout: [`photo`] is the pure part (vCard PHOTO, XEP-0084 payloads, presence stamping);
//! [`convert`] talks to the account's vCard and PEP service; [`module`] hooks the events and
//! keeps each online account's current hash for presence.

pub mod config;
pub mod convert;
pub mod module;
pub mod photo;

pub use config::AvatarConfig;
pub use module::{AvatarModule, FEATURE};
