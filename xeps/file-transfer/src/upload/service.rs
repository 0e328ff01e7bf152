//! The XMPP side of XEP-0363 on `upload.<host>`: discovery with the size limit (§3, as a
//! XEP-0128 form) and slot requests (§4) with their errors (§4.3: file too large, quota).

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use minidom::Element;
use rand::RngCore;
use tracing::info;

use tern_router::xml::BuilderExt;
use tern_router::{Condition, ErrorType, Kind, Origin, Router, Service, Spec, Stanza, StanzaError};

use super::http::PREFIX;
use super::{encode_segment, hex, now_secs, Files, SlotClaim};

/// XEP-0363 namespace.
pub const NS_UPLOAD: &str = "urn:xmpp:http:upload:0";
const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const NS_DATA: &str = "jabber:x:data";
/// Longest file name accepted, in bytes.
const MAX_NAME: usize = 255;

/// The upload service of one host.
pub struct UploadService {
    files: Arc<Files>,
    secret: Arc<Vec<u8>>,
    /// URL prefix clients use to reach Tern's HTTPS listener, e.g. `https://example.org:5281`;
    /// `{https_port}` in it stands for the listener's port, known once it is bound.
    base_url: String,
    https_port: Arc<OnceLock<u16>>,
}

impl UploadService {
    /// A service storing into `files`, signing with `secret`, with URLs under `base_url`.
    pub fn new(
        files: Arc<Files>,
        secret: Arc<Vec<u8>>,
        base_url: &str,
        https_port: Arc<OnceLock<u16>>,
    ) -> Self {
        UploadService {
            files,
            secret,
            base_url: base_url.trim_end_matches('/').to_owned(),
            https_port,
        }
    }

    fn base(&self) -> String {
        let port = self.https_port.get().copied().unwrap_or(5281);
        self.base_url.replace("{https_port}", &port.to_string())
    }

    fn info(&self) -> Element {
        let field = |var: &str, value: &str, type_: Option<&str>| {
            Element::builder("field", NS_DATA)
                .a("var", var)
                .a_opt("type", type_)
                .append(Element::builder("value", NS_DATA).append(value).build())
                .build()
        };
        let form = Element::builder("x", NS_DATA)
            .a("type", "result")
            .append(field("FORM_TYPE", NS_UPLOAD, Some("hidden")))
            .append(field(
                "max-file-size",
                &self.files.limits.max_file_size.to_string(),
                None,
            ))
            .build();
        Element::builder("query", NS_DISCO_INFO)
            .append(
                Element::builder("identity", NS_DISCO_INFO)
                    .a("category", "store")
                    .a("type", "file")
                    .a("name", "HTTP File Upload")
                    .build(),
            )
            .append(
                Element::builder("feature", NS_DISCO_INFO)
                    .a("var", NS_DISCO_INFO)
                    .build(),
            )
            .append(
                Element::builder("feature", NS_DISCO_INFO)
                    .a("var", NS_UPLOAD)
                    .build(),
            )
            .append(form)
            .build()
    }

    fn too_large(&self) -> StanzaError {
        // §4.3.1: not-acceptable (modify) with the limit in <file-too-large/>.
        let max = self.files.limits.max_file_size.to_string();
        StanzaError::new(Condition::NotAcceptable)
            .with_type(ErrorType::Modify)
            .with_text(format!(
                "the file is larger than the maximum of {max} bytes"
            ))
            .with_app(
                Element::builder("file-too-large", NS_UPLOAD)
                    .append(
                        Element::builder("max-file-size", NS_UPLOAD)
                            .append(max.as_str())
                            .build(),
                    )
                    .build(),
            )
    }

    fn slot(&self, router: &Router, st: &Stanza, req: &Element) -> Result<Element, StanzaError> {
        if !router.is_local(st.from.domain().as_str()) || st.from.node().is_none() {
            return Err(StanzaError::new(Condition::Forbidden)
                .with_text("this upload service is for the server's own users"));
        }
        let bad = |t: &str| StanzaError::new(Condition::BadRequest).with_text(t.to_owned());
        let filename = sanitize(
            req.attr("filename")
                .ok_or_else(|| bad("'filename' is required"))?,
        )
        .ok_or_else(|| bad("the file name is empty or too long"))?;
        let size: u64 = req
            .attr("size")
            .and_then(|s| s.parse().ok())
            .filter(|s| *s > 0)
            .ok_or_else(|| bad("'size' must be a positive number of bytes"))?;
        if size > self.files.limits.max_file_size {
            return Err(self.too_large());
        }
        let content_type = req
            .attr("content-type")
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let allowed = &self.files.limits.allowed_types;
        if !allowed.is_empty() && !allowed.iter().any(|a| type_matches(a, &content_type)) {
            return Err(StanzaError::new(Condition::NotAcceptable)
                .with_type(ErrorType::Modify)
                .with_text(format!(
                    "files of type {content_type:?} are not accepted here"
                )));
        }
        let owner = st.from.to_bare().to_string();
        self.files.check_quota(&owner, size).map_err(|why| {
            // §4.3.2: a quota is reached; waiting (for expiry) may help.
            StanzaError::new(Condition::ResourceConstraint)
                .with_type(ErrorType::Wait)
                .with_text(why)
        })?;
        let mut id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut id);
        let claim = SlotClaim {
            owner,
            slot: hex(&id),
            filename,
            size,
            content_type,
            expires: now_secs() + self.files.limits.slot_ttl.as_secs(),
        };
        let get = format!(
            "{}{PREFIX}/{}/{}",
            self.base(),
            claim.slot,
            encode_segment(&claim.filename)
        );
        let put = format!(
            "{get}?o={}&s={}&t={}&e={}&sig={}",
            encode_segment(&claim.owner),
            claim.size,
            encode_segment(&claim.content_type),
            claim.expires,
            claim.sign(&self.secret)
        );
        info!(owner = %claim.owner, slot = %claim.slot, size, "upload slot granted");
        Ok(Element::builder("slot", NS_UPLOAD)
            .append(Element::builder("put", NS_UPLOAD).a("url", put).build())
            .append(Element::builder("get", NS_UPLOAD).a("url", get).build())
            .build())
    }
}

/// A file name fit for a URL path and a download: the last path component, without control
/// characters, at most [`MAX_NAME`] bytes.
fn sanitize(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim();
    (!clean.is_empty() && clean != "." && clean != ".." && clean.len() <= MAX_NAME)
        .then(|| clean.to_owned())
}

/// `image/*` matches `image/png`; otherwise exact.
fn type_matches(pattern: &str, t: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(major) => t.split('/').next() == Some(major),
        None => pattern.eq_ignore_ascii_case(t),
    }
}

#[async_trait]
impl Service for UploadService {
    fn name(&self) -> &'static str {
        "upload"
    }

    fn item_name(&self) -> Option<String> {
        Some("HTTP File Upload".into())
    }

    fn specs(&self) -> Vec<Spec> {
        vec![Spec::xep(363, "1.2.0")]
    }

    async fn handle(&self, router: &Arc<Router>, _origin: &Origin, st: Stanza) {
        if st.kind != Kind::Iq || !st.is_iq_request() {
            if st.kind == Kind::Message {
                router
                    .bounce(&st, Condition::ServiceUnavailable.into())
                    .await;
            }
            return;
        }
        let Some(q) = st.iq_payload() else {
            return router.bounce(&st, Condition::BadRequest.into()).await;
        };
        let ns = q.ns();
        let result = match (st.type_(), ns.as_str(), q.name()) {
            _ if st.to.as_ref().is_some_and(|t| t.node().is_some()) => {
                Err(StanzaError::new(Condition::ServiceUnavailable))
            }
            ("get", NS_DISCO_INFO, _) if q.attr("node").is_none() => Ok(self.info()),
            ("get", NS_DISCO_ITEMS, _) if q.attr("node").is_none() => {
                Ok(Element::bare("query", NS_DISCO_ITEMS))
            }
            (_, NS_DISCO_INFO | NS_DISCO_ITEMS, _) => {
                Err(StanzaError::new(Condition::ItemNotFound))
            }
            ("get", NS_UPLOAD, "request") => self.slot(router, &st, q),
            _ => Err(StanzaError::new(Condition::FeatureNotImplemented)),
        };
        match result {
            Ok(el) => router.reply_result(&st, Some(el)).await,
            Err(e) => router.bounce(&st, e).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_sanitized() {
        assert_eq!(sanitize("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(sanitize("C:\\x\\photo.jpg").as_deref(), Some("photo.jpg"));
        assert_eq!(sanitize("a\u{0}b\n.txt").as_deref(), Some("ab.txt"));
        assert_eq!(sanitize(".."), None);
        assert_eq!(sanitize("   "), None);
        assert_eq!(sanitize(&"x".repeat(300)), None);
    }

    #[test]
    fn content_type_patterns() {
        assert!(type_matches("image/*", "image/png"));
        assert!(!type_matches("image/*", "text/html"));
        assert!(type_matches("application/pdf", "application/pdf"));
    }
}
