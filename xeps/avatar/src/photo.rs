//! The pure side of avatar conversion: reading and writing vCard photos (XEP-0054/XEP-0153),
//! XEP-0084 data and metadata payloads, and the XEP-0153 `vcard-temp:x:update` element in
//! presence as XEP-0398 §4 wants it.

use base64::Engine;
use minidom::Element;
use sha1::{Digest, Sha1};

use tern_router::xml::BuilderExt;

/// XEP-0054 vcard-temp.
pub const NS_VCARD: &str = "vcard-temp";
/// XEP-0153 presence update element.
pub const NS_UPDATE: &str = "vcard-temp:x:update";
/// XEP-0084 data node and payload namespace.
pub const NS_DATA: &str = "urn:xmpp:avatar:data";
/// XEP-0084 metadata node and payload namespace.
pub const NS_METADATA: &str = "urn:xmpp:avatar:metadata";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// An avatar image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Its MIME type.
    pub mime: String,
    /// The image bytes.
    pub bytes: Vec<u8>,
}

impl Image {
    /// The XEP-0084 item id and XEP-0153 hash: SHA-1 of the bytes, lowercase hex.
    pub fn id(&self) -> String {
        sha1_hex(&self.bytes)
    }
}

/// SHA-1 in lowercase hex, as both XEP-0084 and XEP-0153 spell it.
pub fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Base64 as found in vCards and avatar data, which may be folded over several lines.
pub fn decode_b64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    B64.decode(compact).ok()
}

/// What a vCard says about its photo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcardPhoto {
    /// No PHOTO: the account has no avatar.
    Absent,
    /// An inline (BINVAL) image.
    Image(Image),
    /// A photo that cannot be converted (EXTVAL only, or BINVAL that is not base64): the PEP
    /// avatar is left as it is.
    Unusable,
}

/// Reads the PHOTO of a `<vCard/>`.
pub fn vcard_photo(vcard: &Element) -> VcardPhoto {
    let Some(photo) = vcard.get_child("PHOTO", NS_VCARD) else {
        return VcardPhoto::Absent;
    };
    let Some(binval) = photo.get_child("BINVAL", NS_VCARD) else {
        return VcardPhoto::Unusable;
    };
    let Some(bytes) = decode_b64(&binval.text()).filter(|b| !b.is_empty()) else {
        return VcardPhoto::Unusable;
    };
    let mime = photo
        .get_child("TYPE", NS_VCARD)
        .map(|t| t.text().trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| sniff(&bytes).to_owned());
    VcardPhoto::Image(Image { mime, bytes })
}

/// The hash a vCard's photo contributes to presence: `Some(None)` for no avatar, `None` when
/// it cannot be said.
pub fn vcard_hash(vcard: &Element) -> Option<Option<String>> {
    match vcard_photo(vcard) {
        VcardPhoto::Absent => Some(None),
        VcardPhoto::Image(img) => Some(Some(img.id())),
        VcardPhoto::Unusable => None,
    }
}

/// A copy of `vcard` whose PHOTO is `img` (or which has none), every other field kept.
pub fn with_photo(vcard: &Element, img: Option<&Image>) -> Element {
    let mut out = Element::builder("vCard", NS_VCARD).build();
    for child in vcard.children().filter(|c| !c.is("PHOTO", NS_VCARD)) {
        out.append_child(child.clone());
    }
    if let Some(img) = img {
        let text = |name: &str, value: String| {
            Element::builder(name, NS_VCARD)
                .append(minidom::Node::Text(value))
                .build()
        };
        out.append_child(
            Element::builder("PHOTO", NS_VCARD)
                .append(text("TYPE", img.mime.clone()))
                .append(text("BINVAL", B64.encode(&img.bytes)))
                .build(),
        );
    }
    out
}

/// One `<info/>` of XEP-0084 metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The SHA-1 id of the image: the data item id, as the publisher spelt it.
    pub id: String,
    /// Its MIME type.
    pub mime: String,
}

/// What a metadata item announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metadata {
    /// An empty `<metadata/>`: the avatar is disabled (XEP-0084 §4.5).
    Disabled,
    /// The image to convert: the first `<info/>` without `url` (XEP-0398 §3.1).
    Avatar(Info),
    /// Only images hosted elsewhere: nothing the vCard can take.
    ExternalOnly,
}

/// Reads a `<metadata/>` payload.
pub fn metadata(payload: &Element) -> Metadata {
    let infos: Vec<&Element> = payload
        .children()
        .filter(|c| c.is("info", NS_METADATA))
        .collect();
    if infos.is_empty() {
        return Metadata::Disabled;
    }
    infos
        .iter()
        .find(|i| i.attr("url").is_none())
        .and_then(|i| {
            Some(Info {
                id: i.attr("id")?.to_owned(),
                mime: i.attr("type").unwrap_or("image/png").to_owned(),
            })
        })
        .map_or(Metadata::ExternalOnly, Metadata::Avatar)
}

/// The avatar id a metadata payload stands for: `Some(None)` when disabled, `None` when it
/// cannot be said (only external images).
pub fn metadata_hash(payload: &Element) -> Option<Option<String>> {
    match metadata(payload) {
        Metadata::Disabled => Some(None),
        Metadata::Avatar(i) => Some(Some(i.id.to_ascii_lowercase())),
        Metadata::ExternalOnly => None,
    }
}

/// The XEP-0084 §4.1 data payload of an image.
pub fn data_payload(img: &Image) -> Element {
    Element::builder("data", NS_DATA)
        .append(minidom::Node::Text(B64.encode(&img.bytes)))
        .build()
}

/// The XEP-0084 §4.2 metadata payload announcing `img`, or disabling the avatar (§4.5).
pub fn metadata_payload(img: Option<&Image>) -> Element {
    let mut md = Element::builder("metadata", NS_METADATA).build();
    if let Some(img) = img {
        let dims = dimensions(&img.bytes);
        md.append_child(
            Element::builder("info", NS_METADATA)
                .a("id", img.id())
                .a("type", img.mime.as_str())
                .a("bytes", img.bytes.len().to_string())
                .a_opt("width", dims.map(|d| d.0.to_string()))
                .a_opt("height", dims.map(|d| d.1.to_string()))
                .build(),
        );
    }
    md
}

/// XEP-0398 §4 (with XEP-0153 §3.2): puts the account's avatar hash into an available
/// presence. `hash` is the current avatar (`None`: no avatar). A presence carrying an empty
/// `<photo/>` is left alone (the client says it is not ready to advertise an image); an update
/// element without `<photo/>` is completed; one whose hash differs is corrected.
pub fn stamp_presence(presence: &mut Element, hash: Option<&str>) {
    if presence.attr("type").is_some() {
        return;
    }
    let photo_el = || {
        let mut p = Element::builder("photo", NS_UPDATE).build();
        if let Some(h) = hash {
            p.append_text(h);
        }
        p
    };
    let existing = presence
        .get_child("x", NS_UPDATE)
        .map(|x| x.get_child("photo", NS_UPDATE).map(|p| p.text()));
    match existing {
        // The client left its photo empty: untouched (XEP-0398 §4, second example).
        Some(Some(text)) if text.trim().is_empty() => {}
        Some(Some(text)) if Some(text.trim()) == hash => {}
        // A different hash while we know of no avatar: the client may know better.
        Some(Some(_)) if hash.is_none() => {}
        _ => {
            presence.remove_child("x", NS_UPDATE);
            presence.append_child(Element::builder("x", NS_UPDATE).append(photo_el()).build());
        }
    }
}

/// MIME type guessed from the magic bytes, for vCards without TYPE.
fn sniff(bytes: &[u8]) -> &'static str {
    match bytes {
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [0xff, 0xd8, 0xff, ..] => "image/jpeg",
        [b'G', b'I', b'F', b'8', ..] => "image/gif",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "image/webp",
        _ => "application/octet-stream",
    }
}

/// Width and height where the format makes them cheap to read (PNG IHDR, GIF screen size);
/// XEP-0084 only recommends them.
fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    match bytes {
        [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, _, _, _, _, b'I', b'H', b'D', b'R', rest @ ..]
            if rest.len() >= 8 =>
        {
            Some((be(&rest[0..4]), be(&rest[4..8])))
        }
        [b'G', b'I', b'F', b'8', _, b'a', w0, w1, h0, h1, ..] => Some((
            u16::from_le_bytes([*w0, *w1]).into(),
            u16::from_le_bytes([*h0, *h1]).into(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Element {
        s.parse().unwrap()
    }

    fn png() -> Vec<u8> {
        let mut b = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13];
        b.extend_from_slice(b"IHDR");
        b.extend_from_slice(&64u32.to_be_bytes());
        b.extend_from_slice(&32u32.to_be_bytes());
        b.extend_from_slice(&[8, 6, 0, 0, 0]);
        b
    }

    #[test]
    fn sha1_is_lowercase_hex() {
        // SHA-1 of "abc" (the FIPS 180 test vector), spelt the way XEP-0084 ids and XEP-0153 hashes are.
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn vcard_photo_round_trip_keeps_other_fields() {
        let img = Image {
            mime: "image/png".into(),
            bytes: png(),
        };
        let v = parse(
            "<vCard xmlns='vcard-temp'><FN>Al</FN><PHOTO><EXTVAL>http://x</EXTVAL></PHOTO></vCard>",
        );
        assert_eq!(vcard_photo(&v), VcardPhoto::Unusable);
        let with = with_photo(&v, Some(&img));
        assert_eq!(with.get_child("FN", NS_VCARD).unwrap().text(), "Al");
        assert_eq!(with.children().filter(|c| c.name() == "PHOTO").count(), 1);
        assert_eq!(vcard_photo(&with), VcardPhoto::Image(img.clone()));
        assert_eq!(vcard_hash(&with), Some(Some(img.id())));
        let without = with_photo(&with, None);
        assert_eq!(vcard_photo(&without), VcardPhoto::Absent);
        assert_eq!(vcard_hash(&without), Some(None));
        assert_eq!(without.get_child("FN", NS_VCARD).unwrap().text(), "Al");
    }

    #[test]
    fn folded_binval_without_type_is_sniffed() {
        let b64 = B64.encode(png());
        let (a, b) = b64.split_at(10);
        let v = parse(&format!(
            "<vCard xmlns='vcard-temp'><PHOTO><BINVAL>{a}\n  {b}</BINVAL></PHOTO></vCard>"
        ));
        let VcardPhoto::Image(img) = vcard_photo(&v) else {
            panic!("no image");
        };
        assert_eq!(img.mime, "image/png");
        assert_eq!(img.bytes, png());
        let bad = parse("<vCard xmlns='vcard-temp'><PHOTO><BINVAL>!!!</BINVAL></PHOTO></vCard>");
        assert_eq!(vcard_photo(&bad), VcardPhoto::Unusable);
    }

    #[test]
    fn metadata_picks_the_info_without_url() {
        let md = parse(
            "<metadata xmlns='urn:xmpp:avatar:metadata'>\
             <info id='AAA' type='image/gif' bytes='1' url='http://example.org/a.gif'/>\
             <info id='BBB' type='image/png' bytes='2'/></metadata>",
        );
        assert_eq!(
            metadata(&md),
            Metadata::Avatar(Info {
                id: "BBB".into(),
                mime: "image/png".into()
            })
        );
        let ext = parse("<metadata xmlns='urn:xmpp:avatar:metadata'><info id='a' type='image/png' bytes='1' url='http://x'/></metadata>");
        assert_eq!(metadata(&ext), Metadata::ExternalOnly);
        assert_eq!(metadata_hash(&ext), None);
        let off = parse("<metadata xmlns='urn:xmpp:avatar:metadata'/>");
        assert_eq!(metadata(&off), Metadata::Disabled);
        assert_eq!(metadata_hash(&off), Some(None));
    }

    #[test]
    fn metadata_payload_describes_the_image() {
        let img = Image {
            mime: "image/png".into(),
            bytes: png(),
        };
        let md = metadata_payload(Some(&img));
        let info = md.get_child("info", NS_METADATA).unwrap();
        assert_eq!(info.attr("id"), Some(img.id().as_str()));
        assert_eq!(info.attr("bytes"), Some(png().len().to_string().as_str()));
        assert_eq!(info.attr("width"), Some("64"));
        assert_eq!(info.attr("height"), Some("32"));
        assert_eq!(metadata_hash(&md), Some(Some(img.id())));
        assert_eq!(
            decode_b64(&data_payload(&img).text()).unwrap(),
            img.bytes,
            "data payload"
        );
        assert_eq!(metadata(&metadata_payload(None)), Metadata::Disabled);
    }

    fn photo_of(p: &Element) -> Option<String> {
        p.get_child("x", NS_UPDATE)?
            .get_child("photo", NS_UPDATE)
            .map(|p| p.text())
    }

    #[test]
    fn presence_stamping_follows_xep_0398_section_4() {
        // Bare available presence gets the hash (or an empty photo: no avatar).
        let mut p = parse("<presence xmlns='jabber:client'/>");
        stamp_presence(&mut p, Some("abc"));
        assert_eq!(photo_of(&p).as_deref(), Some("abc"));
        let mut p = parse("<presence xmlns='jabber:client'/>");
        stamp_presence(&mut p, None);
        assert_eq!(photo_of(&p).as_deref(), Some(""));
        // An empty photo from the client is kept.
        let mut p = parse("<presence xmlns='jabber:client'><x xmlns='vcard-temp:x:update'><photo/></x></presence>");
        stamp_presence(&mut p, Some("abc"));
        assert_eq!(photo_of(&p).as_deref(), Some(""));
        // An x without photo is overwritten, and only one x remains.
        let mut p = parse("<presence xmlns='jabber:client'><x xmlns='vcard-temp:x:update'/><status>hi</status></presence>");
        stamp_presence(&mut p, Some("abc"));
        assert_eq!(photo_of(&p).as_deref(), Some("abc"));
        assert_eq!(p.children().filter(|c| c.is("x", NS_UPDATE)).count(), 1);
        assert!(p.get_child("status", "jabber:client").is_some());
        // A stale hash is corrected; a hash while we know of none is left.
        let mut p = parse("<presence xmlns='jabber:client'><x xmlns='vcard-temp:x:update'><photo>old</photo></x></presence>");
        stamp_presence(&mut p, Some("abc"));
        assert_eq!(photo_of(&p).as_deref(), Some("abc"));
        let mut p = parse("<presence xmlns='jabber:client'><x xmlns='vcard-temp:x:update'><photo>old</photo></x></presence>");
        stamp_presence(&mut p, None);
        assert_eq!(photo_of(&p).as_deref(), Some("old"));
        // Unavailable presence is not touched.
        let mut p = parse("<presence xmlns='jabber:client' type='unavailable'/>");
        stamp_presence(&mut p, Some("abc"));
        assert!(photo_of(&p).is_none());
    }
}
