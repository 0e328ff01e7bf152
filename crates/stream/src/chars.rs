//! XML 1.0 (fifth edition) character and name classes, plus Namespaces' QName split.

use crate::error::{nwf, ParseError};

/// XML 1.0 §2.2 `Char`: what may appear anywhere in a document, literally or by reference.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r'
        | '\u{20}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

/// XML 1.0 §2.3 `NameStartChar` minus `:` (Namespaces in XML: names are NCNames or QNames),
/// and minus `[#xFDF0-#xFFFD]`: rxml (what xmpp-rs peers parse with) leaves that range out,
/// and a name we accept is forwarded to such peers, so we must not be more lenient than rxml.
fn is_ncname_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{10000}'..='\u{EFFFF}')
}

/// XML 1.0 §2.3 `NameChar` minus `:`.
fn is_ncname_char(c: char) -> bool {
    is_ncname_start(c)
        || matches!(c,
            '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// Whether `s` is a non-empty NCName.
pub(crate) fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_ncname_start) && chars.all(is_ncname_char)
}

/// Whether `b` may begin a tag name. Used by the scanner to reject `< x`, `<>` and friends at
/// once; non-ASCII bytes are let through and judged on the complete, decoded name later.
pub(crate) fn may_start_name(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

/// Splits a QName into `(prefix, local)`, rejecting anything that is not `NCName(:NCName)?`.
pub(crate) fn split_qname(qname: &str) -> Result<(Option<&str>, &str), ParseError> {
    let (prefix, local) = match qname.split_once(':') {
        Some((p, l)) => (Some(p), l),
        None => (None, qname),
    };
    if prefix.is_some_and(|p| !is_ncname(p)) || !is_ncname(local) {
        return Err(nwf(format!("invalid name {qname:?}")));
    }
    Ok((prefix, local))
}

/// XML whitespace (`S` production): the only text allowed between top-level elements.
pub(crate) fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Checks a whole decoded unit for characters outside `Char` (controls, U+FFFE/U+FFFF).
/// Surrogates cannot occur: they are invalid UTF-8 and were rejected while decoding.
pub(crate) fn check_chars(s: &str) -> Result<(), ParseError> {
    match s.chars().find(|&c| !is_xml_char(c)) {
        None => Ok(()),
        Some(c) => Err(nwf(format!(
            "character U+{:04X} is not allowed in XML",
            c as u32
        ))),
    }
}

/// Decodes a complete unit as UTF-8 and checks its characters.
pub(crate) fn decode(bytes: &[u8]) -> Result<&str, ParseError> {
    let s = std::str::from_utf8(bytes).map_err(|e| nwf(format!("invalid UTF-8: {e}")))?;
    check_chars(s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_ncname("message"));
        assert!(is_ncname("x-y.z_1"));
        assert!(is_ncname("ünïcode"));
        assert!(!is_ncname(""));
        assert!(!is_ncname("1abc"));
        assert!(!is_ncname("-a"));
        assert!(!is_ncname("a:b"));
        assert!(!is_ncname("a b"));
        // Excluded like rxml does, although XML 1.0 allows it.
        assert!(!is_ncname("a\u{FEFF}b"));
        assert_eq!(
            split_qname("stream:stream").unwrap(),
            (Some("stream"), "stream")
        );
        assert_eq!(split_qname("body").unwrap(), (None, "body"));
        assert!(split_qname(":a").is_err());
        assert!(split_qname("a:").is_err());
        assert!(split_qname("a:b:c").is_err());
    }

    #[test]
    fn chars() {
        assert!(check_chars("hello\t\r\n \u{D7FF}\u{E000}\u{10FFFF}").is_ok());
        for bad in [
            "\u{0}", "\u{1}", "\u{8}", "\u{B}", "\u{1F}", "\u{FFFE}", "\u{FFFF}",
        ] {
            assert!(check_chars(bad).is_err(), "{bad:?}");
        }
        assert!(decode(b"\xff").is_err());
        // An encoded lone surrogate (CESU-style) is invalid UTF-8.
        assert!(decode(b"\xed\xa0\x80").is_err());
    }
}
