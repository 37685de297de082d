//! The output formats of the monitoring commands: health and audit report the same
//! [`check::Check`]s in the same formats, a [`table`] for people, the [`nagios`] plugin
//! text, the [`prometheus`] exposition, written as a node_exporter [`textfile`]. What
//! only health reports (its JSON model, statsd gauges) stays in `crate::health`.

pub mod check;
pub mod nagios;
pub mod prometheus;
pub mod table;
pub mod textfile;
