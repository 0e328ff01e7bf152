//! The two conversions of XEP-0398 §3, done as the account: every read and write is an IQ from
//! the account's bare JID to itself, answered in-process by whichever module serves it
//! (`Router::request`), so this crate depends on the protocol, not on the vCard or PEP code.

use std::sync::Arc;
use std::time::Duration;

use jid::{BareJid, Jid};
use minidom::Element;
use thiserror::Error;
use tracing::{debug, info};

use tern_router::xml::BuilderExt;
use tern_router::{Kind, RequestError, Router, Stanza, NS_STANZAS};
use tern_stream::NS_CLIENT;

use crate::photo::{
    self, data_payload, metadata_hash, metadata_payload, vcard_hash, vcard_photo, with_photo,
    Image, Metadata, VcardPhoto, NS_DATA, NS_METADATA, NS_VCARD,
};

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";

/// Why a conversion step failed.
#[derive(Debug, Error)]
pub enum ConvertError {
    /// No response.
    #[error("request failed: {0}")]
    Request(#[from] RequestError),
    /// The answering module refused (the stanza error condition).
    #[error("refused with <{0}/>")]
    Refused(String),
    /// The avatar data does not match its announced id, or is not base64.
    #[error("avatar data for {0} is missing or does not hash to its id")]
    BadData(String),
}

type Result<T> = std::result::Result<T, ConvertError>;

/// One account, as its own client would see its vCard and PEP service.
pub struct Account<'a> {
    router: &'a Arc<Router>,
    jid: BareJid,
    timeout: Duration,
}

impl<'a> Account<'a> {
    /// The account `jid`, with `timeout` for each request.
    pub fn new(router: &'a Arc<Router>, jid: BareJid, timeout: Duration) -> Self {
        Account {
            router,
            jid,
            timeout,
        }
    }

    async fn iq(&self, type_: &str, payload: Element) -> Result<Option<Element>> {
        let me = Jid::from(self.jid.clone());
        let el = Element::builder("iq", NS_CLIENT)
            .a("type", type_)
            .append(payload)
            .build();
        let resp = self
            .router
            .request(
                Stanza::new(Kind::Iq, me.clone(), Some(me), el),
                self.timeout,
            )
            .await?;
        if resp.type_() == "error" {
            let cond = resp
                .el
                .get_child("error", NS_CLIENT)
                .and_then(|e| e.children().find(|c| c.ns() == NS_STANZAS))
                .map(|c| c.name().to_owned())
                .unwrap_or_else(|| "undefined-condition".into());
            return Err(ConvertError::Refused(cond));
        }
        Ok(resp.el.children().next().cloned())
    }

    /// The account's vCard (empty when it has none, XEP-0054 §3.1).
    pub async fn vcard(&self) -> Result<Element> {
        let got = self.iq("get", Element::bare("vCard", NS_VCARD)).await?;
        Ok(got
            .filter(|v| v.is("vCard", NS_VCARD))
            .unwrap_or_else(|| Element::bare("vCard", NS_VCARD)))
    }

    async fn set_vcard(&self, vcard: Element) -> Result<()> {
        self.iq("set", vcard).await.map(|_| ())
    }

    /// The payload of the newest item of `node`, or of the item `id`; none if either is absent.
    async fn item(&self, node: &str, id: Option<&str>) -> Result<Option<Element>> {
        let mut items = Element::builder("items", NS_PUBSUB)
            .a("node", node)
            .a_opt("max_items", id.is_none().then_some("1"))
            .build();
        if let Some(id) = id {
            items.append_child(Element::builder("item", NS_PUBSUB).a("id", id).build());
        }
        self.first_payload(items).await
    }

    async fn first_payload(&self, items: Element) -> Result<Option<Element>> {
        let req = Element::builder("pubsub", NS_PUBSUB).append(items).build();
        let resp = match self.iq("get", req).await {
            Err(ConvertError::Refused(c)) if c == "item-not-found" => return Ok(None),
            other => other?,
        };
        Ok(resp
            .as_ref()
            .and_then(|p| p.get_child("items", NS_PUBSUB))
            .and_then(|i| i.children().filter(|c| c.is("item", NS_PUBSUB)).last())
            .and_then(|i| i.children().next().cloned()))
    }

    async fn publish(&self, node: &str, id: Option<&str>, payload: Element) -> Result<()> {
        let item = Element::builder("item", NS_PUBSUB)
            .a_opt("id", id)
            .append(payload)
            .build();
        let req = Element::builder("pubsub", NS_PUBSUB)
            .append(
                Element::builder("publish", NS_PUBSUB)
                    .a("node", node)
                    .append(item)
                    .build(),
            )
            .build();
        self.iq("set", req).await.map(|_| ())
    }

    /// XEP-0398 §3.2: the vCard now holds `vcard`; publish its photo as the XEP-0084 avatar
    /// (data first, then metadata) unless PEP already announces that image. A vCard without
    /// photo disables a PEP avatar (XEP-0084 §4.5). Returns the hash now current, if known.
    pub async fn vcard_to_pep(&self, vcard: &Element) -> Result<Option<Option<String>>> {
        let img = match vcard_photo(vcard) {
            VcardPhoto::Unusable => return Ok(None),
            VcardPhoto::Absent => None,
            VcardPhoto::Image(img) => Some(img),
        };
        let new = img.as_ref().map(Image::id);
        let current = self
            .item(NS_METADATA, None)
            .await?
            .map(|m| metadata_hash(&m))
            .unwrap_or(Some(None));
        if current.as_ref() == Some(&new) || (new.is_none() && current.is_none()) {
            return Ok(Some(new));
        }
        match &img {
            Some(img) => {
                let id = img.id();
                self.publish(NS_DATA, Some(&id), data_payload(img)).await?;
                self.publish(NS_METADATA, Some(&id), metadata_payload(Some(img)))
                    .await?;
                info!(jid = %self.jid, id, "vCard photo published as PEP avatar");
            }
            None => {
                self.publish(NS_METADATA, None, metadata_payload(None))
                    .await?;
                info!(jid = %self.jid, "vCard photo removed: PEP avatar disabled");
            }
        }
        Ok(Some(new))
    }

    /// XEP-0398 §3.1: PEP metadata `md` was published; store the image it announces (the first
    /// without a URL, fetched from the data node and checked against its id) as the vCard
    /// PHOTO, keeping the other vCard fields. Returns the hash now current, if known.
    pub async fn pep_to_vcard(&self, md: &Element) -> Result<Option<Option<String>>> {
        let info = match photo::metadata(md) {
            Metadata::ExternalOnly => return Ok(None),
            Metadata::Disabled => None,
            Metadata::Avatar(info) => Some(info),
        };
        let new = info.as_ref().map(|i| i.id.to_ascii_lowercase());
        let vcard = self.vcard().await?;
        if vcard_hash(&vcard).as_ref() == Some(&new) {
            return Ok(Some(new));
        }
        let img = match &info {
            None => None,
            Some(info) => {
                let bytes = self
                    .item(NS_DATA, Some(&info.id))
                    .await?
                    .and_then(|d| photo::decode_b64(&d.text()))
                    .filter(|b| photo::sha1_hex(b).eq_ignore_ascii_case(&info.id))
                    .ok_or_else(|| ConvertError::BadData(info.id.clone()))?;
                Some(Image {
                    mime: info.mime.clone(),
                    bytes,
                })
            }
        };
        if img.is_none() && matches!(vcard_photo(&vcard), VcardPhoto::Absent) {
            return Ok(Some(None));
        }
        self.set_vcard(with_photo(&vcard, img.as_ref())).await?;
        debug!(jid = %self.jid, "PEP avatar stored in the vCard");
        Ok(Some(new))
    }
}
