//! odoo-db: the database administration agent of the Odoo hosting platform.
//!
//! Three jobs (provision, recreate, health) built on shared plumbing (config,
//! libpq-compatible connections, the catalog, names, secrets, output formats). Each job
//! is a module readable top to bottom as the steps of the job; `main.rs` only parses
//! the command line and maps [`error::Class`] to exit codes.

pub mod adopt;
pub mod audit;
pub mod backup;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod conn;
pub mod dbprops;
pub mod demo;
pub mod error;
pub mod files;
pub mod harness;
pub mod health;
pub mod init;
pub mod list;
pub mod logging;
pub mod manpage;
pub mod names;
pub mod oplock;
pub mod provision;
pub mod recreate;
pub mod restore;
pub mod sandbox;
pub mod secrets;
pub mod servers;
pub mod ssh;
pub mod steprole;
pub mod units;

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::error::Result;

/// Run one parsed command; `Ok(code)` is the process exit code (0 for most commands,
/// the Nagios status for health and audit).
pub async fn run(cli: Cli) -> Result<u8> {
    let config_flag = cli.config.clone();
    let load_config = || config::Config::load(&config::Config::locate(config_flag.as_deref()));
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "odoo-db",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        Command::Man => {
            let mut page = Vec::new();
            manpage::render(&mut page)?;
            std::io::stdout().write_all(&page)?;
            Ok(0)
        }
        Command::Init => print(init::run(&load_config()?).await?),
        Command::Provision(args) => print(provision::run(&load_config()?, &args).await?),
        Command::Adopt(args) => print(adopt::run(&load_config()?, &args).await?),
        Command::List(args) => print(list::run(&load_config()?, &args).await?),
        Command::Recreate(args) => print(recreate::run(&load_config()?, &args).await?),
        Command::Restore(args) => print(restore::run(&load_config()?, &args).await?),
        Command::Sandbox(args) => {
            let dir = match &args.dir {
                Some(dir) => dir.clone(),
                None => sandbox::default_dir()?,
            };
            print(match args.action {
                cli::SandboxAction::Up => sandbox::up(&dir, args.port).await?,
                cli::SandboxAction::Down => sandbox::down(&dir).await?,
                cli::SandboxAction::Status => sandbox::status(&dir).await?,
            })
        }
        Command::Demo(args) => print(demo::run(&args).await?),
        // health and audit print their own report: the exit code is its Nagios state.
        Command::Health(args) => health::run(&load_config()?, &args).await,
        Command::Audit(args) => audit::run(&load_config()?, &args).await,
    }
}

/// Results go to stdout (logs go to stderr), so a pipe gets only the result.
fn print(text: String) -> Result<u8> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(0)
}

/// Usage errors: clap's own message, exit 2 (refused), or 3 (UNKNOWN) for health and
/// audit, whose callers are monitoring systems that read 2 as CRITICAL.
pub fn exit_on_usage_error(error: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    let _ = error.print();
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => std::process::ExitCode::SUCCESS,
        _ => {
            let nagios_style = std::env::args()
                .skip(1)
                .any(|arg| arg == "health" || arg == "audit");
            if nagios_style {
                println!("ODOO-DB UNKNOWN - usage: {}", error.kind());
                return std::process::ExitCode::from(3);
            }
            std::process::ExitCode::from(2)
        }
    }
}
