//! A client side of SCRAM (RFC 5802, RFC 7677) with channel binding (RFC 9266, RFC 5929), so
//! end-to-end tests can exercise every mechanism the server offers, including -PLUS.

use anyhow::{anyhow, bail, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use minidom::Element;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::RawClient;

const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// Which channel binding a -PLUS exchange uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// No channel binding (gs2 flag 'n').
    None,
    /// RFC 9266.
    TlsExporter,
    /// RFC 5929.
    TlsServerEndPoint,
}

macro_rules! hmac_fn {
    ($name:ident, $h:ty) => {
        fn $name(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut m = <Hmac<$h>>::new_from_slice(key).expect("any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
    };
}
hmac_fn!(hmac1, Sha1);
hmac_fn!(hmac256, Sha256);

fn keys(sha256: bool, password: &str, salt: &[u8], iterations: u32) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut salted = vec![0u8; if sha256 { 32 } else { 20 }];
    if sha256 {
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    } else {
        pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations, &mut salted);
    }
    let h = |k: &[u8], d: &[u8]| if sha256 { hmac256(k, d) } else { hmac1(k, d) };
    let client_key = h(&salted, b"Client Key");
    let stored: Vec<u8> = if sha256 {
        Sha256::digest(&client_key).to_vec()
    } else {
        Sha1::digest(&client_key).to_vec()
    };
    let server_key = h(&salted, b"Server Key");
    (client_key, stored, server_key)
}

impl RawClient {
    /// Authenticates with `mechanism` (e.g. "SCRAM-SHA-256-PLUS"); returns the final
    /// `<success/>` or `<failure/>`. The server signature in `<success/>` is verified.
    pub async fn auth_scram(
        &mut self,
        mechanism: &str,
        user: &str,
        password: &str,
        binding: Binding,
    ) -> Result<Element> {
        let sha256 = mechanism.starts_with("SCRAM-SHA-256");
        let (gs2, cb_data): (String, Vec<u8>) = match binding {
            Binding::None => ("n,,".into(), Vec::new()),
            Binding::TlsExporter => (
                "p=tls-exporter,,".into(),
                self.bindings
                    .0
                    .clone()
                    .ok_or_else(|| anyhow!("no tls-exporter data"))?,
            ),
            Binding::TlsServerEndPoint => (
                "p=tls-server-end-point,,".into(),
                self.bindings
                    .1
                    .clone()
                    .ok_or_else(|| anyhow!("no end-point data"))?,
            ),
        };
        let cnonce = format!("{:x}", rand::random::<u128>());
        let first_bare = format!("n={user},r={cnonce}");
        self.send_str(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{}</auth>",
            B64.encode(format!("{gs2}{first_bare}"))
        ))
        .await?;
        let ch = self.next().await?;
        if !ch.is("challenge", NS_SASL) {
            return Ok(ch);
        }
        let server_first = String::from_utf8(B64.decode(ch.text().trim())?)?;
        let attr = |k: &str| {
            server_first
                .split(',')
                .find_map(|p| p.strip_prefix(k))
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("no {k}"))
        };
        let nonce = attr("r=")?;
        if !nonce.starts_with(&cnonce) {
            bail!("server nonce does not extend ours");
        }
        let salt = B64.decode(attr("s=")?)?;
        let iterations: u32 = attr("i=")?.parse()?;
        let (client_key, stored, server_key) = keys(sha256, password, &salt, iterations);
        let mut cbind = gs2.into_bytes();
        cbind.extend_from_slice(&cb_data);
        let without_proof = format!("c={},r={nonce}", B64.encode(&cbind));
        let auth_message = format!("{first_bare},{server_first},{without_proof}");
        let h = |k: &[u8], d: &[u8]| if sha256 { hmac256(k, d) } else { hmac1(k, d) };
        let signature = h(&stored, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let final_msg = format!("{without_proof},p={}", B64.encode(proof));
        self.send_str(&format!(
            "<response xmlns='{NS_SASL}'>{}</response>",
            B64.encode(final_msg)
        ))
        .await?;
        let done = self.next().await?;
        if done.is("success", NS_SASL) {
            let v = String::from_utf8(B64.decode(done.text().trim())?)?;
            let expected = format!("v={}", B64.encode(h(&server_key, auth_message.as_bytes())));
            if v != expected {
                bail!("server signature mismatch: {v}");
            }
        }
        Ok(done)
    }
}
