//! Durations and sizes written the way a DBA writes them in `postgresql.conf`.
//!
//! Config values and `--warn-lag`/`--crit-lag` take `"30s"`, `"5min"`, `"16MB"`; sizes are
//! 1024-based as in PostgreSQL (16MB = 16777216 bytes), so the numbers in odoo-db's
//! config mean what the same text means in the server's own config.

use std::fmt;
use std::time::Duration;

/// Parse `"250ms"`, `"30s"`, `"5min"`, `"2h"`, `"1d"`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text)?;
    let seconds_per_unit = match unit {
        "us" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => {
            return Err(format!(
                "{text:?} has an unknown time unit {other:?} (use us, ms, s, min, h or d, as in postgresql.conf)"
            ))
        }
    };
    Ok(Duration::from_secs_f64(number * seconds_per_unit))
}

/// Parse `"16MB"`, `"1GB"`, `"512kB"`, `"8192"` (bytes) into bytes, 1024-based.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)?;
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "kB" | "KB" | "k" => 1 << 10,
        "MB" | "M" => 1 << 20,
        "GB" | "G" => 1 << 30,
        "TB" | "T" => 1 << 40,
        other => {
            return Err(format!(
                "{text:?} has an unknown size unit {other:?} (use B, kB, MB, GB or TB, 1024-based as in postgresql.conf)"
            ))
        }
    };
    Ok((number * multiplier as f64).round() as u64)
}

fn split_number(text: &str) -> Result<(f64, &str), String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a number followed by a unit"))?;
    if !number.is_finite() {
        return Err(format!("{text:?} is not a finite number"));
    }
    Ok((number, unit.trim()))
}

/// A lag threshold: either bytes of WAL or a time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    Bytes(u64),
    Time(Duration),
}

impl Threshold {
    /// A size when the text has a size unit (`16MB`), a duration when it has a time
    /// unit (`30s`); a bare number is ambiguous and refused.
    pub fn parse(text: &str) -> Result<Threshold, String> {
        let trimmed = text.trim();
        let unit_start = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| {
                format!("{text:?} needs a unit: a size like \"16MB\" or a time like \"30s\"")
            })?;
        let unit = trimmed[unit_start..].trim();
        if unit.ends_with('B') || matches!(unit, "k" | "M" | "G" | "T") {
            parse_size(trimmed).map(Threshold::Bytes)
        } else {
            parse_duration(trimmed).map(Threshold::Time)
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Bytes(bytes) => f.write_str(&format_bytes(*bytes)),
            Threshold::Time(duration) => write!(f, "{}s", duration.as_secs_f64()),
        }
    }
}

/// Human size, 1024-based: `0 B`, `512 B`, `16.0 MB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Serde adapters so config fields read `"30s"` and `"16MB"`.
pub mod serde_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_1024_based_like_postgresql_conf() {
        assert_eq!(parse_size("16MB"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_size("256MB"), Ok(268_435_456));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        assert_eq!(parse_size("512kB"), Ok(512 * 1024));
        assert_eq!(parse_size("8192"), Ok(8192));
        assert!(parse_size("16 parsecs")
            .unwrap_err()
            .contains("unknown size unit"));
        assert!(parse_size("MB").is_err());
    }

    #[test]
    fn durations_use_postgresql_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5min"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("30 fortnights").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn thresholds_tell_bytes_from_time_by_unit() {
        assert_eq!(Threshold::parse("16MB"), Ok(Threshold::Bytes(16 << 20)));
        assert_eq!(
            Threshold::parse("30s"),
            Ok(Threshold::Time(Duration::from_secs(30)))
        );
        assert!(Threshold::parse("30").is_err());
    }

    #[test]
    fn bytes_print_human() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(16 << 20), "16.0 MB");
    }
}
