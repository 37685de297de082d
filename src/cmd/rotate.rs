//! `odoo-db rotate`: a new DB_PASSWORD for a customer's role in each selected
//! environment, written to `--secrets-dir`'s `<env>.env` before the role gets it.
//!
//! PostgreSQL gives a role one password, so from the `ALTER ROLE` on new connections
//! with the old one fail until the stack is redeployed with the new one. Hence two
//! halves that can run apart: `--prepare` writes the file (the DBA puts it into
//! `rancher.env.gpg`), `--apply` with the same directory sets it at deploy time;
//! without either, both at once. ADMIN_PASSWD (Odoo's master password) is no database
//! credential and stays as it is.
//!
//! The steps:
//! 1. check the customer's name and the secrets directory, then the catalog and each
//!    cluster's pinned identity; lock each name;
//! 2. plan each environment: write a new file, or apply the one a recorded rotation
//!    wrote (a rerun, or `--apply`); a file odoo-db did not write for this database is
//!    refused, never overwritten nor applied; on PostgreSQL 16+ ALTER ROLE needs ADMIN
//!    OPTION (refused with the GRANT a superuser must run);
//! 3. `--dry-run` stops here;
//! 4. per environment: the rotation recorded (the file's path, never a secret), the
//!    file written (0600, `O_EXCL`, fsynced), then `ALTER ROLE … PASSWORD` with a SCRAM
//!    verifier computed here (the plaintext never reaches the server or its logs), and
//!    with `--end-sessions` the role's sessions that logged in before it ended. A run
//!    killed anywhere is finished by running it again: the file's password is applied.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::json;
use tokio_postgres::types::Type;

use crate::catalog::Catalog;
use crate::cli::{EnvSelection, RotateArgs};
use crate::config::Config;
use crate::error::{Context, Error, Result};
use crate::names;
use crate::pg::lifecycle::{self, Target};
use crate::pg::membership::{plan_act_as_owner, OwnerAccess};
use crate::pg::quote::{quote_ident, quote_literal};
use crate::secrets::{self, Secret};
use crate::servers::Servers;

/// What one environment gets.
enum Action {
    /// A new password into a new file, then (unless `--prepare`) onto the role.
    Write { apply: bool },
    /// The password of the file a recorded rotation wrote, onto the role.
    Apply { rotation: i64, password: Secret },
    /// `--prepare` again with the file already written: nothing to do.
    Prepared,
}

struct Plan {
    target: Target,
    file: PathBuf,
    action: Action,
    access: OwnerAccess,
}

pub async fn run(config: &Config, args: &RotateArgs) -> Result<String> {
    // Step 1.
    names::validate_customer(&args.customer)?;
    secrets::check_dir_for_writing(&args.secrets_dir)?;
    let dir = std::path::absolute(&args.secrets_dir)
        .map_err(|e| Error::failed(format!("{}: {e}", args.secrets_dir.display())))?;
    let servers = Servers::open(config).await?;
    let catalog = Catalog::open(&servers).await?;
    let base = lifecycle::customer_base_name(&catalog, &args.customer).await?;
    let all = args.env == EnvSelection::All;
    let targets = lifecycle::targets(&servers, &catalog, &base, &args.env.kinds(), all).await?;
    let _locks = lifecycle::lock_each(&servers, &targets, "rotate").await?;

    // Step 2.
    let mut plans = Vec::new();
    for target in targets {
        plans.push(plan_environment(&catalog, target, &dir, args).await?);
    }

    // Step 3.
    if args.dry_run {
        return Ok(describe(&plans));
    }

    // Step 4.
    let created = secrets::ensure_dir(&dir)?;
    let mut text = String::new();
    for plan in &plans {
        match rotate_environment(&catalog, plan, args.end_sessions).await {
            Ok(line) => writeln!(text, "{line}").ok(),
            Err(error) => {
                secrets::remove_created(&created);
                return Err(error);
            }
        };
    }
    if plans
        .iter()
        .any(|p| matches!(p.action, Action::Write { apply: false }))
    {
        writeln!(
            text,
            "next: put DB_PASSWORD into the stack's rancher.env.gpg, then at deploy time run `odoo-db rotate --customer {} --secrets-dir {} --apply`",
            args.customer,
            dir.display()
        )
        .ok();
    }
    servers.close().await;
    Ok(text)
}

/// Step 2 for one environment; refused (nothing changed) when the file is not one
/// this rotation may write or apply.
async fn plan_environment(
    catalog: &Catalog,
    target: Target,
    dir: &Path,
    args: &RotateArgs,
) -> Result<Plan> {
    let name = &target.name;
    if lifecycle::role_can_login(&target.client, name)
        .await?
        .is_none()
    {
        return Err(Error::refused(format!(
            "role {name} does not exist on cluster {}: the catalog and the server disagree; nothing was changed",
            target.cluster
        )));
    }
    let access = plan_act_as_owner(&target.client, name, true).await?;
    let file = secrets::env_file(dir, target.env())?;
    let shown = file.display().to_string();
    let existing = secrets::read_db_password(dir, target.env())?;
    let recorded = catalog
        .rotation_of_file(target.env(), name, &file.to_string_lossy())
        .await?;
    let action = match (existing, recorded) {
        (Some(_), None) => {
            return Err(Error::refused(format!(
                "{shown} already exists and was not written by odoo-db rotate for {name}: odoo-db never overwrites a secrets file nor applies one it did not write; use a fresh --secrets-dir for each rotation; nothing was changed"
            )))
        }
        (None, _) if args.apply => {
            return Err(Error::refused(format!(
                "{shown} does not exist: run `odoo-db rotate --prepare` with this --secrets-dir first (or without --apply to do both at once); nothing was changed"
            )))
        }
        (None, _) => Action::Write {
            apply: !args.prepare,
        },
        (Some(_), Some(_)) if args.prepare => Action::Prepared,
        (Some(password), Some((rotation, _))) => Action::Apply { rotation, password },
    };
    Ok(Plan {
        target,
        file,
        action,
        access,
    })
}

fn describe(plans: &[Plan]) -> String {
    let mut text = String::new();
    for plan in plans {
        let what = match plan.action {
            Action::Write { apply: true } => {
                "write a new DB_PASSWORD to the file, then set it on the role"
            }
            Action::Write { apply: false } => "write a new DB_PASSWORD to the file (prepare only)",
            Action::Apply { .. } => "set the file's DB_PASSWORD on the role",
            Action::Prepared => "the file is prepared already: nothing to do",
        };
        writeln!(
            text,
            "dry run: {}: {} on cluster {}: {what} ({})",
            plan.target.env(),
            plan.target.name,
            plan.target.cluster,
            plan.file.display()
        )
        .ok();
    }
    text
}

/// Step 4 for one environment.
async fn rotate_environment(catalog: &Catalog, plan: &Plan, end_sessions: bool) -> Result<String> {
    let target = &plan.target;
    let name = &target.name;
    let shown = plan.file.display();
    let (rotation, password, apply) = match &plan.action {
        Action::Prepared => {
            return Ok(format!(
                "{}: {name}: {shown} is prepared already; nothing changed",
                target.env()
            ))
        }
        Action::Apply { rotation, password } => (*rotation, password.clone(), true),
        Action::Write { apply } => {
            // Recorded first: a run killed after the file is written finds its record
            // and applies the file instead of refusing it.
            let rotation = catalog
                .record_rotation(
                    target.env(),
                    name,
                    &target.cluster,
                    &plan.file.to_string_lossy(),
                )
                .await?;
            let password = secrets::generate_password();
            secrets::write_new_db_password(
                plan.file.parent().expect("a file in the directory"),
                target.env(),
                &password,
            )?;
            catalog
                .record_event(
                    "rotate",
                    Some(name),
                    "secrets",
                    "written",
                    json!({ "cluster": target.cluster, "file": plan.file }),
                )
                .await?;
            (rotation, password, *apply)
        }
    };
    if !apply {
        return Ok(format!(
            "{}: {name} on cluster {}: new DB_PASSWORD written to {shown} (prepared; the role keeps its password until --apply)",
            target.env(),
            target.cluster
        ));
    }
    fail::fail_point!("rotate-after-secrets");
    let ended = set_password(plan, &password, end_sessions).await?;
    catalog
        .mark_rotation_applied(rotation, ended.map(|n| n as i32))
        .await?;
    catalog
        .record_event(
            "rotate",
            Some(name),
            "password",
            "applied",
            json!({ "cluster": target.cluster, "file": plan.file, "sessions_ended": ended }),
        )
        .await?;
    Ok(format!(
        "{}: {name} on cluster {}: DB_PASSWORD changed to the one in {shown}{}",
        target.env(),
        target.cluster,
        match ended {
            Some(n) => format!("; {n} older session(s) ended"),
            None => String::new(),
        }
    ))
}

/// `ALTER ROLE … PASSWORD '<SCRAM verifier>'`, then with `end_sessions` the role's
/// sessions that started before it (odoo-db's own sessions are another role's).
async fn set_password(plan: &Plan, password: &Secret, end_sessions: bool) -> Result<Option<usize>> {
    let target = &plan.target;
    let name = &target.name;
    let context = || {
        format!(
            "setting the new password of {name} on cluster {}",
            target.cluster
        )
    };
    plan.access
        .apply(&target.client)
        .await
        .with_context(context)?;
    let verifier = secrets::scram_verifier(password);
    target
        .client
        .batch_execute(&format!(
            "ALTER ROLE {} PASSWORD {}",
            quote_ident(name),
            quote_literal(&verifier)
        ))
        .await
        .with_context(context)?;
    if !end_sessions {
        return Ok(None);
    }
    let rows = target
        .client
        .query_typed(
            include_str!("../../sql/lifecycle/sessions_before_now.sql"),
            &[(&name.as_str(), Type::TEXT)],
        )
        .await
        .with_context(context)?;
    let pids: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    lifecycle::terminate(&target.client, &pids)
        .await
        .with_context(context)?;
    Ok(Some(pids.len()))
}
