//! The odoo-db binary: parse the command line, run, map the error class to an exit code.

// Cargo hands the binary every dependency of the package; the library is where each one
// must be used, and `unused_crate_dependencies` checks it there.
#![allow(unused_crate_dependencies)]

use std::process::ExitCode;

use clap::Parser;
use odoo_db::cli::Cli;
use odoo_db::error::Class;

fn main() -> ExitCode {
    // Tests stop a job between two steps with FAILPOINTS=name=panic (feature `failpoints`).
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return odoo_db::exit_on_usage_error(error),
    };
    odoo_db::logging::init(cli.log_format, cli.verbose, cli.quiet);
    // Ctrl-C, SIGTERM and SIGHUP close this run's SSH masters before it dies; serve
    // handles these signals itself (SIGHUP reloads, SIGTERM closes its masters and exits 0).
    if !matches!(cli.command, odoo_db::cli::Command::Serve(_)) {
        sshtunnel::clean_up_on_signals();
    }
    let nagios_style = cli.command.is_nagios_style();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            odoo_db::print_error(&format!(
                "odoo-db: cannot start the async runtime: {error}\n"
            ));
            return ExitCode::from(if nagios_style { 3 } else { 1 });
        }
    };
    match runtime.block_on(odoo_db::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            tracing::error!("{error}");
            if nagios_style {
                // Nagios/NRPE show stdout: without this line they would say "(No output)".
                odoo_db::print_result(&format!("ODOO-DB UNKNOWN - {error}\n"));
            }
            // health and audit follow the Nagios convention: odoo-db's own failure is UNKNOWN.
            let code = match (nagios_style, error.class()) {
                (true, _) => 3,
                (false, Class::Refused) => 2,
                (false, Class::Failed | Class::Unknown) => 1,
            };
            ExitCode::from(code)
        }
    }
}
