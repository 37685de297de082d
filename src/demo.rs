//! `odoo-db demo`: the tour, on a local sandbox.
//!
//! Each step runs this same binary as a user would type it, with the sandbox's
//! config, and says in one line what it does and why, so the tour doubles as a
//! transcript of how to operate odoo-db.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::cli::DemoArgs;
use crate::error::{Context, Error, Result};
use crate::sandbox;

const CUSTOMER: &str = "demo-customer";

pub async fn run(args: &DemoArgs) -> Result<String> {
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => sandbox::default_dir()?,
    };
    say("start a local primary, a streaming standby and an integration server (the sandbox)");
    let exports = sandbox::up(&dir, args.port).await?;
    print!("{exports}");
    let tour = Tour::new(&dir)?;

    tour.step(
        "create the catalog, pin each cluster's system identifier, create the heartbeat table",
        &["init"],
    )
    .await?;
    let secrets_dir = dir.join("secrets").join(CUSTOMER);
    std::fs::create_dir_all(&secrets_dir)?;
    set_private(&secrets_dir)?;
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
    Ok(format!(
        "\n# tour done. Try it yourself:\n{exports}# odoo-db list\n# when finished: odoo-db sandbox down --dir {}\n",
        dir.display()
    ))
}

fn say(what: &str) {
    println!("\n# {what}");
}

fn set_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
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

    /// Like [`Tour::step`], and also returns what the step printed on stdout.
    async fn output(&self, why: &str, args: &[&str]) -> Result<String> {
        say(why);
        println!("$ odoo-db {}", args.join(" "));
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
        print!("{text}");
        if !out.status.success() {
            return Err(Error::failed(format!(
                "the tour stopped: `odoo-db {}` exited with {}",
                args.join(" "),
                out.status
            )));
        }
        Ok(text)
    }

    async fn step(&self, why: &str, args: &[&str]) -> Result<()> {
        say(why);
        println!("$ odoo-db {}", args.join(" "));
        let status = tokio::process::Command::new(&self.binary)
            .args(args)
            .env("ODOO_DB_CONFIG", &self.config)
            .env("PGPASSFILE", &self.pgpass)
            .stdin(Stdio::null())
            .status()
            .await
            .with_context(|| format!("running odoo-db {}", args.join(" ")))?;
        if !status.success() {
            return Err(Error::failed(format!(
                "the tour stopped: `odoo-db {}` exited with {status}",
                args.join(" ")
            )));
        }
        Ok(())
    }
}
