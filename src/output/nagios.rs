//! The Nagios plugin format (`PREFIX STATE - problems; summary | perfdata`, then one
//! line per check) and its perfdata, as the monitoring-plugins guidelines define them.
//! Health and audit are both Nagios plugins and write the same shape.

use super::check::{Check, Status};
use super::table::worst_first;

/// The Nagios plugin text shared by health and audit.
pub(crate) fn nagios_output(
    prefix: &str,
    status: Status,
    checks: &[Check],
    summary: &str,
    perfdata: &[String],
) -> String {
    let problems: Vec<String> = worst_first(checks)
        .into_iter()
        .filter(|check| check.status != Status::Ok)
        .map(|check| format!("{}: {}", where_(check), check.message))
        .collect();
    let mut line = format!("{prefix} {} - ", status.as_str());
    if !problems.is_empty() {
        line.push_str(&problems.join("; "));
        if !summary.is_empty() {
            line.push_str("; ");
        }
    }
    line.push_str(summary);
    // One line, and `|` starts the perfdata: neither a newline nor `|` may appear in the
    // text, whatever the names in the config hold.
    let mut out = nagios_text(&line);
    if !perfdata.is_empty() {
        out.push_str(" | ");
        out.push_str(&perfdata.join(" "));
    }
    out.push('\n');
    for check in worst_first(checks) {
        let mut detail = format!(
            "[{}] {}: {}",
            check.status.as_str(),
            where_(check),
            check.message
        );
        if let (true, Some(hint)) = (check.status != Status::Ok, &check.hint) {
            detail.push_str(&format!(" (what to do: {hint})"));
        }
        out.push_str(&nagios_text(&detail));
        out.push('\n');
    }
    out
}

/// Text for one line (a terminal table cell, a Nagios line): control characters, a
/// newline in a name from the config above all, are shown escaped (`\n`), never raw.
pub(crate) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// Nagios plugin text: one line, without `|` (which starts the perfdata).
pub(crate) fn nagios_text(text: &str) -> String {
    one_line(text).replace('|', "/")
}

/// `production standby db2`, `production primary 10.0.0.1:5432`, `production`.
pub(crate) fn where_(check: &Check) -> String {
    match (&check.cluster, &check.server) {
        (Some(cluster), Some(server)) => format!("{cluster} {server}"),
        (Some(cluster), None) => cluster.clone(),
        (None, _) => "odoo-db".to_string(),
    }
}

/// `'label'=value<uom>;warn;crit`; `U` for a value that could not be measured.
pub(crate) fn perf(
    label: &str,
    value: Option<String>,
    uom: &str,
    warn: Option<String>,
    crit: Option<String>,
) -> String {
    // The plugin guidelines: a label is quoted, a quote in it doubled, and it holds no
    // `=`; the line holds no `|` and no newline.
    let label = one_line(label).replace(['=', '|'], "_").replace('\'', "''");
    let value = match value {
        Some(value) => format!("{value}{uom}"),
        None => "U".to_string(),
    };
    let mut text = format!("'{label}'={value}");
    match (warn, crit) {
        (None, None) => {}
        (warn, None) => text.push_str(&format!(";{}", warn.unwrap_or_default())),
        (warn, Some(crit)) => text.push_str(&format!(";{};{crit}", warn.unwrap_or_default())),
    }
    text
}

/// Seconds in perfdata: plain decimal, no exponent, at most 3 decimals.
pub(crate) fn perf_number(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfdata_follows_the_plugin_guidelines() {
        assert_eq!(
            perf(
                "production_db2_lag_bytes",
                Some("0".into()),
                "B",
                Some("16777216".into()),
                Some("268435456".into())
            ),
            "'production_db2_lag_bytes'=0B;16777216;268435456"
        );
        assert_eq!(
            perf("a=b's", None, "s", None, Some("300".into())),
            "'a_b''s'=U;;300"
        );
        assert_eq!(perf("x", Some("1".into()), "B", None, None), "'x'=1B");
        assert_eq!(perf_number(0.04), "0.04");
        assert_eq!(perf_number(30.0), "30");
        assert_eq!(perf_number(0.0001), "0");
    }
}
