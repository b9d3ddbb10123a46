//! Events written inline by a test, when no sample in events/ fits.

use serde_json::{json, Value};

/// An SQS batch: one record per (message id, body).
pub fn sqs_event(records: &[(impl AsRef<str>, impl AsRef<str>)]) -> Vec<u8> {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, body)| {
            json!({"messageId": id.as_ref(), "eventSource": "aws:sqs", "body": body.as_ref()})
        })
        .collect();
    serde_json::to_vec(&json!({ "Records": records })).expect("JSON serialises")
}

/// The ids a batch answer asks to retry (`batchItemFailures[].itemIdentifier`).
pub fn retry_ids(answer: &Value) -> Vec<String> {
    answer["batchItemFailures"]
        .as_array()
        .expect("a batch answer")
        .iter()
        .map(|item| item["itemIdentifier"].as_str().unwrap().to_owned())
        .collect()
}
