//! `tern`: the XMPP server binary and its administration commands.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tracing::info;

use tern_server::config::Source;
use tern_server::{tls, users, Config};

/// Tern, an XMPP server.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file. Without one (and without ./tern.toml) Tern serves `localhost` with
    /// development defaults.
    #[arg(short, long, env = "TERN_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Validate the configuration and exit.
    CheckConfig,
    /// Certificate tools.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account; the password is read from stdin unless --password is given.
    Add {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete an account and everything stored for it.
    Remove { jid: String },
    /// Set a new password; read from stdin unless --password is given.
    Passwd {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// List accounts, of one host or of all.
    List { host: Option<String> },
}

#[derive(Subcommand)]
enum CertCommand {
    /// Generate an ECDSA P-256 certificate: self-signed, or with --ca signed by a new test CA.
    Generate {
        /// Domain the certificate is for (subdomains are included).
        #[arg(long, default_value = "localhost")]
        domain: String,
        /// Output directory (default: <data_dir>/certs).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also create a test CA (ca.crt) and sign the certificate with it.
        #[arg(long)]
        ca: bool,
    },
}

fn load_config(path: Option<PathBuf>) -> Result<(Config, Source)> {
    let path = path.or_else(|| Some(PathBuf::from("tern.toml")).filter(|p| p.exists()));
    match path {
        Some(p) => Ok((Config::load(&p)?, Source::File(p))),
        None => Ok((Config::development(), Source::Defaults)),
    }
}

fn read_password() -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password: ");
        std::io::stderr().flush().ok();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let pw = line.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(!pw.is_empty(), "empty password");
    Ok(pw)
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// mimalloc instead of the system allocator: per-connection state is many small, long-lived
/// allocations beside short-lived ones per stanza, where glibc's malloc both fragments
/// (idle memory per session) and costs more per call (docs/benchmarks.md, change 5).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: in mimalloc.h (v2 and v3) the option just before
/// `mi_option_use_numa_nodes`, which libmimalloc-sys exports; it exports no name for this one.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t =
    libmimalloc_sys::mi_option_use_numa_nodes - 1;

/// Returns freed memory to the OS at once instead of after mimalloc's default 10 ms: with the
/// delay, a 50 MiB HTTP upload (streamed to disk) raised the peak RSS by 21–24 MiB instead of
/// 2.5 (conformance/python/test_file_transfer.py), the churn of its chunks kept alive.
fn purge_freed_memory_at_once() {
    // SAFETY: the one reviewed `unsafe` of the binary. A foreign call without pointers that sets
    // a documented mimalloc option, which mimalloc allows at any time and from any thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

#[tokio::main]
async fn main() -> Result<()> {
    purge_freed_memory_at_once();
    let cli = Cli::parse();
    let (config, source) = load_config(cli.config)?;
    init_logging(&config.server.log_level);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config, source).await,
        Command::CheckConfig => {
            println!(
                "configuration OK ({source:?}); hosts: {:?}",
                config
                    .host_list()
                    .iter()
                    .map(|h| &h.domain)
                    .collect::<Vec<_>>()
            );
            Ok(())
        }
        Command::Cert {
            command: CertCommand::Generate { domain, out, ca },
        } => {
            let dir = out.unwrap_or_else(|| config.server.data_dir.join("certs"));
            if ca {
                tls::write_ca_signed(&domain, &dir)?;
                println!(
                    "wrote {0}/ca.crt, {0}/{1}.crt and {0}/{1}.key",
                    dir.display(),
                    domain
                );
            } else {
                tls::write_self_signed(
                    &domain,
                    &dir.join(format!("{domain}.crt")),
                    &dir.join(format!("{domain}.key")),
                )?;
                println!("wrote {0}/{1}.crt and {0}/{1}.key", dir.display(), domain);
            }
            Ok(())
        }
        Command::User { command } => {
            let storage = tern_server::open_storage(&config).await?;
            match command {
                UserCommand::Add { jid, password } => {
                    let pw = match password {
                        Some(p) => p,
                        None => read_password()?,
                    };
                    users::add(&storage, &config, &jid, &pw).await?;
                    println!("created {jid}");
                }
                UserCommand::Remove { jid } => {
                    users::remove(&storage, &config, &jid).await?;
                    println!("removed {jid}");
                }
                UserCommand::Passwd { jid, password } => {
                    let pw = match password {
                        Some(p) => p,
                        None => read_password()?,
                    };
                    users::passwd(&storage, &config, &jid, &pw).await?;
                    println!("password changed for {jid}");
                }
                UserCommand::List { host } => {
                    for u in users::list(&storage, &config, host.as_deref()).await? {
                        println!("{u}");
                    }
                }
            }
            Ok(())
        }
    }
}

async fn serve(config: Config, source: Source) -> Result<()> {
    match &source {
        Source::File(p) => info!(config = %p.display(), "starting"),
        Source::Defaults => {
            info!("no configuration file: serving `localhost` with development defaults")
        }
    }
    let running = tern_server::start(&config).await?;
    wait_for_signal().await;
    info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
