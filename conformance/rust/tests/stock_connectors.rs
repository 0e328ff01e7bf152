//! tokio-xmpp's own connectors (`Client::new_starttls`, `Client::new_direct_tls_with_config`
//! with a fixed `DnsConfig::Addr`), as an application would use them, against the binary.
//!
//! Those connectors build their rustls config from the system roots (rustls-native-certs) and
//! take none from the caller, so this binary has its own `main` (`harness = false` in
//! Cargo.toml): it generates the test CA and points `SSL_CERT_FILE` at it before any thread
//! exists, which rustls-native-certs then loads instead of the platform store. Certificate
//! verification stays on; `stock_starttls_rejects_untrusted_ca` checks that it does.
//!
//! Accepts test-name filters like libtest, and `--list`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::process::ExitCode;

use futures::StreamExt;
use tern_conformance::jid::Jid;
use tern_conformance::server::generate_certs;
use tern_conformance::tokio_xmpp::connect::{
    DirectTlsServerConnector, DnsConfig, ServerConnector, StartTlsServerConnector,
};
use tern_conformance::tokio_xmpp::error::Error;
use tern_conformance::tokio_xmpp::rustls;
use tern_conformance::tokio_xmpp::xmlstream::Timeouts;
use tern_conformance::tokio_xmpp::{Client, Event};
use tern_conformance::{TernServer, WAIT};

const USERS: &[(&str, &str)] = &[("alice", "pw-alice")];

type TestFn = fn(&'static Path) -> Pin<Box<dyn Future<Output = ()> + Send>>;

const TESTS: &[(&str, TestFn)] = &[
    ("stock_starttls_login", |certs| {
        Box::pin(stock_starttls_login(certs))
    }),
    ("stock_direct_tls_login", |certs| {
        Box::pin(stock_direct_tls_login(certs))
    }),
    ("stock_starttls_rejects_untrusted_ca", |_| {
        Box::pin(stock_starttls_rejects_untrusted_ca())
    }),
];

fn addr(a: SocketAddr) -> DnsConfig {
    DnsConfig::Addr {
        addr: a.to_string(),
    }
}

async fn online(mut client: Client, expected: &Jid, how: &str) {
    let bound = tokio::time::timeout(WAIT, async {
        loop {
            match client.next().await {
                Some(Event::Online { bound_jid, .. }) => return bound_jid,
                Some(_) => {}
                None => panic!("{how}: client ended before going online"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{how}: not online within {WAIT:?}"));
    assert_eq!(&bound, expected, "{how}: bound JID");
    tokio::time::timeout(WAIT, client.send_end())
        .await
        .expect("close within the timeout")
        .expect("clean close");
}

/// `Client::new_starttls` with `DnsConfig::Addr`: STARTTLS, SCRAM, bind.
async fn stock_starttls_login(certs: &'static Path) {
    let server = TernServer::start_with_certs(USERS, Some(certs));
    let jid: Jid = "alice@localhost/stock-starttls".parse().unwrap();
    let client = Client::new_starttls(jid.clone(), "pw-alice", addr(server.c2s), Timeouts::tight());
    online(client, &jid, "StartTlsServerConnector").await;
}

/// `Client::new_direct_tls_with_config` with `DnsConfig::Addr` (XEP-0368).
async fn stock_direct_tls_login(certs: &'static Path) {
    let server = TernServer::start_with_certs(USERS, Some(certs));
    let jid: Jid = "alice@localhost/stock-direct".parse().unwrap();
    let client = Client::new_direct_tls_with_config(
        jid.clone(),
        "pw-alice",
        addr(server.c2s_tls),
        Timeouts::tight(),
    );
    online(client, &jid, "DirectTlsServerConnector").await;
}

/// A server whose certificate comes from a CA not in SSL_CERT_FILE fails the handshake with a
/// certificate error: trust is really checked.
async fn stock_starttls_rejects_untrusted_ca() {
    let server = TernServer::start(USERS); // its own, untrusted CA
    let jid: Jid = "alice@localhost".parse().unwrap();
    for (name, result) in [
        (
            "StartTlsServerConnector",
            StartTlsServerConnector(addr(server.c2s))
                .connect(&jid, "jabber:client", Timeouts::tight())
                .await
                .map(drop),
        ),
        (
            "DirectTlsServerConnector",
            DirectTlsServerConnector(addr(server.c2s_tls))
                .connect(&jid, "jabber:client", Timeouts::tight())
                .await
                .map(drop),
        ),
    ] {
        match result {
            Err(Error::Io(e))
                if matches!(
                    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
                    // Every test CA has the subject "Tern test CA", so rustls finds "our" CA
                    // by name and then rejects the signature.
                    Some(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::UnknownIssuer
                            | rustls::CertificateError::BadSignature
                    ))
                ) => {}
            Err(other) => {
                panic!("{name}: expected an invalid-certificate TLS error, got {other:?}")
            }
            Ok(()) => panic!("{name}: connected to a server signed by an untrusted CA"),
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let mut list = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--list" => list = true,
            "--skip" => skips.extend(args.next()),
            _ if a.starts_with('-') => {} // --nocapture, --test-threads=N, -q, …
            _ => filters.push(a),
        }
    }
    let selected: Vec<_> = TESTS
        .iter()
        .filter(|(n, _)| filters.is_empty() || filters.iter().any(|f| n.contains(f.as_str())))
        .filter(|(n, _)| !skips.iter().any(|s| n.contains(s.as_str())))
        .collect();
    if list {
        for (n, _) in &selected {
            println!("{n}: test");
        }
        return ExitCode::SUCCESS;
    }
    if selected.is_empty() {
        println!("\nrunning 0 tests\n");
        return ExitCode::SUCCESS;
    }

    // Before any thread: rustls-native-certs reads these when tokio-xmpp builds its config.
    let dir = tempfile::Builder::new()
        .prefix("tern-conformance-ca-")
        .tempdir()
        .expect("temp dir");
    let certs: &'static Path =
        Box::leak(generate_certs(&dir.path().join("certs")).into_boxed_path());
    std::env::set_var("SSL_CERT_FILE", certs.join("ca.crt"));
    std::env::remove_var("SSL_CERT_DIR");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, f) in &selected {
        let r = rt.block_on(async { tokio::spawn(f(certs)).await });
        match r {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                println!("test {name} ... FAILED ({e})");
                failed.push(*name);
            }
        }
    }
    drop(rt);
    drop(dir);
    println!(
        "\ntest result: {}. {} passed; {} failed\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("failures: {failed:?}");
        ExitCode::FAILURE
    }
}
