//! Helpers for the MUC end-to-end tests: logged-in raw clients and the stanzas a room sends.
#![allow(dead_code)]

use minidom::Element;
use tern_testkit::{RawClient, TestServer};

pub const MUC: &str = "http://jabber.org/protocol/muc";
pub const USER: &str = "http://jabber.org/protocol/muc#user";
pub const OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const ROOMS: &str = "conference.localhost";

/// Logs a new account in (created first).
pub async fn user(s: &TestServer, name: &str) -> RawClient {
    s.add_user(name, "pw").await.unwrap();
    let mut c = RawClient::login(s, name, "pw", "r").await.unwrap();
    c.send_str("<presence/>").await.unwrap();
    c
}

/// Status codes of a room presence or message.
pub fn codes(e: &Element) -> Vec<u16> {
    e.get_child("x", USER)
        .map(|x| {
            x.children()
                .filter(|c| c.is("status", USER))
                .filter_map(|c| c.attr("code")?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The `<item/>` of a room presence.
pub fn item(e: &Element) -> Option<&Element> {
    e.get_child("x", USER)?.get_child("item", USER)
}

/// The error condition of an error stanza.
pub fn condition(e: &Element) -> Option<String> {
    let err = e.get_child("error", "jabber:client")?;
    err.children()
        .find(|c| c.ns() == STANZAS && c.name() != "text")
        .map(|c| c.name().to_owned())
}

/// Sends a join presence and waits for the self-presence (110) or an error.
pub async fn join(c: &mut RawClient, room: &str, nick: &str, extra: &str) -> Element {
    c.send_str(&format!(
        "<presence to='{room}@{ROOMS}/{nick}'><x xmlns='{MUC}'>{extra}</x></presence>"
    ))
    .await
    .unwrap();
    let from = format!("{room}@{ROOMS}/{nick}");
    c.expect("self-presence or error", |e| {
        e.name() == "presence"
            && (e.attr("type") == Some("error")
                || (e.attr("from") == Some(from.as_str()) && codes(e).contains(&110)))
    })
    .await
    .unwrap()
}

/// Waits for the subject message that ends a join.
pub async fn subject(c: &mut RawClient, room: &str) -> Element {
    let prefix = format!("{room}@{ROOMS}");
    c.expect("subject", |e| {
        e.name() == "message"
            && e.attr("from").is_some_and(|f| f.starts_with(&prefix))
            && e.has_child("subject", "jabber:client")
    })
    .await
    .unwrap()
}

/// Creates a room as an instant room (join, then accept the default configuration).
pub async fn create(c: &mut RawClient, room: &str, nick: &str) {
    let p = join(c, room, nick, "").await;
    assert!(codes(&p).contains(&201), "{p:?}");
    subject(c, room).await;
    configure(c, room, "").await;
}

/// Submits the configuration form with these fields.
pub async fn configure(c: &mut RawClient, room: &str, fields: &str) -> Element {
    let id = format!("cfg{}", rand_id());
    c.send_str(&format!(
        "<iq type='set' id='{id}' to='{room}@{ROOMS}'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'>{fields}</x></query></iq>"
    ))
    .await
    .unwrap();
    c.expect("config result", |e| e.attr("id") == Some(id.as_str()))
        .await
        .unwrap()
}

/// A form field.
pub fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

/// Sends an IQ and waits for its answer.
pub async fn iq(c: &mut RawClient, type_: &str, to: &str, payload: &str) -> Element {
    let id = format!("iq{}", rand_id());
    c.send_str(&format!(
        "<iq type='{type_}' id='{id}' to='{to}'>{payload}</iq>"
    ))
    .await
    .unwrap();
    c.expect("iq answer", |e| {
        e.name() == "iq" && e.attr("id") == Some(id.as_str())
    })
    .await
    .unwrap()
}

/// A groupchat message.
pub async fn say(c: &mut RawClient, room: &str, body: &str) {
    c.send_str(&format!(
        "<message to='{room}@{ROOMS}' type='groupchat' id='{}'><body>{body}</body></message>",
        rand_id()
    ))
    .await
    .unwrap();
}

/// Waits for a groupchat message with this body.
pub async fn heard(c: &mut RawClient, body: &str) -> Element {
    c.expect(body, |e| {
        e.name() == "message"
            && e.get_child("body", "jabber:client")
                .map(|b| b.text())
                .as_deref()
                == Some(body)
    })
    .await
    .unwrap()
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}
