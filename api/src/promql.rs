//! Reading Prometheus's answer to an instant query (`/api/v1/query`) as
//! the agent's topology needs it: an instant vector of samples, each a set
//! of labels and one value. The answer comes from another server, so it is
//! bounded: how many series, how many labels per series, how long a label.
//!
//! Values are Prometheus's strings (`"1.5"`, `"NaN"`, `"+Inf"`); a value
//! that is not a finite number reads as `None`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The most series one answer may carry.
pub const MAX_SERIES: usize = 10_000;
/// The most labels one series may carry.
pub const MAX_LABELS: usize = 64;
/// The longest label name or value.
pub const MAX_LABEL_LEN: usize = 1024;

/// One series of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    /// `None` for NaN and infinities (no requests, say).
    pub value: Option<f64>,
}

impl Sample {
    /// The label's value, `""` when absent (as PromQL reads it).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PromqlError {
    #[error("Prometheus refused the query ({kind}): {message}")]
    Query { kind: String, message: String },
    #[error("unexpected answer from Prometheus: {0}")]
    Malformed(String),
    #[error("Prometheus answered {got} series, more than the {max} accepted")]
    TooManySeries { got: usize, max: usize },
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default, rename = "errorType")]
    error_type: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<RawSample>,
}

#[derive(Deserialize)]
struct RawSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// `[unix time, "value"]`.
    value: (serde_json::Value, String),
}

/// Reads an instant-vector answer. A `"status": "error"` answer is a
/// [`PromqlError::Query`] with Prometheus's own text.
pub fn parse_vector(body: &[u8]) -> Result<Vec<Sample>, PromqlError> {
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| PromqlError::Malformed(e.to_string()))?;
    if envelope.status != "success" {
        return Err(PromqlError::Query {
            kind: truncate(&envelope.error_type),
            message: truncate(&envelope.error),
        });
    }
    let data = envelope
        .data
        .ok_or_else(|| PromqlError::Malformed("no data".into()))?;
    if data.result_type != "vector" {
        return Err(PromqlError::Malformed(format!(
            "a {} result where an instant vector was expected",
            truncate(&data.result_type)
        )));
    }
    if data.result.len() > MAX_SERIES {
        return Err(PromqlError::TooManySeries {
            got: data.result.len(),
            max: MAX_SERIES,
        });
    }
    data.result
        .into_iter()
        .map(|raw| {
            if raw.metric.len() > MAX_LABELS {
                return Err(PromqlError::Malformed(format!(
                    "a series with {} labels (at most {MAX_LABELS})",
                    raw.metric.len()
                )));
            }
            if raw
                .metric
                .iter()
                .any(|(k, v)| k.len() > MAX_LABEL_LEN || v.len() > MAX_LABEL_LEN)
            {
                return Err(PromqlError::Malformed(format!(
                    "a label longer than {MAX_LABEL_LEN} bytes"
                )));
            }
            Ok(Sample {
                labels: raw.metric,
                value: parse_value(&raw.value.1),
            })
        })
        .collect()
}

/// A Prometheus sample value; non-finite ones (NaN, ±Inf) are `None`.
pub fn parse_value(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Prometheus's error texts, shortened for a status line.
fn truncate(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A PromQL string literal holding `value`: quoted, with `\` and `"`
/// escaped, so no value (a cluster name, say) can change a query's shape.
pub fn string_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_a_vector_and_its_labels() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"service":"backend","src_service":"frontend"},"value":[1700000000.1,"2.5"]},
            {"metric":{"service":"api"},"value":[1700000000.1,"NaN"]},
            {"metric":{},"value":[1700000000.1,"+Inf"]}]}}"#;
        let samples = parse_vector(body).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].label("src_service"), "frontend");
        assert_eq!(samples[0].label("src_peer"), "");
        assert_eq!(samples[0].value, Some(2.5));
        assert_eq!(samples[1].value, None);
        assert_eq!(samples[2].value, None);
    }

    #[test]
    fn an_error_answer_carries_prometheus_text() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(
            parse_vector(body).unwrap_err().to_string(),
            "Prometheus refused the query (bad_data): parse error"
        );
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(matches!(
            parse_vector(matrix),
            Err(PromqlError::Malformed(_))
        ));
        assert!(matches!(
            parse_vector(b"<html>"),
            Err(PromqlError::Malformed(_))
        ));
    }

    #[test]
    fn too_many_series_or_labels_are_refused() {
        let one = r#"{"metric":{"a":"b"},"value":[1,"1"]}"#;
        let many = vec![one; MAX_SERIES + 1].join(",");
        let body =
            format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{many}]}}}}"#);
        assert_eq!(
            parse_vector(body.as_bytes()),
            Err(PromqlError::TooManySeries {
                got: MAX_SERIES + 1,
                max: MAX_SERIES
            })
        );
        let long = "x".repeat(MAX_LABEL_LEN + 1);
        let body = format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{"a":"{long}"}},"value":[1,"1"]}}]}}}}"#
        );
        assert!(parse_vector(body.as_bytes()).is_err());
    }

    #[test]
    fn string_literals_cannot_break_out() {
        assert_eq!(string_literal("dc1"), "\"dc1\"");
        assert_eq!(string_literal("a\"}or vector(1)"), "\"a\\\"}or vector(1)\"");
        assert_eq!(string_literal("a\\"), "\"a\\\\\"");
    }

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            "[a-z\"{}NaN+Inf0-9.]{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("status".to_owned()),
                        Just("data".to_owned()),
                        Just("resultType".to_owned()),
                        Just("result".to_owned()),
                        Just("metric".to_owned()),
                        Just("value".to_owned()),
                        "[a-z]{1,6}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_json_never_panics(value in json()) {
            let _ = parse_vector(value.to_string().as_bytes());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_vector(&bytes);
        }

        #[test]
        fn well_formed_vectors_keep_every_finite_value(values in prop::collection::vec(-1e9f64..1e9, 0..20)) {
            let result: Vec<serde_json::Value> = values.iter().map(|v| serde_json::json!({
                "metric": {"service": "s"}, "value": [1.0, v.to_string()]
            })).collect();
            let body = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}});
            let samples = parse_vector(body.to_string().as_bytes()).unwrap();
            let got: Vec<f64> = samples.iter().map(|s| s.value.unwrap()).collect();
            prop_assert_eq!(got, values);
        }
    }
}
