//! odoo-db: the database administration agent of the Odoo hosting platform.
//!
//! The commands ([`cmd`]) and the health check (`health`) built on shared pieces
//! (the output formats, PostgreSQL knowledge in `pg`, config, libpq-compatible
//! connections, the catalog, names, secrets). Each command is a module readable top to
//! bottom as the steps of the job; `main.rs` only parses the command line and maps
//! [`error::Class`] to exit codes. ARCHITECTURE.md says which way dependencies point.

// The unit-test build also receives the dev-dependencies, which only tests/it uses; the
// library's own build is where `unused_crate_dependencies` is checked.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub(crate) mod catalog;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod error;
pub(crate) mod health;
pub mod logging;
pub(crate) mod manpage;
pub(crate) mod names;
pub(crate) mod odoo;
pub(crate) mod output;
pub(crate) mod pg;
pub(crate) mod secrets;
pub mod servers;
mod sqltemplate;
pub mod units;

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::cmd::recreate::{self, refresh, restore};
use crate::cmd::sandbox::{self, demo};
use crate::cmd::suspend::{self, resume};
use crate::cmd::{adopt, audit, init, list, provision, retire, rotate, serve};
use crate::error::Result;

/// Run one parsed command; `Ok(code)` is the process exit code (0 for most commands,
/// the Nagios status for health and audit).
pub async fn run(cli: Cli) -> Result<u8> {
    let config_flag = cli.config.clone();
    let load_config = || config::Config::load(&config::Config::locate(config_flag.as_deref()));
    match cli.command {
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics when its writer fails (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "odoo-db", &mut script);
            write_result(&script);
            Ok(0)
        }
        Command::Man => {
            let mut page = Vec::new();
            manpage::render(&mut page)?;
            write_result(&page);
            Ok(0)
        }
        Command::Init => print(init::run(&load_config()?).await?),
        Command::Provision(args) => print(provision::run(&load_config()?, &args).await?),
        Command::Adopt(args) => print(adopt::run(&load_config()?, &args).await?),
        Command::List(args) => print(list::run(&load_config()?, &args).await?),
        Command::Recreate(args) => print(recreate::run(&load_config()?, &args).await?),
        Command::Restore(args) => print(restore::run(&load_config()?, &args).await?),
        Command::Rotate(args) => print(rotate::run(&load_config()?, &args).await?),
        Command::Suspend(args) => print(suspend::run(&load_config()?, &args).await?),
        Command::Resume(args) => print(resume::run(&load_config()?, &args).await?),
        Command::Retire(args) => print(retire::run(&load_config()?, &args).await?),
        Command::Refresh(args) => print(refresh::run(&load_config()?, &args).await?),
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
        // A broken config is reported too (UNKNOWN, and in --textfile).
        Command::Health(args) => health::main(load_config(), &args).await,
        Command::Audit(args) => audit::run(&load_config()?, &args).await,
        Command::Serve(args) => {
            serve::run(config::Config::locate(config_flag.as_deref()), &args).await
        }
    }
}

/// Results go to stdout (logs go to stderr), so a pipe gets only the result.
fn print(text: String) -> Result<u8> {
    print_result(&text);
    Ok(0)
}

/// Writes a result to stdout. A reader that went away (`| head`: EPIPE) or a closed
/// stdout changes nothing about what was done, so the exit code stays the job's: the
/// error is logged (to stderr, if it is still open) and otherwise ignored. odoo-db never
/// panics on output (Rust's `print!` does) and ignores SIGPIPE (Rust's default), so a
/// closed pipe cannot kill it either.
pub fn print_result(text: &str) {
    write_result(text.as_bytes());
}

fn write_result(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    written(stdout.write_all(bytes).and_then(|()| stdout.flush()));
}

/// The outcome of writing a result to stdout: a reader that went away is not an error
/// of the job; anything else (a full disk) is logged, and the exit code stays the job's.
pub(crate) fn written(outcome: std::io::Result<()>) {
    if let Err(error) = outcome {
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            tracing::warn!("cannot write the result to stdout: {error}");
        }
    }
}

/// Writes a message to stderr, ignoring a closed stderr (`2>&1 | head`): never panics.
pub fn print_error(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr
        .write_all(text.as_bytes())
        .and_then(|()| stderr.flush());
}

/// Usage errors: clap's own message, exit 2 (refused), or 3 (UNKNOWN) for health and
/// audit, whose callers are monitoring systems that read 2 as CRITICAL.
pub fn exit_on_usage_error(error: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    // clap's own printing ignores a closed stream (its result is dropped here).
    let _ = error.print();
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => std::process::ExitCode::SUCCESS,
        _ => {
            let nagios_style = std::env::args()
                .skip(1)
                .any(|arg| arg == "health" || arg == "audit");
            if nagios_style {
                let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
                if args.iter().any(|arg| arg == "health") {
                    health::usage_error_textfile(&args, &format!("usage: {}", error.kind()));
                }
                print_result(&format!("ODOO-DB UNKNOWN - usage: {}\n", error.kind()));
                return std::process::ExitCode::from(3);
            }
            std::process::ExitCode::from(2)
        }
    }
}
