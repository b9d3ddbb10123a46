//! How each trigger carries device payloads, for tests that send the same
//! payloads through all of them (hostile input, device-side batching).

use base64::Engine;
use serde_json::json;

/// Messages as (message id, payload).
pub type Messages<'a> = [(&'a str, &'a [u8])];

/// One trigger of the functions, and how it wraps messages into an event.
pub struct Trigger {
    pub name: &'static str,
    /// Carries any bytes (base64), not only text.
    pub binary: bool,
    /// Carries only JSON objects: the event is, or holds, the payload, and
    /// Lambda takes only JSON events.
    pub objects_only: bool,
    /// One event may carry several messages.
    pub batches: bool,
    wrap: fn(&Messages<'_>) -> Vec<u8>,
}

impl Trigger {
    /// An event carrying `messages` as (message id, payload); a trigger
    /// that does not batch takes exactly one.
    pub fn event(&self, messages: &Messages<'_>) -> Vec<u8> {
        assert!(
            self.batches || messages.len() == 1,
            "{} carries one message per event",
            self.name
        );
        (self.wrap)(messages)
    }
}

fn text(payload: &[u8]) -> String {
    String::from_utf8(payload.to_vec()).expect("a text trigger carries text")
}

fn b64(payload: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(payload)
}

fn json_bytes(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).expect("JSON serialises")
}

/// Every trigger that carries device payloads.
pub const TRIGGERS: [Trigger; 7] = [
    Trigger {
        name: "sqs",
        binary: false,
        objects_only: false,
        batches: true,
        wrap: |messages| {
            let records: Vec<_> = messages
                .iter()
                .map(|(id, payload)| json!({"messageId": id, "eventSource": "aws:sqs", "body": text(payload)}))
                .collect();
            json_bytes(json!({ "Records": records }))
        },
    },
    Trigger {
        name: "sns",
        binary: false,
        objects_only: false,
        batches: false,
        wrap: |messages| {
            let (id, payload) = messages[0];
            json_bytes(json!({"Records": [{"EventSource": "aws:sns",
                "Sns": {"MessageId": id, "Message": text(payload), "Timestamp": "2026-12-01T00:00:00.000Z"}}]}))
        },
    },
    Trigger {
        name: "sqs-sns",
        binary: false,
        objects_only: false,
        batches: true,
        wrap: |messages| {
            // As SNS writes it: `Type` first (json! would sort the keys).
            let records: Vec<_> = messages
                .iter()
                .map(|(id, payload)| {
                    let note = format!(
                        r#"{{"Type": "Notification", "MessageId": "{id}", "Message": {}}}"#,
                        serde_json::to_string(&text(payload)).unwrap()
                    );
                    json!({"messageId": id, "eventSource": "aws:sqs", "body": note})
                })
                .collect();
            json_bytes(json!({ "Records": records }))
        },
    },
    Trigger {
        name: "kinesis",
        binary: true,
        objects_only: false,
        batches: true,
        wrap: |messages| {
            let records: Vec<_> = messages
                .iter()
                .map(|(id, payload)| {
                    json!({"eventSource": "aws:kinesis",
                    "kinesis": {"data": b64(payload), "sequenceNumber": id}})
                })
                .collect();
            json_bytes(json!({ "Records": records }))
        },
    },
    Trigger {
        name: "pubsub-push",
        binary: true,
        objects_only: false,
        batches: false,
        wrap: |messages| {
            let (id, payload) = messages[0];
            json_bytes(json!({"message": {"data": b64(payload), "messageId": id},
                "subscription": "projects/p/subscriptions/s"}))
        },
    },
    Trigger {
        name: "eventbridge",
        binary: false,
        objects_only: true,
        batches: false,
        wrap: |messages| {
            let (id, payload) = messages[0];
            format!(
                r#"{{"id": "{id}", "detail-type": "telemetry", "source": "iot", "time": "2026-12-01T00:00:00Z", "detail": {}}}"#,
                text(payload)
            )
            .into_bytes()
        },
    },
    Trigger {
        name: "iot-rule",
        binary: false,
        objects_only: true,
        batches: true,
        // The rule's output is the event (it has no message ids); a rule
        // batch is an array of outputs.
        wrap: |messages| match messages {
            [(_, payload)] => payload.to_vec(),
            _ => {
                let outputs: Vec<String> = messages.iter().map(|(_, p)| text(p)).collect();
                format!("[{}]", outputs.join(", ")).into_bytes()
            }
        },
    },
];
