//! Prometheus text exposition, read the way the tests assert on it: a
//! strict parse into `series -> value`, and lookups of one series or of a
//! sum over labels in the raw text.

use std::collections::HashMap;

/// Parses Prometheus text exposition into `series -> value`, failing on
/// any line that is not a comment or `name{labels} value`.
pub fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut series = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad metrics line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let metric = name.split('{').next().unwrap();
        assert!(
            !metric.is_empty()
                && metric
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        let labels = &name[metric.len()..];
        assert!(
            labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
            "{line:?}"
        );
        series.insert(name.to_owned(), value);
    }
    series
}

/// The value of the series written exactly `series` (name and labels in
/// the exposition's order), if present.
pub fn series_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
}

/// The sum of every series of `name` whose labels contain all of `labels`
/// (each written `key="value"`).
pub fn sum_series(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .filter(|rest| labels.iter().all(|l| rest.contains(l)))
        .filter_map(|rest| rest.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}
