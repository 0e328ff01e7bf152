//! SCRAM credentials (RFC 5802 §3): from a password to the salted keys the store keeps, and
//! the HMAC/hash/PBKDF2 primitives the SCRAM exchange is built from.
//!
//! PBKDF2 runs only here, when a password is set or a PLAIN login is checked (DESIGN.md §6);
//! a SCRAM login costs a few HMACs against the stored keys.

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{saslprep, AccountRecord, CredentialError, Hash, ScramCredentials};

/// PBKDF2 iteration count for new accounts.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Least iteration count [`new_account_record`] accepts: RFC 7677 §4 asks SCRAM-SHA-256
/// servers for at least 4096.
pub const MIN_ITERATIONS: u32 = 4096;

/// Salt length for new accounts, in bytes.
const SALT_LEN: usize = 16;

impl Hash {
    /// HMAC(key, data) (RFC 5802 §2.2).
    pub(crate) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length (long ones are hashed), so construction cannot fail.
        match self {
            Hash::Sha1 => {
                let mut m = Hmac::<Sha1>::new_from_slice(key).expect("HMAC accepts any key");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Hash::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// H(data) (RFC 5802 §2.2).
    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => Sha1::digest(data).to_vec(),
            Hash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// Hi(str, salt, i): PBKDF2 with HMAC as the PRF and one output block (RFC 5802 §2.2).
    pub(crate) fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.output_len()];
        match self {
            Hash::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
            Hash::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
        }
        out
    }

    /// StoredKey and ServerKey from SaltedPassword (RFC 5802 §3).
    fn keys(self, salted_password: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let client_key = self.hmac(salted_password, b"Client Key");
        let stored_key = self.digest(&client_key);
        let server_key = self.hmac(salted_password, b"Server Key");
        (stored_key, server_key)
    }
}

/// Derives SCRAM credentials for one hash from a password (SASLprep'd here), salt and count.
///
/// This is the primitive: it accepts any count from 1 so imported or test data can be
/// reproduced; [`new_account_record`] is where the minimum for new accounts is enforced.
pub fn derive(
    hash: Hash,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Result<ScramCredentials, CredentialError> {
    if iterations == 0 {
        return Err(CredentialError::TooFewIterations { got: 0, min: 1 });
    }
    if salt.is_empty() {
        return Err(CredentialError::EmptySalt);
    }
    // RFC 5802 §3: SaltedPassword := Hi(Normalize(password), salt, i).
    let prepped = saslprep(password)?;
    let salted = hash.hi(prepped.as_bytes(), salt, iterations);
    let (stored_key, server_key) = hash.keys(&salted);
    Ok(ScramCredentials {
        salt: salt.to_vec(),
        iterations,
        stored_key,
        server_key,
    })
}

/// Creates fresh SCRAM credentials for both hashes from a password (SASLprep applied), random
/// 16-byte salts.
///
/// Each hash gets its own salt, so the two key sets share no PBKDF2 input but the password.
pub fn new_account_record(
    password: &str,
    iterations: u32,
    created_unix: i64,
) -> Result<AccountRecord, CredentialError> {
    if iterations < MIN_ITERATIONS {
        return Err(CredentialError::TooFewIterations {
            got: iterations,
            min: MIN_ITERATIONS,
        });
    }
    let mut rng = rand::thread_rng();
    let mut salt1 = [0u8; SALT_LEN];
    let mut salt256 = [0u8; SALT_LEN];
    rng.fill_bytes(&mut salt1);
    rng.fill_bytes(&mut salt256);
    Ok(AccountRecord {
        scram_sha1: derive(Hash::Sha1, password, &salt1, iterations)?,
        scram_sha256: derive(Hash::Sha256, password, &salt256, iterations)?,
        created: created_unix,
    })
}

/// Checks a plaintext password (PLAIN) against stored SCRAM-SHA-256 keys (constant-time compare).
pub fn verify_password(record: &AccountRecord, password: &str) -> bool {
    let stored = &record.scram_sha256;
    match derive(Hash::Sha256, password, &stored.salt, stored.iterations) {
        // Both keys must match; `&` (not `&&`) so the comparison time does not say which failed.
        Ok(d) => bool::from(
            d.stored_key.ct_eq(&stored.stored_key) & d.server_key.ct_eq(&stored.server_key),
        ),
        Err(_) => false,
    }
}

/// Credentials for a user that does not exist, so an exchange for them looks like a real one
/// and cannot be used to enumerate accounts (we never send RFC 5802 §7's `e=unknown-user`).
///
/// The salt is an HMAC of the username under a per-process random key: the same user gets the
/// same salt on every attempt, as a real account would, and it cannot be predicted. The keys
/// are random, so no proof can match them. New accounts use [`DEFAULT_ITERATIONS`], so that is
/// the count shown here too.
pub(crate) fn fake_credentials(hash: Hash, username: &str) -> ScramCredentials {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut k);
        k
    });
    let label: &[u8] = match hash {
        Hash::Sha1 => b"tern fake salt sha1\0",
        Hash::Sha256 => b"tern fake salt sha256\0",
    };
    let mut input = label.to_vec();
    input.extend_from_slice(username.as_bytes());
    let mut salt = Hash::Sha256.hmac(key, &input);
    salt.truncate(SALT_LEN);
    let mut stored_key = vec![0u8; hash.output_len()];
    let mut server_key = vec![0u8; hash.output_len()];
    rand::thread_rng().fill_bytes(&mut stored_key);
    rand::thread_rng().fill_bytes(&mut server_key);
    ScramCredentials {
        salt,
        iterations: DEFAULT_ITERATIONS,
        stored_key,
        server_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::STANDARD as B64, Engine};

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// RFC 6070 PBKDF2-HMAC-SHA1 test vectors (dkLen 20).
    #[test]
    fn hi_matches_rfc6070() {
        let h = |i| hex(&Hash::Sha1.hi(b"password", b"salt", i));
        assert_eq!(h(1), "0c60c80f961f0e71f3a9b524af6012062fe037a6");
        assert_eq!(h(2), "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957");
        assert_eq!(h(4096), "4b007901b765489abead49d926f721d065a429c1");
    }

    /// Keys for "pencil" with the salts of RFC 5802 §5 and RFC 7677 §3 (computed independently
    /// with Python's hashlib; the exchange tests check them against the RFC proofs).
    #[test]
    fn derive_known_answers() {
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap();
        let c = derive(Hash::Sha1, "pencil", &salt, 4096).unwrap();
        assert_eq!(
            hex(&c.stored_key),
            "e9d94660c39d65c38fbad91c358f14da0eef2bd6"
        );
        assert_eq!(
            hex(&c.server_key),
            "0fe09258b3ac852ba502cc62ba903eaacdbf7d31"
        );
        assert_eq!((c.salt, c.iterations), (salt, 4096));

        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let c = derive(Hash::Sha256, "pencil", &salt, 4096).unwrap();
        assert_eq!(
            hex(&c.stored_key),
            "586e5df283e6dceb5c3e791d8b8528ec191e664045ce971792e2e6b5bb13e2a6"
        );
        assert_eq!(
            hex(&c.server_key),
            "c1f3cbc1c13a9d35a14c0990eed97629ea225863e566a4314ab99f3f00e5d9d5"
        );
    }

    #[test]
    fn derive_applies_saslprep_and_rejects_bad_input() {
        let salt = b"0123456789abcdef";
        // U+2168 ROMAN NUMERAL NINE prepares to "IX".
        assert_eq!(
            derive(Hash::Sha256, "\u{2168}", salt, 1),
            derive(Hash::Sha256, "IX", salt, 1)
        );
        assert!(matches!(
            derive(Hash::Sha1, "a\u{0007}", salt, 1),
            Err(CredentialError::Prohibited(_))
        ));
        assert_eq!(derive(Hash::Sha1, "", salt, 1), Err(CredentialError::Empty));
        assert_eq!(
            derive(Hash::Sha1, "x", b"", 1),
            Err(CredentialError::EmptySalt)
        );
        assert!(matches!(
            derive(Hash::Sha1, "x", salt, 0),
            Err(CredentialError::TooFewIterations { .. })
        ));
    }

    #[test]
    fn new_record_and_verify_password() {
        let r = new_account_record("pencil", DEFAULT_ITERATIONS, 1_700_000_000).unwrap();
        assert_eq!(r.created, 1_700_000_000);
        assert_eq!(r.scram_sha1.salt.len(), SALT_LEN);
        assert_ne!(r.scram_sha1.salt, r.scram_sha256.salt);
        assert_eq!(r.scram_sha1.stored_key.len(), 20);
        assert_eq!(r.scram_sha256.stored_key.len(), 32);
        assert!(verify_password(&r, "pencil"));
        assert!(!verify_password(&r, "pencil "));
        assert!(!verify_password(&r, "Pencil"));
        assert!(!verify_password(&r, ""));
        assert!(!verify_password(&r, "\u{0007}"));

        let r = new_account_record("I\u{00AD}X", DEFAULT_ITERATIONS, 0).unwrap();
        assert!(verify_password(&r, "\u{2168}"), "both prepare to IX");

        assert_eq!(
            new_account_record("pencil", 100, 0),
            Err(CredentialError::TooFewIterations {
                got: 100,
                min: MIN_ITERATIONS
            })
        );
        assert_eq!(
            new_account_record("\u{00AD}", DEFAULT_ITERATIONS, 0),
            Err(CredentialError::Empty)
        );
    }

    #[test]
    fn fake_credentials_are_stable_per_user() {
        let a = fake_credentials(Hash::Sha256, "nobody");
        let b = fake_credentials(Hash::Sha256, "nobody");
        assert_eq!(a.salt, b.salt);
        assert_ne!(a.salt, fake_credentials(Hash::Sha256, "nobody2").salt);
        assert_ne!(a.salt, fake_credentials(Hash::Sha1, "nobody").salt);
        assert_eq!(a.salt.len(), SALT_LEN);
        assert_eq!(a.stored_key.len(), 32);
        assert_eq!(fake_credentials(Hash::Sha1, "x").stored_key.len(), 20);
    }
}
