//! tern-roster
