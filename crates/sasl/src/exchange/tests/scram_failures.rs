//! SCRAM failure paths: unknown users, downgrades, channel binding, authzid, tampering.

use super::*;
use crate::scram::encode_saslname;

#[test]
fn unknown_user_runs_to_the_end_then_fails() {
    let challenge = || {
        let mut ex = Exchange::new(
            Mechanism::ScramSha256,
            ChannelBindings::default(),
            false,
            true,
        );
        ex.start(Some(b"n,,n=nobody,r=abc"));
        let Step::Challenge(c) = ex.credentials(None) else {
            panic!()
        };
        let c = String::from_utf8(c).unwrap();
        (ex, c)
    };
    let (mut ex, first) = challenge();
    let (_, again) = challenge();
    // Same salt and count on every try, as a real account would show; a fresh nonce each time.
    let salt_and_count = |c: &str| c.split_once(",s=").unwrap().1.to_owned();
    assert_eq!(salt_and_count(&first), salt_and_count(&again));
    assert!(first.ends_with(",i=4096") && first != again);
    let final_msg = client_final(
        Hash::Sha256,
        "pencil",
        "n=nobody,r=abc",
        first.as_bytes(),
        b"n,,",
    );
    assert_eq!(ex.response(&final_msg), not_authorized());
}

#[test]
fn y_flag_is_a_downgrade_when_plus_was_offered() {
    let mut ex = Exchange::new(
        Mechanism::ScramSha256,
        ChannelBindings::default(),
        true,
        true,
    );
    assert_eq!(ex.start(Some(b"y,,n=user,r=abc")), not_authorized());
    // Without -PLUS on offer, 'y' is honest and the exchange succeeds (c= is "y,,").
    let ex = Exchange::new(
        Mechanism::ScramSha256,
        ChannelBindings::default(),
        false,
        true,
    );
    let step = scram_login(ex, "y,,", b"", "pencil", Some(&record("pencil", 64)));
    assert!(matches!(step, Step::Success { .. }));
}

#[test]
fn plus_checks_the_binding_data() {
    let cb = ChannelBindings {
        tls_exporter: Some(vec![7; 32]),
        tls_server_end_point: Some(vec![9; 32]),
    };
    let rec = record("pencil", 64);
    for (mech, gs2, data) in [
        (Mechanism::ScramSha256Plus, "p=tls-exporter,,", vec![7; 32]),
        (
            Mechanism::ScramSha1Plus,
            "p=tls-server-end-point,,",
            vec![9; 32],
        ),
    ] {
        let ex = || Exchange::new(mech, cb.clone(), true, true);
        let step = scram_login(ex(), gs2, &data, "pencil", Some(&rec));
        assert!(matches!(step, Step::Success { .. }), "{mech:?}");
        // A client whose TLS session differs from ours (a man in the middle) fails.
        assert_eq!(
            scram_login(ex(), gs2, &[0; 32], "pencil", Some(&rec)),
            not_authorized()
        );
        // A client that rewrote the flag in c= (but not in the header) fails too.
        let mut ex = ex();
        ex.start(Some(format!("{gs2}n=user,r=abc").as_bytes()));
        let Step::Challenge(sf) = ex.credentials(Some(&rec)) else {
            panic!()
        };
        let final_msg = client_final(mech.hash().unwrap(), "pencil", "n=user,r=abc", &sf, b"n,,");
        assert_eq!(ex.response(&final_msg), not_authorized());
    }
}

#[test]
fn binding_type_and_mechanism_must_agree() {
    let cb = ChannelBindings {
        tls_exporter: Some(vec![7; 32]),
        tls_server_end_point: None,
    };
    let malformed = Step::Failure(Failure::MalformedRequest);
    let start =
        |mech, msg: &str| Exchange::new(mech, cb.clone(), true, true).start(Some(msg.as_bytes()));
    assert_eq!(
        start(Mechanism::ScramSha256, "p=tls-exporter,,n=user,r=abc"),
        malformed
    );
    assert_eq!(
        start(Mechanism::ScramSha256Plus, "n,,n=user,r=abc"),
        malformed
    );
    assert_eq!(
        start(
            Mechanism::ScramSha256Plus,
            "p=tls-server-end-point,,n=user,r=abc"
        ),
        malformed
    );
    assert_eq!(
        start(Mechanism::ScramSha256Plus, "p=tls-unique,,n=user,r=abc"),
        malformed
    );
}

#[test]
fn scram_authzid() {
    let ex = || {
        Exchange::new(
            Mechanism::ScramSha256,
            ChannelBindings::default(),
            false,
            true,
        )
        .with_domain("example.com")
    };
    let need = Step::NeedCredentials {
        username: "user".into(),
    };
    assert_eq!(ex().start(Some(b"n,a=user,n=user,r=abc")), need);
    assert_eq!(ex().start(Some(b"n,a=user@EXAMPLE.com,n=user,r=abc")), need);
    let invalid = Step::Failure(Failure::InvalidAuthzid);
    for bad in [
        "other",
        "other@example.com",
        "user@example.org",
        "user@example.com/res",
        "user@",
    ] {
        let msg = format!("n,a={},n=user,r=abc", encode_saslname(bad));
        assert_eq!(ex().start(Some(msg.as_bytes())), invalid, "{bad}");
    }
    // Full exchange with an authzid: it is part of the gs2 header c= must repeat.
    let ex = Exchange::new(
        Mechanism::ScramSha1,
        ChannelBindings::default(),
        false,
        true,
    );
    let step = scram_login(
        ex,
        "n,a=user@example.net,",
        b"",
        "pencil",
        Some(&record("pencil", 64)),
    );
    assert!(matches!(step, Step::Success { .. }));
}

#[test]
fn scram_username_is_decoded_and_prepared_not_lowercased() {
    let mut ex = Exchange::new(
        Mechanism::ScramSha256,
        ChannelBindings::default(),
        false,
        true,
    );
    let step = ex.start(Some("n,,n=J=2Coe=3D\u{2168},r=abc".as_bytes()));
    assert_eq!(
        step,
        Step::NeedCredentials {
            username: "J,oe=IX".into()
        }
    );
}

#[test]
fn client_final_must_match_nonce_and_header() {
    let rec = record("pencil", 64);
    let run = |tamper: &dyn Fn(&[u8]) -> Vec<u8>| {
        let mut ex = Exchange::new(
            Mechanism::ScramSha256,
            ChannelBindings::default(),
            false,
            true,
        );
        ex.start(Some(b"n,,n=user,r=abc"));
        let Step::Challenge(sf) = ex.credentials(Some(&rec)) else {
            panic!()
        };
        ex.response(&tamper(&sf))
    };
    let good = |sf: &[u8]| client_final(Hash::Sha256, "pencil", "n=user,r=abc", sf, b"n,,");
    assert!(matches!(run(&good), Step::Success { .. }));
    // A nonce other than the combined one (here: only the client's part).
    let short_nonce = |_: &[u8]| {
        client_final(
            Hash::Sha256,
            "pencil",
            "n=user,r=abc",
            b"r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=64",
            b"n,,",
        )
    };
    assert_eq!(run(&short_nonce), not_authorized());
    // c= claims 'y' while the header said 'n'.
    let wrong_c = |sf: &[u8]| client_final(Hash::Sha256, "pencil", "n=user,r=abc", sf, b"y,,");
    assert_eq!(run(&wrong_c), not_authorized());
    let malformed = Step::Failure(Failure::MalformedRequest);
    assert_eq!(run(&|_| b"c=biws,r=abc".to_vec()), malformed);
    assert_eq!(run(&|_| b"c=!!,r=abc,p=AAAA".to_vec()), malformed);
    assert_eq!(run(&|_| b"c=biws,r=abc,p=not base64".to_vec()), malformed);
    assert_eq!(
        run(&|sf: &[u8]| [&good(sf)[..], b",x=1"].concat()),
        malformed
    );
    assert_eq!(run(&|_| b"c=biws,r=abc,p=AAAA".to_vec()), not_authorized());
}

#[test]
fn corrupt_record_is_a_temporary_failure() {
    let mut rec = record("pencil", 64);
    rec.scram_sha256.stored_key.truncate(10);
    let mut ex = Exchange::new(
        Mechanism::ScramSha256,
        ChannelBindings::default(),
        false,
        true,
    );
    ex.start(Some(b"n,,n=user,r=abc"));
    assert_eq!(
        ex.credentials(Some(&rec)),
        Step::Failure(Failure::TemporaryAuthFailure)
    );
}

#[test]
fn random_server_nonces() {
    let nonce = || {
        let mut ex = Exchange::new(
            Mechanism::ScramSha1,
            ChannelBindings::default(),
            false,
            true,
        );
        ex.start(Some(b"n,,n=user,r=abc"));
        let Step::Challenge(sf) = ex.credentials(Some(&record("pencil", 64))) else {
            panic!()
        };
        let sf = String::from_utf8(sf).unwrap();
        sf.split(',')
            .next()
            .unwrap()
            .strip_prefix("r=abc")
            .unwrap()
            .to_owned()
    };
    let (a, b) = (nonce(), nonce());
    assert_ne!(a, b);
    assert_eq!(B64.decode(&a).unwrap().len(), SERVER_NONCE_BYTES);
}
