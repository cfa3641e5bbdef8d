//! Go-style durations (`"10s"`, `"1h30m"`, `"300ms"`), the way Consul writes them.
//!
//! [`parse`] accepts what Go's `time.ParseDuration` accepts, except negative
//! values; [`format`] writes what Go's `time.Duration.String()` writes, so a
//! value read from a Consul document is written back unchanged.

use std::fmt;
use std::time::Duration;

const NANOS_PER_MICRO: u128 = 1_000;
const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SECOND: u128 = 1_000_000_000;
const NANOS_PER_MINUTE: u128 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: u128 = 60 * NANOS_PER_MINUTE;

/// Go durations are an `int64` of nanoseconds; anything longer could not be
/// handed back to a Consul client.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Fraction digits beyond this cannot change the result by a nanosecond but
/// could overflow the arithmetic.
const MAX_FRACTION_DIGITS: u32 = 20;

/// Why a duration string was refused. Every message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}")]
    Invalid(String),
    #[error("invalid duration {0:?}: missing unit (one of ns, us, µs, ms, s, m, h)")]
    MissingUnit(String),
    #[error("invalid duration {input:?}: unknown unit {unit:?} (expected one of ns, us, µs, ms, s, m, h)")]
    UnknownUnit { input: String, unit: String },
    #[error("invalid duration {0:?}: negative durations are not allowed")]
    Negative(String),
    #[error("invalid duration {0:?}: longer than the maximum of about 292 years")]
    OutOfRange(String),
}

/// Parses a Go duration such as `"1h30m"`, `"1.5s"`, `"300ms"` or `"0"`.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(input.to_owned());
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    // Go accepts a bare zero without a unit, and only zero.
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }

    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let (whole, after_whole) = split_digits(rest);
        let (fraction, after_number) = match after_whole.strip_prefix('.') {
            Some(after_dot) => split_digits(after_dot),
            None => ("", after_whole),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }
        let unit_len = after_number
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(input.to_owned()));
        }
        let unit_nanos = unit_in_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            input: input.to_owned(),
            unit: unit.to_owned(),
        })?;

        let out_of_range = || DurationError::OutOfRange(input.to_owned());
        let whole_value = parse_digits(whole).ok_or_else(out_of_range)?;
        let fraction_nanos = fraction_in_nanos(fraction, unit_nanos);
        total_nanos = whole_value
            .checked_mul(unit_nanos)
            .and_then(|nanos| nanos.checked_add(fraction_nanos))
            .and_then(|nanos| nanos.checked_add(total_nanos))
            .filter(|nanos| *nanos <= MAX_NANOS)
            .ok_or_else(out_of_range)?;
        rest = after_unit;
    }

    if negative && total_nanos > 0 {
        return Err(DurationError::Negative(input.to_owned()));
    }
    Ok(nanos_to_duration(total_nanos))
}

/// Formats like Go's `time.Duration.String()`: `"1h30m0s"`, `"1.5s"`, `"300ms"`, `"0s"`.
pub fn format(duration: Duration) -> String {
    GoDuration(duration).to_string()
}

/// Display adapter so a duration can be written into a formatter without an
/// intermediate `String`.
struct GoDuration(Duration);

impl fmt::Display for GoDuration {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return out.write_str("0s");
        }
        // Below a second Go switches to the largest unit that keeps a whole part.
        if nanos < NANOS_PER_MICRO {
            return write!(out, "{nanos}ns");
        }
        if nanos < NANOS_PER_MILLI {
            return write_with_fraction(out, nanos, NANOS_PER_MICRO, "µs");
        }
        if nanos < NANOS_PER_SECOND {
            return write_with_fraction(out, nanos, NANOS_PER_MILLI, "ms");
        }
        let hours = nanos / NANOS_PER_HOUR;
        let minutes = (nanos % NANOS_PER_HOUR) / NANOS_PER_MINUTE;
        let second_nanos = nanos % NANOS_PER_MINUTE;
        if hours > 0 {
            write!(out, "{hours}h{minutes}m")?;
        } else if minutes > 0 {
            write!(out, "{minutes}m")?;
        }
        write_with_fraction(out, second_nanos, NANOS_PER_SECOND, "s")
    }
}

/// Writes `value / unit` with the fraction's trailing zeros trimmed, then the unit name.
fn write_with_fraction(
    out: &mut fmt::Formatter<'_>,
    value: u128,
    unit: u128,
    unit_name: &str,
) -> fmt::Result {
    let whole = value / unit;
    let remainder = value % unit;
    if remainder == 0 {
        return write!(out, "{whole}{unit_name}");
    }
    let width = unit.ilog10() as usize;
    let fraction = format!("{remainder:0width$}");
    write!(out, "{whole}.{}{unit_name}", fraction.trim_end_matches('0'))
}

fn split_digits(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

/// `None` when the number does not fit, which the caller reports as out of range.
fn parse_digits(digits: &str) -> Option<u128> {
    if digits.is_empty() {
        return Some(0);
    }
    digits.parse::<u128>().ok()
}

/// The nanoseconds a decimal fraction of `unit_nanos` is worth, truncated like Go.
fn fraction_in_nanos(fraction: &str, unit_nanos: u128) -> u128 {
    let significant = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS as usize)];
    let Ok(numerator) = significant.parse::<u128>() else {
        return 0; // empty fraction, as in "5.s"
    };
    let denominator = 10u128.pow(significant.len() as u32);
    numerator * unit_nanos / denominator
}

fn unit_in_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        // U+00B5 micro sign and U+03BC Greek mu, as Go accepts both.
        "us" | "µs" | "μs" => NANOS_PER_MICRO,
        "ms" => NANOS_PER_MILLI,
        "s" => NANOS_PER_SECOND,
        "m" => NANOS_PER_MINUTE,
        "h" => NANOS_PER_HOUR,
        _ => return None,
    })
}

fn nanos_to_duration(nanos: u128) -> Duration {
    // Cannot truncate: callers keep `nanos` at or below i64::MAX.
    let seconds = (nanos / NANOS_PER_SECOND) as u64;
    let subsec = (nanos % NANOS_PER_SECOND) as u32;
    Duration::new(seconds, subsec)
}

/// Serde support for `Option<Duration>` fields, for use as
/// `#[serde(default, with = "crate::duration::serde_opt")]`.
///
/// Reads a Go duration string or an integer number of nanoseconds (Consul's
/// JSON carries both); writes the Go string. `null` reads as `None`, and
/// `None` writes `null` unless the field also skips it.
pub mod serde_opt {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.collect_str(&super::GoDuration(*duration)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        deserializer.deserialize_option(OptionalDurationVisitor)
    }

    struct OptionalDurationVisitor;

    impl<'de> Visitor<'de> for OptionalDurationVisitor {
        type Value = Option<Duration>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a duration such as \"10s\" or an integer number of nanoseconds")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_any(DurationVisitor).map(Some)
        }
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a duration such as \"10s\" or an integer number of nanoseconds")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            super::parse(text).map_err(E::custom)
        }

        fn visit_u64<E: de::Error>(self, nanos: u64) -> Result<Duration, E> {
            Ok(Duration::from_nanos(nanos))
        }

        fn visit_i64<E: de::Error>(self, nanos: i64) -> Result<Duration, E> {
            u64::try_from(nanos).map(Duration::from_nanos).map_err(|_| {
                E::custom(format_args!(
                    "invalid duration {nanos}: negative durations are not allowed"
                ))
            })
        }

        fn visit_f64<E: de::Error>(self, nanos: f64) -> Result<Duration, E> {
            // JSON decoders may hand over integral numbers as floats.
            if nanos.fract() == 0.0 && (0.0..=i64::MAX as f64).contains(&nanos) {
                Ok(Duration::from_nanos(nanos as u64))
            } else {
                Err(E::custom(format_args!(
                    "invalid duration {nanos}: expected a whole, non-negative number of nanoseconds"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("+0", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("10s", Duration::from_secs(10)),
            ("1h30m", Duration::from_secs(5400)),
            ("300ms", Duration::from_millis(300)),
            ("1.5h", Duration::from_secs(5400)),
            (
                "2h45m10.5s",
                Duration::from_millis((2 * 3600 + 45 * 60 + 10) * 1000 + 500),
            ),
            ("1ns", Duration::from_nanos(1)),
            ("7us", Duration::from_micros(7)),
            ("7µs", Duration::from_micros(7)),
            ("7μs", Duration::from_micros(7)),
            (".5s", Duration::from_millis(500)),
            ("5.s", Duration::from_secs(5)),
            ("1.0000000001s", Duration::from_secs(1)),
            ("1m1m", Duration::from_secs(120)),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input).as_ref(), Ok(expected), "input {input:?}");
        }
    }

    #[test]
    fn refuses_bad_durations_with_clear_messages() {
        let cases = [
            ("abc", r#"invalid duration "abc""#),
            ("", r#"invalid duration """#),
            (
                "-1s",
                r#"invalid duration "-1s": negative durations are not allowed"#,
            ),
            (
                "10",
                r#"invalid duration "10": missing unit (one of ns, us, µs, ms, s, m, h)"#,
            ),
            (
                "10d",
                r#"invalid duration "10d": unknown unit "d" (expected one of ns, us, µs, ms, s, m, h)"#,
            ),
            (".s", r#"invalid duration ".s""#),
            (
                "1s ",
                r#"invalid duration "1s ": unknown unit "s " (expected one of ns, us, µs, ms, s, m, h)"#,
            ),
            (
                "3000000h",
                r#"invalid duration "3000000h": longer than the maximum of about 292 years"#,
            ),
        ];
        for (input, expected) in cases {
            let error = parse(input).expect_err(input);
            assert_eq!(error.to_string(), expected);
        }
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_millis(300), "300ms"),
            (Duration::from_micros(1_250), "1.25ms"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(5400), "1h30m0s"),
            (Duration::from_millis(9_910_500), "2h45m10.5s"),
            (Duration::from_nanos(1_000_000_001), "1.000000001s"),
        ];
        for (duration, expected) in cases {
            assert_eq!(format(*duration), *expected);
        }
    }

    #[test]
    fn format_and_parse_round_trip() {
        for text in ["1h30m0s", "1.5s", "300ms", "2h45m10.5s", "1.5µs", "0s"] {
            let duration = parse(text).expect(text);
            assert_eq!(format(duration), text);
        }
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct WithTimeout {
        #[serde(
            default,
            with = "super::serde_opt",
            skip_serializing_if = "Option::is_none"
        )]
        timeout: Option<Duration>,
    }

    #[test]
    fn serde_opt_reads_strings_and_nanoseconds() {
        let from_text: WithTimeout =
            serde_json::from_str(r#"{"timeout": "1m30s"}"#).expect("string");
        assert_eq!(from_text.timeout, Some(Duration::from_secs(90)));
        let from_nanos: WithTimeout =
            serde_json::from_str(r#"{"timeout": 1500000000}"#).expect("nanos");
        assert_eq!(from_nanos.timeout, Some(Duration::from_millis(1500)));
        let from_null: WithTimeout = serde_json::from_str(r#"{"timeout": null}"#).expect("null");
        assert_eq!(from_null.timeout, None);
        let missing: WithTimeout = serde_json::from_str("{}").expect("missing");
        assert_eq!(missing.timeout, None);
    }

    #[test]
    fn serde_opt_refuses_bad_input() {
        let error =
            serde_json::from_str::<WithTimeout>(r#"{"timeout": "-1s"}"#).expect_err("negative");
        assert!(
            error
                .to_string()
                .contains("negative durations are not allowed"),
            "{error}"
        );
        let error =
            serde_json::from_str::<WithTimeout>(r#"{"timeout": -5}"#).expect_err("negative nanos");
        assert!(
            error
                .to_string()
                .contains("negative durations are not allowed"),
            "{error}"
        );
        let error = serde_json::from_str::<WithTimeout>(r#"{"timeout": true}"#).expect_err("bool");
        assert!(error.to_string().contains("a duration such as"), "{error}");
    }

    #[test]
    fn serde_opt_writes_go_strings() {
        let value = WithTimeout {
            timeout: Some(Duration::from_secs(5400)),
        };
        assert_eq!(
            serde_json::to_string(&value).expect("serialize"),
            r#"{"timeout":"1h30m0s"}"#
        );
        let empty = WithTimeout { timeout: None };
        assert_eq!(serde_json::to_string(&empty).expect("serialize"), "{}");
    }
}
