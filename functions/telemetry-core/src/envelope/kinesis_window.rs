//! Kinesis with a tumbling window: besides `Records`, Lambda passes
//! `window {start, end}`, `state`, `shardId`, `isFinalInvokeForWindow` and
//! `isWindowTerminatedEarly`, and reads `{"state", "batchItemFailures"}`
//! back. `aws_lambda_events`'s `KinesisTimeWindowEvent` types `state` as
//! string -> string, which AWS's own documented example (`{"1": 282}`)
//! does not parse as, so these small strict types are ours.

use serde::Deserialize;
use serde_json::Value;

use super::EnvelopeError;

/// The window part of an event (the records are read by `parse_event`).
#[derive(Debug, Clone, PartialEq)]
pub struct TumblingWindow {
    /// Lambda's window, by arrival time, epoch ms.
    pub start_ms: i64,
    pub end_ms: i64,
    /// The state the previous invocation of this window handed back, as
    /// it came (`None`: the window's first invocation).
    pub state: Option<Value>,
    pub shard_id: Option<String>,
    /// Lambda deletes the state after this invocation.
    pub is_final: bool,
    /// Lambda ended the window early (the state reached 1 MB).
    pub terminated_early: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WindowFields {
    window: Option<WindowRange>,
    #[serde(default)]
    state: Option<Value>,
    #[serde(default)]
    shard_id: Option<String>,
    #[serde(default)]
    is_final_invoke_for_window: Option<bool>,
    #[serde(default)]
    is_window_terminated_early: Option<bool>,
}

#[derive(Deserialize)]
struct WindowRange {
    start: String,
    end: String,
}

/// The tumbling window of a Kinesis event, `None` when it has none (a
/// stream mapping without `TumblingWindowInSeconds`, or another trigger).
pub fn parse_tumbling_window(event: &[u8]) -> Result<Option<TumblingWindow>, EnvelopeError> {
    let fields: WindowFields = serde_json::from_slice(event).map_err(EnvelopeError::NotJson)?;
    let Some(range) = fields.window else {
        return Ok(None);
    };
    let start_ms = rfc3339_ms("window.start", &range.start)?;
    let end_ms = rfc3339_ms("window.end", &range.end)?;
    if end_ms <= start_ms {
        return Err(EnvelopeError::InvalidField {
            field: "window",
            why: format!("end {} is not after start {}", range.end, range.start),
        });
    }
    Ok(Some(TumblingWindow {
        start_ms,
        end_ms,
        state: fields.state,
        shard_id: fields.shard_id,
        is_final: fields.is_final_invoke_for_window.unwrap_or(false),
        terminated_early: fields.is_window_terminated_early.unwrap_or(false),
    }))
}

fn rfc3339_ms(field: &'static str, text: &str) -> Result<i64, EnvelopeError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.timestamp_millis())
        .map_err(|error| EnvelopeError::InvalidField {
            field,
            why: format!("{text:?} is not an RFC 3339 time ({error})"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{parse_event, EventKind};

    /// AWS's documented `KinesisTimeWindowEvent`, as the Lambda developer
    /// guide ("Stateful processing of Kinesis Data Streams") shows it.
    const AWS_EXAMPLE: &str = r#"{
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "1",
                    "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                    "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
                    "approximateArrivalTimestamp": 1607497475.000
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": "shardId-000000000006:49590338271490256608559692538361571095921575989136588898",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-kinesis-role",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream"
            }
        ],
        "window": {
            "start": "2020-12-09T07:04:00Z",
            "end": "2020-12-09T07:06:00Z"
        },
        "state": {
            "1": 282,
            "2": 715
        },
        "shardId": "shardId-000000000006",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream",
        "isFinalInvokeForWindow": false,
        "isWindowTerminatedEarly": false
    }"#;

    #[test]
    fn reads_aws_documented_example() {
        let window = parse_tumbling_window(AWS_EXAMPLE.as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(window.start_ms, 1_607_497_440_000);
        assert_eq!(window.end_ms, 1_607_497_560_000);
        assert_eq!(window.state, Some(serde_json::json!({"1": 282, "2": 715})));
        assert_eq!(window.shard_id.as_deref(), Some("shardId-000000000006"));
        assert!(!window.is_final && !window.terminated_early);
        let envelope = parse_event(AWS_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(envelope.kind, EventKind::Kinesis);
        assert_eq!(
            &*envelope.messages[0].payload.bytes(),
            b"Hello, this is a test."
        );
    }

    #[test]
    fn an_event_without_a_window_has_none_and_a_bad_window_names_its_field() {
        assert_eq!(parse_tumbling_window(br#"{"Records": []}"#).unwrap(), None);
        let bad =
            br#"{"Records": [], "window": {"start": "yesterday", "end": "2020-12-09T07:06:00Z"}}"#;
        let error = parse_tumbling_window(bad).unwrap_err().to_string();
        assert!(
            error.contains("window.start") && error.contains("yesterday"),
            "{error}"
        );
        let backwards =
            br#"{"window": {"start": "2020-12-09T07:06:00Z", "end": "2020-12-09T07:04:00Z"}}"#;
        assert!(parse_tumbling_window(backwards).is_err());
    }
}
