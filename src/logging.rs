//! Logs go to stderr (results go to stdout, so `odoo-db list --format json | jq` works),
//! as text for people or one JSON object per line for log shippers.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// `-q` shows errors only, default warnings and info, `-v` debug, `-vv` trace.
/// `RUST_LOG` overrides when set, for debugging a single module.
pub fn init(format: LogFormat, verbose: u8, quiet: bool) {
    crate::output::progress::init(format, quiet);
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
        .with_writer(|| QuietStderr)
        // On a failed write the subscriber would eprintln! about it, which panics when
        // stderr itself is the closed stream (`odoo-db health 2>&1 | head -3`).
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Text => builder.without_time().init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// stderr for the logs, where a reader that went away (EPIPE) or a closed stderr is not an
/// error: the log line is dropped and the job goes on with its own exit code.
struct QuietStderr;

impl std::io::Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::io::stderr().write(buf) {
            Err(error) if is_gone(&error) => Ok(buf.len()),
            other => other,
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match std::io::stderr().write_all(buf) {
            Err(error) if is_gone(&error) => Ok(()),
            other => other,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match std::io::stderr().flush() {
            Err(error) if is_gone(&error) => Ok(()),
            other => other,
        }
    }
}

/// The reader closed the pipe, or the descriptor is not open at all.
fn is_gone(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::BrokenPipe || error.raw_os_error() == Some(libc::EBADF)
}
