//! Reading a MAM query (XEP-0313 §4): the XEP-0004 data form with the XEP-0313 fields and the
//! XEP-0059 `<set/>`, into a [`Request`]; and the form a client fetches to learn the fields
//! (§4.1.5). Pure parsing: nothing here touches storage.

use jid::Jid;
use minidom::Element;

use tern_router::time::parse_datetime;
use tern_router::xml::BuilderExt;
use tern_router::{Condition, StanzaError};

use crate::NS_MAM;

/// XEP-0004 namespace.
pub const NS_DATA: &str = "jabber:x:data";
/// XEP-0059 namespace.
pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";
/// XEP-0122 namespace (the open `ids` list, §4.1.5).
const NS_VALIDATE: &str = "http://jabber.org/protocol/xdata-validate";

/// A parsed query, before it meets the archive.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// Echoed in every result (§4.2).
    pub queryid: Option<String>,
    /// `with`: a bare JID matches every resource, a full one only itself (§4.1.1).
    pub with: Option<Jid>,
    /// `start`/`end`, Unix microseconds, inclusive (§4.1.2).
    pub start: Option<i64>,
    /// `end`, Unix microseconds, inclusive.
    pub end: Option<i64>,
    /// `after-id`/`before-id`/`ids` (§4.1.3, the #extended fields).
    pub after_id: Option<String>,
    /// `before-id`.
    pub before_id: Option<String>,
    /// `ids`.
    pub ids: Vec<String>,
    /// RSM `<max/>` as sent (the server limit is applied later).
    pub max: Option<usize>,
    /// RSM `<after/>`.
    pub after: Option<String>,
    /// RSM `<before/>` with an id.
    pub before: Option<String>,
    /// Any RSM `<before/>`, empty included: page from the end (XEP-0059 §2.5).
    pub backward: bool,
    /// `<flip-page/>`: send the page newest first (§4.3.3).
    pub flip: bool,
}

impl Request {
    /// Whether the form narrows the result set (RSM cursors do not: they page through it).
    pub fn filtered(&self) -> bool {
        self.with.is_some()
            || self.start.is_some()
            || self.end.is_some()
            || self.after_id.is_some()
            || self.before_id.is_some()
            || !self.ids.is_empty()
    }
}

fn bad(text: impl Into<String>) -> StanzaError {
    StanzaError::new(Condition::BadRequest).with_text(text)
}

/// The single value of a field: none or one `<value/>`; an empty value counts as absent.
fn single(var: &str, values: &[String]) -> Result<Option<String>, StanzaError> {
    match values {
        [] => Ok(None),
        [v] if v.is_empty() => Ok(None),
        [v] => Ok(Some(v.clone())),
        _ => Err(bad(format!("field '{var}' takes a single value"))),
    }
}

fn date(var: &str, values: &[String]) -> Result<Option<i64>, StanzaError> {
    single(var, values)?
        .map(|v| {
            parse_datetime(&v)
                .ok_or_else(|| bad(format!("field '{var}' is not an XEP-0082 DateTime")))
        })
        .transpose()
}

/// Parses `<query xmlns='urn:xmpp:mam:2'/>` of an IQ set.
pub fn parse(query: &Element) -> Result<Request, StanzaError> {
    if query.attr("node").is_some() {
        // Pubsub node archives (XEP-0442) are not served here.
        return Err(StanzaError::new(Condition::FeatureNotImplemented)
            .with_text("pubsub node archives are not supported"));
    }
    let mut r = Request {
        queryid: query.attr("queryid").map(str::to_owned),
        flip: query.has_child("flip-page", NS_MAM),
        ..Request::default()
    };
    if let Some(x) = query.get_child("x", NS_DATA) {
        form(x, &mut r)?;
    }
    if let Some(set) = query.get_child("set", NS_RSM) {
        rsm(set, &mut r)?;
    }
    Ok(r)
}

fn form(x: &Element, r: &mut Request) -> Result<(), StanzaError> {
    // XEP-0004 §3.1: what a client sends back is a form of type 'submit'.
    if x.attr("type") != Some("submit") {
        return Err(bad("the query form must be of type 'submit'"));
    }
    let mut seen: Vec<String> = Vec::new();
    for field in x.children().filter(|c| c.is("field", NS_DATA)) {
        let Some(var) = field.attr("var") else {
            return Err(bad("a form field without 'var'"));
        };
        if seen.iter().any(|s| s == var) {
            return Err(bad(format!("field '{var}' appears twice")));
        }
        seen.push(var.to_owned());
        let values: Vec<String> = field
            .children()
            .filter(|c| c.is("value", NS_DATA))
            .map(|v| v.text().trim().to_owned())
            .collect();
        match var {
            "FORM_TYPE" => {
                if single(var, &values)?.as_deref() != Some(NS_MAM) {
                    return Err(bad(format!("FORM_TYPE must be '{NS_MAM}'")));
                }
            }
            "with" => {
                r.with = single(var, &values)?
                    .map(|v| Jid::new(&v).map_err(|_| bad("field 'with' is not a valid JID")))
                    .transpose()?;
            }
            "start" => r.start = date(var, &values)?,
            "end" => r.end = date(var, &values)?,
            "after-id" => r.after_id = single(var, &values)?,
            "before-id" => r.before_id = single(var, &values)?,
            "ids" => r.ids = values.into_iter().filter(|v| !v.is_empty()).collect(),
            // §4.1.5: a field the server does not know (include-groupchat among them: the
            // #groupchat-field feature is not advertised) is feature-not-implemented.
            _ => {
                return Err(StanzaError::new(Condition::FeatureNotImplemented)
                    .with_text(format!("unsupported query field '{var}'")))
            }
        }
    }
    Ok(())
}

fn rsm(set: &Element, r: &mut Request) -> Result<(), StanzaError> {
    if set.has_child("index", NS_RSM) {
        // XEP-0059 §2.6 allows refusing index paging where deriving the item is costly.
        return Err(StanzaError::new(Condition::FeatureNotImplemented)
            .with_text("paging by index is not supported; use after/before"));
    }
    if let Some(max) = set.get_child("max", NS_RSM) {
        let n = max
            .text()
            .trim()
            .parse::<usize>()
            .map_err(|_| bad("RSM <max/> is not a non-negative integer"))?;
        r.max = Some(n);
    }
    if let Some(after) = set.get_child("after", NS_RSM) {
        let id = after.text().trim().to_owned();
        if id.is_empty() {
            return Err(bad("RSM <after/> needs an id"));
        }
        r.after = Some(id);
    }
    if let Some(before) = set.get_child("before", NS_RSM) {
        let id = before.text().trim().to_owned();
        r.backward = true;
        r.before = (!id.is_empty()).then_some(id);
    }
    Ok(())
}

/// The form of §4.1.5: every field a query may use, none marked required.
pub fn query_form() -> Element {
    let field = |var: &str, type_: &str| {
        Element::builder("field", NS_DATA)
            .a("var", var)
            .a("type", type_)
            .build()
    };
    let form_type = Element::builder("field", NS_DATA)
        .a("var", "FORM_TYPE")
        .a("type", "hidden")
        .append(Element::builder("value", NS_DATA).append(NS_MAM).build())
        .build();
    let ids = Element::builder("field", NS_DATA)
        .a("var", "ids")
        .a("type", "list-multi")
        .append(
            Element::builder("validate", NS_VALIDATE)
                .a("datatype", "xs:string")
                .append(Element::bare("open", NS_VALIDATE))
                .build(),
        )
        .build();
    Element::builder("query", NS_MAM)
        .append(
            Element::builder("x", NS_DATA)
                .a("type", "form")
                .append(form_type)
                .append(field("with", "jid-single"))
                .append(field("start", "text-single"))
                .append(field("end", "text-single"))
                .append(field("before-id", "text-single"))
                .append(field("after-id", "text-single"))
                .append(ids)
                .build(),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(inner: &str) -> Result<Request, StanzaError> {
        let el: Element = format!("<query xmlns='urn:xmpp:mam:2' queryid='f27'>{inner}</query>")
            .parse()
            .unwrap();
        parse(&el)
    }

    fn x(fields: &str) -> String {
        format!("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>{fields}</x>")
    }

    #[test]
    fn xep0313_examples() {
        // Example 1: no form at all.
        let r = q("").unwrap();
        assert_eq!(r.queryid.as_deref(), Some("f27"));
        assert!(!r.filtered());
        // §4.1.1 and §4.1.2 examples.
        let r = q(&x(
            "<field var='with'><value>juliet@capulet.lit</value></field>",
        ))
        .unwrap();
        assert_eq!(r.with, Some(Jid::new("juliet@capulet.lit").unwrap()));
        let r = q(&x("<field var='start'><value>2010-06-07T00:00:00Z</value></field><field var='end'><value>2010-07-07T13:23:54Z</value></field>")).unwrap();
        assert_eq!(r.start, parse_datetime("2010-06-07T00:00:00Z"));
        assert_eq!(r.end, parse_datetime("2010-07-07T13:23:54Z"));
        // §4.1.3: ids, after-id, before-id.
        let r = q(&x("<field var='after-id'><value>28482-98726-73623</value></field><field var='before-id'><value>09af3-cc343-b409f</value></field><field var='ids'><value>a</value><value>b</value></field>")).unwrap();
        assert_eq!(r.after_id.as_deref(), Some("28482-98726-73623"));
        assert_eq!(r.before_id.as_deref(), Some("09af3-cc343-b409f"));
        assert_eq!(r.ids, ["a", "b"]);
        // §4.3: RSM, last page, flipped page.
        let r = q("<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><after>09af3-cc343-b409f</after></set><flip-page/>").unwrap();
        assert_eq!(
            (r.max, r.after.as_deref(), r.flip),
            (Some(10), Some("09af3-cc343-b409f"), true)
        );
        let r =
            q("<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set>").unwrap();
        assert!(r.backward && r.before.is_none());
    }

    #[test]
    fn errors() {
        let cond = |inner: &str| q(inner).unwrap_err().condition;
        use Condition::*;
        assert_eq!(
            cond(&x("<field var='start'><value>yesterday</value></field>")),
            BadRequest
        );
        assert_eq!(
            cond(&x("<field var='with'><value>@@</value></field>")),
            BadRequest
        );
        assert_eq!(
            cond(&x(
                "<field var='with'><value>a@b</value><value>c@d</value></field>"
            )),
            BadRequest
        );
        assert_eq!(
            cond(&x(
                "<field var='include-groupchat'><value>true</value></field>"
            )),
            FeatureNotImplemented
        );
        assert_eq!(cond("<x xmlns='jabber:x:data' type='form'/>"), BadRequest);
        assert_eq!(cond("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:1</value></field></x>"), BadRequest);
        assert_eq!(
            cond("<set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set>"),
            BadRequest
        );
        assert_eq!(
            cond("<set xmlns='http://jabber.org/protocol/rsm'><after/></set>"),
            BadRequest
        );
        assert_eq!(
            cond("<set xmlns='http://jabber.org/protocol/rsm'><index>3</index></set>"),
            FeatureNotImplemented
        );
        let el: Element = "<query xmlns='urn:xmpp:mam:2' node='n'/>".parse().unwrap();
        assert_eq!(parse(&el).unwrap_err().condition, FeatureNotImplemented);
    }

    #[test]
    fn discovery_form_marks_nothing_required() {
        let f = query_form();
        let x = f.get_child("x", NS_DATA).unwrap();
        let vars: Vec<_> = x.children().filter_map(|c| c.attr("var")).collect();
        assert_eq!(
            vars,
            [
                "FORM_TYPE",
                "with",
                "start",
                "end",
                "before-id",
                "after-id",
                "ids"
            ]
        );
        assert!(x.children().all(|c| !c.has_child("required", NS_DATA)));
    }
}
