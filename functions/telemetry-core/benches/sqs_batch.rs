//! The SQS batch the micro-benchmarks and the profiling example share:
//! 10,000 records of reference 000's payload from 100 devices.

pub const MESSAGES: usize = 10_000;

/// An SQS batch of reference 000's payload from 100 devices.
pub fn sqs_batch() -> Vec<u8> {
    sqs_event(|i| {
        format!(
            "{{\n    \"timestamp\": {},\n    \"device\": \"temp-sensor-{:03}\",\n    \"temperature\": {}\n}}",
            1_645_938_000 + (i / 100) as i64,
            i % 100,
            17.0 + (i % 97) as f64 * 0.013
        )
    })
}

/// An SQS batch of reference 003's payload (name, unit, value as text) as
/// the topic rule passes it on with the client id, from 100 devices.
#[allow(dead_code)] // used by examples/time_handler.rs only
pub fn sqs_batch_003() -> Vec<u8> {
    sqs_event(|i| {
        format!(
            "{{\n\"name\": \"cpu usage (raspberrypi-{:03})\",\n\"unit\": \"Percent\",\n\"value\": \"{} \",\n\"client_id\": \"raspberrypi-{:03}\"\n}}",
            i % 100,
            i % 100,
            i % 100
        )
    })
}

/// Records are written in the order AWS writes them (serde_json's own map
/// would sort the keys, which no real event does).
fn sqs_event(body_of: impl Fn(usize) -> String) -> Vec<u8> {
    let records: Vec<String> = (0..MESSAGES)
        .map(|i| {
            let body = serde_json::to_string(&body_of(i)).unwrap();
            format!(
                concat!(
                    r#"{{"messageId":"059f36b4-87a3-44ab-83d2-{:012}","#,
                    r#""receiptHandle":"AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a","body":{},"#,
                    r#""attributes":{{"ApproximateReceiveCount":"1","SentTimestamp":"1645938062000","#,
                    r#""SenderId":"AIDAIENQZJOLO23YVJ4VO","ApproximateFirstReceiveTimestamp":"1645938062005"}},"#,
                    r#""messageAttributes":{{}},"md5OfBody":"e4e68fb7bd0e697a0ae8f1bb342846b3","#,
                    r#""eventSource":"aws:sqs","#,
                    r#""eventSourceARN":"arn:aws:sqs:us-east-1:123456789012:iot-telemetry","#,
                    r#""awsRegion":"us-east-1"}}"#
                ),
                i, body
            )
        })
        .collect();
    let event = format!(r#"{{"Records":[{}]}}"#, records.join(","));
    // Still an SQS event serde_json reads.
    debug_assert!(serde_json::from_str::<serde_json::Value>(&event).is_ok());
    event.into_bytes()
}
