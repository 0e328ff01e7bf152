//! XEP-0004 data forms as pubsub uses them: reading submitted forms (node configuration,
//! publish-options, subscription options) and building the forms the service offers.

use minidom::Element;

use tern_router::xml::BuilderExt;

use crate::error::{PsError, PsResult};
use crate::ns::NS_DATA;

/// A submitted form: its FORM_TYPE and fields in order, each with its values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    /// The `type` attribute (`submit`, `cancel`, `form`, `result`).
    pub kind: String,
    /// The hidden FORM_TYPE field's value.
    pub form_type: Option<String>,
    /// Other fields: var and values.
    pub fields: Vec<(String, Vec<String>)>,
}

impl Form {
    /// Reads an `<x xmlns='jabber:x:data'/>`.
    pub fn parse(x: &Element) -> PsResult<Form> {
        if !x.is("x", NS_DATA) {
            return Err(PsError::bad("expected a jabber:x:data form"));
        }
        let mut form = Form {
            kind: x.attr("type").unwrap_or("").to_owned(),
            ..Default::default()
        };
        for f in x.children().filter(|c| c.is("field", NS_DATA)) {
            let Some(var) = f.attr("var") else {
                continue;
            };
            let values: Vec<String> = f
                .children()
                .filter(|v| v.is("value", NS_DATA))
                .map(|v| v.text())
                .collect();
            if var == "FORM_TYPE" {
                form.form_type = values.into_iter().next();
            } else {
                form.fields.push((var.to_owned(), values));
            }
        }
        Ok(form)
    }

    /// The first `<x/>` data form child of `parent`, parsed.
    pub fn child_of(parent: &Element) -> PsResult<Option<Form>> {
        parent
            .children()
            .find(|c| c.is("x", NS_DATA))
            .map(Form::parse)
            .transpose()
    }
}

/// One field of a form the server builds.
#[derive(Debug, Clone)]
pub struct Field {
    /// `var`.
    pub var: &'static str,
    /// XEP-0004 field type.
    pub kind: &'static str,
    /// Human label.
    pub label: &'static str,
    /// Current values.
    pub values: Vec<String>,
    /// Options of list fields.
    pub options: &'static [&'static str],
}

impl Field {
    /// A field with a single value.
    pub fn one(var: &'static str, kind: &'static str, label: &'static str, v: String) -> Self {
        Field {
            var,
            kind,
            label,
            values: vec![v],
            options: &[],
        }
    }

    /// A boolean field.
    pub fn boolean(var: &'static str, label: &'static str, v: bool) -> Self {
        Field::one(var, "boolean", label, if v { "1" } else { "0" }.into())
    }

    /// A list-single field with its options.
    pub fn list(
        var: &'static str,
        label: &'static str,
        v: &str,
        options: &'static [&'static str],
    ) -> Self {
        Field {
            options,
            ..Field::one(var, "list-single", label, v.to_owned())
        }
    }
}

/// Builds a form (`type` = `form` or `result`) with a hidden FORM_TYPE.
pub fn build(kind: &str, form_type: &str, fields: &[Field]) -> Element {
    let mut x = Element::builder("x", NS_DATA).a("type", kind).build();
    x.append_child(
        Element::builder("field", NS_DATA)
            .a("var", "FORM_TYPE")
            .a("type", "hidden")
            .append(Element::builder("value", NS_DATA).append(form_type).build())
            .build(),
    );
    for f in fields {
        let mut el = Element::builder("field", NS_DATA)
            .a("var", f.var)
            .a("type", f.kind)
            .a("label", f.label)
            .build();
        for o in f.options {
            el.append_child(
                Element::builder("option", NS_DATA)
                    .append(Element::builder("value", NS_DATA).append(*o).build())
                    .build(),
            );
        }
        for v in &f.values {
            el.append_child(
                Element::builder("value", NS_DATA)
                    .append(v.as_str())
                    .build(),
            );
        }
        x.append_child(el);
    }
    x
}

/// XEP-0004 §3.3 boolean: "1"/"true" and "0"/"false".
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_form_type_and_values() {
        let x: Element = "<x xmlns='jabber:x:data' type='submit'>\
            <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
            <field var='pubsub#access_model'><value>open</value></field>\
            <field var='pubsub#roster_groups_allowed'><value>a</value><value>b</value></field></x>"
            .parse()
            .unwrap();
        let f = Form::parse(&x).unwrap();
        assert_eq!(f.kind, "submit");
        assert_eq!(
            f.form_type.as_deref(),
            Some("http://jabber.org/protocol/pubsub#publish-options")
        );
        assert_eq!(
            f.fields,
            vec![
                ("pubsub#access_model".to_owned(), vec!["open".to_owned()]),
                (
                    "pubsub#roster_groups_allowed".to_owned(),
                    vec!["a".to_owned(), "b".to_owned()]
                ),
            ]
        );
    }

    #[test]
    fn build_round_trips() {
        let x = build(
            "form",
            "urn:t",
            &[Field::boolean("pubsub#persist_items", "Persist", true)],
        );
        let f = Form::parse(&x).unwrap();
        assert_eq!(f.form_type.as_deref(), Some("urn:t"));
        assert_eq!(f.fields[0].1, vec!["1".to_owned()]);
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("yes"), None);
    }
}
