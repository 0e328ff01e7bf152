//! Just enough XML for a load generator: splits an XMPP stream into its top-level elements
//! without building a tree, and reads names, attributes and text out of them.
//!
//! The servers under test send restricted XML (RFC 6120 §11: no comments, processing
//! instructions past the declaration, or DTDs), so counting start and end tags, with quoted
//! attribute values skipped, finds element boundaries. This keeps the generator's cost per
//! message well below a server's, which must validate everything.

/// One step of the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The peer's `<stream:stream>` header.
    Open,
    /// A complete top-level element, as sent.
    Element(&'a [u8]),
    /// `</stream:stream>`.
    Close,
}

/// Incremental splitter of one stream (make a new one after every stream restart).
#[derive(Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Start of the bytes not yet handed out.
    start: usize,
    /// Where scanning resumes.
    scan: usize,
    /// Open elements, the stream header included.
    depth: u32,
    /// Start of the top-level element being read.
    el_start: usize,
}

/// The stream is not XML this framer understands.
#[derive(Debug, thiserror::Error)]
#[error("unexpected XML at byte {0}")]
pub struct BadXml(pub usize);

/// Index of the `>` ending the tag that starts at `lt`, skipping quoted attribute values.
fn tag_end(b: &[u8], lt: usize) -> Option<usize> {
    let mut quote = 0u8;
    for (i, &c) in b.iter().enumerate().skip(lt + 1) {
        if quote != 0 {
            if c == quote {
                quote = 0;
            }
        } else if c == b'\'' || c == b'"' {
            quote = c;
        } else if c == b'>' {
            return Some(i);
        }
    }
    None
}

impl Framer {
    /// Appends bytes read from the connection.
    pub fn feed(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.scan -= self.start;
            self.el_start = self.el_start.saturating_sub(self.start);
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.scan -= self.start;
            self.el_start = self.el_start.saturating_sub(self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet handed out (e.g. after a `<proceed/>`, which must be none).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next event, or `None` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>, BadXml> {
        loop {
            let Some(off) = self.buf[self.scan..].iter().position(|&c| c == b'<') else {
                self.scan = self.buf.len();
                if self.depth <= 1 {
                    self.start = self.scan;
                }
                return Ok(None);
            };
            let lt = self.scan + off;
            let Some(gt) = tag_end(&self.buf, lt) else {
                self.scan = lt;
                return Ok(None);
            };
            self.scan = gt + 1;
            match self.buf.get(lt + 1) {
                Some(b'?') => {
                    if self.depth == 0 {
                        self.start = self.scan;
                        continue;
                    }
                    return Err(BadXml(lt));
                }
                Some(b'!') => return Err(BadXml(lt)),
                Some(b'/') => {
                    self.depth = self.depth.checked_sub(1).ok_or(BadXml(lt))?;
                    match self.depth {
                        0 => {
                            self.start = self.scan;
                            return Ok(Some(Event::Close));
                        }
                        1 => {
                            self.start = self.scan;
                            return Ok(Some(Event::Element(&self.buf[self.el_start..self.scan])));
                        }
                        _ => {}
                    }
                }
                _ => {
                    let empty = self.buf[gt - 1] == b'/';
                    match self.depth {
                        0 => {
                            if empty {
                                return Err(BadXml(lt));
                            }
                            self.depth = 1;
                            self.start = self.scan;
                            return Ok(Some(Event::Open));
                        }
                        1 => {
                            self.el_start = lt;
                            if empty {
                                self.start = self.scan;
                                return Ok(Some(Event::Element(&self.buf[lt..self.scan])));
                            }
                            self.depth = 2;
                        }
                        _ => {
                            if !empty {
                                self.depth += 1;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The local name of an element (`stream:features` gives `features`).
pub fn name(el: &[u8]) -> &[u8] {
    let end = el[1..]
        .iter()
        .position(|&c| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>'))
        .map_or(el.len(), |p| p + 1);
    let qname = &el[1..end];
    match qname.iter().position(|&c| c == b':') {
        Some(p) => &qname[p + 1..],
        None => qname,
    }
}

/// An attribute of the element's own start tag (value as written, entities not expanded).
pub fn attr<'a>(el: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let head = &el[..tag_end(el, 0).unwrap_or(el.len() - 1)];
    let k = key.as_bytes();
    let mut i = 0;
    while let Some(p) = find(&head[i..], k) {
        let at = i + p;
        let after = at + k.len();
        let before_ok = at > 0 && matches!(head[at - 1], b' ' | b'\t' | b'\r' | b'\n');
        let mut j = after;
        while j < head.len() && matches!(head[j], b' ' | b'\t' | b'\r' | b'\n') {
            j += 1;
        }
        if before_ok && head.get(j) == Some(&b'=') {
            j += 1;
            while j < head.len() && matches!(head[j], b' ' | b'\t' | b'\r' | b'\n') {
                j += 1;
            }
            let q = *head.get(j)?;
            let rest = &head[j + 1..];
            let end = rest.iter().position(|&c| c == q)?;
            return Some(&rest[..end]);
        }
        i = after;
    }
    None
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut i = 0;
    while let Some(p) = hay[i..=hay.len() - needle.len()]
        .iter()
        .position(|&c| c == first)
    {
        let at = i + p;
        if &hay[at..at + needle.len()] == needle {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// Text of the first element named `local` (prefix ignored) inside `el`, or of `el` itself.
pub fn text_of<'a>(el: &'a [u8], local: &str) -> Option<&'a [u8]> {
    let mut i = 0;
    while let Some(p) = find(&el[i..], b"<") {
        let lt = i + p;
        let gt = tag_end(el, lt)?;
        if el.get(lt + 1) != Some(&b'/') && name(&el[lt..]) == local.as_bytes() {
            if el[gt - 1] == b'/' {
                return Some(&[]);
            }
            let body = &el[gt + 1..];
            let end = body.iter().position(|&c| c == b'<')?;
            return Some(&body[..end]);
        }
        i = gt + 1;
    }
    None
}

/// Expands the five predefined entities (enough for JIDs and resources).
pub fn unescape(v: &[u8]) -> String {
    String::from_utf8_lossy(v)
        .replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Escapes text for an attribute value or character data.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&str]) -> Vec<String> {
        let mut f = Framer::default();
        let mut out = Vec::new();
        for c in chunks {
            f.feed(c.as_bytes());
            while let Some(ev) = f.next_event().unwrap() {
                out.push(match ev {
                    Event::Open => "OPEN".to_owned(),
                    Event::Close => "CLOSE".to_owned(),
                    Event::Element(e) => String::from_utf8(e.to_vec()).unwrap(),
                });
            }
        }
        out
    }

    #[test]
    fn splits_top_level_elements_across_chunks() {
        let got = events(&[
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='a>b'>",
            "<stream:features><starttls xmlns='x'/></stream:features> ",
            "<message to='a' id=\"q'/>\"><bo",
            "dy>hi &amp; <x/></body></message><presence/></stream:stream>",
        ]);
        assert_eq!(
            got,
            [
                "OPEN",
                "<stream:features><starttls xmlns='x'/></stream:features>",
                "<message to='a' id=\"q'/>\"><body>hi &amp; <x/></body></message>",
                "<presence/>",
                "CLOSE"
            ]
        );
    }

    #[test]
    fn byte_by_byte() {
        let doc = "<stream:stream><a x='1'><b/>t</a><c/></stream:stream>";
        let chunks: Vec<String> = doc.chars().map(String::from).collect();
        let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
        assert_eq!(
            events(&refs),
            ["OPEN", "<a x='1'><b/>t</a>", "<c/>", "CLOSE"]
        );
    }

    #[test]
    fn rejects_comments() {
        let mut f = Framer::default();
        f.feed(b"<stream:stream><!-- x -->");
        assert!(matches!(f.next_event(), Ok(Some(Event::Open))));
        assert!(f.next_event().is_err());
    }

    #[test]
    fn reads_names_attrs_and_text() {
        let el =
            b"<iq type='result' xid='no' id=\"b1\"><bind xmlns='x'><jid>a@b/c</jid></bind></iq>";
        assert_eq!(name(el), b"iq");
        assert_eq!(attr(el, "id"), Some(&b"b1"[..]));
        assert_eq!(attr(el, "type"), Some(&b"result"[..]));
        assert_eq!(attr(el, "xmlns"), None);
        assert_eq!(text_of(el, "jid"), Some(&b"a@b/c"[..]));
        assert_eq!(name(b"<stream:features/>"), b"features");
        assert_eq!(
            text_of(b"<challenge xmlns='s'>abc=</challenge>", "challenge"),
            Some(&b"abc="[..])
        );
    }
}
