//! Device-side batching: a JSON array of readings, or an object with an
//! array of readings, decodes to one reading per element, each with its own
//! timestamp, from every trigger, with no mapping.

use e2e_tests::triggers::TRIGGERS;
use telemetry_core::envelope::parse_event;
use telemetry_core::payload::mapping::Mappings;
use telemetry_core::reading::decode::decode_message;

const NOW_MS: i64 = 1_645_938_300_000;

const READINGS: [(&str, &str, f64, i64); 3] = [
    ("t-1", "temperature", 20.5, 1645937940000),
    ("t-1", "temperature", 21.0, 1645938000000),
    ("t-1", "temperature", 21.5, 1645938060000),
];

fn decoded(event: &[u8], what: &str) -> Vec<(String, String, f64, i64)> {
    let envelope = parse_event(event).unwrap_or_else(|error| panic!("{what}: {error}"));
    let mut readings = Vec::new();
    for (index, message) in envelope.messages.iter().enumerate() {
        decode_message(
            &Mappings::default(),
            message,
            index as u32,
            NOW_MS,
            &mut readings,
        )
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    }
    readings
        .iter()
        .map(|r| {
            (
                r.device.to_string(),
                r.metric.to_string(),
                r.value,
                r.timestamp_ms,
            )
        })
        .collect()
}

fn expected() -> Vec<(String, String, f64, i64)> {
    READINGS
        .iter()
        .map(|(device, metric, value, at)| (device.to_string(), metric.to_string(), *value, *at))
        .collect()
}

#[test]
fn batched_payloads_decode_to_one_reading_per_element_from_every_trigger() {
    let elements = [
        r#"{"device": "t-1", "timestamp": 1645937940, "temperature": 20.5}"#,
        r#"{"device": "t-1", "timestamp": 1645938000, "temperature": 21.0}"#,
        r#"{"device": "t-1", "timestamp": 1645938060, "temperature": 21.5}"#,
    ];
    let array = format!("[{}]", elements.join(",\n"));
    let object = r#"{"device": "t-1", "site": "izmir", "readings": [
        {"timestamp": 1645937940, "temperature": 20.5},
        {"timestamp": 1645938000, "temperature": 21.0},
        {"timestamp": 1645938060, "temperature": 21.5, "device": "t-1"}]}"#;
    for trigger in &TRIGGERS {
        let what = |shape: &str| format!("{} {shape}", trigger.name);
        assert_eq!(
            decoded(
                &trigger.event(&[("m-1", object.as_bytes())]),
                &what("object")
            ),
            expected(),
            "{}",
            what("object")
        );
        // An array in one message; a topic rule's event must be an object,
        // and its array is a batch of messages, one per element, which
        // decodes to the same readings. EventBridge carries objects only.
        let event = if !trigger.objects_only {
            trigger.event(&[("m-1", array.as_bytes())])
        } else if trigger.batches {
            let messages: Vec<(&str, &[u8])> = elements
                .iter()
                .map(|element| ("m", element.as_bytes()))
                .collect();
            trigger.event(&messages)
        } else {
            continue;
        };
        assert_eq!(
            decoded(&event, &what("array")),
            expected(),
            "{}",
            what("array")
        );
    }
}

/// A topic rule that adds its metadata (`topic() AS topic`) to a batched
/// object, or to each output of a rule batch, changes nothing.
#[test]
fn batches_with_topic_rule_metadata_decode_alike() {
    let object = r#"{"device": "t-1", "topic": "dt/t-1/telemetry", "readings": [
        {"timestamp": 1645937940, "temperature": 20.5},
        {"timestamp": 1645938000, "temperature": 21.0},
        {"timestamp": 1645938060, "temperature": 21.5}]}"#;
    let batch = r#"[
        {"device": "t-1", "timestamp": 1645937940, "temperature": 20.5, "topic": "dt/t-1/telemetry"},
        {"device": "t-1", "timestamp": 1645938000, "temperature": 21.0, "topic": "dt/t-1/telemetry"},
        {"device": "t-1", "timestamp": 1645938060, "temperature": 21.5, "topic": "dt/t-1/telemetry"}]"#;
    for event in [object, batch] {
        assert_eq!(decoded(event.as_bytes(), event), expected());
    }
}
