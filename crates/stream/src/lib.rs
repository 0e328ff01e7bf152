//! XMPP stream reader and writer (RFC 6120 §4 streams, §11 restricted XML).
//!
//! Layout: [`StreamReader`] (`reader.rs`) is fed raw bytes and yields [`StreamEvent`]s. It works
//! in two passes. `scan.rs` is a byte-level state machine that only frames the input (stream
//! header, each top-level element, stream close), keeps its state across feeds so byte-by-byte
//! input costs no re-scanning, rejects comments/PIs/DTDs as soon as they appear, and enforces the
//! size and depth limits while an element is still incomplete. Once a unit is complete it is
//! parsed from exactly that byte range: `header.rs` checks the XML declaration and the stream
//! tag, `build.rs` tokenizes an element with quick-xml and builds a `minidom::Element`. Both
//! apply our own strict checks on top (`tag.rs` for tags and attributes, `text.rs` for
//! references and line ends, `chars.rs` for XML names and characters, `ns.rs` for namespace
//! scopes, seeded with the stream header's declarations for every element). The writer side is
//! `writer.rs` (stream header, element serialization in stream context); errors are in
//! `error.rs` ([`ParseError`], the reader's typed failures) and `stream_error.rs`
//! ([`StreamError`], the RFC 6120 §4.9 wire error). Nothing here knows about sockets, TLS,
//! routing or tokio.
//!
//! Choices worth knowing (each documented where it is made):
//! - `xml:lang` and other `xml:` attributes are stored by minidom under the XML namespace:
//!   read them with `el.attr_ns(NS_XML, "lang")`; `el.attr("xml:lang")` is always `None`.
//! - An explicit `xmlns=''` on a child yields an element whose namespace is `""` (minidom accepts
//!   it; it means "no namespace"), and the writer emits `xmlns=''` to round-trip it.
//! - Invalid UTF-8 and invalid XML characters are `not-well-formed`, not `invalid-xml`.
//! - Bytes after `</stream:stream>` are ignored until [`StreamReader::restart`].
//! - Received elements carry no minidom `prefixes` (namespace declarations are resolved, not
//!   recorded): minidom's own serializer panics on some legal prefix patterns otherwise.
//! - Errors are sticky and ordered: the events framed before an error are all delivered first,
//!   so results never depend on how the input was split.
//!
//! ```
//! use tern_stream::{Limits, StreamEvent, StreamReader, NS_CLIENT};
//!
//! let mut reader = StreamReader::new(Limits::default(), NS_CLIENT);
//! reader.feed(b"<stream:stream xmlns='jabber:client' \
//!     xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>\
//!     <message to='juliet@example.com' xml:lang='en'><body>hi</bo").unwrap();
//! let Some(StreamEvent::Header(header)) = reader.next_event().unwrap() else { panic!() };
//! assert_eq!(header.to.as_deref(), Some("example.com"));
//! assert_eq!(reader.next_event().unwrap(), None); // the message is incomplete
//! reader.feed(b"dy></message>").unwrap();
//! let Some(StreamEvent::Element(msg)) = reader.next_event().unwrap() else { panic!() };
//! assert!(msg.is("message", NS_CLIENT));
//! assert_eq!(tern_stream::xml_lang(&msg), Some("en"));
//! ```

mod build;
mod chars;
mod error;
mod header;
mod limits;
mod ns;
mod reader;
mod scan;
mod stream_error;
mod tag;
mod text;
mod writer;

pub use error::ParseError;
pub use header::StreamHeader;
pub use limits::Limits;
pub use reader::{StreamEvent, StreamReader};
pub use stream_error::{StreamError, StreamErrorCondition};
pub use writer::{
    stream_header, to_bytes, write_attr, write_element, write_standalone, STREAM_CLOSE,
};

/// Namespace of the stream wrapper element and `<stream:features/>`/`<stream:error/>`.
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
/// Default namespace of client-to-server streams.
pub const NS_CLIENT: &str = "jabber:client";
/// Default namespace of server-to-server streams.
pub const NS_SERVER: &str = "jabber:server";
/// The namespace bound to the reserved `xml` prefix (`xml:lang`).
pub const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";
/// Namespace of stream error conditions and their `<text/>` (RFC 6120 §4.9.2).
pub const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// The namespace bound to the reserved `xmlns` prefix; nothing may be declared in it.
pub(crate) const NS_XMLNS: &str = "http://www.w3.org/2000/xmlns/";

/// The `xml:lang` written on `el` itself (not inherited from ancestors or the stream header).
/// minidom stores it as attribute `lang` in [`NS_XML`]; this is `el.attr_ns(NS_XML, "lang")`.
pub fn xml_lang(el: &minidom::Element) -> Option<&str> {
    el.attr_ns(NS_XML, "lang")
}
