//! What a check found, as health and audit both report it: a Nagios [`Status`] and
//! one [`Check`] (what was checked, where, what was found, what to do). Every output
//! format is a view of a list of these.

use serde::Serialize;

/// Version of the JSON schema of the reports (health's below in `health::report`,
/// audit's alike); bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// A Nagios state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    #[default]
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Status {
    /// The Nagios plugin exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }

    /// How bad, for "worst state wins": OK < UNKNOWN < WARNING < CRITICAL, the order of
    /// the monitoring-plugins' `max_state_alt`. A check odoo-db could not make (UNKNOWN)
    /// must never hide a problem it did find; the run's own failures (a deadline hit, a
    /// bad config) make the whole run UNKNOWN separately.
    pub fn severity(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Unknown => 1,
            Status::Warning => 2,
            Status::Critical => 3,
        }
    }

    pub fn worst(self, other: Status) -> Status {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// The worst of many; OK when there are none.
    pub fn worst_of(statuses: impl IntoIterator<Item = Status>) -> Status {
        statuses.into_iter().fold(Status::Ok, Status::worst)
    }
}

/// One verdict: what was checked, on which server, and what was found.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub status: Status,
    /// None for a check of the run itself (the textfile, say).
    pub cluster: Option<String>,
    /// The server label (`primary 10.0.0.1:5432`, `standby db2`), none for the cluster
    /// as a whole.
    pub server: Option<String>,
    /// A stable identifier of the kind of check (`standby_replay`, `lag_bytes`, …).
    pub check: &'static str,
    /// One line for people, short enough for a Nagios status line.
    pub message: String,
    /// What to do about it, when there is something to do.
    pub hint: Option<String>,
}
