//! tern-presence
