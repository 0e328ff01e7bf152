//! The incremental stream reader: bytes in, [`StreamEvent`]s out.

use std::collections::VecDeque;

use minidom::Element;

use crate::build::build_element;
use crate::chars::{decode, is_xml_space};
use crate::error::{nwf, ParseError};
use crate::header::{parse_header, Opened};
use crate::scan::{Scanner, Unit};
use crate::{Limits, StreamHeader};

/// One thing read from the stream, in stream order.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The peer's `<stream:stream>` open tag.
    Header(StreamHeader),
    /// A complete top-level element (stanza or nonza), every node carrying its resolved
    /// namespace; the stream header's declarations are applied but not copied onto it.
    Element(Element),
    /// The peer's `</stream:stream>`.
    Close,
}

/// Above this, an emptied buffer gives its memory back, so an idle connection that once
/// received a large stanza does not keep a large allocation.
const IDLE_CAPACITY: usize = 8 * 1024;

/// How much of one `feed` call is copied and framed at a time.
const FEED_SLICE: usize = 16 * 1024;

/// Incremental XMPP stream parser; see the crate docs for the two-pass design.
///
/// Errors are sticky: once `feed` or `next_event` has returned an error, both keep returning
/// it, because after a stream error the stream is over (RFC 6120 §4.9.1.1).
/// An error is reported only after every event framed before it has been returned, so the
/// sequence of results is the same however the input was split across feeds.
#[derive(Debug)]
pub struct StreamReader {
    limits: Limits,
    default_ns: &'static str,
    /// Received bytes not yet released; `buf[0]` is at absolute stream offset `base`.
    buf: Vec<u8>,
    base: usize,
    scanner: Scanner,
    /// Framed units not yet parsed into events.
    queue: VecDeque<Unit>,
    /// Set once the header has been parsed.
    opened: Option<Opened>,
    /// The first error: pending behind `queue` (from the scanner) or already returned.
    error: Option<ParseError>,
}

impl StreamReader {
    /// `default_ns` is the namespace the stream's default xmlns must be (jabber:client or
    /// jabber:server).
    pub fn new(limits: Limits, default_ns: &'static str) -> Self {
        StreamReader {
            limits,
            default_ns,
            buf: Vec::new(),
            base: 0,
            scanner: Scanner::new(),
            queue: VecDeque::new(),
            opened: None,
            error: None,
        }
    }

    /// Appends received bytes. Errors with PolicyViolation when the buffered, not-yet-complete
    /// element would exceed limits.max_stanza_bytes (or the header exceeds max_header_bytes).
    ///
    /// The bytes are framed immediately, so this also reports early errors (comments, DTDs,
    /// text between stanzas, nesting depth) — but only once every event before the error has
    /// been taken with [`StreamReader::next_event`]; until then the error waits in line and
    /// `feed` returns `Ok`. Bytes fed after an error, or after the stream close, are dropped.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), ParseError> {
        // Appending in slices bounds what an oversized input can make us copy: scanning
        // stops at the first error or at the close, and the rest is never buffered.
        for chunk in bytes.chunks(FEED_SLICE) {
            if self.error.is_some() || self.scanner.is_closed() {
                break;
            }
            self.compact();
            self.buf.extend_from_slice(chunk);
            let scanned = self
                .scanner
                .scan(&self.buf, self.base, &self.limits, &mut self.queue);
            if let Err(e) = scanned {
                self.error = Some(e);
            }
            if self.error.is_some() || self.scanner.is_closed() {
                // Nothing at or after this point will ever be parsed.
                self.buf.truncate(self.scanner.pos() - self.base);
            }
        }
        match &self.error {
            Some(e) if self.queue.is_empty() => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// Next complete event; Ok(None) means "need more bytes" (control flow, not an error).
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, ParseError> {
        let Some(unit) = self.queue.pop_front() else {
            if let Some(e) = &self.error {
                return Err(e.clone());
            }
            self.compact();
            return Ok(None);
        };
        match self.parse_unit(unit) {
            Ok(event) => Ok(Some(event)),
            Err(e) => {
                self.queue.clear();
                self.buf = Vec::new();
                self.error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// After STARTTLS or SASL success (RFC 6120 §4.3.3): drop all buffered state and expect a
    /// fresh stream header.
    ///
    /// Anything already received is discarded too: a peer must wait for our answer before
    /// sending the new header (the TLS handshake or the `<success/>`), so buffered bytes are
    /// either nothing or an attempt to inject data across the security boundary.
    pub fn restart(&mut self) {
        *self = StreamReader::new(self.limits.clone(), self.default_ns);
    }

    /// Bytes buffered but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The header received on this stream (since the last restart), once it has been read.
    pub fn header(&self) -> Option<&StreamHeader> {
        self.opened.as_ref().map(|o| &o.header)
    }

    /// The limits this reader enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn slice(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.buf[range.start - self.base..range.end - self.base]
    }

    fn parse_unit(&mut self, unit: Unit) -> Result<StreamEvent, ParseError> {
        match unit {
            Unit::Header { decl, tag } => {
                let opened = parse_header(
                    decl.map(|r| self.slice(r)),
                    self.slice(tag),
                    self.default_ns,
                    &self.limits,
                )?;
                let header = opened.header.clone();
                self.opened = Some(opened);
                Ok(StreamEvent::Header(header))
            }
            Unit::Element(range) => {
                let opened = self
                    .opened
                    .as_ref()
                    .ok_or_else(|| nwf("no stream header"))?;
                let el = build_element(self.slice(range), &opened.scope, &self.limits)?;
                Ok(StreamEvent::Element(el))
            }
            Unit::Close(None) => Ok(StreamEvent::Close),
            Unit::Close(Some(range)) => {
                let opened = self
                    .opened
                    .as_ref()
                    .ok_or_else(|| nwf("no stream header"))?;
                let tag = decode(self.slice(range))?;
                let name = tag[2..tag.len() - 1]
                    .trim_end_matches(|c: char| c.is_ascii() && is_xml_space(c as u8));
                if name != opened.qname {
                    return Err(nwf(format!(
                        "end tag </{name}> does not close <{}>",
                        opened.qname
                    )));
                }
                Ok(StreamEvent::Close)
            }
        }
    }

    /// Releases bytes no framed-but-unparsed unit and no partial unit still needs. Only done
    /// when the queue is empty, because queued units point into the buffer.
    fn compact(&mut self) {
        if !self.queue.is_empty() {
            return;
        }
        let keep_from = self.scanner.keep_from();
        let drop = keep_from - self.base;
        if drop == 0 {
            return;
        }
        if drop >= self.buf.len() && self.buf.capacity() > IDLE_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.drain(..drop.min(self.buf.len()));
        }
        self.base = keep_from;
    }
}
