//! Account creation through XEP-0077 in-band registration, the one way all three servers
//! accept accounts at thousands per minute (their CLIs start a process per account). An
//! account that exists already counts as created, so the step can be rerun.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;

use super::client::{Conn, Target};
use super::{user, xml, LoadArgs};

/// `tern-bench register`.
#[derive(Args, Clone, Debug)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Accounts to create: PREFIX0 .. PREFIX(N-1).
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Account name prefix.
    #[arg(long, default_value = "u")]
    pub prefix: String,
    /// First account number.
    #[arg(long, default_value_t = 0)]
    pub first: usize,
}

/// Registers one account on its own stream; Ok(false) if it existed already.
async fn register_one(t: &Target, name: &str, password: &str) -> Result<bool> {
    let mut c = Conn::anonymous(t).await?;
    c.send(
        format!(
            "<iq type='set' id='reg'><query xmlns='jabber:iq:register'>\
             <username>{}</username><password>{}</password></query></iq>",
            xml::escape(name),
            xml::escape(password)
        )
        .as_bytes(),
    )
    .await?;
    let r = c.until_id("reg").await?;
    let created = match xml::attr(&r, "type") {
        Some(b"result") => true,
        _ if xml::contains(&r, b"<conflict") => false,
        _ => bail!("registering {name}: {}", String::from_utf8_lossy(&r)),
    };
    c.close(Duration::from_secs(2)).await;
    Ok(created)
}

/// Creates the accounts; prints one JSON line.
pub async fn run(a: &RegisterArgs) -> Result<serde_json::Value> {
    let t = a.load.target()?;
    let t0 = Instant::now();
    let pw: Arc<str> = a.load.password.clone().into();
    let prefix = a.prefix.clone();
    let first = a.first;
    let results = super::bounded(a.users, a.load.connect_concurrency, |i| {
        let t = t.clone();
        let pw = pw.clone();
        let name = user(&prefix, first + i);
        async move {
            let mut last = None;
            for _ in 0..3 {
                match register_one(&t, &name, &pw).await {
                    Ok(c) => return Ok(c),
                    Err(e) => last = Some(e),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(last.expect("three failures"))
        }
    })
    .await;
    let mut created = 0;
    let mut existed = 0;
    for r in results {
        match r {
            Ok(true) => created += 1,
            Ok(false) => existed += 1,
            Err(e) => bail!("{e:#}"),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "registered {created} accounts ({existed} existed) {}{}..{} in {secs:.1} s",
        a.prefix,
        a.first,
        a.first + a.users
    );
    let mut m = a.load.head("register");
    m.insert("created".into(), created.into());
    m.insert("existed".into(), existed.into());
    m.insert("secs".into(), secs.into());
    Ok(super::emit(m))
}
