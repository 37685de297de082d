//! Logs go to stderr (results go to stdout, so `odoo-db list --format json | jq` works),
//! as text for people or one JSON object per line for log shippers.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// `-q` shows errors only, default warnings and info, `-v` debug, `-vv` trace.
/// `RUST_LOG` overrides when set, for debugging a single module.
pub fn init(format: LogFormat, verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // Dependencies stay at warn unless asked for: their debug output drowns ours.
    let default_filter = format!("warn,odoo_db={level}");
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Text => builder.without_time().init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
