//! The Prometheus text exposition format (HELP, TYPE, samples; labels and numbers
//! escaped as the format requires), for node_exporter's textfile collector. Health
//! and audit build their metrics with it.

use std::fmt::Write as _;

use super::check::Status;

/// A Prometheus text exposition, family by family (HELP, TYPE, then its samples).
pub(crate) struct Exposition {
    text: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition {
            text: String::new(),
        }
    }

    /// Starts a gauge family; its samples must follow before the next family.
    pub fn gauge(&mut self, name: &str, help: &str) -> &mut Self {
        writeln!(
            self.text,
            "# HELP {name} {}",
            help.replace('\\', "\\\\").replace('\n', "\\n")
        )
        .ok();
        writeln!(self.text, "# TYPE {name} gauge").ok();
        self
    }

    /// Starts a counter family (a value that only grows, reset when the server restarts);
    /// its name ends in `_total`.
    pub fn counter(&mut self, name: &str, help: &str) -> &mut Self {
        writeln!(
            self.text,
            "# HELP {name} {}",
            help.replace('\\', "\\\\").replace('\n', "\\n")
        )
        .ok();
        writeln!(self.text, "# TYPE {name} counter").ok();
        self
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.text.push_str(name);
        if !labels.is_empty() {
            let labels: Vec<String> = labels
                .iter()
                .map(|(key, value)| format!("{key}=\"{}\"", escape_label(value)))
                .collect();
            write!(self.text, "{{{}}}", labels.join(",")).ok();
        }
        writeln!(self.text, " {}", prometheus_number(value)).ok();
        self
    }

    pub fn finish(self) -> String {
        self.text
    }
}

pub(crate) fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(crate) fn prometheus_number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

/// The Nagios state as a number, as the exit code has it.
pub(crate) fn status_number(status: Status) -> f64 {
    f64::from(status.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        let mut out = Exposition::new();
        out.gauge("m", "help").sample("m", &[("a", "x\"y\\z")], 1.5);
        assert_eq!(
            out.finish(),
            "# HELP m help\n# TYPE m gauge\nm{a=\"x\\\"y\\\\z\"} 1.5\n"
        );
    }
}
