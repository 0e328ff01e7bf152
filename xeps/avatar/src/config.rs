//! `[avatar]` settings.

use serde::Deserialize;

/// `[avatar]` in the server configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AvatarConfig {
    /// XEP-0398: keep XEP-0084 PEP avatars and vCard photos in step, add the XEP-0153 hash to
    /// the accounts' available presence and advertise `urn:xmpp:pep-vcard-conversion:0`.
    /// Converting makes a PEP avatar readable by anyone through the vCard (XEP-0398 §6).
    pub pep_vcard_conversion: bool,
    /// Seconds to wait for the vCard or PEP module to answer a conversion request.
    pub request_timeout_secs: u64,
}

impl Default for AvatarConfig {
    fn default() -> Self {
        AvatarConfig {
            pep_vcard_conversion: true,
            request_timeout_secs: 10,
        }
    }
}

impl AvatarConfig {
    /// Checks values TOML types cannot; the error names the key and what was expected.
    pub fn validate(&self) -> Result<(), String> {
        if self.request_timeout_secs == 0 {
            return Err("avatar.request_timeout_secs = 0: expected at least 1".into());
        }
        Ok(())
    }
}
