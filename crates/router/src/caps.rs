//! XEP-0115 §5: the verification string of a disco#info result — what an entity puts in
//! `ver` of its `<c/>` and what a receiver recomputes to trust it. Used for the server's own
//! capabilities (stream feature, `disco`) and to verify clients' (PEP `+notify` filtering).

use base64::Engine;
use minidom::Element;
use sha1::{Digest, Sha1};

use crate::disco::{NS_DATA, NS_INFO};

/// XEP-0115 namespace.
pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";

/// §5.1: the SHA-1 verification string of a disco#info `<query/>`, base64-encoded.
pub fn ver(query: &Element) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha1::digest(input(query).as_bytes()))
}

/// §5.1 steps 1–8: the string that is hashed.
fn input(query: &Element) -> String {
    let mut ids: Vec<String> = query
        .children()
        .filter(|c| c.is("identity", NS_INFO))
        .map(|i| {
            format!(
                "{}/{}/{}/{}",
                i.attr("category").unwrap_or(""),
                i.attr("type").unwrap_or(""),
                tern_stream::xml_lang(i).unwrap_or(""),
                i.attr("name").unwrap_or("")
            )
        })
        .collect();
    ids.sort();
    let mut feats: Vec<&str> = query
        .children()
        .filter(|c| c.is("feature", NS_INFO))
        .filter_map(|f| f.attr("var"))
        .collect();
    feats.sort_unstable();
    let mut s = String::new();
    for i in &ids {
        s.push_str(i);
        s.push('<');
    }
    for f in &feats {
        s.push_str(f);
        s.push('<');
    }
    let mut forms: Vec<(String, String)> = query
        .children()
        .filter(|c| c.is("x", NS_DATA))
        .filter_map(form_string)
        .collect();
    forms.sort();
    for (_, f) in forms {
        s.push_str(&f);
    }
    s
}

/// One extended form's part of the string (§5.1 step 7), keyed by its FORM_TYPE for sorting;
/// forms without a FORM_TYPE are left out (§5.4 3.6).
fn form_string(x: &Element) -> Option<(String, String)> {
    let mut form_type = None;
    let mut fields: Vec<(String, Vec<String>)> = Vec::new();
    for f in x.children().filter(|c| c.is("field", NS_DATA)) {
        let var = f.attr("var")?.to_owned();
        let mut values: Vec<String> = f
            .children()
            .filter(|v| v.is("value", NS_DATA))
            .map(|v| v.text())
            .collect();
        if var == "FORM_TYPE" {
            form_type = values.pop();
        } else {
            values.sort();
            fields.push((var, values));
        }
    }
    let form_type = form_type?;
    fields.sort();
    let mut s = format!("{form_type}<");
    for (var, values) in fields {
        s.push_str(&var);
        s.push('<');
        for v in values {
            s.push_str(&v);
            s.push('<');
        }
    }
    Some((form_type, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §5.2 simple generation example.
    #[test]
    fn simple_example() {
        let q: Element = "<query xmlns='http://jabber.org/protocol/disco#info'>\
            <identity category='client' name='Exodus 0.9.1' type='pc'/>\
            <feature var='http://jabber.org/protocol/caps'/>\
            <feature var='http://jabber.org/protocol/disco#info'/>\
            <feature var='http://jabber.org/protocol/disco#items'/>\
            <feature var='http://jabber.org/protocol/muc'/></query>"
            .parse()
            .unwrap();
        assert_eq!(ver(&q), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }

    /// §5.3 complex generation example: two identities with xml:lang, an extended form whose
    /// fields and values are out of order.
    #[test]
    fn complex_example() {
        let q: Element = "<query xmlns='http://jabber.org/protocol/disco#info'>\
            <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
            <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>\
            <feature var='http://jabber.org/protocol/caps'/>\
            <feature var='http://jabber.org/protocol/disco#info'/>\
            <feature var='http://jabber.org/protocol/disco#items'/>\
            <feature var='http://jabber.org/protocol/muc'/>\
            <x xmlns='jabber:x:data' type='result'>\
              <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
              <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>\
              <field var='os'><value>Mac</value></field>\
              <field var='os_version'><value>10.5.1</value></field>\
              <field var='software'><value>Psi</value></field>\
              <field var='software_version'><value>0.11</value></field>\
            </x></query>"
            .parse()
            .unwrap();
        assert_eq!(
            input(&q),
            "client/pc/el/Ψ 0.11<client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<\
             http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<\
             http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<ip_version<ipv4<\
             ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<"
        );
        assert_eq!(ver(&q), "q07IKJEyjvHSyhy//CH0CxmKi8w=");
    }
}
