//! The checks the fuzz targets (`fuzz/`) run on arbitrary bytes, kept here
//! so they reach the crate's internals (the hand-written JSON scanner) and
//! so `cargo test` runs them on the saved corpus and every past crasher
//! (`fuzz/corpus/`, `fuzz/regressions/`). Each check panics when a decoder
//! panics or when the fast path disagrees with `serde_json`; anything a
//! decoder refuses with an error is fine.

use serde_json::Value;

use crate::config::pipeline_file::PipelineFile;
use crate::envelope::{parse_event, scanner_and_serde_reads, MessageSource, RawMessage};
use crate::payload::fields::{Field, ObjectFields};
use crate::payload::mapping::{Mappings, PayloadFormat};
use crate::payload::records::for_each_record;
use crate::reading::decode::decode_message;
use crate::reading::validate::validate;
use crate::window::state::decode_state;

/// The clock the checks decode at (the sample events' 2022-02-27 05:05 UTC).
const NOW_MS: i64 = 1_645_938_300_000;

/// The flat-object scanner against `serde_json`: what the scanner accepts,
/// serde accepts with the same fields and values (the scanner may decline
/// valid JSON, leaving it to serde, never the reverse); the escaped scanner
/// (an SQS body read inside its JSON string) reads the same; and the public
/// `ObjectFields::from_json` accepts exactly what serde accepts.
pub fn json_object(data: &[u8]) {
    let serde = serde_json::from_slice::<serde_json::Map<String, Value>>(data);
    let public = ObjectFields::from_json(data);
    // Objects with a key twice are refused on purpose (serde_json keeps
    // the last value).
    let repeated = serde.is_ok()
        && serde_json::from_slice::<Keys>(data)
            .is_ok_and(|keys| keys.0.len() != serde.as_ref().map_or(0, |map| map.len()));
    assert_eq!(
        public.is_ok(),
        serde.is_ok() && !repeated,
        "ObjectFields::from_json and serde_json disagree on {:?}: {:?} {:?}",
        String::from_utf8_lossy(data),
        serde.as_ref().err(),
        public.as_ref().err()
    );
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(scanned) = ObjectFields::scan(text) {
        let serde = serde.as_ref().unwrap_or_else(|error| {
            panic!("the scanner accepted what serde_json refuses ({error}): {text:?}")
        });
        assert_same_fields(&scanned, serde, text);
    }
    let quoted = serde_json::to_string(text).expect("a str serialises");
    let inner = &quoted[1..quoted.len() - 1];
    if let Some(scanned) = ObjectFields::from_escaped_json(inner) {
        let serde = serde.as_ref().unwrap_or_else(|error| {
            panic!("the escaped scanner accepted what serde_json refuses ({error}): {text:?}")
        });
        assert_same_fields(&scanned, serde, text);
    }
}

/// An object's keys in order, repeats included.
struct Keys(Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeysVisitor;
        impl<'de> serde::de::Visitor<'de> for KeysVisitor {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Keys, M::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(Keys(keys))
            }
        }
        deserializer.deserialize_map(KeysVisitor)
    }
}

fn assert_same_fields(
    scanned: &ObjectFields<'_>,
    serde: &serde_json::Map<String, Value>,
    text: &str,
) {
    // The scanner declines duplicate keys, so the counts match.
    assert_eq!(scanned.entries().len(), serde.len(), "fields of {text:?}");
    for (key, field) in scanned.entries() {
        let value = serde
            .get(key.as_ref())
            .unwrap_or_else(|| panic!("key {key:?} of {text:?} unknown to serde_json"));
        assert!(
            same_value(field, value),
            "{key:?} of {text:?}: scanner {field:?}, serde_json {value}"
        );
    }
}

fn same_value(field: &Field<'_>, value: &Value) -> bool {
    match (field, value) {
        // `-0` is the integer 0 to the scanner and -0.0 to serde_json.
        (Field::Int(integer), value) => {
            value.as_i64() == Some(*integer)
                || (value.is_f64() && value.as_f64() == Some(*integer as f64))
        }
        // Both parse correctly rounded (the workspace enables serde_json's
        // `float_roundtrip`), so the same text is the same f64.
        (Field::Number(number), Value::Number(serde)) => serde.as_f64() == Some(*number),
        (Field::Text(text), Value::String(serde)) => text == serde,
        (Field::Bool(flag), Value::Bool(serde)) => flag == serde,
        (Field::Null, Value::Null) => true,
        (Field::Nested(raw), value) => {
            serde_json::from_str::<Value>(raw).ok().as_ref() == Some(value)
        }
        _ => false,
    }
}

/// An event of any trigger: parsing never panics; where the SQS scanner
/// reads it, serde reads the same; every message then decodes to readings
/// that name it, or to an error, and every reading passes or fails
/// validation with a reason; the warehouse's record walk never panics.
pub fn event(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some((scanned, serde)) = scanner_and_serde_reads(text) {
            let serde = serde.unwrap_or_else(|error| {
                panic!("the SQS scanner accepted what serde refuses ({error}): {text:?}")
            });
            assert_eq!(
                scanned, serde,
                "the SQS scanner and serde read {text:?} differently"
            );
        }
    }
    let Ok(envelope) = parse_event(data) else {
        return;
    };
    for (index, message) in envelope.messages.iter().enumerate() {
        decode_and_validate(&Mappings::default(), message, index as u32);
    }
}

/// One device payload as every trigger would hand it over.
pub fn payload(data: &[u8]) {
    let message = RawMessage::new(
        MessageSource::Sqs,
        std::borrow::Cow::Borrowed("fuzz"),
        std::borrow::Cow::Borrowed(data),
    );
    decode_and_validate(&Mappings::default(), &message, 0);
}

fn decode_and_validate(mappings: &Mappings, message: &RawMessage<'_>, index: u32) {
    let mut readings = Vec::new();
    match decode_message(mappings, message, index, NOW_MS, &mut readings) {
        Ok(added) => {
            assert!(added > 0, "Ok with no reading is a vanished message");
            assert_eq!(added, readings.len());
            assert!(readings.iter().all(|reading| reading.message == index));
        }
        Err(_) => assert!(readings.is_empty(), "an error leaves no reading behind"),
    }
    for reading in &readings {
        if let Err(error) = validate(reading, NOW_MS) {
            assert!(!error.to_string().is_empty());
        }
    }
    let mut records = 0usize;
    let _ = for_each_record(message, PayloadFormat::Auto, NOW_MS, &mut |_| {
        records += 1;
        Ok(())
    });
}

/// A pipeline file (TOML): parsing never panics, and its mappings decode
/// the references' payloads without panicking.
pub fn pipeline_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = PipelineFile::parse(text) else {
        return;
    };
    for (topic, payload) in [
        (
            "devices/t-1/telemetry",
            &br#"{"timestamp": 1645938060, "device": "t-1", "temperature": 17.9}"#[..],
        ),
        ("devices/pi/text", b"2022-2-27 5:3:23|3500"),
        (
            "devices/pi/status",
            br#"{"name": "cpu", "unit": "Percent", "value": "42 "}"#,
        ),
    ] {
        let mut message = RawMessage::new(
            MessageSource::Sqs,
            std::borrow::Cow::Borrowed("fuzz"),
            std::borrow::Cow::Borrowed(payload),
        );
        message.topic = Some(std::borrow::Cow::Borrowed(topic));
        decode_and_validate(&file.mappings, &message, 0);
    }
}

/// A tumbling window's `state` (JSON, as Lambda hands it back): a state or
/// an error, never a panic.
pub fn window_state(data: &[u8]) {
    if let Ok(state) = serde_json::from_slice::<Value>(data) {
        let _ = decode_state(Some(&state));
    }
    // Arbitrary bytes as the base64 `data` of a state in our format.
    let state = serde_json::json!({
        "format": crate::window::state::STATE_FORMAT,
        "series": 1,
        "data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data),
    });
    let _ = decode_state(Some(&state));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::{Path, PathBuf};

    /// Every saved input of a fuzz target: its corpus and its regressions
    /// (crashers found and fixed), each checked again.
    fn saved_inputs(target: &str) -> Vec<PathBuf> {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut inputs = Vec::new();
        for kind in ["corpus", "regressions"] {
            if let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) {
                inputs.extend(entries.filter_map(Result::ok).map(|entry| entry.path()));
            }
        }
        inputs.sort();
        inputs
    }

    #[test]
    fn the_saved_fuzz_inputs_still_pass() {
        type Check = fn(&[u8]);
        let targets: [(&str, Check); 5] = [
            ("json_object", json_object),
            ("event", event),
            ("payload", payload),
            ("pipeline_file", pipeline_file),
            ("window_state", window_state),
        ];
        for (target, check) in targets {
            let inputs = saved_inputs(target);
            assert!(!inputs.is_empty(), "fuzz/corpus/{target} is empty");
            for input in inputs {
                let data = std::fs::read(&input).unwrap();
                let outcome = std::panic::catch_unwind(|| check(&data));
                assert!(outcome.is_ok(), "{target}: {} fails again", input.display());
            }
        }
    }

    /// The checks catch what they claim to: a scanner that read a number
    /// differently from serde would fail `json_object`.
    #[test]
    fn the_differential_check_can_fail() {
        let value = serde_json::json!(1.5);
        assert!(same_value(&Field::Number(1.5), &value));
        assert!(!same_value(&Field::Number(1.6), &value));
        assert!(!same_value(&Field::Text("1.5".into()), &value));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn json_objects_read_alike(text in crate::invocation::hostile::payload_text()) {
            json_object(text.as_bytes());
            json_object(format!("{{\"a\": {text}}}").as_bytes());
        }

        #[test]
        fn events_never_panic(event in crate::invocation::hostile::one_message_event()) {
            super::event(&event);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            json_object(&bytes);
            super::event(&bytes);
            payload(&bytes);
            pipeline_file(&bytes);
            window_state(&bytes);
        }
    }
}
