//! Strategies for the "nothing vanishes" properties: one message of any
//! shape through each trigger that carries raw payloads.

use base64::Engine;
use proptest::prelude::*;
use serde_json::json;

/// JSON-like text: real JSON values (empty and nested arrays and objects,
/// numbers, strings), JSON with damage, and arbitrary text.
pub(crate) fn payload_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        "[a-z0-9 |:-]{0,8}".prop_map(|s| format!("\"{s}\"")),
    ];
    let json = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|items| format!("[{}]", items.join(","))),
            proptest::collection::vec(("[a-z_]{1,8}", inner), 0..4).prop_map(|fields| {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(key, value)| format!("\"{key}\":{value}"))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    });
    prop_oneof![
        4 => json.clone(),
        1 => (json, 0..64usize).prop_map(|(text, cut)| {
            let cut = text.char_indices().nth(cut).map_or(text.len(), |(at, _)| at);
            text[..cut].to_owned()
        }),
        1 => Just("[]".to_owned()),
        1 => Just("\n[] ".to_owned()),
        1 => any::<String>(),
    ]
}

/// One event with one message holding `payload`: an SQS body (0), a
/// Kinesis record (1) or an IoT rule event made of arbitrary bytes (2).
pub(crate) fn one_message_event() -> impl Strategy<Value = Vec<u8>> {
    (
        payload_text(),
        proptest::collection::vec(any::<u8>(), 0..64),
        0..3u8,
    )
        .prop_map(|(text, bytes, trigger)| match trigger {
            0 => serde_json::to_vec(&json!({"Records": [
                {"messageId": "m-1", "eventSource": "aws:sqs", "body": text}
            ]}))
            .unwrap(),
            1 => {
                let data = if bytes.len() % 2 == 0 {
                    text.into_bytes()
                } else {
                    bytes
                };
                serde_json::to_vec(&json!({"Records": [{
                    "eventSource": "aws:kinesis",
                    "kinesis": {
                        "data": base64::engine::general_purpose::STANDARD.encode(data),
                        "sequenceNumber": "1",
                    }
                }]}))
                .unwrap()
            }
            // An IoT rule's SELECT output is the event itself: anything.
            _ if bytes.len() % 2 == 0 => text.into_bytes(),
            _ => bytes,
        })
}
