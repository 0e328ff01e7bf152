//! RFC 6120 over the wire with tokio-xmpp: STARTTLS and direct TLS (XEP-0368), SASL SCRAM with
//! and without channel binding, authentication failures, resource binding, and the
//! service-unavailable answer to an IQ nobody handles (RFC 6120 §8.4, RFC 6121 §8.5).

use std::collections::BTreeSet;

use futures::StreamExt;
use sasl::common::{ChannelBinding, Credentials};
use tern_conformance::parsers::sasl::DefinedCondition as SaslCondition;
use tern_conformance::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tern_conformance::tokio_xmpp::error::{AuthError, Error};
use tern_conformance::tokio_xmpp::rustls;
use tern_conformance::tokio_xmpp::xmlstream::{FallibleStreamElement, Timeouts};
use tern_conformance::tokio_xmpp::{connect::ServerConnector, Client, Event};
use tern_conformance::{jid::Jid, minidom::Element};
use tern_conformance::{Mode, TernConnector, TernServer, TestClient, WAIT};

const USERS: &[(&str, &str)] = &[("alice", "pw-alice"), ("bob", "pw-bob")];

/// Logs in with the high-level `tokio_xmpp::Client` and checks the bound JID it reports.
async fn login_and_check(conn: TernConnector, resource: &str) {
    tern_conformance::init_client_log();
    let expected: Jid = format!("alice@localhost/{resource}").parse().unwrap();
    let desc = format!("{conn:?}");
    let mut client =
        Client::new_with_connector(expected.clone(), "pw-alice", conn, Timeouts::tight());
    let bound = tokio::time::timeout(WAIT, async {
        loop {
            match client.next().await {
                Some(Event::Online {
                    bound_jid, resumed, ..
                }) => {
                    assert!(!resumed, "a fresh login is not a resumption");
                    return bound_jid;
                }
                Some(_) => {}
                None => panic!("client ended before going online"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("alice not online within {WAIT:?} via {desc}"));
    assert_eq!(bound, expected, "bound JID in the Online event");
    assert_eq!(
        client.bound_jid().map(|j| Jid::from(j.clone())),
        Some(expected),
        "Client::bound_jid"
    );
    tokio::time::timeout(WAIT, client.send_end())
        .await
        .expect("closing within the timeout")
        .expect("clean close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_starttls_scram_plus() {
    let server = TernServer::start(USERS);
    let conn = TernConnector::new(server.c2s, Mode::StartTls, &server.ca_file());
    login_and_check(conn, "starttls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_starttls_scram_without_channel_binding() {
    let server = TernServer::start(USERS);
    let mut conn = TernConnector::new(server.c2s, Mode::StartTls, &server.ca_file());
    conn.channel_binding = false;
    login_and_check(conn, "no-cb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_direct_tls() {
    let server = TernServer::start(USERS);
    let conn = TernConnector::new(server.c2s_tls, Mode::DirectTls, &server.ca_file());
    login_and_check(conn, "direct").await;
}

/// A bare JID login: the server picks the resource (RFC 6120 §7.6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_server_generated_resource() {
    let server = TernServer::start(USERS);
    let conn = TernConnector::new(server.c2s, Mode::StartTls, &server.ca_file());
    let jid: Jid = "alice@localhost".parse().unwrap();
    let mut client = Client::new_with_connector(jid, "pw-alice", conn, Timeouts::tight());
    let bound = tokio::time::timeout(WAIT, async {
        loop {
            match client.next().await {
                Some(Event::Online { bound_jid, .. }) => return bound_jid,
                Some(_) => {}
                None => panic!("client ended before going online"),
            }
        }
    })
    .await
    .expect("online within the timeout");
    let full = bound.try_as_full().expect("bound JID is full");
    assert_eq!(full.to_bare().to_string(), "alice@localhost");
    assert!(
        !full.resource().as_str().is_empty(),
        "empty generated resource"
    );
    client.send_end().await.unwrap();
}

/// One SASL exchange with tokio-xmpp's own SASL code (`tokio_xmpp::client_login`), offering
/// only `mechs` from what the server advertised.
async fn sasl_attempt(
    server: &TernServer,
    user: &str,
    password: &str,
    mechs: &[&str],
    cb: Option<ChannelBinding>,
) -> Result<(), Error> {
    let conn = TernConnector::new(server.c2s, Mode::StartTls, &server.ca_file());
    let jid: Jid = format!("{user}@localhost").parse().unwrap();
    let (pending, tls_cb) = conn
        .connect(&jid, "jabber:client", Timeouts::tight())
        .await?;
    let (features, stream) = pending.recv_features::<FallibleStreamElement>().await?;
    let offered: BTreeSet<String> = mechs.iter().map(|m| m.to_string()).collect();
    for m in &offered {
        assert!(
            features.sasl_mechanisms.contains(m),
            "server does not advertise {m}; it offers {:?}",
            features.sasl_mechanisms
        );
    }
    let creds = Credentials::default()
        .with_username(user)
        .with_password(password)
        .with_channel_binding(cb.unwrap_or(tls_cb));
    tokio::time::timeout(WAIT, tokio_xmpp_login(stream, offered, creds))
        .await
        .expect("SASL exchange finished within the timeout (no hang)")
        .map(drop)
}

use tern_conformance::tokio_xmpp::client_login as tokio_xmpp_login;

fn assert_not_authorized(r: Result<(), Error>, what: &str) {
    match r {
        Err(Error::Auth(AuthError::Fail(SaslCondition::NotAuthorized))) => {}
        other => panic!("{what}: expected SASL failure <not-authorized/>, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_mechanisms_advertised_after_tls() {
    let server = TernServer::start(USERS);
    let conn = TernConnector::new(server.c2s, Mode::StartTls, &server.ca_file());
    let jid: Jid = "alice@localhost".parse().unwrap();
    let (pending, cb) = conn
        .connect(&jid, "jabber:client", Timeouts::tight())
        .await
        .unwrap();
    let (features, _stream) = pending
        .recv_features::<FallibleStreamElement>()
        .await
        .unwrap();
    for m in [
        "SCRAM-SHA-256",
        "SCRAM-SHA-256-PLUS",
        "SCRAM-SHA-1",
        "SCRAM-SHA-1-PLUS",
    ] {
        assert!(
            features.sasl_mechanisms.contains(m),
            "{m} missing from {:?}",
            features.sasl_mechanisms
        );
    }
    assert!(
        matches!(cb, ChannelBinding::TlsExporter(_)),
        "TLS 1.3 expected (tls-exporter binding), got {cb:?}"
    );
}

/// Each SCRAM variant logs in with the right password (tokio-xmpp's SCRAM, forced to one
/// mechanism at a time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scram_mechanism_succeeds() {
    let server = TernServer::start(USERS);
    for (mech, cb) in [
        ("SCRAM-SHA-256-PLUS", None),
        ("SCRAM-SHA-1-PLUS", None),
        ("SCRAM-SHA-256", Some(ChannelBinding::None)),
        ("SCRAM-SHA-1", Some(ChannelBinding::None)),
    ] {
        if let Err(e) = sasl_attempt(&server, "alice", "pw-alice", &[mech], cb).await {
            panic!("{mech} with the right password failed: {e:?}");
        }
    }
}

/// Test 2: a wrong password is an authentication error with a condition, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_not_authorized() {
    let server = TernServer::start(USERS);
    // tokio-xmpp's preferred path: SCRAM-SHA-256-PLUS with tls-exporter.
    let r = sasl_attempt(&server, "alice", "wrong", &["SCRAM-SHA-256-PLUS"], None).await;
    assert_not_authorized(r, "SCRAM-SHA-256-PLUS, wrong password");
    for (mech, cb) in [
        ("SCRAM-SHA-256", Some(ChannelBinding::None)),
        ("SCRAM-SHA-1", Some(ChannelBinding::None)),
    ] {
        let r = sasl_attempt(&server, "alice", "wrong", &[mech], cb).await;
        assert_not_authorized(r, &format!("{mech}, wrong password"));
    }
    // RFC 6120 §6.5.10: an unknown user fails the same way (no account enumeration).
    let r = sasl_attempt(&server, "nobody", "pw", &["SCRAM-SHA-256-PLUS"], None).await;
    assert_not_authorized(r, "unknown user");
}

/// The high-level `tokio_xmpp::Client` never goes online with a wrong password (it retries
/// internally and reports nothing, so this is checked as "no Online event").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_client_never_online() {
    let server = TernServer::start(USERS);
    let conn = TernConnector::new(server.c2s, Mode::StartTls, &server.ca_file());
    let jid: Jid = "alice@localhost/wrong".parse().unwrap();
    let mut client = Client::new_with_connector(jid, "wrong", conn, Timeouts::tight());
    let r = tokio::time::timeout(std::time::Duration::from_secs(3), async {
        while let Some(ev) = client.next().await {
            if let Event::Online { bound_jid, .. } = ev {
                return bound_jid;
            }
        }
        panic!("client ended");
    })
    .await;
    if let Ok(jid) = r {
        panic!("logged in as {jid} with a wrong password");
    }
    // The right password still works afterwards (failed attempts did not lock the account).
    TestClient::connect(&server, "alice", "pw-alice", "after")
        .await
        .disconnect()
        .await;
}

/// RFC 5802 §6: GS2 flag "y" (client supports channel binding but thinks the server does not)
/// while the server advertises -PLUS is a downgrade; the server must fail the exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_downgrade_flag_y_is_rejected() {
    let server = TernServer::start(USERS);
    let r = sasl_attempt(
        &server,
        "alice",
        "pw-alice",
        &["SCRAM-SHA-256"],
        Some(ChannelBinding::Unsupported),
    )
    .await;
    match r {
        Err(Error::Auth(AuthError::Fail(_))) => {}
        other => panic!("SCRAM-SHA-256 with gs2 flag 'y' against a -PLUS server: expected failure, got {other:?}"),
    }
}

fn unknown_query() -> Element {
    Element::builder("query", "urn:example:tern-conformance:unknown").build()
}

fn assert_service_unavailable(r: Result<Option<Element>, StanzaError>, what: &str) {
    match r {
        Err(e) => {
            assert_eq!(
                e.defined_condition,
                DefinedCondition::ServiceUnavailable,
                "{what}: condition ({e:?})"
            );
            assert_eq!(e.type_, ErrorType::Cancel, "{what}: error type ({e:?})");
        }
        Ok(el) => panic!("{what}: expected <service-unavailable/>, got a result: {el:?}"),
    }
}

/// Test 7: an IQ with a payload namespace nobody handles → `service-unavailable` (RFC 6120
/// §8.4), whether addressed to the server, to the sender's own account, to another account or
/// to an account that does not exist (RFC 6121 §8.5.1, §8.5.2.1.3), or to a resource that is
/// not connected (§8.5.3.2.1). The error must come back from the JID the request went to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_iq_namespace_is_service_unavailable() {
    let server = TernServer::start(USERS);
    let mut alice = TestClient::connect(&server, "alice", "pw-alice", "iq").await;
    for (to, what) in [
        (Some("localhost"), "get to the server"),
        (None, "get without 'to' (own account)"),
        (Some("alice@localhost"), "get to own bare JID"),
        (Some("bob@localhost"), "get to another account's bare JID"),
        (Some("nobody@localhost"), "get to a nonexistent account"),
        (
            Some("bob@localhost/offline"),
            "get to an unavailable full JID",
        ),
    ] {
        let to: Option<Jid> = to.map(|t| t.parse().unwrap());
        let r = alice.iq_get(to.clone(), unknown_query()).await;
        assert_service_unavailable(r, what);
    }
    let r = alice
        .iq_set(Some("localhost".parse().unwrap()), unknown_query())
        .await;
    assert_service_unavailable(r, "set to the server");
    alice.disconnect().await;
}

/// The suite's connector verifies the server certificate against the test CA only: with
/// another CA's certificate as trust anchor the handshake fails, on both ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_ca_is_rejected() {
    let server = TernServer::start(USERS);
    let other = tempfile::tempdir().unwrap();
    let other_ca = tern_conformance::server::generate_certs(other.path()).join("ca.crt");
    let jid: Jid = "alice@localhost".parse().unwrap();
    for (mode, addr) in [
        (Mode::StartTls, server.c2s),
        (Mode::DirectTls, server.c2s_tls),
    ] {
        let conn = TernConnector::new(addr, mode, &other_ca);
        match conn.connect(&jid, "jabber:client", Timeouts::tight()).await {
            Err(Error::Io(e))
                if matches!(
                    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
                    Some(rustls::Error::InvalidCertificate(_))
                ) => {}
            Err(e) => panic!("{mode:?}: expected an invalid-certificate error, got {e:?}"),
            Ok(_) => panic!("{mode:?}: TLS accepted a certificate from an untrusted CA"),
        }
    }
}
