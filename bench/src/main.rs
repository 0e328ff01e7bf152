//! `tern-bench`: the storage figures Tern needs, measured on the machine it runs on.
//!
//! - `append`: archived messages per second through the SQLite `ArchiveStore` with group
//!   commit, for several numbers of concurrent writers and both `synchronous` settings.
//! - `query`: MAM query latency (p50/p95/max) on one account's archive of 100,000 messages,
//!   through the `ArchiveStore` API.
//! - `e2e`: the same queries sent by a client to a real in-process server on SQLite.
//! - `muc-local`: multi-user chat through a real in-process server: the 1,000th occupant's
//!   join, and room messages delivered per second with 10 rooms of 100 occupants.
//! - load generator (`register`, `idle`, `login`, `chat`, `presence`, `muc`): real clients over
//!   the network against any server; see `load`.
//! - `probe`: where an append's time goes (fsync, sqlx statement round trip, row, commit).
//!
//! Every scenario is bounded in items and in time (`--max-secs`) and writes its database to a
//! fresh temporary directory under `--dir` (default: the system temporary directory). Build and
//! run with `--release`; see bench/README.md for the commands and measured figures.

mod append;
mod common;
#[cfg(feature = "e2e")]
mod e2e;
mod load;
#[cfg(feature = "e2e")]
mod muc;
mod probe;
mod query;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tern_storage::Synchronous;

#[derive(Parser)]
#[command(
    name = "tern-bench",
    about = "Tern benchmarks: storage and MAM figures, and an XMPP load generator"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args)]
struct Common {
    /// Directory for the temporary databases (default: the system temporary directory).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// Also write every result, with the machine facts, to this JSON file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Time limit of one scenario, in seconds; a scenario stops early when it is reached.
    #[arg(long, global = true, default_value_t = 120)]
    max_secs: u64,
    /// Size of each archived message, in bytes of XML.
    #[arg(long, global = true, default_value_t = 400)]
    size: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum Sync {
    Full,
    Normal,
}

impl From<Sync> for Synchronous {
    fn from(s: Sync) -> Self {
        match s {
            Sync::Full => Synchronous::Full,
            Sync::Normal => Synchronous::Normal,
        }
    }
}

#[derive(Args, Clone)]
struct AppendArgs {
    /// Numbers of concurrent writers, one scenario each.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    writers: Vec<usize>,
    /// `synchronous` settings, one series each.
    #[arg(long, value_delimiter = ',', default_value = "full,normal")]
    sync: Vec<Sync>,
    /// Appends per scenario.
    #[arg(long, default_value_t = 50_000)]
    items: usize,
    /// Accounts the appends are spread over (item n goes to account n mod users).
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Most writes in one commit (`SqliteOptions::max_batch`).
    #[arg(long, default_value_t = 256)]
    max_batch: usize,
}

#[derive(Args, Clone)]
struct QueryArgs {
    /// Messages in the queried archive.
    #[arg(long, default_value_t = 100_000)]
    items: usize,
    /// Peers taking turns in the archive; the `with` query's peer holds 1/peers of it.
    #[arg(long, default_value_t = 100)]
    peers: usize,
    /// Concurrent appends while seeding.
    #[arg(long, default_value_t = 256)]
    seeders: usize,
    /// Timed runs of each query (after 5 untimed warm-up runs).
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// `synchronous` setting of the database (matters only for the seeding speed).
    #[arg(long, value_enum, default_value = "full")]
    sync: Sync,
}

#[derive(Args, Clone)]
struct MucArgs {
    /// Occupants of the big room (scenario a).
    #[arg(long, default_value_t = 1000)]
    big: usize,
    /// Messages sent in the big room before the joins (history for joiners).
    #[arg(long, default_value_t = 20)]
    history: usize,
    /// Rooms in scenario b.
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Occupants per room in scenario b.
    #[arg(long, default_value_t = 100)]
    per_room: usize,
    /// Senders per room in scenario b.
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Messages per sender in scenario b.
    #[arg(long, default_value_t = 50)]
    messages: usize,
}

#[derive(Subcommand)]
enum Cmd {
    /// Figure 1: archived messages per second with group commit.
    Append(AppendArgs),
    /// Figure 2: MAM query latency through the ArchiveStore API.
    Query(QueryArgs),
    /// Figure 2 end to end: MAM queries by a client to a real server on SQLite.
    #[cfg(feature = "e2e")]
    E2e(QueryArgs),
    /// Multi-user chat in process: a 1,000-occupant join, and deliveries/s in 10 rooms of 100.
    #[cfg(feature = "e2e")]
    MucLocal(MucArgs),
    /// Where an append's time goes: fsync, statement round trip, row insert, commit.
    Probe,
    /// Every storage scenario with its defaults.
    All,
    /// Load generator: create accounts PREFIX0.. by in-band registration (XEP-0077).
    Register(load::register::RegisterArgs),
    /// Load: N idle authenticated TLS sessions; server memory per session.
    Idle(load::idle::IdleArgs),
    /// Load: logins per second at rising concurrency.
    Login(load::login::LoginArgs),
    /// Load: pairs exchanging messages; saturation rate, latency at paced rates, CPU/message.
    Chat(load::chat::ChatArgs),
    /// Load: users with 100-contact rosters all changing presence; time until quiet.
    Presence(load::presence::PresenceArgs),
    /// Load: rooms x occupants over the network; room deliveries per second and per CPU-second.
    Muc(load::muc::MucLoadArgs),
}

fn fsync_line(dir: &std::path::Path) {
    match common::fsync_probe(dir, 200) {
        Ok(s) => println!(
            "fsync probe in {} ({}): 4 KiB append + fdatasync p50 {:.3} ms, p95 {:.3} ms ({} rounds)",
            dir.display(),
            common::fs_type(dir),
            common::ms(s.p50),
            common::ms(s.p95),
            s.n
        ),
        Err(e) => println!("fsync probe in {} failed: {e}", dir.display()),
    }
}

async fn run_append(
    c: &Common,
    dir: &std::path::Path,
    a: &AppendArgs,
) -> anyhow::Result<Vec<serde_json::Value>> {
    println!(
        "\n== append: {} items of {} B over {} accounts per run, max_batch {}, db in {} ({}), load {}",
        a.items,
        c.size,
        a.users,
        a.max_batch,
        dir.display(),
        common::fs_type(dir),
        common::loadavg()
    );
    fsync_line(dir);
    append::header();
    let mut out = Vec::new();
    for &sync in &a.sync {
        for &writers in &a.writers {
            let p = append::Params {
                dir,
                sync: sync.into(),
                writers,
                items: a.items,
                size: c.size,
                users: a.users,
                max_batch: a.max_batch,
                max_time: Duration::from_secs(c.max_secs),
            };
            let o = append::run(&p).await?;
            append::row(&p, &o);
            out.push(append::json(&p, &o));
        }
    }
    Ok(out)
}

async fn run_query(
    c: &Common,
    dir: &std::path::Path,
    q: &QueryArgs,
) -> anyhow::Result<serde_json::Value> {
    println!(
        "\n== query: archive of {} items through ArchiveStore, db in {} ({}), load {}",
        q.items,
        dir.display(),
        common::fs_type(dir),
        common::loadavg()
    );
    query::run(&query::Params {
        dir,
        sync: q.sync.into(),
        items: q.items,
        peers: q.peers,
        size: c.size,
        seeders: q.seeders,
        runs: q.runs,
        max_time: Duration::from_secs(c.max_secs),
    })
    .await
}

#[cfg(feature = "e2e")]
async fn run_e2e(
    c: &Common,
    dir: &std::path::Path,
    q: &QueryArgs,
) -> anyhow::Result<serde_json::Value> {
    println!(
        "\n== e2e: archive of {} items, queries by a client through a real server, db in {} ({}), load {}",
        q.items,
        dir.display(),
        common::fs_type(dir),
        common::loadavg()
    );
    e2e::run(&e2e::Params {
        dir,
        sync: match q.sync {
            Sync::Full => "full",
            Sync::Normal => "normal",
        },
        items: q.items,
        peers: q.peers,
        size: c.size,
        seeders: q.seeders,
        runs: q.runs,
        max_time: Duration::from_secs(c.max_secs),
    })
    .await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let (Some(spec), Cmd::Idle(a)) = (load::idle::worker_spec(), &cli.cmd) {
        return load::idle::worker(a, &spec).await;
    }
    let c = &cli.common;
    load::start_load();
    let dir = c.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&dir)?;
    if cfg!(debug_assertions) {
        println!("warning: debug build; the figures mean something only with --release");
    }
    let facts = common::machine_facts();
    common::print_facts(&facts);

    let mut results = Vec::new();
    let cmds = match cli.cmd {
        Cmd::All => {
            let names: &[&str] = if cfg!(feature = "e2e") {
                &["probe", "append", "query", "e2e"]
            } else {
                &["probe", "append", "query"]
            };
            // Parsing the bare subcommand gives its defaults.
            names
                .iter()
                .map(|n| Cli::parse_from(["tern-bench", n]).cmd)
                .collect()
        }
        cmd => vec![cmd],
    };
    for cmd in &cmds {
        match cmd {
            Cmd::Append(a) => results.extend(run_append(c, &dir, a).await?),
            Cmd::Query(q) => results.push(run_query(c, &dir, q).await?),
            Cmd::Probe => {
                println!(
                    "\n== probe: costs under one append, db in {} ({}), load {}",
                    dir.display(),
                    common::fs_type(&dir),
                    common::loadavg()
                );
                results.push(probe::run(&dir, c.size).await?);
            }
            #[cfg(feature = "e2e")]
            Cmd::E2e(q) => results.push(run_e2e(c, &dir, q).await?),
            #[cfg(feature = "e2e")]
            Cmd::MucLocal(m) => {
                println!(
                    "\n== muc-local: {} occupants in one room; {} rooms x {} occupants, db in {} ({}), load {}",
                    m.big,
                    m.rooms,
                    m.per_room,
                    dir.display(),
                    common::fs_type(&dir),
                    common::loadavg()
                );
                results.push(
                    muc::run(&muc::Params {
                        dir: &dir,
                        big: m.big,
                        history: m.history,
                        rooms: m.rooms,
                        per_room: m.per_room,
                        senders: m.senders,
                        messages: m.messages,
                        max_time: Duration::from_secs(c.max_secs),
                    })
                    .await?,
                )
            }
            Cmd::All => unreachable!("expanded above"),
            Cmd::Register(a) => results.push(load::register::run(a).await?),
            Cmd::Idle(a) => results.push(load::idle::run(a).await?),
            Cmd::Login(a) => results.push(load::login::run(a).await?),
            Cmd::Chat(a) => results.push(load::chat::run(a).await?),
            Cmd::Presence(a) => results.push(load::presence::run(a).await?),
            Cmd::Muc(a) => results.push(load::muc::run(a, c.max_secs).await?),
        }
    }
    if let Some(path) = &c.json {
        let doc = serde_json::json!({ "machine": facts, "results": results });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")?;
        println!("\nresults written to {}", path.display());
    }
    Ok(())
}
