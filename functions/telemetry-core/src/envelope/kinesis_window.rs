//! Kinesis with a tumbling window: besides `Records`, Lambda passes
//! `window {start, end}`, `state`, `shardId`, `isFinalInvokeForWindow` and
//! `isWindowTerminatedEarly`, and reads `{"state", "batchItemFailures"}`
//! back. `aws_lambda_events`'s `KinesisTimeWindowEvent` types `state` as
//! string -> string, which AWS's own documented example (`{"1": 282}`)
//! does not parse as, so these small strict types are ours. They are read in
//! the same pass over the event's top level as its records.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{EnvelopeError, TopLevel};

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
struct WindowRange {
    start: String,
    end: String,
}

/// The tumbling window of an event with `Records`, read from the same pass
/// over the top level as the records; `None` when it has none (a stream
/// mapping without `TumblingWindowInSeconds`, or another trigger).
pub(super) fn tumbling_window(top: &TopLevel<'_>) -> Result<Option<TumblingWindow>, EnvelopeError> {
    let Some(window) = top.window else {
        return Ok(None);
    };
    let range: WindowRange = field("window", window)?;
    let start_ms = rfc3339_ms("window.start", &range.start)?;
    let end_ms = rfc3339_ms("window.end", &range.end)?;
    if end_ms <= start_ms {
        return Err(EnvelopeError::InvalidField {
            field: "window",
            why: format!("end {} is not after start {}", range.end, range.start),
        });
    }
    let flag = |name: &'static str, raw: Option<&RawValue>| -> Result<bool, EnvelopeError> {
        Ok(raw
            .map(|raw| field::<Option<bool>>(name, raw))
            .transpose()?
            .flatten()
            .unwrap_or(false))
    };
    Ok(Some(TumblingWindow {
        start_ms,
        end_ms,
        state: top
            .state
            .map(|raw| field::<Value>("state", raw))
            .transpose()?,
        shard_id: top
            .shard_id
            .map(|raw| field::<Option<String>>("shardId", raw))
            .transpose()?
            .flatten(),
        is_final: flag("isFinalInvokeForWindow", top.is_final_invoke_for_window)?,
        terminated_early: flag("isWindowTerminatedEarly", top.is_window_terminated_early)?,
    }))
}

fn field<'a, T: Deserialize<'a>>(
    name: &'static str,
    raw: &'a RawValue,
) -> Result<T, EnvelopeError> {
    serde_json::from_str(raw.get()).map_err(|error| EnvelopeError::InvalidField {
        field: name,
        why: format!("{}: {error}", raw.get()),
    })
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

    fn window_of(event: &[u8]) -> Result<Option<TumblingWindow>, EnvelopeError> {
        parse_event(event).map(|envelope| envelope.window)
    }

    #[test]
    fn reads_aws_documented_example() {
        let window = window_of(AWS_EXAMPLE.as_bytes()).unwrap().unwrap();
        assert_eq!(window.start_ms, 1_607_497_440_000);
        assert_eq!(window.end_ms, 1_607_497_560_000);
        assert_eq!(window.state, Some(serde_json::json!({"1": 282, "2": 715})));
        assert_eq!(window.shard_id.as_deref(), Some("shardId-000000000006"));
        assert!(!window.is_final && !window.terminated_early);
        let envelope = parse_event(AWS_EXAMPLE.as_bytes()).unwrap();
        assert!(envelope.window.is_some());
        assert_eq!(envelope.kind, EventKind::Kinesis);
        assert_eq!(
            &*envelope.messages[0].payload.bytes(),
            b"Hello, this is a test."
        );
    }

    #[test]
    fn an_event_without_a_window_has_none_and_a_bad_window_names_its_field() {
        assert_eq!(window_of(br#"{"Records": []}"#).unwrap(), None);
        let bad =
            br#"{"Records": [], "window": {"start": "yesterday", "end": "2020-12-09T07:06:00Z"}}"#;
        let error = window_of(bad).unwrap_err().to_string();
        assert!(
            error.contains("window.start") && error.contains("yesterday"),
            "{error}"
        );
        let backwards =
            br#"{"Records": [], "window": {"start": "2020-12-09T07:06:00Z", "end": "2020-12-09T07:04:00Z"}}"#;
        assert!(window_of(backwards).is_err());
        let not_a_flag = br#"{"Records": [], "window": {"start": "2020-12-09T07:04:00Z", "end": "2020-12-09T07:06:00Z"}, "isFinalInvokeForWindow": "yes"}"#;
        let error = window_of(not_a_flag).unwrap_err().to_string();
        assert!(
            error.contains("isFinalInvokeForWindow") && error.contains("yes"),
            "{error}"
        );
    }
}
