//! Character data: entity and character references, line-end and attribute normalization.

use crate::chars::{is_ncname, is_xml_char};
use crate::error::{nwf, ParseError};
use crate::limits::{token_too_long, MAX_TOKEN_BYTES};

/// Longest digit run accepted in a character reference (rxml's limit).
const MAX_CHAR_REF_DIGITS: usize = 8;

/// Resolves the body of a reference (`amp` for `&amp;`, `#x41` for `&#x41;`).
///
/// Only the five predefined entities and character references are accepted. Any other
/// well-formed entity name is `restricted-xml` (RFC 6120 §11.1: no entity declarations can
/// exist, so it can only be an attempt to use one); a malformed one is `not-well-formed`.
pub(crate) fn resolve_ref(name: &str) -> Result<char, ParseError> {
    match name {
        "lt" => return Ok('<'),
        "gt" => return Ok('>'),
        "amp" => return Ok('&'),
        "quot" => return Ok('"'),
        "apos" => return Ok('\''),
        _ => {}
    }
    if let Some(num) = name.strip_prefix('#') {
        let (digits, radix) = match num.strip_prefix('x') {
            Some(hex) => (hex, 16),
            None => (num, 10),
        };
        // from_str_radix accepts a leading '+', which XML does not; check digits ourselves.
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return Err(nwf(format!("malformed character reference &{name};")));
        }
        // XML allows any number of leading zeros; rxml stops at 8 digits, and we must not
        // accept what xmpp-rs peers cannot parse (nobody needs `&#x000000041;`).
        if digits.len() > MAX_CHAR_REF_DIGITS {
            return Err(nwf(format!(
                "character reference &{name}; has over 8 digits"
            )));
        }
        return u32::from_str_radix(digits, radix)
            .ok()
            .and_then(char::from_u32)
            .filter(|&c| is_xml_char(c))
            .ok_or_else(|| {
                nwf(format!(
                    "character reference &{name}; is not an XML character"
                ))
            });
    }
    if is_ncname(name) {
        Err(ParseError::RestrictedXml(format!(
            "entity reference &{name}; (only the predefined entities are allowed)"
        )))
    } else {
        Err(nwf(format!("malformed reference &{name};")))
    }
}

/// Appends literal character data with XML 1.0 §2.11 line-end normalization
/// (`\r\n` and lone `\r` become `\n`). Character references are not normalized, which is why
/// the writer escapes `\r` as `&#13;`.
pub(crate) fn push_text(out: &mut String, raw: &str) {
    let mut rest = raw;
    while let Some(i) = rest.find('\r') {
        out.push_str(&rest[..i]);
        out.push('\n');
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('\n') {
            rest = after;
        }
    }
    out.push_str(rest);
}

/// Normalizes and unescapes a raw attribute value (XML 1.0 §3.3.3): references are resolved,
/// and each literal tab, newline, carriage return or CRLF pair becomes one space.
pub(crate) fn attr_value(raw: &str) -> Result<String, ParseError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find(['&', '\t', '\n', '\r', '<']) {
        out.push_str(&rest[..i]);
        let c = rest.as_bytes()[i];
        rest = &rest[i + 1..];
        match c {
            b'&' => {
                let end = rest
                    .find(';')
                    .ok_or_else(|| nwf("unterminated reference in attribute value"))?;
                out.push(resolve_ref(&rest[..end])?);
                rest = &rest[end + 1..];
            }
            b'<' => return Err(nwf("'<' in attribute value")),
            b'\r' => {
                out.push(' ');
                rest = rest.strip_prefix('\n').unwrap_or(rest);
            }
            _ => out.push(' '),
        }
    }
    out.push_str(rest);
    if out.len() > MAX_TOKEN_BYTES {
        return Err(token_too_long("attribute value"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(resolve_ref("lt"), Ok('<'));
        assert_eq!(resolve_ref("apos"), Ok('\''));
        assert_eq!(resolve_ref("#65"), Ok('A'));
        assert_eq!(resolve_ref("#x1F600"), Ok('😀'));
        assert_eq!(resolve_ref("#x9"), Ok('\t'));
        for bad in [
            "#0", "#x0", "#1", "#xFFFE", "#xD800", "#x110000", "#", "#x", "#+5", "#X41",
        ] {
            assert!(
                matches!(resolve_ref(bad), Err(ParseError::NotWellFormed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            resolve_ref("nbsp"),
            Err(ParseError::RestrictedXml(_))
        ));
        assert!(matches!(resolve_ref(""), Err(ParseError::NotWellFormed(_))));
        assert!(matches!(
            resolve_ref("a b"),
            Err(ParseError::NotWellFormed(_))
        ));
    }

    #[test]
    fn line_ends() {
        let mut s = String::new();
        push_text(&mut s, "a\r\nb\rc\n\r");
        assert_eq!(s, "a\nb\nc\n\n");
    }

    #[test]
    fn attribute_values() {
        assert_eq!(attr_value("a&amp;b&#10;c\td\r\ne").unwrap(), "a&b\nc d e");
        assert!(attr_value("a&amp").is_err());
        assert!(attr_value("a<b").is_err());
        assert!(matches!(
            attr_value("&foo;"),
            Err(ParseError::RestrictedXml(_))
        ));
    }
}
