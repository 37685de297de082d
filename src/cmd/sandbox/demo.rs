//! `odoo-db demo`: the tour, on a local sandbox.
//!
//! Each step runs this same binary as a user would type it, with the sandbox's
//! config, and says in one line what it does and why, so the tour doubles as a
//! transcript of how to operate odoo-db.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use pgsandbox::Harness;

use crate::cli::DemoArgs;
use crate::cmd::sandbox;
use crate::error::{Context, Error, Result};

const CUSTOMER: &str = "demo-customer";

pub async fn run(args: &DemoArgs) -> Result<String> {
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => sandbox::default_dir()?,
    };
    say("start a local primary, a streaming standby and an integration server (the sandbox)");
    let exports = sandbox::up(&dir, args.port).await?;
    crate::print_result(&exports);
    let tour = Tour::new(&dir)?;

    tour.step(
        "create the catalog, pin each cluster's system identifier, create the heartbeat table",
        &["init"],
    )
    .await?;
    // Beside the sandbox, not in it: as root the servers' `postgres` user owns the sandbox
    // directory, and odoo-db refuses a secrets directory another user could swap.
    // provision creates it (0700).
    let secrets_dir = secrets_home(&dir).join(CUSTOMER);
    tour.step(
        "provision a customer: generated name, role + database on production and integration, passwords only in the secrets dir",
        &["provision", "--customer", CUSTOMER, "--secrets-dir", &secrets_dir.to_string_lossy()],
    )
    .await?;
    let names = tour
        .output(
            "run it again: already provisioned, so nothing changes and the same names are printed",
            &[
                "provision",
                "--customer",
                CUSTOMER,
                "--secrets-dir",
                &secrets_dir.to_string_lossy(),
            ],
        )
        .await?;
    // Production comes first, so the last DB_NAME is the integration twin.
    let integration = names
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("export DB_NAME="))
        .ok_or_else(|| Error::failed("the tour stopped: provision printed no DB_NAME"))?
        .to_string();
    tour.step(
        "recreate the integration database: plan, backup (pg_dump -Fc, read back whole), every session ended, drop, create again from template0 with owner, locale, ACL and settings restored",
        &["recreate", &integration, "--yes", "--backup-dir", &dir.join("backups").to_string_lossy()],
    )
    .await?;
    tour.step("list what the catalog manages, with live sizes", &["list"])
        .await?;
    tour.step(
        "check health: the primary writes a heartbeat, the standby must show it; byte lag by pg_wal_lsn_diff, WAL receiver, replay, slots (the systemd timer runs this every minute, --format nagios)",
        &["health", "--format", "text"],
    )
    .await?;
    paused_standby_turns_critical(&tour, &dir).await?;
    tour.expect(
        "audit every cluster: names that contain a customer's name (CRITICAL), catalog entries missing or with a wrong owner or PUBLIC CONNECT (WARNING), unmanaged databases (listed)",
        &["audit", "--format", "text"],
        &[0, 1, 2],
    )
    .await?;
    Ok(format!(
        "\n# tour done. Try it yourself:\n{exports}# odoo-db list\n# when finished: odoo-db sandbox down --dir {}\n",
        dir.display()
    ))
}

/// Pauses replay on the standby (as the sandbox's superuser: odoo-db itself never
/// needs that power), writes ~20 MB on the primary, shows health turning CRITICAL and
/// saying why, then resumes replay and shows it OK again.
async fn paused_standby_turns_critical(tour: &Tour, dir: &Path) -> Result<()> {
    let harness = Harness::open(dir)?;
    let standby = harness
        .standby
        .as_ref()
        .ok_or_else(|| Error::failed("the sandbox has no standby"))?;
    say("pause replay on the standby (a DBA's pg_wal_replay_pause(), or a standby that paused itself) and write ~20 MB on the primary");
    standby
        .superuser()
        .await?
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await?;
    harness
        .primary
        .superuser()
        .await?
        .batch_execute(
            "DROP TABLE IF EXISTS demo_wal; CREATE TABLE demo_wal AS SELECT generate_series(1, 500000) AS n; DROP TABLE demo_wal",
        )
        .await?;
    let verdict = tour
        .expect(
            "health now: CRITICAL, replay paused and the byte lag above --crit-lag (exit 2, what Nagios/Icinga and the systemd timer see)",
            &["health", "--format", "nagios", "--crit-lag", "16MB"],
            &[2],
        )
        .await;
    // Resume whatever the verdict, so the sandbox is left healthy.
    standby
        .superuser()
        .await?
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await?;
    verdict?;
    wait_caught_up(&harness, standby).await?;
    tour.step(
        "resume replay: the standby catches up and health is OK again",
        &["health", "--format", "nagios"],
    )
    .await
}

/// Waits (up to 60 s) until the standby has replayed what the primary has written.
async fn wait_caught_up(harness: &Harness, standby: &pgsandbox::PgServer) -> Result<()> {
    let target: String = harness
        .primary
        .superuser()
        .await?
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    let client = standby.superuser().await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let caught_up: bool = client
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&target],
            )
            .await?
            .get(0);
        if caught_up {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::failed(
                "the standby did not catch up within 60 s after resuming replay",
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn say(what: &str) {
    crate::print_result(&format!("\n# {what}\n"));
}

/// `<sandbox dir>-secrets`: where the tour's provision writes the passwords.
fn secrets_home(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sandbox".to_string());
    dir.with_file_name(format!("{name}-secrets"))
}

/// Runs odoo-db subcommands against the sandbox.
struct Tour {
    binary: PathBuf,
    config: PathBuf,
    pgpass: PathBuf,
}

impl Tour {
    fn new(dir: &Path) -> Result<Tour> {
        let binary = std::env::current_exe().context("finding the odoo-db binary")?;
        Ok(Tour {
            binary,
            config: dir.join("odoo-db.toml"),
            pgpass: dir.join("pgpass"),
        })
    }

    /// Runs one step, shows what it printed, and returns its stdout; the tour stops
    /// unless it exits with one of `expected` (health's exit codes are its verdict).
    async fn expect(&self, why: &str, args: &[&str], expected: &[i32]) -> Result<String> {
        say(why);
        crate::print_result(&format!("$ odoo-db {}\n", args.join(" ")));
        let out = tokio::process::Command::new(&self.binary)
            .args(args)
            .env("ODOO_DB_CONFIG", &self.config)
            .env("PGPASSFILE", &self.pgpass)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .await
            .with_context(|| format!("running odoo-db {}", args.join(" ")))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        crate::print_result(&text);
        if !out
            .status
            .code()
            .is_some_and(|code| expected.contains(&code))
        {
            return Err(Error::failed(format!(
                "the tour stopped: `odoo-db {}` exited with {} (expected {expected:?})",
                args.join(" "),
                out.status
            )));
        }
        Ok(text)
    }

    async fn output(&self, why: &str, args: &[&str]) -> Result<String> {
        self.expect(why, args, &[0]).await
    }

    async fn step(&self, why: &str, args: &[&str]) -> Result<()> {
        self.expect(why, args, &[0]).await.map(drop)
    }
}
