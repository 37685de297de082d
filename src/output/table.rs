//! Tables for people at a terminal: left-aligned columns, and the checks of a run
//! worst first with what to do about them. Health and audit print the same table.

use std::fmt::Write as _;

use super::check::{Check, Status};
use super::nagios::{one_line, where_};

/// The checks as a table, worst first (a stable sort keeps the servers' order).
pub(crate) fn checks_table(checks: &[Check]) -> String {
    let rows: Vec<Vec<String>> = worst_first(checks)
        .into_iter()
        .map(|check| {
            vec![
                check.status.as_str().to_string(),
                check.cluster.clone().unwrap_or_else(|| "-".into()),
                check.server.clone().unwrap_or_else(|| "-".into()),
                check.check.to_string(),
                check.message.clone(),
            ]
        })
        .collect();
    table(&["STATUS", "CLUSTER", "SERVER", "CHECK", "MESSAGE"], &rows)
}

/// "What to do" lines for the problems that have a hint.
pub(crate) fn hints(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in worst_first(checks) {
        if let (true, Some(hint)) = (check.status != Status::Ok, &check.hint) {
            if out.is_empty() {
                out.push_str("\nWhat to do:\n");
            }
            writeln!(out, "- {}", one_line(&format!("{}: {hint}", where_(check)))).ok();
        }
    }
    out
}

pub(crate) fn worst_first(checks: &[Check]) -> Vec<&Check> {
    let mut sorted: Vec<&Check> = checks.iter().collect();
    sorted.sort_by_key(|check| std::cmp::Reverse(check.status.severity()));
    sorted
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    // Names come from the config and the servers: no raw control character reaches a
    // terminal (a newline would break the table, an escape sequence could rewrite it).
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| one_line(cell)).collect())
        .collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[index]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
