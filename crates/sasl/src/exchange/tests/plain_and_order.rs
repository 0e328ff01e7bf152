//! PLAIN exchanges, calls out of order, and property tests over arbitrary client input.

use super::*;
use crate::scram::encode_saslname;
use proptest::prelude::*;

#[test]
fn plain() {
    let rec = record("pencil", 64);
    let ex = |tls| Exchange::new(Mechanism::Plain, ChannelBindings::default(), false, tls);
    let need = Step::NeedCredentials {
        username: "user".into(),
    };
    let ok = Step::Success {
        username: "user".into(),
        additional_data: vec![],
    };

    let mut e = ex(true);
    assert_eq!(e.start(Some(b"\0user\0pencil")), need);
    assert_eq!(e.credentials(Some(&rec)), ok);

    let mut e = ex(true);
    assert_eq!(e.start(None), Step::Challenge(vec![]));
    assert_eq!(e.response(b"user@example.com\0user\0pencil"), need);
    assert_eq!(e.credentials(Some(&rec)), ok);

    let mut e = ex(true);
    e.start(Some(b"\0user\0pencil!"));
    assert_eq!(e.credentials(Some(&rec)), not_authorized());

    let mut e = ex(true);
    e.start(Some(b"\0user\0pencil"));
    assert_eq!(e.credentials(None), not_authorized());

    assert_eq!(
        ex(false).start(Some(b"\0user\0pencil")),
        Step::Failure(Failure::EncryptionRequired)
    );
    assert_eq!(
        ex(false).start(None),
        Step::Failure(Failure::EncryptionRequired)
    );
    assert_eq!(
        ex(true).start(Some(b"admin\0user\0pencil")),
        Step::Failure(Failure::InvalidAuthzid)
    );
    assert_eq!(
        ex(true)
            .with_domain("example.com")
            .start(Some(b"user@example.org\0user\0pencil")),
        Step::Failure(Failure::InvalidAuthzid)
    );
    assert_eq!(
        ex(true).start(Some(b"")),
        Step::Failure(Failure::MalformedRequest)
    );
}

#[test]
fn calls_out_of_order_end_the_exchange() {
    let malformed = Step::Failure(Failure::MalformedRequest);
    let new = || {
        Exchange::new(
            Mechanism::ScramSha256,
            ChannelBindings::default(),
            false,
            true,
        )
    };

    assert_eq!(new().response(b"n,,n=user,r=abc"), malformed);
    assert_eq!(new().credentials(None), malformed);

    let mut ex = new();
    ex.start(Some(b"n,,n=user,r=abc"));
    assert_eq!(ex.start(Some(b"n,,n=user,r=abc")), malformed);
    assert!(ex.is_done());
    assert_eq!(ex.credentials(None), malformed);

    let mut ex = new();
    ex.start(Some(b"n,,n=user,r=abc"));
    assert_eq!(
        ex.response(b"c=biws"),
        malformed,
        "response while waiting for credentials"
    );

    // An empty-but-present initial response is an empty client-first: malformed.
    assert_eq!(new().start(Some(b"")), malformed);

    let mut ex = new();
    assert_eq!(ex.start(None), Step::Challenge(vec![]));
    assert_eq!(ex.abort(), Step::Failure(Failure::Aborted));
    assert_eq!(ex.abort(), malformed);
    assert_eq!(ex.response(b"n,,n=user,r=abc"), malformed);
    assert_eq!(
        format!("{ex:?}"),
        "Exchange { mech: ScramSha256, state: \"done\" }"
    );

    let mut ex = Exchange::new(Mechanism::Plain, ChannelBindings::default(), false, true);
    ex.start(Some(b"\0user\0pencil"));
    ex.credentials(Some(&record("pencil", 64)));
    assert_eq!(ex.credentials(Some(&record("pencil", 64))), malformed);
    assert_eq!(ex.start(None), malformed);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// No client-first makes SCRAM panic; each ends the exchange or asks for the account.
    #[test]
    fn scram_first_never_panics(first in proptest::collection::vec(any::<u8>(), 0..80)) {
        let cb = ChannelBindings { tls_exporter: Some(vec![1; 32]), tls_server_end_point: None };
        let mut ex = Exchange::new(Mechanism::ScramSha1Plus, cb, true, true);
        match ex.start(Some(&first)) {
            Step::NeedCredentials { .. } => prop_assert!(!ex.is_done()),
            step => prop_assert!(matches!(step, Step::Failure(_)) && ex.is_done()),
        }
    }

    /// No forged client-final authenticates: neither random bytes nor the right nonce with a
    /// random proof.
    #[test]
    fn scram_final_rejects_forgeries(
        raw in proptest::collection::vec(any::<u8>(), 0..120),
        proof in proptest::collection::vec(any::<u8>(), 20..=20),
        shaped in any::<bool>(),
    ) {
        let mut ex = Exchange::new(Mechanism::ScramSha1, ChannelBindings::default(), false, true);
        ex.start(Some(b"n,,n=user,r=abc"));
        let Step::Challenge(server_first) = ex.credentials(Some(&record("pencil", 1))) else {
            panic!("no challenge");
        };
        let fin = if shaped {
            let server_first = String::from_utf8(server_first).unwrap();
            let nonce = server_first.split(',').next().unwrap();
            format!("c=biws,{nonce},p={}", B64.encode(&proof)).into_bytes()
        } else {
            raw
        };
        let step = ex.response(&fin);
        if shaped {
            prop_assert_eq!(step, Step::Failure(Failure::NotAuthorized));
        } else {
            prop_assert!(matches!(step, Step::Failure(_)));
        }
        prop_assert!(ex.is_done());
    }

    /// Any client-first built from a legal username and nonce is accepted, names that user.
    #[test]
    fn scram_accepts_escaped_usernames(
        name in "[a-zA-Z0-9,=@. ]{1,20}",
        nonce in "[!-+\\--~]{1,30}",
    ) {
        let mut ex = Exchange::new(Mechanism::ScramSha256, ChannelBindings::default(), false, true);
        let msg = format!("n,,n={},r={nonce}", encode_saslname(&name));
        let step = ex.start(Some(msg.as_bytes()));
        prop_assert_eq!(step, Step::NeedCredentials { username: name });
    }

    /// PLAIN never panics and only the right password succeeds.
    #[test]
    fn plain_never_panics(msg in proptest::collection::vec(any::<u8>(), 0..60)) {
        let rec = record("pencil", 1);
        let mut ex = Exchange::new(Mechanism::Plain, ChannelBindings::default(), false, true);
        if let Step::NeedCredentials { .. } = ex.start(Some(&msg)) {
            let ok = msg.ends_with(b"\0pencil");
            prop_assert_eq!(matches!(ex.credentials(Some(&rec)), Step::Success { .. }), ok);
        }
        prop_assert!(ex.is_done());
    }
}
