//! Whole exchanges through [`Exchange`]: the RFC 5802 §5 and RFC 7677 §3 examples replayed
//! byte for byte here, the failure paths in the submodules, with a small SCRAM client written
//! for the tests.

use super::*;

mod plain_and_order;
mod scram_failures;

const SHA1_SALT: &str = "QSXCR+Q6sek8bf92";
const SHA256_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";

fn b64(s: &str) -> Vec<u8> {
    B64.decode(s).unwrap()
}

/// A record for `password` with the RFC example salts and `iterations`.
fn record(password: &str, iterations: u32) -> AccountRecord {
    AccountRecord {
        scram_sha1: derive(Hash::Sha1, password, &b64(SHA1_SALT), iterations).unwrap(),
        scram_sha256: derive(Hash::Sha256, password, &b64(SHA256_SALT), iterations).unwrap(),
        created: 0,
    }
}

/// The client side of RFC 5802 §3: the client-final-message answering `server_first`.
fn client_final(
    hash: Hash,
    password: &str,
    bare: &str,
    server_first: &[u8],
    cbind_input: &[u8],
) -> Vec<u8> {
    let server_first = std::str::from_utf8(server_first).unwrap();
    let mut attrs = server_first.split(',');
    let nonce = attrs.next().unwrap().strip_prefix("r=").unwrap();
    let salt = b64(attrs.next().unwrap().strip_prefix("s=").unwrap());
    let iterations = attrs
        .next()
        .unwrap()
        .strip_prefix("i=")
        .unwrap()
        .parse()
        .unwrap();
    let salted = hash.hi(saslprep(password).unwrap().as_bytes(), &salt, iterations);
    let client_key = hash.hmac(&salted, b"Client Key");
    let stored_key = hash.digest(&client_key);
    let without_proof = format!("c={},r={}", B64.encode(cbind_input), nonce);
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let sig = hash.hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(k, s)| k ^ s).collect();
    format!("{without_proof},p={}", B64.encode(proof)).into_bytes()
}

/// Runs a SCRAM exchange with gs2 header `gs2`, the client binding `client_cb`, a user
/// `user`/`password`, against `record`; returns the final step.
fn scram_login(
    mut ex: Exchange,
    gs2: &str,
    client_cb: &[u8],
    password: &str,
    record: Option<&AccountRecord>,
) -> Step {
    let hash = ex.mechanism().hash().unwrap();
    let bare = "n=user,r=clientnonce123";
    let first = format!("{gs2}{bare}");
    assert_eq!(
        ex.start(Some(first.as_bytes())),
        Step::NeedCredentials {
            username: "user".into()
        }
    );
    let Step::Challenge(server_first) = ex.credentials(record) else {
        panic!("no challenge")
    };
    let mut cbind_input = gs2.as_bytes().to_vec();
    cbind_input.extend_from_slice(client_cb);
    ex.response(&client_final(
        hash,
        password,
        bare,
        &server_first,
        &cbind_input,
    ))
}

fn not_authorized() -> Step {
    Step::Failure(Failure::NotAuthorized)
}

fn success(v: &[u8]) -> bool {
    matches!(v, [b'v', b'=', ..])
}

#[test]
fn rfc5802_sha1_example() {
    let mut ex = Exchange::new(
        Mechanism::ScramSha1,
        ChannelBindings::default(),
        false,
        true,
    )
    .with_server_nonce("3rfcNHYJY1ZVvWVs7j");
    let step = ex.start(Some(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"));
    assert_eq!(
        step,
        Step::NeedCredentials {
            username: "user".into()
        }
    );
    let step = ex.credentials(Some(&record("pencil", 4096)));
    let server_first = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    assert_eq!(step, Step::Challenge(server_first.into()));
    let step = ex.response(
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    );
    let additional_data = b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=".to_vec();
    assert_eq!(
        step,
        Step::Success {
            username: "user".into(),
            additional_data
        }
    );
    assert!(ex.is_done());
}

#[test]
fn rfc7677_sha256_example_without_initial_response() {
    let mut ex = Exchange::new(
        Mechanism::ScramSha256,
        ChannelBindings::default(),
        false,
        true,
    )
    .with_server_nonce("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
    assert_eq!(ex.start(None), Step::Challenge(Vec::new()));
    let step = ex.response(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    assert_eq!(
        step,
        Step::NeedCredentials {
            username: "user".into()
        }
    );
    let step = ex.credentials(Some(&record("pencil", 4096)));
    let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                        s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    assert_eq!(step, Step::Challenge(server_first.into()));
    let step = ex.response(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
          p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    );
    let additional_data = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec();
    assert_eq!(
        step,
        Step::Success {
            username: "user".into(),
            additional_data
        }
    );
}

#[test]
fn rfc5802_example_with_wrong_password_fails() {
    let mut ex = Exchange::new(
        Mechanism::ScramSha1,
        ChannelBindings::default(),
        false,
        true,
    )
    .with_server_nonce("3rfcNHYJY1ZVvWVs7j");
    ex.start(Some(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"));
    ex.credentials(Some(&record("not pencil", 4096)));
    let step = ex.response(
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    );
    assert_eq!(step, not_authorized());
    assert_eq!(
        ex.response(b"anything"),
        Step::Failure(Failure::MalformedRequest)
    );
}

#[test]
fn scram_round_trip_and_wrong_password() {
    let rec = record("pencil", 64);
    for mech in [Mechanism::ScramSha1, Mechanism::ScramSha256] {
        let ex = || Exchange::new(mech, ChannelBindings::default(), false, false);
        let step = scram_login(ex(), "n,,", b"", "pencil", Some(&rec));
        assert!(matches!(&step, Step::Success { username, additional_data }
            if username == "user" && success(additional_data)));
        assert_eq!(
            scram_login(ex(), "n,,", b"", "pencil2", Some(&rec)),
            not_authorized()
        );
    }
}
