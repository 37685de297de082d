//! The output formats of the monitoring commands: health and audit report the same
//! [`check::Check`]s in the same formats, a [`table`] for people, the [`nagios`] plugin
//! text, the [`prometheus`] exposition, written as a node_exporter [`textfile`], and
//! gauges sent to [`statsd`]. What a health report says in each format (its JSON
//! model, which gauges and metrics it has) stays in `crate::health`.

pub mod check;
pub mod nagios;
pub mod progress;
pub mod prometheus;
pub mod statsd;
pub mod table;
pub mod textfile;
