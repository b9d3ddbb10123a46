//! Capturing sinks and readers for what the pipeline emits: dead letters
//! kept in memory, and EMF lines read back as metrics.

use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;
use telemetry_core::sink::dead_letter::DeadLetter;
use telemetry_core::sink::{DeadLetterError, DeadLetterSink};

/// Keeps dead letters in memory; can be told to fail.
#[derive(Default)]
pub struct CapturedDeadLetters {
    pub letters: Mutex<Vec<DeadLetter>>,
    pub fail: bool,
}

#[async_trait]
impl DeadLetterSink for CapturedDeadLetters {
    async fn write(&self, letters: &[DeadLetter]) -> Result<String, DeadLetterError> {
        if self.fail {
            return Err(DeadLetterError {
                destination: "memory".into(),
                reason: "simulated outage".into(),
            });
        }
        self.letters.lock().unwrap().extend_from_slice(letters);
        Ok("memory".into())
    }
}

/// One metric value as EMF declares it, flattened for comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct EmittedMetric {
    pub device: String,
    pub metric: String,
    pub value: f64,
    pub unit: String,
    pub timestamp_ms: i64,
    pub dimensions: Vec<(String, String)>,
    pub namespace: String,
}

/// Reads EMF lines back as a CloudWatch agent would: checks the structure
/// and expands value arrays.
pub fn parse_emf(output: &[u8]) -> Vec<EmittedMetric> {
    let text = std::str::from_utf8(output).expect("EMF is UTF-8");
    let mut metrics = Vec::new();
    for line in text.lines() {
        let doc: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("EMF line is JSON ({e}): {line}"));
        let aws = &doc["_aws"];
        let timestamp_ms = aws["Timestamp"].as_i64().expect("EMF Timestamp in ms");
        let directives = aws["CloudWatchMetrics"]
            .as_array()
            .expect("CloudWatchMetrics");
        for directive in directives {
            let namespace = directive["Namespace"]
                .as_str()
                .expect("Namespace")
                .to_owned();
            let dimension_set = directive["Dimensions"][0]
                .as_array()
                .expect("one dimension set");
            assert!(dimension_set.len() <= 30, "EMF allows 30 dimensions");
            let definitions = directive["Metrics"].as_array().expect("Metrics");
            assert!(
                definitions.len() <= 100,
                "EMF allows 100 metrics per document"
            );
            let dimensions: Vec<(String, String)> = dimension_set
                .iter()
                .map(|name| {
                    let name = name.as_str().unwrap();
                    (
                        name.to_owned(),
                        doc[name]
                            .as_str()
                            .expect("dimension value is a string")
                            .to_owned(),
                    )
                })
                .collect();
            for definition in definitions {
                let name = definition["Name"].as_str().unwrap();
                let values: Vec<f64> = match &doc[name] {
                    Value::Array(values) => values.iter().map(|v| v.as_f64().unwrap()).collect(),
                    value => vec![value.as_f64().expect("metric value is a number")],
                };
                for value in values {
                    metrics.push(EmittedMetric {
                        device: doc["device"].as_str().expect("device dimension").to_owned(),
                        metric: name.to_owned(),
                        value,
                        unit: definition["Unit"].as_str().unwrap_or("None").to_owned(),
                        timestamp_ms,
                        dimensions: dimensions
                            .iter()
                            .filter(|(n, _)| n != "device")
                            .cloned()
                            .collect(),
                        namespace: namespace.clone(),
                    });
                }
            }
        }
    }
    metrics
}
