//! Payload decoding: what the device sent -> readings, driven by the mapping
//! when one matches the topic and by the built-in layouts otherwise (the
//! reference payloads: `{timestamp, device, temperature}`, `{name, unit,
//! value}`, `date|value` text, and flat objects of numbers).

use std::cell::RefCell;

use compact_str::CompactString;

use crate::envelope::RawMessage;
use crate::payload::fields::{guess_delimiter, split_columns, truncate, Field, ObjectFields};
use crate::payload::mapping::{
    unknown_unit_message, FieldSource, Mapping, Mappings, MetricRule, NameSource, PayloadFormat,
    UnitSource,
};
use crate::payload::records::{
    array_items, base64_wrapped, batched_records, check_size, object_context, object_in_place,
    object_item, resolve, Context, DecodeError, View, RULE_FIELDS,
};
use crate::payload::timestamp::TimestampFormat;
use crate::payload::topic::device_from_topic;
use crate::payload::unit::Unit;
use crate::reading::Reading;

/// Keys that name the device when no mapping says otherwise.
const DEVICE_KEYS: [&str; 11] = [
    "device",
    "device_id",
    "deviceId",
    "deviceName",
    "device_name",
    "thing",
    "thing_name",
    "thingName",
    "sensor",
    "sensor_id",
    "sensorId",
];
/// Keys that hold the device's timestamp when no mapping says otherwise.
const TIMESTAMP_KEYS: [&str; 7] = [
    "timestamp",
    "ts",
    "time",
    "datetime",
    "date_time",
    "timestamp_ms",
    "time_ms",
];
/// The device id used when neither payload, attributes, client id nor topic name one.
pub const UNKNOWN_DEVICE: &str = "unknown";

/// Decodes one message into readings appended to `out`. On error nothing is
/// appended. Returns the number of readings added.
pub fn decode_message(
    mappings: &Mappings,
    message: &RawMessage<'_>,
    index: u32,
    now_ms: i64,
    out: &mut Vec<Reading>,
) -> Result<usize, DecodeError> {
    decode_message_in(mappings, Context::of(message, now_ms, index), out)
}

/// [`decode_message`], and the topic the message came on: the envelope's,
/// or the one a topic rule put in the payload (`topic() AS topic`).
pub fn decode_message_with_topic(
    mappings: &Mappings,
    message: &RawMessage<'_>,
    index: u32,
    now_ms: i64,
    out: &mut Vec<Reading>,
) -> Result<(usize, Option<String>), DecodeError> {
    // The envelope's topic wins over a `topic` field in the payload.
    let from_payload = RefCell::new(None);
    let context = Context {
        topic_seen: message.topic.is_none().then_some(&from_payload),
        ..Context::of(message, now_ms, index)
    };
    let added = decode_message_in(mappings, context, out)?;
    let topic = match &message.topic {
        Some(topic) => Some(topic.to_string()),
        None => from_payload.into_inner(),
    };
    Ok((added, topic))
}

fn decode_message_in(
    mappings: &Mappings,
    context: Context<'_>,
    out: &mut Vec<Reading>,
) -> Result<usize, DecodeError> {
    let message = context.message;
    check_size(message)?;
    let start = out.len();
    let in_place = if wants_text(mappings.select(context.topic.as_deref())) {
        None
    } else {
        object_in_place(&message.payload)
    };
    let decoded = match in_place {
        Some(fields) => decode_object_payload(mappings, &fields, &context, out, true),
        None => decode_bytes(mappings, &message.payload.bytes(), &context, out, true),
    };
    match decoded {
        Ok(()) if out.len() > start => Ok(out.len() - start),
        // Every message ends as readings or a dead letter, whatever its shape.
        Ok(()) => Err(DecodeError::NoReadings {
            value: truncate(&String::from_utf8_lossy(&message.payload.bytes()), 60).to_owned(),
        }),
        Err(error) => {
            out.truncate(start);
            Err(error)
        }
    }
}

fn decode_bytes(
    mappings: &Mappings,
    payload: &[u8],
    context: &Context<'_>,
    out: &mut Vec<Reading>,
    may_unwrap: bool,
) -> Result<(), DecodeError> {
    let trimmed = payload.trim_ascii();
    let envelope_mapping = mappings.select(context.topic.as_deref());
    let wants_text = wants_text(envelope_mapping);
    match trimmed.first() {
        None => Err(DecodeError::Empty),
        Some(b'{') if !wants_text => {
            let fields = ObjectFields::from_json(trimmed)
                .map_err(|error| DecodeError::Json(error.to_string()))?;
            decode_object_payload(mappings, &fields, context, out, may_unwrap)
        }
        Some(b'[') if !wants_text => {
            let mut items = array_items(trimmed)?.peekable();
            if items.peek().is_none() {
                return Err(DecodeError::NoReadings {
                    value: "an empty array".into(),
                });
            }
            for item in items {
                decode_object_payload(mappings, &object_item(item)?, context, out, false)?;
            }
            Ok(())
        }
        Some(_) => {
            let text = std::str::from_utf8(trimmed).map_err(|_| DecodeError::NotText)?;
            if let Some(mapping) = envelope_mapping {
                if mapping.format == PayloadFormat::Json {
                    return Err(DecodeError::ExpectedJson {
                        mapping: mapping.name.clone(),
                        value: truncate(text, 60).to_owned(),
                    });
                }
            }
            decode_text(envelope_mapping, text, context, out)
        }
    }
}

/// Whether a payload under this mapping is read as delimited text even
/// when it looks like JSON.
fn wants_text(mapping: Option<&Mapping>) -> bool {
    matches!(mapping.map(|m| m.format), Some(PayloadFormat::Delimited(_)))
}

/// Pulls the rule's metadata fields out of an object, unwraps a base64
/// `data` payload if that is all the object carries, then decodes.
fn decode_object_payload(
    mappings: &Mappings,
    fields: &ObjectFields<'_>,
    outer: &Context<'_>,
    out: &mut Vec<Reading>,
    may_unwrap: bool,
) -> Result<(), DecodeError> {
    let context = object_context(fields, outer);
    // `SELECT encode(*, 'base64') AS data, topic() AS topic ...` carries
    // non-JSON payloads (such as delimited text) through a topic rule.
    if may_unwrap {
        if let Some(inner) = base64_wrapped(fields)? {
            return decode_bytes(mappings, &inner, &context, out, false);
        }
    }
    let mapping = mappings.select(context.topic.as_deref());
    if let Some(mapping) = mapping {
        if let PayloadFormat::Delimited(_) = mapping.format {
            return Err(DecodeError::Invalid {
                field: "payload".into(),
                value: "a JSON object".into(),
                why: format!("mapping {:?} expects delimited text", mapping.name),
            });
        }
    }
    if let Some(records) = batched_records(fields) {
        for record in records? {
            let record_context = object_context(&record, outer);
            decode_fields(mapping, View::Object(&record), &record_context, out)?;
        }
        return Ok(());
    }
    decode_fields(mapping, View::Object(fields), &context, out)
}

fn decode_text(
    mapping: Option<&Mapping>,
    text: &str,
    context: &Context<'_>,
    out: &mut Vec<Reading>,
) -> Result<(), DecodeError> {
    let delimiter = match mapping.map(|m| m.format) {
        Some(PayloadFormat::Delimited(delimiter)) => Some(delimiter),
        _ => guess_delimiter(text),
    };
    let columns = match delimiter {
        Some(delimiter) => split_columns(text, delimiter),
        None => vec![text.trim()],
    };
    decode_fields(mapping, View::Columns(&columns), context, out)
}

fn required<'a>(
    source: &'a FieldSource,
    view: View<'_, 'a>,
    context: &'a Context<'a>,
) -> Result<Field<'a>, DecodeError> {
    match resolve(source, view, context) {
        Some(Field::Null) | None => Err(DecodeError::Missing {
            field: source.to_string(),
        }),
        Some(field) => Ok(field),
    }
}

fn text_value(field: &Field<'_>, source: &FieldSource) -> Result<CompactString, DecodeError> {
    let text = field.as_text();
    match text.as_deref().map(str::trim) {
        Some(trimmed) if !trimmed.is_empty() => Ok(CompactString::from(trimmed)),
        _ => Err(DecodeError::Invalid {
            field: source.to_string(),
            value: field.describe(),
            why: "must be non-empty text".into(),
        }),
    }
}

fn decode_fields(
    mapping: Option<&Mapping>,
    view: View<'_, '_>,
    context: &Context<'_>,
    out: &mut Vec<Reading>,
) -> Result<(), DecodeError> {
    context.note_topic();
    // Keys that are metadata, not metrics, when every numeric field is taken.
    let mut consumed = Consumed::default();

    let device = match mapping.and_then(|m| m.device.as_ref()) {
        Some(source) => text_value(&required(source, view, context)?, source)?,
        None => auto_device(view, context, &mut consumed)?,
    };

    let timestamp_ms = match mapping.and_then(|m| m.timestamp.as_ref()) {
        Some(source) => {
            let format = &mapping.expect("checked above").timestamp_format;
            let field = required(source, view, context)?;
            note_consumed(source, &mut consumed);
            parse_timestamp(&field, format).ok_or_else(|| DecodeError::BadTimestamp {
                field: source.to_string(),
                value: field.describe(),
                format: format_name(format),
            })?
        }
        None => match auto_timestamp(view, &mut consumed)? {
            Some(millis) => millis,
            None => context.received_at_ms.unwrap_or(context.now_ms),
        },
    };

    let mut dimensions = Vec::new();
    if let Some(mapping) = mapping {
        for (name, source) in &mapping.dimensions {
            let field = required(source, view, context)?;
            note_consumed(source, &mut consumed);
            dimensions.push((name.clone(), text_value(&field, source)?));
        }
        if let Some(source) = &mapping.device {
            note_consumed(source, &mut consumed);
        }
    }

    let base = Reading {
        device,
        metric: CompactString::default(),
        value: 0.0,
        unit: Unit::None,
        timestamp_ms,
        dimensions,
        high_resolution: mapping.is_some_and(|m| m.high_resolution),
        message: context.index,
    };

    let declared = mapping.map(|m| m.metrics.as_slice()).unwrap_or(&[]);
    if !declared.is_empty() {
        for rule in declared {
            out.push(apply_rule(rule, view, context, &base)?);
        }
        return Ok(());
    }
    if let View::Object(fields) = view {
        if let (Some(Field::Text(_)), Some(_)) = (fields.get("name"), fields.get("value")) {
            // Reference 003's layout: {"name": ..., "unit": ..., "value": "42 "}.
            let rule = name_value_rule(fields.get("unit").is_some());
            out.push(apply_rule(rule, view, context, &base)?);
            return Ok(());
        }
    }
    let before = out.len();
    match view {
        View::Object(fields) => {
            for (key, field) in fields.entries() {
                if consumed.contains(&key.as_ref()) || is_identifier_key(key) {
                    continue;
                }
                let value = match field {
                    Field::Int(integer) => *integer as f64,
                    Field::Number(number) => *number,
                    Field::Bool(flag) => f64::from(u8::from(*flag)),
                    _ => continue,
                };
                let mut reading = base.clone();
                reading.metric = CompactString::from(key.as_ref());
                reading.value = value;
                out.push(reading);
            }
        }
        View::Columns(columns) => {
            let numeric: Vec<(usize, f64)> = columns
                .iter()
                .enumerate()
                .filter(|(index, _)| !consumed.contains(&column_key(*index)))
                .filter_map(|(index, column)| column.parse::<f64>().ok().map(|v| (index, v)))
                .collect();
            let single = numeric.len() == 1;
            for (index, value) in numeric {
                let mut reading = base.clone();
                reading.metric = if single {
                    CompactString::const_new("value")
                } else {
                    compact_str::format_compact!("value_{index}")
                };
                reading.value = value;
                out.push(reading);
            }
        }
    }
    if out.len() == before {
        return Err(DecodeError::NoMetrics {
            value: view.describe(),
        });
    }
    Ok(())
}

/// `id`, `message_id`, `tweetId`: identifiers, not measurements.
fn is_identifier_key(key: &str) -> bool {
    key.eq_ignore_ascii_case("id") || key.ends_with("_id") || key.ends_with("Id")
}

/// The rule for `{"name", "value"[, "unit"]}` payloads, built once.
fn name_value_rule(has_unit: bool) -> &'static MetricRule {
    static RULES: std::sync::LazyLock<[MetricRule; 2]> = std::sync::LazyLock::new(|| {
        [false, true].map(|has_unit| MetricRule {
            name: NameSource::From(FieldSource::Pointer("/name".into())),
            value: FieldSource::Pointer("/value".into()),
            unit: if has_unit {
                UnitSource::From(FieldSource::Pointer("/unit".into()))
            } else {
                UnitSource::Fixed(Unit::None)
            },
            high_resolution: false,
        })
    });
    &RULES[usize::from(has_unit)]
}

fn apply_rule(
    rule: &MetricRule,
    view: View<'_, '_>,
    context: &Context<'_>,
    base: &Reading,
) -> Result<Reading, DecodeError> {
    let field = required(&rule.value, view, context)?;
    let value = field.as_number().ok_or_else(|| DecodeError::NotANumber {
        field: rule.value.to_string(),
        value: field.describe(),
    })?;
    let metric = match &rule.name {
        NameSource::Fixed(name) => name.clone(),
        NameSource::From(source) => text_value(&required(source, view, context)?, source)?,
    };
    let unit = match &rule.unit {
        UnitSource::Fixed(unit) => *unit,
        UnitSource::From(source) => match resolve(source, view, context) {
            None | Some(Field::Null) => Unit::None,
            Some(field) => {
                let text = field.as_text().unwrap_or_default();
                Unit::parse(&text).ok_or_else(|| DecodeError::Invalid {
                    field: source.to_string(),
                    value: field.describe(),
                    why: unknown_unit_message(&text)
                        .split_once("; ")
                        .map(|(_, expected)| expected.to_owned())
                        .unwrap_or_default(),
                })?
            }
        },
    };
    let mut reading = base.clone();
    reading.metric = metric;
    reading.value = value;
    reading.unit = unit;
    reading.high_resolution = rule.high_resolution || base.high_resolution;
    Ok(reading)
}

fn auto_device(
    view: View<'_, '_>,
    context: &Context<'_>,
    consumed: &mut Consumed<'_>,
) -> Result<CompactString, DecodeError> {
    if let View::Object(fields) = view {
        for key in DEVICE_KEYS {
            if let Some(Field::Text(text)) = fields.get(key) {
                // A device that sends an empty id has a bug: its readings
                // must not merge into another device's series.
                if text.trim().is_empty() {
                    return Err(DecodeError::Invalid {
                        field: key.to_owned(),
                        value: format!("{text:?}"),
                        why: "the device id is empty".into(),
                    });
                }
                consumed.push(key);
                return Ok(CompactString::from(text.trim()));
            }
        }
    }
    let from_context = context
        .message
        .attribute("deviceId")
        .or(context.client_id.as_deref())
        .or_else(|| context.topic.as_deref().and_then(device_from_topic));
    Ok(CompactString::from(from_context.unwrap_or(UNKNOWN_DEVICE)))
}

/// The device's own timestamp under a conventional key (or, for text, the
/// first column that reads as a date), if any.
fn auto_timestamp(
    view: View<'_, '_>,
    consumed: &mut Consumed<'_>,
) -> Result<Option<i64>, DecodeError> {
    match view {
        View::Object(fields) => {
            for key in TIMESTAMP_KEYS {
                if let Some(field) = fields.get(key) {
                    consumed.push(key);
                    return parse_timestamp(field, &TimestampFormat::Auto)
                        .map(Some)
                        .ok_or_else(|| DecodeError::BadTimestamp {
                            field: format!("/{key}"),
                            value: field.describe(),
                            format: "auto".into(),
                        });
                }
            }
            Ok(None)
        }
        View::Columns(columns) => {
            for (index, column) in columns.iter().enumerate() {
                if column.parse::<f64>().is_err() {
                    if let Some(millis) = TimestampFormat::Auto.from_text(column) {
                        consumed.push(column_key(index));
                        return Ok(Some(millis));
                    }
                }
            }
            Ok(None)
        }
    }
}

/// Keys that are metadata, not metrics: kept on the stack (the per-message
/// path allocates only what it stores).
struct Consumed<'s> {
    keys: [&'s str; 16],
    len: usize,
    more: Vec<&'s str>,
}

impl Default for Consumed<'_> {
    fn default() -> Self {
        let mut keys = [""; 16];
        keys[..RULE_FIELDS.len()].copy_from_slice(&RULE_FIELDS);
        Consumed {
            keys,
            len: RULE_FIELDS.len(),
            more: Vec::new(),
        }
    }
}

impl<'s> Consumed<'s> {
    fn push(&mut self, key: &'s str) {
        if self.len < self.keys.len() {
            self.keys[self.len] = key;
            self.len += 1;
        } else {
            self.more.push(key);
        }
    }

    fn contains(&self, key: &&str) -> bool {
        self.keys[..self.len].contains(key) || self.more.contains(key)
    }
}

/// `/N` keys for the first columns, so consumed columns can be skipped
/// without allocating.
fn column_key(index: usize) -> &'static str {
    const KEYS: [&str; 16] = [
        "/0", "/1", "/2", "/3", "/4", "/5", "/6", "/7", "/8", "/9", "/10", "/11", "/12", "/13",
        "/14", "/15",
    ];
    KEYS.get(index).copied().unwrap_or("/*")
}

fn note_consumed<'s>(source: &'s FieldSource, consumed: &mut Consumed<'s>) {
    if let FieldSource::Pointer(pointer) = source {
        // Object keys are listed bare, columns as `/N`.
        consumed.push(&pointer[1..]);
        consumed.push(pointer.as_str());
    }
}

fn parse_timestamp(field: &Field<'_>, format: &TimestampFormat) -> Option<i64> {
    match field {
        Field::Int(integer) => format.from_number(*integer as f64),
        Field::Number(number) => format.from_number(*number),
        Field::Text(text) => format.from_text(text),
        _ => None,
    }
}

fn format_name(format: &TimestampFormat) -> String {
    match format {
        TimestampFormat::Auto => "auto".into(),
        TimestampFormat::EpochSeconds => "epoch_s".into(),
        TimestampFormat::EpochMillis => "epoch_ms".into(),
        TimestampFormat::Rfc3339 => "rfc3339".into(),
        TimestampFormat::Pattern { pattern, .. } => pattern.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::parse_event;
    use crate::envelope::Payload;
    use crate::payload::records::for_each_record;
    use std::borrow::Cow;

    /// Every record a table sees, as the values of a few field sources, or
    /// why it sees none.
    fn records(
        message: &RawMessage<'_>,
        format: PayloadFormat,
    ) -> Result<Vec<Vec<Option<Field<'static>>>>, String> {
        let sources: Vec<FieldSource> = ["/device", "/temperature", "/0", "/1", "topic"]
            .iter()
            .map(|source| FieldSource::parse(source).unwrap())
            .collect();
        let mut seen = Vec::new();
        for_each_record(message, format, 0, &mut |record| {
            seen.push(sources.iter().map(|source| record.get(source)).collect());
            Ok(())
        })
        .map_err(|error| error.to_string())?;
        Ok(seen)
    }

    /// The topic comes with the readings: from the payload a topic rule
    /// wrote (plain or base64 `data`), or the envelope's, which wins.
    #[test]
    fn decoding_reports_the_topic_a_message_came_on() {
        let sqs = |body: &str| {
            format!(
                r#"{{"Records":[{{"messageId":"m","body":{},"eventSource":"aws:sqs"}}]}}"#,
                serde_json::to_string(body).unwrap()
            )
        };
        let cases = [
            (
                sqs(r#"{"light": 250, "topic": "n-1/telemetry"}"#),
                Some("n-1/telemetry"),
            ),
            (
                sqs(r#"{"data": "MjAyMC03LTEzIDIyOjQzOjIzfDQwMg==", "topic": "co2/pi"}"#),
                Some("co2/pi"),
            ),
            (sqs(r#"{"light": 250}"#), None),
            (
                // Pub/Sub push: base64 of {"light": 1, "topic": "other/b"}.
                r#"{"message": {"data": "eyJsaWdodCI6IDEsICJ0b3BpYyI6ICJvdGhlci9iIn0=",
                    "attributes": {"subFolder": "pi/telemetry"}, "messageId": "1"},
                    "subscription": "projects/p/subscriptions/s"}"#
                    .to_owned(),
                Some("pi/telemetry"),
            ),
        ];
        for (event, expected) in cases {
            let envelope = parse_event(event.as_bytes()).unwrap();
            let mut readings = Vec::new();
            let (added, topic) = decode_message_with_topic(
                &Mappings::default(),
                &envelope.messages[0],
                0,
                0,
                &mut readings,
            )
            .unwrap();
            assert_eq!(
                (added, topic.as_deref()),
                (readings.len(), expected),
                "{event}"
            );
        }
    }

    /// A table reads an SQS body left escaped in place, and sees what it
    /// sees in the same body unescaped.
    #[test]
    fn tables_read_escaped_bodies_like_their_unescaped_bytes() {
        let bodies = [
            "{\"device\": \"pi-1\",\n \"temperature\": 17.5, \"topic\": \"co2/pi-1\"}",
            "{\"data\": \"MjAyMC03LTEzIDIyOjQzOjIzfDQwMg==\", \"topic\": \"co2/pi\"}",
            "2020-7-13 22:43:23|402\t",
            "[{\"device\": \"a\"}, {\"device\": \"b\"}]",
        ];
        let records_json: Vec<String> = bodies
            .iter()
            .map(|body| {
                format!(
                    r#"{{"messageId":"m","body":{},"eventSource":"aws:sqs"}}"#,
                    serde_json::to_string(body).unwrap()
                )
            })
            .collect();
        let event = format!(r#"{{"Records":[{}]}}"#, records_json.join(","));
        let envelope = parse_event(event.as_bytes()).unwrap();
        let mut in_place = 0;
        for message in &envelope.messages {
            in_place += usize::from(object_in_place(&message.payload).is_some());
            let mut unescaped = message.clone();
            unescaped.payload = Payload::Bytes(Cow::Owned(message.payload.bytes().into_owned()));
            for format in [
                PayloadFormat::Auto,
                PayloadFormat::Json,
                PayloadFormat::Delimited('|'),
            ] {
                assert_eq!(
                    records(message, format),
                    records(&unescaped, format),
                    "{:?} as {format:?}",
                    message.payload
                );
            }
        }
        assert_eq!(in_place, 2, "the two flat objects are read in place");
        let first = records(&envelope.messages[0], PayloadFormat::Auto).unwrap();
        assert_eq!(first[0][0], Some(Field::Text("pi-1".into())));
        assert_eq!(first[0][1], Some(Field::Number(17.5)));
        let unwrapped = records(&envelope.messages[1], PayloadFormat::Delimited('|')).unwrap();
        assert_eq!(unwrapped[0][3], Some(Field::Text("402".into())));
        assert_eq!(unwrapped[0][4], Some(Field::Text("co2/pi".into())));
    }

    #[test]
    fn an_empty_device_id_is_refused_not_merged_into_unknown() {
        for payload in [
            r#"{"device": "", "temperature": 17.5}"#,
            r#"{"device_id": "  ", "temperature": 17.5}"#,
        ] {
            let message = RawMessage::new(
                crate::envelope::MessageSource::Sqs,
                std::borrow::Cow::Borrowed("m"),
                std::borrow::Cow::Borrowed(payload.as_bytes()),
            );
            let mut out = Vec::new();
            let error = decode_message(&Mappings::default(), &message, 0, 0, &mut out)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("device") && error.contains("empty"),
                "{error}"
            );
            assert!(out.is_empty());
        }
        // No id at all is still the documented fallback.
        let message = RawMessage::new(
            crate::envelope::MessageSource::Sqs,
            std::borrow::Cow::Borrowed("m"),
            std::borrow::Cow::Borrowed(&br#"{"temperature": 17.5}"#[..]),
        );
        let mut out = Vec::new();
        decode_message(&Mappings::default(), &message, 0, 0, &mut out).unwrap();
        assert_eq!(out[0].device, UNKNOWN_DEVICE);
    }

    /// A batch that holds nothing, or something other than objects, is
    /// refused naming the place; a warehouse table sees one record per element.
    #[test]
    fn a_batch_of_readings_is_refused_naming_what_is_wrong_and_read_per_element_by_tables() {
        let message = |payload: &'static str| {
            RawMessage::new(
                crate::envelope::MessageSource::Sqs,
                Cow::Borrowed("m"),
                Cow::Borrowed(payload.as_bytes()),
            )
        };
        for (payload, expected) in [
            (
                r#"{"device": "d", "readings": []}"#,
                "holds no reading: an empty `readings` array",
            ),
            (
                r#"{"device": "d", "samples": [{"t": 1}, 5]}"#,
                "field `/samples/1` = 5: a batch of readings must hold objects",
            ),
            (
                r#"{"device": "d", "readings": [{"timestamp": 1645938000}]}"#,
                "no numeric field",
            ),
        ] {
            let mut out = Vec::new();
            let error = decode_message(&Mappings::default(), &message(payload), 0, 0, &mut out)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{payload}: {error}");
            assert!(out.is_empty());
        }
        let batched = message(
            r#"{"device": "d-9", "readings": [{"temperature": 1.5}, {"temperature": 2.5, "device": "d-10"}]}"#,
        );
        assert_eq!(
            records(&batched, PayloadFormat::Auto).unwrap(),
            [
                vec![
                    Some(Field::Text("d-9".into())),
                    Some(Field::Number(1.5)),
                    None,
                    None,
                    None
                ],
                vec![
                    Some(Field::Text("d-10".into())),
                    Some(Field::Number(2.5)),
                    None,
                    None,
                    None
                ],
            ]
        );
    }
}
