//! Durations and sizes written the way a DBA writes them in `postgresql.conf`.
//!
//! Config values and `--warn-lag`/`--crit-lag` take `"30s"`, `"5min"`, `"16MB"`; sizes are
//! 1024-based as in PostgreSQL (16MB = 16777216 bytes), so the numbers in odoo-db's
//! config mean what the same text means in the server's own config.

use std::fmt;
use std::time::Duration;

/// The longest duration odoo-db accepts anywhere: 100 years. Far beyond any sensible
/// timeout or threshold, and far enough below the limits of the clocks it is added to
/// (`Instant + Duration` panics on overflow) that no value that parses can crash a run.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The largest size odoo-db accepts: 2^63 - 1 bytes (8 EB), PostgreSQL's own limit for
/// a size (`pg_size_bytes` returns a bigint).
pub const MAX_SIZE: u64 = i64::MAX as u64;

/// Parse `"250ms"`, `"30s"`, `"5min"`, `"2h"`, `"1d"`; a bare number is seconds.
/// Exact decimal arithmetic, checked: a value past [`MAX_DURATION`] is refused, never
/// rounded, saturated or allowed to overflow.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text)?;
    let nanos_per_unit: u128 = match unit {
        "us" => 1_000,
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "min" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        "d" => 86_400 * 1_000_000_000,
        other => {
            return Err(format!(
                "{text:?} has an unknown time unit {other:?} (use us, ms, s, min, h or d, as in postgresql.conf)"
            ))
        }
    };
    let too_long = || {
        format!(
            "{text:?} is too long: at most {} days",
            MAX_DURATION.as_secs() / 86_400
        )
    };
    let nanos = number.times(nanos_per_unit).ok_or_else(too_long)?;
    if nanos > MAX_DURATION.as_nanos() {
        return Err(too_long());
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    let subsec = u32::try_from(nanos % 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, subsec))
}

/// Parse `"16MB"`, `"1GB"`, `"512kB"`, `"8192"` (bytes) into bytes, 1024-based.
/// Exact decimal arithmetic, checked: a value past [`MAX_SIZE`] is refused.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)?;
    let multiplier: u128 = match unit {
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
    let too_large = || format!("{text:?} is too large: at most {MAX_SIZE} bytes (8 EB)");
    let bytes = number.times(multiplier).ok_or_else(too_large)?;
    u64::try_from(bytes)
        .ok()
        .filter(|bytes| *bytes <= MAX_SIZE)
        .ok_or_else(too_large)
}

/// A decimal number exactly as written: `mantissa / 10^scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Decimal {
    mantissa: u128,
    scale: u32,
}

/// Digits kept after the decimal point; more are refused (no unit needs them).
const MAX_FRACTION_DIGITS: u32 = 9;

impl Decimal {
    /// `self × factor`, rounded to the nearest integer; None on overflow.
    fn times(self, factor: u128) -> Option<u128> {
        let divisor = 10u128.checked_pow(self.scale)?;
        let product = self.mantissa.checked_mul(factor)?;
        product.checked_add(divisor / 2).map(|p| p / divisor)
    }
}

fn split_number(text: &str) -> Result<(Decimal, &str), String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let not_a_number = || format!("{text:?} is not a number followed by a unit");
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(not_a_number());
    }
    let scale = u32::try_from(fraction.len()).map_err(|_| not_a_number())?;
    if scale > MAX_FRACTION_DIGITS {
        return Err(format!(
            "{text:?} has more than {MAX_FRACTION_DIGITS} digits after the decimal point"
        ));
    }
    let too_large = || format!("{text:?} is too large");
    let mut mantissa: u128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(digit - b'0')))
            .ok_or_else(too_large)?;
    }
    Ok((Decimal { mantissa, scale }, unit.trim()))
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

impl Threshold {
    /// Parses a list of thresholds (a config array or the values of a repeated flag): at
    /// most one size and one time, since two of a kind leave it unclear which one counts.
    pub fn parse_list<S: AsRef<str>>(texts: &[S]) -> Result<Vec<Threshold>, String> {
        let list = texts
            .iter()
            .map(|text| Threshold::parse(text.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let sizes: Vec<&str> = texts
            .iter()
            .zip(&list)
            .filter(|(_, t)| matches!(t, Threshold::Bytes(_)))
            .map(|(text, _)| text.as_ref())
            .collect();
        let times: Vec<&str> = texts
            .iter()
            .zip(&list)
            .filter(|(_, t)| matches!(t, Threshold::Time(_)))
            .map(|(text, _)| text.as_ref())
            .collect();
        for (kind, given) in [("sizes", sizes), ("times", times)] {
            if given.len() > 1 {
                return Err(format!(
                    "{} {kind} given ({}): give at most one size and one time",
                    given.len(),
                    given.join(", ")
                ));
            }
        }
        Ok(list)
    }

    /// The size of a list, if it has one.
    pub fn bytes_of(list: &[Threshold]) -> Option<u64> {
        list.iter().find_map(|t| match t {
            Threshold::Bytes(bytes) => Some(*bytes),
            Threshold::Time(_) => None,
        })
    }

    /// The time of a list, if it has one.
    pub fn time_of(list: &[Threshold]) -> Option<Duration> {
        list.iter().find_map(|t| match t {
            Threshold::Time(time) => Some(*time),
            Threshold::Bytes(_) => None,
        })
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
    fn overflow_is_refused_never_saturated_or_a_panic() {
        let error = parse_size("99999999999999999999TB").unwrap_err();
        assert!(error.contains("too large"), "{error}");
        assert!(
            parse_size("8388608TB").is_err(),
            "2^63 bytes is one too many"
        );
        assert_eq!(parse_size("8388607TB"), Ok(8_388_607 << 40));
        assert!(parse_size("99999999999999999999999999999999999999999999B")
            .unwrap_err()
            .contains("too large"));
        let error = parse_duration("999999999999999999999d").unwrap_err();
        assert!(error.contains("too long"), "{error}");
        assert!(parse_duration("36501d").is_err());
        assert_eq!(
            parse_duration("36500d"),
            Ok(Duration::from_secs(36500 * 86400))
        );
        assert!(parse_duration("18446744073709551616").is_err());
        assert!(Threshold::parse("99999999999999999999TB").is_err());
        assert!(Threshold::parse("999999999999999999999d").is_err());
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_size("1.5kB"), Ok(1536));
        assert_eq!(parse_size("0.5B"), Ok(1), "rounded to the nearest byte");
        assert_eq!(parse_duration("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1.5us"), Ok(Duration::from_nanos(1500)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("1.2.3s").is_err());
        assert!(parse_duration(".s").is_err());
        assert!(parse_duration("1.0000000001s")
            .unwrap_err()
            .contains("digits after the decimal point"));
    }

    #[test]
    fn a_list_has_at_most_one_size_and_one_time() {
        assert_eq!(
            Threshold::parse_list(&["16MB", "30s"]),
            Ok(vec![
                Threshold::Bytes(16 << 20),
                Threshold::Time(Duration::from_secs(30))
            ])
        );
        let error = Threshold::parse_list(&["1MB", "2MB"]).unwrap_err();
        assert!(error.contains("2 sizes given (1MB, 2MB)"), "{error}");
        let error = Threshold::parse_list(&["1s", "30s", "1MB"]).unwrap_err();
        assert!(error.contains("2 times given"), "{error}");
        assert_eq!(Threshold::parse_list::<&str>(&[]), Ok(vec![]));
    }

    #[test]
    fn bytes_print_human() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(16 << 20), "16.0 MB");
    }
}
