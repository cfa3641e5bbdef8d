//! `/v1/agent/metrics` without `?format=prometheus`: the same figures in
//! the shape of Consul's JSON summary, so tools that read Consul's find
//! their keys. Unlike Consul's (which aggregates over a 10s interval),
//! counters here are cumulative since the agent started: `Count` and `Sum`
//! both carry the counter's value. Names are the Prometheus names.

use std::collections::BTreeMap;

use prometheus::proto::{MetricFamily, MetricType};
use serde::Serialize;
use time::OffsetDateTime;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    pub timestamp: String,
    pub gauges: Vec<Gauge>,
    /// Always empty, as in Consul.
    pub points: Vec<serde_json::Value>,
    pub counters: Vec<Sampled>,
    pub samples: Vec<Sampled>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Gauge {
    pub name: String,
    pub value: f64,
    pub labels: BTreeMap<String, String>,
}

/// A counter (cumulative value) or a histogram/summary (count and sum).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Sampled {
    pub name: String,
    pub count: f64,
    pub sum: f64,
    /// Histograms and summaries only: a counter's increments are not kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    pub labels: BTreeMap<String, String>,
}

/// Consul's timestamp format: `2024-05-01 12:00:00 +0000 UTC`.
fn consul_timestamp(now: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] +0000 UTC"
    );
    now.format(&format).unwrap_or_default()
}

pub fn summarize(families: &[MetricFamily], now: OffsetDateTime) -> Summary {
    let mut summary = Summary {
        timestamp: consul_timestamp(now.to_offset(time::UtcOffset::UTC)),
        gauges: Vec::new(),
        points: Vec::new(),
        counters: Vec::new(),
        samples: Vec::new(),
    };
    for family in families {
        let name = family.name().to_owned();
        for metric in family.get_metric() {
            let labels: BTreeMap<String, String> = metric
                .get_label()
                .iter()
                .map(|l| (l.name().to_owned(), l.value().to_owned()))
                .collect();
            let sampled = |count: f64, sum: f64| Sampled {
                name: name.clone(),
                count,
                sum,
                mean: Some(if count > 0.0 { sum / count } else { 0.0 }),
                labels: labels.clone(),
            };
            match family.get_field_type() {
                MetricType::GAUGE => summary.gauges.push(Gauge {
                    name: name.clone(),
                    value: metric.get_gauge().get_value(),
                    labels,
                }),
                // Nothing registers untyped metrics.
                MetricType::UNTYPED => {}
                MetricType::COUNTER => {
                    let value = metric.get_counter().get_value();
                    summary.counters.push(Sampled {
                        mean: None,
                        ..sampled(value, value)
                    });
                }
                MetricType::HISTOGRAM => {
                    let h = metric.get_histogram();
                    summary
                        .samples
                        .push(sampled(h.get_sample_count() as f64, h.get_sample_sum()));
                }
                MetricType::SUMMARY => {
                    let s = metric.get_summary();
                    summary
                        .samples
                        .push(sampled(s.sample_count() as f64, s.sample_sum()));
                }
            }
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

    #[test]
    fn consul_shape() {
        let registry = Registry::new();
        let gauge = IntGauge::new("g", "a gauge").unwrap();
        gauge.set(3);
        registry.register(Box::new(gauge)).unwrap();
        let counter = IntCounterVec::new(Opts::new("c_total", "a counter"), &["peer"]).unwrap();
        counter.with_label_values(&["p"]).inc_by(4);
        registry.register(Box::new(counter)).unwrap();
        let histogram =
            Histogram::with_opts(HistogramOpts::new("h_seconds", "a histogram")).unwrap();
        histogram.observe(1.0);
        histogram.observe(3.0);
        registry.register(Box::new(histogram)).unwrap();

        let now = time::macros::datetime!(2024-05-01 12:00:00 UTC);
        let json = serde_json::to_value(summarize(&registry.gather(), now)).unwrap();
        assert_eq!(json["Timestamp"], "2024-05-01 12:00:00 +0000 UTC");
        assert_eq!(
            json["Gauges"],
            serde_json::json!([{"Name": "g", "Value": 3.0, "Labels": {}}])
        );
        assert_eq!(json["Counters"][0]["Name"], "c_total");
        assert_eq!(json["Counters"][0]["Count"], 4.0);
        assert_eq!(json["Counters"][0]["Labels"]["peer"], "p");
        assert!(json["Counters"][0].get("Mean").is_none());
        assert_eq!(json["Samples"][0]["Count"], 2.0);
        assert_eq!(json["Samples"][0]["Mean"], 2.0);
        assert_eq!(json["Points"], serde_json::json!([]));
    }
}
