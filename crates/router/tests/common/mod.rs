//! Helpers shared by the router's integration tests.

use tern_storage::{AccountRecord, ScramCredentials};

/// An account record with placeholder credentials: these tests never authenticate.
pub fn record() -> AccountRecord {
    let c = ScramCredentials {
        salt: vec![1],
        iterations: 4096,
        stored_key: vec![0; 20],
        server_key: vec![0; 20],
    };
    AccountRecord {
        scram_sha1: c.clone(),
        scram_sha256: c,
        created: 0,
    }
}
