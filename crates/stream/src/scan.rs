//! Framing: finds where the stream header, each top-level element and the stream close end.
//!
//! The scanner is a byte-level state machine whose state survives between feeds, so every byte
//! is looked at once however the input is split: feeding byte by byte costs the same as one
//! read, and the framing (and therefore every event and error) cannot depend on the split. It
//! is deliberately shallow: it tracks tags, quotes, CDATA and nesting depth, rejects what can
//! be rejected early (comments, PIs, DTDs, text between stanzas, limits), and leaves names,
//! attributes, references and encoding to the full parse of each complete unit.

use std::collections::VecDeque;
use std::ops::Range;

use crate::chars::{is_xml_space, may_start_name};
use crate::error::{nwf, ParseError};
use crate::Limits;

/// A complete, framed piece of the stream. Ranges are absolute stream offsets (bytes since the
/// start of the stream or the last restart), so they stay valid when the buffer is compacted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Unit {
    /// The optional XML declaration (`<?xml … ?>`) and the `<stream:stream …>` tag.
    Header {
        decl: Option<Range<usize>>,
        tag: Range<usize>,
    },
    /// One top-level element, from its `<` to the `>` that closes it.
    Element(Range<usize>),
    /// The stream's end tag; `None` when the header itself was self-closing.
    Close(Option<Range<usize>>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Before the stream header has been framed.
    Prolog,
    /// Inside the stream element.
    Content,
    /// After the stream's end tag: nothing more is framed.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Lex {
    /// Matching a UTF-8 byte order mark; the count of its bytes seen so far.
    Bom(u8),
    /// Character data (or whitespace, outside elements).
    Text,
    /// Just after `<`.
    Lt,
    /// After `<!`: the bytes seen so far, matched against `--`, `DOCTYPE` and `[CDATA[`.
    Bang([u8; 7], u8),
    /// In the XML declaration; whether the previous byte was `?`.
    Decl(bool),
    /// In a start tag: the open quote (0 if none) and whether the last byte was `/`.
    Tag(u8, bool),
    /// In an end tag.
    EndTag,
    /// In a CDATA section: trailing `]` count (at most 2).
    CData(u8),
}

/// Incremental framer; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    /// Absolute offset of the next byte to scan.
    pos: usize,
    phase: Phase,
    lex: Lex,
    /// Nesting depth inside the current top-level element (0 between elements).
    depth: usize,
    /// Name hashes of the open elements below the stream, so a mismatched end tag is an error
    /// at once instead of leaving the framer waiting for a depth that never returns to zero.
    open: Vec<u64>,
    /// Hash of the tag name being read, while in one.
    name: Option<u64>,
    /// Hash of the name of the most recent tag.
    tag_hash: u64,
    /// Start of the unit being framed; bytes from here on must stay buffered.
    unit_start: Option<usize>,
    /// Absolute offset of the most recent `<`.
    lt: usize,
    /// Where the document proper starts (after a BOM); the XML declaration may only be here.
    body_start: usize,
    decl: Option<Range<usize>>,
}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];
/// FNV-1a parameters for tag-name hashes.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const BANG_COMMENT: &[u8] = b"--";
const BANG_DOCTYPE: &[u8] = b"DOCTYPE";
const BANG_CDATA: &[u8] = b"[CDATA[";

impl Scanner {
    /// A scanner expecting a fresh stream (optional BOM, optional declaration, header).
    pub fn new() -> Self {
        Scanner {
            pos: 0,
            phase: Phase::Prolog,
            lex: Lex::Bom(0),
            depth: 0,
            open: Vec::new(),
            name: None,
            tag_hash: 0,
            unit_start: Some(0),
            lt: 0,
            body_start: 0,
            decl: None,
        }
    }

    /// Absolute offset up to which buffered bytes are no longer needed (when no framed unit
    /// is waiting to be parsed).
    pub fn keep_from(&self) -> usize {
        self.unit_start.unwrap_or(self.pos)
    }

    /// Absolute offset of the next byte to scan (after an error: of the offending byte).
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Whether the stream end tag has been framed; later input is ignored.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Scans the not-yet-scanned tail of `buf` (whose first byte is at absolute offset
    /// `base`), pushing each completed unit onto `out`.
    pub fn scan(
        &mut self,
        buf: &[u8],
        base: usize,
        limits: &Limits,
        out: &mut VecDeque<Unit>,
    ) -> Result<(), ParseError> {
        let mut i = self.pos - base;
        while i < buf.len() {
            if self.phase == Phase::Closed {
                return Ok(());
            }
            // Inside an element, plain text up to the next '<' needs no per-byte work beyond
            // the size limit, which this skip respects by stopping at the limit.
            if self.lex == Lex::Text && self.depth > 0 {
                let limit_at = self
                    .limit_end(limits)
                    .saturating_sub(base)
                    .clamp(i, buf.len());
                let skip = buf[i..limit_at]
                    .iter()
                    .position(|&b| b == b'<')
                    .unwrap_or(limit_at - i);
                i += skip;
                self.pos = base + i;
                if i == buf.len() {
                    break;
                }
            }
            let at = base + i;
            self.check_limits(at, limits)?;
            let reprocess = self.step(buf[i], at, limits, out)?;
            if !reprocess {
                i += 1;
                self.pos = at + 1;
            }
        }
        Ok(())
    }

    /// Absolute offset of the first byte that would exceed the current unit's size limit.
    fn limit_end(&self, limits: &Limits) -> usize {
        match (self.phase, self.unit_start) {
            (Phase::Prolog, _) => limits.max_header_bytes,
            (_, Some(start)) => start.saturating_add(limits.max_stanza_bytes),
            (_, None) => usize::MAX,
        }
    }

    fn check_limits(&self, at: usize, limits: &Limits) -> Result<(), ParseError> {
        if at >= self.limit_end(limits) {
            return Err(ParseError::PolicyViolation(match self.phase {
                Phase::Prolog => format!("stream header exceeds {} bytes", limits.max_header_bytes),
                _ => format!(
                    "top-level element exceeds {} bytes",
                    limits.max_stanza_bytes
                ),
            }));
        }
        Ok(())
    }

    /// Consumes one byte. Returns `true` when the byte must be looked at again in the new
    /// state (only when a would-be BOM turns out not to be one).
    fn step(
        &mut self,
        b: u8,
        at: usize,
        limits: &Limits,
        out: &mut VecDeque<Unit>,
    ) -> Result<bool, ParseError> {
        match self.lex {
            Lex::Bom(n) => {
                if b == BOM[n as usize] {
                    self.lex = if n == 2 { Lex::Text } else { Lex::Bom(n + 1) };
                    self.body_start = at + 1;
                } else if n == 0 {
                    self.lex = Lex::Text;
                    return Ok(true);
                } else {
                    return Err(nwf("invalid byte order mark"));
                }
            }
            Lex::Text => self.text(b, at)?,
            Lex::Lt => self.after_lt(b, limits)?,
            Lex::Bang(mut seen, n) => {
                seen[n as usize] = b;
                let seen_now = &seen[..=n as usize];
                self.lex = Lex::Bang(seen, n + 1);
                if seen_now == BANG_COMMENT {
                    return Err(ParseError::RestrictedXml("comments are not allowed".into()));
                } else if seen_now == BANG_DOCTYPE {
                    return Err(ParseError::RestrictedXml(
                        "DTDs (<!DOCTYPE>) are not allowed".into(),
                    ));
                } else if seen_now == BANG_CDATA {
                    if self.depth == 0 {
                        return Err(nwf("CDATA section outside any element"));
                    }
                    self.lex = Lex::CData(0);
                } else if ![BANG_COMMENT, BANG_DOCTYPE, BANG_CDATA]
                    .iter()
                    .any(|m| m.starts_with(seen_now))
                {
                    return Err(nwf("invalid markup after '<!'"));
                }
            }
            Lex::Decl(after_q) => {
                if after_q && b == b'>' {
                    self.decl = Some(self.lt..at + 1);
                    self.lex = Lex::Text;
                } else {
                    self.lex = Lex::Decl(b == b'?');
                }
            }
            Lex::Tag(quote, slash) => {
                self.hash_name(b);
                if quote != 0 {
                    self.lex = Lex::Tag(if b == quote { 0 } else { quote }, false);
                } else {
                    match b {
                        b'"' | b'\'' => self.lex = Lex::Tag(b, false),
                        b'/' => self.lex = Lex::Tag(0, true),
                        b'>' => self.tag_end(slash, at, out),
                        _ => self.lex = Lex::Tag(0, false),
                    }
                }
            }
            Lex::EndTag => {
                self.hash_name(b);
                if b == b'>' {
                    self.end_tag_end(at, out)?;
                }
            }
            Lex::CData(brackets) => {
                self.lex = match b {
                    b']' => Lex::CData((brackets + 1).min(2)),
                    b'>' if brackets == 2 => Lex::Text,
                    _ => Lex::CData(0),
                };
            }
        }
        Ok(false)
    }

    fn text(&mut self, b: u8, at: usize) -> Result<(), ParseError> {
        if b == b'<' {
            self.lt = at;
            self.lex = Lex::Lt;
            if self.phase == Phase::Content && self.depth == 0 {
                self.unit_start = Some(at);
            }
        } else if self.depth == 0 && !is_xml_space(b) {
            return Err(nwf(match self.phase {
                Phase::Prolog => "text before the stream header",
                _ => "text between top-level elements",
            }));
        }
        Ok(())
    }

    fn after_lt(&mut self, b: u8, limits: &Limits) -> Result<(), ParseError> {
        match b {
            b'?' if self.phase == Phase::Prolog && self.lt == self.body_start => {
                self.lex = Lex::Decl(false);
            }
            b'?' => {
                return Err(ParseError::RestrictedXml(
                    "processing instructions are not allowed".into(),
                ))
            }
            b'!' => self.lex = Lex::Bang([0; 7], 0),
            b'/' if self.phase == Phase::Prolog => {
                return Err(nwf("end tag before the stream header"))
            }
            b'/' => {
                self.lex = Lex::EndTag;
                self.name = Some(FNV_OFFSET);
            }
            _ if may_start_name(b) => {
                self.name = Some((FNV_OFFSET ^ u64::from(b)).wrapping_mul(FNV_PRIME));
                if self.phase == Phase::Content && self.depth + 1 > limits.max_depth {
                    return Err(ParseError::PolicyViolation(format!(
                        "elements nested deeper than {}",
                        limits.max_depth
                    )));
                }
                self.lex = Lex::Tag(0, false);
            }
            _ => return Err(nwf("invalid character after '<'")),
        }
        Ok(())
    }

    fn tag_end(&mut self, self_closing: bool, at: usize, out: &mut VecDeque<Unit>) {
        self.lex = Lex::Text;
        if self.phase == Phase::Prolog {
            out.push_back(Unit::Header {
                decl: self.decl.take(),
                tag: self.lt..at + 1,
            });
            self.unit_start = None;
            if self_closing {
                out.push_back(Unit::Close(None));
                self.phase = Phase::Closed;
            } else {
                self.phase = Phase::Content;
            }
        } else if !self_closing {
            self.depth += 1;
            self.open.push(self.tag_hash);
        } else if self.depth == 0 {
            self.finish_element(at, out);
        }
    }

    fn end_tag_end(&mut self, at: usize, out: &mut VecDeque<Unit>) -> Result<(), ParseError> {
        self.lex = Lex::Text;
        if self.depth == 0 {
            out.push_back(Unit::Close(Some(self.lt..at + 1)));
            self.unit_start = None;
            self.phase = Phase::Closed;
        } else {
            if self.open.pop() != Some(self.tag_hash) {
                return Err(nwf("end tag does not match the open element"));
            }
            self.depth -= 1;
            if self.depth == 0 {
                self.finish_element(at, out);
            }
        }
        Ok(())
    }

    /// Folds one byte of a tag name into its hash; the name ends at whitespace, '/' or '>'.
    fn hash_name(&mut self, b: u8) {
        if let Some(h) = self.name {
            if is_xml_space(b) || b == b'/' || b == b'>' {
                self.tag_hash = h;
                self.name = None;
            } else {
                self.name = Some((h ^ u64::from(b)).wrapping_mul(FNV_PRIME));
            }
        }
    }

    fn finish_element(&mut self, at: usize, out: &mut VecDeque<Unit>) {
        let start = self.unit_start.take().unwrap_or(self.lt);
        out.push_back(Unit::Element(start..at + 1));
    }
}
