//! The client side of SASL for the load generator: PLAIN, SCRAM-SHA-1 and SCRAM-SHA-256
//! (RFC 5802, RFC 7677) without channel binding, which all three servers offer.
//!
//! A real client keeps the SaltedPassword after its first login instead of running PBKDF2
//! again; the generator does the same (keyed by password, salt and iteration count), so a
//! login costs the client a few HMACs and the generator stays cheap while servers are measured.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{anyhow, bail, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A SASL mechanism the generator can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mech {
    /// PLAIN (RFC 4616) over TLS: the server hashes the password at every login.
    Plain,
    /// SCRAM-SHA-1 (RFC 5802): the mechanism every server here offers with hashed storage.
    #[value(name = "scram-sha-1")]
    ScramSha1,
    /// SCRAM-SHA-256 (RFC 7677).
    #[value(name = "scram-sha-256")]
    ScramSha256,
}

impl Mech {
    /// The IANA name sent in `<auth mechanism=…/>`.
    pub fn name(self) -> &'static str {
        match self {
            Mech::Plain => "PLAIN",
            Mech::ScramSha1 => "SCRAM-SHA-1",
            Mech::ScramSha256 => "SCRAM-SHA-256",
        }
    }
}

type Key = (String, Vec<u8>, u32, bool);
static SALTED: Mutex<Option<HashMap<Key, Vec<u8>>>> = Mutex::new(None);

fn hmac(sha256: bool, key: &[u8], data: &[u8]) -> Vec<u8> {
    if sha256 {
        let mut m = <Hmac<Sha256>>::new_from_slice(key).expect("any key length");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    } else {
        let mut m = <Hmac<Sha1>>::new_from_slice(key).expect("any key length");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
}

fn salted(sha256: bool, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let key = (password.to_owned(), salt.to_vec(), iterations, sha256);
    if let Some(v) = SALTED
        .lock()
        .expect("not poisoned")
        .as_ref()
        .and_then(|m| m.get(&key))
    {
        return v.clone();
    }
    let mut out = vec![0u8; if sha256 { 32 } else { 20 }];
    if sha256 {
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    } else {
        pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations, &mut out);
    }
    SALTED
        .lock()
        .expect("not poisoned")
        .get_or_insert_with(HashMap::new)
        .insert(key, out.clone());
    out
}

/// The `<auth/>` payload of PLAIN.
pub fn plain(user: &str, password: &str) -> String {
    B64.encode(format!("\0{user}\0{password}"))
}

/// One SCRAM exchange in progress.
pub struct Scram {
    sha256: bool,
    password: String,
    cnonce: String,
    first_bare: String,
    expected_v: Option<String>,
}

impl Scram {
    /// Starts an exchange; returns it and the base64 client-first message.
    pub fn start(mech: Mech, user: &str, password: &str) -> (Scram, String) {
        let cnonce = format!("{:032x}", rand::random::<u128>());
        let first_bare = format!("n={user},r={cnonce}");
        let msg = B64.encode(format!("n,,{first_bare}"));
        (
            Scram {
                sha256: mech == Mech::ScramSha256,
                password: password.to_owned(),
                cnonce,
                first_bare,
                expected_v: None,
            },
            msg,
        )
    }

    /// Answers the server-first challenge (base64) with the base64 client-final message.
    pub fn respond(&mut self, challenge_b64: &[u8]) -> Result<String> {
        let server_first = String::from_utf8(B64.decode(challenge_b64.trim_ascii())?)?;
        let get = |k: &str| {
            server_first
                .split(',')
                .find_map(|p| p.strip_prefix(k))
                .ok_or_else(|| anyhow!("server-first without {k}"))
        };
        let nonce = get("r=")?;
        if !nonce.starts_with(&self.cnonce) {
            bail!("server nonce does not extend ours");
        }
        let salt = B64.decode(get("s=")?)?;
        let iterations: u32 = get("i=")?.parse()?;
        let salted = salted(self.sha256, &self.password, &salt, iterations);
        let client_key = hmac(self.sha256, &salted, b"Client Key");
        let stored = if self.sha256 {
            Sha256::digest(&client_key).to_vec()
        } else {
            Sha1::digest(&client_key).to_vec()
        };
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let signature = hmac(self.sha256, &stored, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(self.sha256, &salted, b"Server Key");
        self.expected_v = Some(format!(
            "v={}",
            B64.encode(hmac(self.sha256, &server_key, auth_message.as_bytes()))
        ));
        Ok(B64.encode(format!("{without_proof},p={}", B64.encode(proof))))
    }

    /// Checks the server signature carried by `<success/>` (RFC 5802 §5.1 `v=`).
    pub fn verify(&self, success_b64: &[u8]) -> Result<()> {
        let got = String::from_utf8(B64.decode(success_b64.trim_ascii())?)?;
        match &self.expected_v {
            Some(v) if *v == got => Ok(()),
            _ => bail!("server signature mismatch"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3 example: user "user", password "pencil".
    #[test]
    fn rfc7677_example() {
        let (mut s, _) = Scram::start(Mech::ScramSha256, "user", "pencil");
        s.cnonce = "rOprNGfwEbeRWgbNEkqO".into();
        s.first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO".into();
        let sf = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let out = s.respond(B64.encode(sf).as_bytes()).unwrap();
        let out = String::from_utf8(B64.decode(out).unwrap()).unwrap();
        assert_eq!(
            out,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let v = B64.encode("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        s.verify(v.as_bytes()).unwrap();
    }
}
