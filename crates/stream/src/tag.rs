//! Strict parsing of one start tag's content (`name attr='v' …`, between `<` and `>`).
//!
//! quick-xml's attribute iterator is lenient (it accepts attributes with no whitespace between
//! them, for one), so tags are split here against XML 1.0 §3.1 exactly.

use crate::chars::{is_xml_space, split_qname};
use crate::error::{nwf, ParseError};
use crate::limits::{token_too_long, MAX_TOKEN_BYTES};

/// A start tag split into its raw parts; names are validated QNames, values still escaped.
#[derive(Debug)]
pub(crate) struct RawTag<'a> {
    pub name: &'a str,
    pub attrs: Vec<(&'a str, &'a str)>,
}

/// Parses `content` (the tag without `<`, `>` and a self-closing `/`).
/// More than `max_attrs` attributes (namespace declarations included) is a policy violation;
/// a repeated attribute name is not well-formed.
pub(crate) fn parse_tag(content: &str, max_attrs: usize) -> Result<RawTag<'_>, ParseError> {
    let bytes = content.as_bytes();
    let name_end = bytes
        .iter()
        .position(|&b| is_xml_space(b))
        .unwrap_or(bytes.len());
    let name = &content[..name_end];
    if name.len() > MAX_TOKEN_BYTES {
        return Err(token_too_long("element name"));
    }
    split_qname(name)?;
    let mut attrs: Vec<(&str, &str)> = Vec::new();
    let mut i = name_end;
    loop {
        let ws_start = i;
        while i < bytes.len() && is_xml_space(bytes[i]) {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        if i == ws_start {
            return Err(nwf(format!(
                "missing whitespace before attribute in <{name}>"
            )));
        }
        let attr_start = i;
        while i < bytes.len() && bytes[i] != b'=' && !is_xml_space(bytes[i]) {
            i += 1;
        }
        let attr_name = &content[attr_start..i];
        if attr_name.len() > MAX_TOKEN_BYTES {
            return Err(token_too_long("attribute name"));
        }
        split_qname(attr_name)?;
        while i < bytes.len() && is_xml_space(bytes[i]) {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            return Err(nwf(format!("attribute {attr_name:?} has no value")));
        }
        i += 1;
        while i < bytes.len() && is_xml_space(bytes[i]) {
            i += 1;
        }
        let quote = match bytes.get(i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(nwf(format!("attribute {attr_name:?} value is not quoted"))),
        };
        i += 1;
        let value_len = bytes[i..]
            .iter()
            .position(|&b| b == quote)
            .ok_or_else(|| nwf(format!("unterminated value of attribute {attr_name:?}")))?;
        let value = &content[i..i + value_len];
        i += value_len + 1;
        if attrs.len() == max_attrs {
            return Err(ParseError::PolicyViolation(format!(
                "more than {max_attrs} attributes on <{name}>"
            )));
        }
        if attrs.iter().any(|(n, _)| *n == attr_name) {
            return Err(nwf(format!(
                "duplicate attribute {attr_name:?} on <{name}>"
            )));
        }
        attrs.push((attr_name, value));
    }
    Ok(RawTag { name, attrs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_attributes() {
        let t = parse_tag("message to='a@b' type = \"chat\"\n", 64).unwrap();
        assert_eq!(t.name, "message");
        assert_eq!(t.attrs, vec![("to", "a@b"), ("type", "chat")]);
        let t = parse_tag("a v='say \"hi\"' w=\"it's\"", 64).unwrap();
        assert_eq!(t.attrs, vec![("v", "say \"hi\""), ("w", "it's")]);
    }

    #[test]
    fn rejects_malformed_tags() {
        for bad in [
            "",
            " a",
            "1a",
            "a b",
            "a b=",
            "a b=c",
            "a b='c",
            "a b='1'c='2'",
            "a b='1' b='2'",
            "a :b='1'",
            "a/",
        ] {
            assert!(
                matches!(parse_tag(bad, 64), Err(ParseError::NotWellFormed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn attribute_limit() {
        assert!(parse_tag("a x='1' y='2'", 2).is_ok());
        assert!(matches!(
            parse_tag("a x='1' y='2' z='3'", 2),
            Err(ParseError::PolicyViolation(_))
        ));
    }
}
