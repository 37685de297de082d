//! The man page, odoo-db(1): one page for the whole tool, generated from the clap
//! definitions of [`crate::cli`] at package build time (`odoo-db man`).
//!
//! clap_mangen renders the title, name, synopsis and global options; every command
//! then gets its own subsection with its synopsis and options (clap_mangen alone would
//! point at odoo-db-provision(1) and the like, pages nobody installs), followed by the
//! sections an administrator looks for: exit status, environment, files, examples.

use std::io::{self, Write};

use clap::CommandFactory;
use clap_mangen::Man;

use crate::cli::Cli;

/// Writes the roff source of odoo-db(1).
pub fn render(out: &mut dyn Write) -> io::Result<()> {
    let mut cli = Cli::command();
    cli.build();
    let man = Man::new(cli.clone())
        .title("ODOO-DB")
        .manual("System Administration");
    // The title carries the roff preamble (the Aq string); the other parts leave it out.
    man.render_title(out)?;
    out.write_all(&part(&man, Man::render_name_section, true)?)?;
    out.write_all(&part(&man, Man::render_synopsis_section, true)?)?;
    out.write_all(&part(&man, Man::render_description_section, true)?)?;
    out.write_all(DESCRIPTION.as_bytes())?;
    out.write_all(&part(&man, Man::render_options_section, true)?)?;
    writeln!(out, ".PP\nThese options are taken by every command.")?;

    writeln!(out, ".SH COMMANDS")?;
    let globals: Vec<String> = cli
        .get_arguments()
        .filter(|arg| arg.is_global_set())
        .map(|arg| arg.get_id().to_string())
        .collect();
    let commands = cli
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help");
    for command in commands {
        render_command(out, command, &globals)?;
    }

    out.write_all(SECTIONS.as_bytes())?;
    out.write_all(&part(&man, Man::render_version_section, true)?)?;
    Ok(())
}

/// `.SS odoo-db NAME`: what it does, its synopsis, its options, its own commands.
fn render_command(
    out: &mut dyn Write,
    command: &clap::Command,
    globals: &[String],
) -> io::Result<()> {
    let name = command.get_bin_name().unwrap_or_else(|| command.get_name());
    writeln!(out, ".SS \"{}\"", escape(name))?;
    if let Some(about) = command.get_long_about().or_else(|| command.get_about()) {
        writeln!(out, "{}", escape(&about.to_string()))?;
    }
    // The global options and --help/--version are said once, above.
    let mut own = command.clone();
    for arg in command.get_arguments() {
        let id = arg.get_id().to_string();
        if globals.contains(&id) || id == "help" || id == "version" {
            own = own.mut_arg(&id, |arg| arg.hide(true));
        }
    }
    let man = Man::new(own.clone());
    writeln!(out, ".PP")?;
    out.write_all(&part(&man, Man::render_synopsis_section, false)?)?;
    if own.get_arguments().any(|arg| !arg.is_hide_set()) {
        out.write_all(&part(&man, Man::render_options_section, false)?)?;
    }
    let actions = command
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help");
    for action in actions {
        writeln!(out, ".TP")?;
        let action_name = action.get_bin_name().unwrap_or_else(|| action.get_name());
        writeln!(out, "\\fB{}\\fR", escape(action_name))?;
        if let Some(about) = action.get_about() {
            writeln!(out, "{}", escape(&about.to_string()))?;
        }
    }
    Ok(())
}

/// One part of the page as clap_mangen renders it, without the roff preamble it
/// repeats each time, and without its `.SH` heading unless `heading` (the commands'
/// parts are subsections of COMMANDS).
fn part(
    man: &Man,
    render: fn(&Man, &mut dyn Write) -> io::Result<()>,
    heading: bool,
) -> io::Result<Vec<u8>> {
    let mut roff = Vec::new();
    render(man, &mut roff)?;
    let text = String::from_utf8_lossy(&roff);
    let kept: String = text
        .lines()
        .filter(|line| !line.starts_with(".ie ") && !line.starts_with(".el "))
        .filter(|line| heading || !line.starts_with(".SH "))
        .map(|line| format!("{line}\n"))
        .collect();
    Ok(kept.into_bytes())
}

/// Plain text as roff: backslashes and dashes escaped, no line read as a request.
fn escape(text: &str) -> String {
    text.lines()
        .map(|line| {
            let line = line.replace('\\', "\\e").replace('-', "\\-");
            if line.starts_with('.') || line.starts_with('\'') {
                format!("\\&{line}")
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const DESCRIPTION: &str = r#".PP
\fBodoo\-db\fR runs beside the PostgreSQL clusters of the platform (PostgreSQL 12 to 18)
and does three jobs: \fBprovision\fR creates a customer's role and database, with a
generated name, on the production cluster and (suffixed \fI_integration\fR) on the
integration server; \fBrecreate\fR safely drops and recreates an integration database,
backed up with \fBpg_dump\fR first, and never a production one; \fBhealth\fR checks the
primary and its standbys, replica lag above all, from a systemd timer.
.PP
It connects as a least\-privilege role (LOGIN CREATEDB CREATEROLE, member of
\fBpg_monitor\fR and \fBpg_signal_backend\fR), never as a superuser. Passwords are never
in the configuration: libpq's conventions apply (see \fBENVIRONMENT\fR and \fBFILES\fR).
Results go to standard output, logs to standard error.
"#;

const SECTIONS: &str = r#".SH "EXIT STATUS"
All commands but \fBhealth\fR and \fBaudit\fR:
.TP
.B 0
done, or nothing to do
.TP
.B 1
failed while running (server error, server unreachable)
.TP
.B 2
refused: bad input, a safety rule, or usage; nothing was changed. A second destructive
operation on a name already being worked on is refused too ("in progress").
.PP
\fBhealth\fR and \fBaudit\fR follow the Nagios/Icinga plugin convention:
.TP
.B 0
OK
.TP
.B 1
WARNING
.TP
.B 2
CRITICAL (an unreachable server or bastion is CRITICAL, never UNKNOWN)
.TP
.B 3
UNKNOWN: odoo\-db itself could not check (bad configuration or usage, the run's
deadline hit)
.SH ENVIRONMENT
.TP
.B ODOO_DB_CONFIG
The configuration file when \fB\-\-config\fR is not given.
.TP
.B PGPASSWORD\fR, \fBPGPASSFILE
Passwords, as for libpq.
.TP
.B CREDENTIALS_DIRECTORY
Set by systemd (\fBLoadCredential=\fR): \fI$CREDENTIALS_DIRECTORY/pgpass\fR is read like a
password file; \fIssh_identity\fR and \fIssh_known_hosts\fR there serve the SSH bastion.
.TP
.B PG_BINDIR
\fBsandbox\fR and \fBdemo\fR: the directory of the PostgreSQL server binaries (initdb,
pg_ctl, postgres); default \fBpg_config \-\-bindir\fR, else the newest
\fI/usr/lib/postgresql/*/bin\fR. \fBrecreate\fR also looks there for the newest
\fBpg_dump\fR at least as new as the server.
.TP
.B PG_CLIENT_BINDIR
\fBsandbox\fR and \fBdemo\fR: the directory of the client tools (psql, pg_basebackup),
when it is not \fBPG_BINDIR\fR.
.TP
.B RUST_LOG
A tracing filter that replaces the one of \fB\-v\fR/\fB\-q\fR, e.g.
\fBodoo_db::health=trace\fR.
.SH FILES
.TP
.I /etc/odoo\-db/odoo\-db.toml
The configuration: clusters, catalog, thresholds (every key is described in the file
the package installs).
.TP
.I ~/.pgpass
Passwords, ignored when group or others can read it, as libpq does.
.TP
.I /etc/odoo\-db/pgpass
The password file that \fIodoo\-db\-health.service\fR hands over as a credential.
.TP
.I /var/backups/odoo\-db
The backups that \fBrecreate\fR takes (configurable).
.TP
.I /usr/lib/systemd/system/odoo\-db\-health.service\fR, \fIodoo\-db\-health.timer
The health check every minute; installed, not enabled:
\fBsystemctl enable \-\-now odoo\-db\-health.timer\fR.
.TP
.I /var/lib/prometheus/node\-exporter/odoo_db.prom
The Prometheus metrics the timer's runs write for node_exporter's textfile collector.
.SH EXAMPLES
.nf
odoo\-db init
odoo\-db provision \-\-customer flux\-dock \-\-secrets\-dir /root/secrets
odoo\-db recreate mighty_pinguin_1337_integration \-\-dry\-run
odoo\-db health \-\-format nagios
odoo\-db list \-\-format json | jq .
.fi
.SH "SEE ALSO"
\fBpsql\fR(1), \fBpg_dump\fR(1), \fBpg_restore\fR(1), \fBssh\fR(1),
\fBsystemd.timer\fR(5), \fBsystemd\-analyze\fR(1)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_and_option_is_on_the_page() {
        let mut page = Vec::new();
        render(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        for needle in [
            ".SS \"odoo\\-db provision\"",
            ".SS \"odoo\\-db sandbox\"",
            "odoo\\-db sandbox up",
            "\\-\\-secrets\\-dir",
            "\\-\\-warn\\-lag",
            "\\-\\-backup\\-dir",
            ".SH \"EXIT STATUS\"",
            ".SH ENVIRONMENT",
        ] {
            assert!(page.contains(needle), "{needle} missing from the man page");
        }
        // No reference to per-command pages that are not installed.
        assert!(!page.contains("odoo\\-db\\-provision(1)"), "{page}");
        // The global options are listed once, not under every command.
        assert_eq!(page.matches("\\-\\-log\\-format").count(), 2, "{page}");
    }

    #[test]
    fn escaping() {
        assert_eq!(escape(".x -y \\z"), "\\&.x \\-y \\ez");
    }
}
