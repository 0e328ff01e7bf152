//! One `tern serve` process per test, configured through the CLI and a TOML file exactly as an
//! operator would (docs/configuration.md).

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `tern` binary under test: `TERN_BIN`, else `<workspace>/target/debug/tern`.
///
/// Panics (fails the test, never skips) when it does not exist.
pub fn tern_bin() -> PathBuf {
    let path = match std::env::var_os("TERN_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/tern"),
    };
    if !path.is_file() {
        panic!(
            "the tern binary was not found at {}: build it first with `cargo build --bin tern` \
             (or point TERN_BIN at a tern binary); the conformance suite does not skip",
            path.display()
        );
    }
    path
}

/// Runs `tern <args>` to completion; panics with its output if it fails.
pub fn run_tern(cwd: &Path, args: &[&str]) -> Output {
    let out = Command::new(tern_bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("TERN_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run tern {args:?}: {e}"));
    if !out.status.success() {
        panic!(
            "`tern {}` failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Generates a test CA and a `localhost` certificate signed by it into `dir` with
/// `tern cert generate --domain localhost --out DIR --ca`; returns `dir`.
pub fn generate_certs(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let d = dir.to_str().expect("utf-8 temp path");
    run_tern(
        dir,
        &[
            "cert",
            "generate",
            "--domain",
            "localhost",
            "--out",
            d,
            "--ca",
        ],
    );
    for f in ["ca.crt", "localhost.crt", "localhost.key"] {
        assert!(
            dir.join(f).is_file(),
            "tern cert generate did not write {f} into {d}"
        );
    }
    dir.to_path_buf()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A running `tern serve`; killed when dropped.
pub struct TernServer {
    /// Temporary directory holding certs/, data/, tern.toml and tern.log; removed on drop.
    pub dir: tempfile::TempDir,
    /// The directory with ca.crt, localhost.crt and localhost.key.
    pub certs: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    /// STARTTLS listener.
    pub c2s: SocketAddr,
    /// Direct-TLS (XEP-0368) listener.
    pub c2s_tls: SocketAddr,
    child: Option<Child>,
}

impl TernServer {
    /// Starts a server for `localhost` with these `(localpart, password)` accounts, and a test CA
    /// of its own.
    pub fn start(users: &[(&str, &str)]) -> TernServer {
        Self::start_with_certs(users, None)
    }

    /// As [`start`](Self::start), reusing the certificates in `certs` when given.
    pub fn start_with_certs(users: &[(&str, &str)], certs: Option<&Path>) -> TernServer {
        let bin = tern_bin();
        let dir = tempfile::Builder::new()
            .prefix("tern-conformance-")
            .tempdir()
            .expect("temp dir");
        let certs = match certs {
            Some(c) => c.to_path_buf(),
            None => generate_certs(&dir.path().join("certs")),
        };
        let data = dir.path().join("data");
        let config = dir.path().join("tern.toml");
        let log = dir.path().join("tern.log");
        let (p1, p2) = (free_port(), free_port());
        let toml = format!(
            r#"[server]
data_dir = {data:?}
registration = "open"
log_level = "debug,sqlx=warn,rustls=info"

[[host]]
domain = "localhost"
certificate = {cert:?}
key = {key:?}

[c2s]
listen = ["127.0.0.1:{p1}"]
listen_tls = ["127.0.0.1:{p2}"]

[proxy65]
listen = "127.0.0.1:0"
[http]
listen = ["127.0.0.1:0"]
listen_tls = ["127.0.0.1:0"]

[storage]
backend = "sqlite"
"#,
            data = data.display().to_string(),
            cert = certs.join("localhost.crt").display().to_string(),
            key = certs.join("localhost.key").display().to_string(),
        );
        fs::write(&config, toml).unwrap();
        let cfg = config.to_str().unwrap();
        for (user, password) in users {
            let jid = format!("{user}@localhost");
            run_tern(
                dir.path(),
                &["--config", cfg, "user", "add", &jid, "--password", password],
            );
        }

        let log_file = fs::File::create(&log).unwrap();
        let child = Command::new(&bin)
            .args(["--config", cfg, "serve"])
            .current_dir(dir.path())
            .env_remove("TERN_CONFIG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut server = TernServer {
            dir,
            certs,
            config,
            log,
            c2s: SocketAddr::from(([127, 0, 0, 1], p1)),
            c2s_tls: SocketAddr::from(([127, 0, 0, 1], p2)),
            child: Some(child),
        };
        server.wait_listening(Duration::from_secs(15));
        server
    }

    fn wait_listening(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        for addr in [self.c2s, self.c2s_tls] {
            loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    break;
                }
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!(
                        "tern exited ({status}) before listening on {addr}; log:\n{}",
                        self.log_text()
                    );
                }
                if Instant::now() > deadline {
                    panic!(
                        "tern did not listen on {addr} within {limit:?}; log:\n{}",
                        self.log_text()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The server's log (stdout and stderr) so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_else(|e| format!("<cannot read log: {e}>"))
    }

    /// The test CA certificate the server's certificate is signed with.
    pub fn ca_file(&self) -> PathBuf {
        self.certs.join("ca.crt")
    }
}

impl Drop for TernServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- tern log ({}) ----\n{}\n---- end of tern log ----",
                self.log.display(),
                self.log_text()
            );
        }
    }
}
