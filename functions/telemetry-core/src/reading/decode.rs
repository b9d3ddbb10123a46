//! Payload decoding: what the device sent -> readings, driven by the mapping
//! when one matches the topic and by the built-in layouts otherwise (the
//! reference payloads: `{timestamp, device, temperature}`, `{name, unit,
//! value}`, `date|value` text, and flat objects of numbers).

use std::borrow::Cow;

use base64::Engine;
use compact_str::CompactString;
use serde_json::value::RawValue;

use crate::envelope::{Payload, RawMessage};
use crate::payload::fields::{guess_delimiter, split_columns, truncate, Field, ObjectFields};
use crate::payload::mapping::{
    unknown_unit_message, FieldSource, Mapping, Mappings, MetricRule, NameSource, PayloadFormat,
    UnitSource,
};
use crate::payload::timestamp::TimestampFormat;
use crate::payload::topic::{device_from_topic, topic_segment};
use crate::payload::unit::Unit;
use crate::reading::Reading;

/// Keys a topic rule's SQL adds next to the device payload
/// (`topic() AS topic, clientid() AS client_id, timestamp() AS received_at`).
const RULE_FIELDS: [&str; 4] = ["topic", "client_id", "clientid", "received_at"];
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

/// Why a payload could not be turned into readings: always names the field
/// and the value at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is empty")]
    Empty,
    #[error("payload is not valid JSON: {0}")]
    Json(String),
    #[error("mapping {mapping:?} expects JSON, but the payload is text: {value:?}")]
    ExpectedJson { mapping: String, value: String },
    #[error("payload is neither JSON nor UTF-8 text")]
    NotText,
    #[error("field `{field}` is missing")]
    Missing { field: String },
    #[error("field `{field}` = {value} is not a number")]
    NotANumber { field: String, value: String },
    #[error("field `{field}` = {value}: {why}")]
    Invalid {
        field: String,
        value: String,
        why: String,
    },
    #[error("field `{field}` = {value} is not a timestamp ({format:?})")]
    BadTimestamp {
        field: String,
        value: String,
        format: String,
    },
    #[error("payload has no numeric field to turn into a metric: {value}")]
    NoMetrics { value: String },
}

/// Per-message facts the decoder may read besides the payload.
struct Context<'a> {
    message: &'a RawMessage<'a>,
    topic: Option<Cow<'a, str>>,
    client_id: Option<Cow<'a, str>>,
    received_at_ms: Option<i64>,
    now_ms: i64,
    index: u32,
}

/// Decodes one message into readings appended to `out`. On error nothing is
/// appended. Returns the number of readings added.
pub fn decode_message(
    mappings: &Mappings,
    message: &RawMessage<'_>,
    index: u32,
    now_ms: i64,
    out: &mut Vec<Reading>,
) -> Result<usize, DecodeError> {
    let start = out.len();
    let context = Context {
        message,
        topic: message.topic.as_deref().map(Cow::Borrowed),
        client_id: None,
        received_at_ms: message.received_at_ms,
        now_ms,
        index,
    };
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
        Ok(()) => Ok(out.len() - start),
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
            for item in array_items(trimmed)? {
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

/// The payload as a flat object read where it sits, when it is an SQS body
/// left escaped that holds one (see [`Payload::Escaped`]); otherwise `None`,
/// and its bytes are read the ordinary way.
fn object_in_place<'m>(payload: &'m Payload<'_>) -> Option<ObjectFields<'m>> {
    match payload {
        Payload::Escaped(text) => ObjectFields::from_escaped_json(text.raw()),
        Payload::Bytes(_) => None,
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
    decode_fields(mapping, View::Object(fields), &context, out)
}

/// The elements of an array payload, with their positions.
fn array_items(payload: &[u8]) -> Result<impl Iterator<Item = (usize, &RawValue)>, DecodeError> {
    let items: Vec<&RawValue> =
        serde_json::from_slice(payload).map_err(|error| DecodeError::Json(error.to_string()))?;
    Ok(items.into_iter().enumerate())
}

/// One element of an array payload, which must be an object.
fn object_item((position, item): (usize, &RawValue)) -> Result<ObjectFields<'_>, DecodeError> {
    ObjectFields::from_json(item.get().as_bytes()).map_err(|_| DecodeError::Invalid {
        field: format!("/{position}"),
        value: truncate(item.get(), 60).to_owned(),
        why: "an array payload must hold objects".into(),
    })
}

/// The context of an object payload: rule fields override the envelope's.
fn object_context<'a>(fields: &'a ObjectFields<'a>, outer: &Context<'a>) -> Context<'a> {
    let text_of = |key: &str| match fields.get(key) {
        Some(Field::Text(text)) => Some(Cow::Borrowed(text.as_ref())),
        _ => None,
    };
    Context {
        message: outer.message,
        topic: text_of("topic").or_else(|| outer.topic.clone()),
        client_id: text_of("client_id")
            .or_else(|| text_of("clientid"))
            .or_else(|| outer.client_id.clone()),
        received_at_ms: fields
            .get("received_at")
            .and_then(|field| field.as_number())
            .and_then(|number| TimestampFormat::Auto.from_number(number))
            .or(outer.received_at_ms),
        now_ms: outer.now_ms,
        index: outer.index,
    }
}

/// The inner payload of a rule output that carries only base64 `data` and
/// rule metadata.
fn base64_wrapped(fields: &ObjectFields<'_>) -> Result<Option<Vec<u8>>, DecodeError> {
    let Some(Field::Text(data)) = fields.get("data") else {
        return Ok(None);
    };
    let only_metadata = fields
        .entries()
        .iter()
        .all(|(key, _)| key == "data" || RULE_FIELDS.contains(&key.as_ref()));
    if !only_metadata {
        return Ok(None);
    }
    base64::engine::general_purpose::STANDARD
        .decode(data.as_bytes())
        .map(Some)
        .map_err(|error| DecodeError::Invalid {
            field: "data".into(),
            value: format!("{:?}", truncate(data, 60)),
            why: format!("not valid base64: {error}"),
        })
}

/// One record of a payload (an object, an array element, or a line of
/// delimited text) with the message it came from: what warehouse tables
/// read their columns from.
pub struct PayloadRecord<'v, 'a> {
    view: View<'v, 'a>,
    context: &'v Context<'a>,
}

impl PayloadRecord<'_, '_> {
    /// The value a field source points at, if present and not null.
    pub fn get(&self, source: &FieldSource) -> Option<Field<'static>> {
        match resolve(source, self.view, self.context) {
            Some(Field::Null) | None => None,
            Some(field) => Some(field.into_owned()),
        }
    }

    /// The MQTT topic (from the envelope or the rule's `topic` field).
    pub fn topic(&self) -> Option<&str> {
        self.context.topic.as_deref()
    }

    pub fn received_at_ms(&self) -> Option<i64> {
        self.context.received_at_ms
    }
}

/// Calls `visit` for every record of a message's payload: each object of
/// a JSON payload (after unwrapping rule metadata and base64 `data`), or the
/// columns of a text payload (`delimiter`, or a guess when `None`).
pub fn for_each_record(
    message: &RawMessage<'_>,
    format: PayloadFormat,
    now_ms: i64,
    visit: &mut dyn FnMut(&PayloadRecord<'_, '_>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let context = Context {
        message,
        topic: message.topic.as_deref().map(Cow::Borrowed),
        client_id: None,
        received_at_ms: message.received_at_ms,
        now_ms,
        index: 0,
    };
    match object_in_place(&message.payload) {
        Some(fields) => records_of_object(&fields, format, &context, visit, true),
        None => records_of(&message.payload.bytes(), format, &context, visit, true),
    }
}

fn records_of(
    payload: &[u8],
    format: PayloadFormat,
    context: &Context<'_>,
    visit: &mut dyn FnMut(&PayloadRecord<'_, '_>) -> Result<(), DecodeError>,
    may_unwrap: bool,
) -> Result<(), DecodeError> {
    let trimmed = payload.trim_ascii();
    let json_allowed = !matches!(format, PayloadFormat::Delimited(_));
    match trimmed.first() {
        None => Err(DecodeError::Empty),
        Some(b'{') if json_allowed || may_unwrap => {
            let fields = match ObjectFields::from_json(trimmed) {
                Ok(fields) => fields,
                // A delimited table only looked for a base64 wrapper.
                Err(_) if !json_allowed => return Ok(()),
                Err(error) => return Err(DecodeError::Json(error.to_string())),
            };
            records_of_object(&fields, format, context, visit, may_unwrap)
        }
        Some(b'[') if !json_allowed => Ok(()),
        Some(b'[') => {
            for item in array_items(trimmed)? {
                let fields = object_item(item)?;
                let item_context = object_context(&fields, context);
                visit(&PayloadRecord {
                    view: View::Object(&fields),
                    context: &item_context,
                })?;
            }
            Ok(())
        }
        Some(_) => {
            let text = std::str::from_utf8(trimmed).map_err(|_| DecodeError::NotText)?;
            if format == PayloadFormat::Json {
                return Err(DecodeError::Json(format!(
                    "expected a JSON payload, got text {:?}",
                    truncate(text, 60)
                )));
            }
            let delimiter = match format {
                PayloadFormat::Delimited(delimiter) => Some(delimiter),
                _ => guess_delimiter(text),
            };
            let columns = match delimiter {
                Some(delimiter) => split_columns(text, delimiter),
                None => vec![text.trim()],
            };
            visit(&PayloadRecord {
                view: View::Columns(&columns),
                context,
            })
        }
    }
}

/// [`records_of`] for a payload that is a JSON object.
fn records_of_object(
    fields: &ObjectFields<'_>,
    format: PayloadFormat,
    context: &Context<'_>,
    visit: &mut dyn FnMut(&PayloadRecord<'_, '_>) -> Result<(), DecodeError>,
    may_unwrap: bool,
) -> Result<(), DecodeError> {
    let inner_context = object_context(fields, context);
    if may_unwrap {
        if let Some(inner) = base64_wrapped(fields)? {
            return records_of(&inner, format, &inner_context, visit, false);
        }
    }
    if matches!(format, PayloadFormat::Delimited(_)) {
        // JSON is not delimited text: not this table's payload.
        return Ok(());
    }
    visit(&PayloadRecord {
        view: View::Object(fields),
        context: &inner_context,
    })
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

/// The payload as the resolver sees it.
#[derive(Clone, Copy)]
enum View<'v, 'a> {
    Object(&'v ObjectFields<'a>),
    Columns(&'v [&'a str]),
}

impl<'a> View<'_, 'a> {
    fn describe(&self) -> String {
        match self {
            View::Object(fields) => {
                let keys: Vec<&str> = fields.entries().iter().map(|(k, _)| k.as_ref()).collect();
                format!("object with keys {keys:?}")
            }
            View::Columns(columns) => format!("{:?}", truncate(&columns.join("|"), 80)),
        }
    }
}

fn resolve<'a>(
    source: &'a FieldSource,
    view: View<'_, 'a>,
    context: &'a Context<'a>,
) -> Option<Field<'a>> {
    match source {
        FieldSource::Pointer(pointer) => match view {
            View::Object(fields) => {
                let key = &pointer[1..];
                // One pass over the (short) key rather than two searches.
                if !key.bytes().any(|byte| byte == b'/' || byte == b'~') {
                    fields.get(key).cloned()
                } else {
                    fields.pointer(pointer)
                }
            }
            View::Columns(columns) => {
                let index: usize = pointer[1..].parse().ok()?;
                columns
                    .get(index)
                    .filter(|column| !column.is_empty())
                    .map(|column| Field::Text(Cow::Borrowed(*column)))
            }
        },
        FieldSource::Topic => context
            .topic
            .as_deref()
            .map(|t| Field::Text(Cow::Borrowed(t))),
        FieldSource::TopicSegment(index) => context
            .topic
            .as_deref()
            .and_then(|topic| topic_segment(topic, *index))
            .map(|segment| Field::Text(Cow::Borrowed(segment))),
        FieldSource::Attribute(name) => context
            .message
            .attribute(name)
            .map(|value| Field::Text(Cow::Borrowed(value))),
        FieldSource::ClientId => context
            .client_id
            .as_deref()
            .map(|c| Field::Text(Cow::Borrowed(c))),
        FieldSource::MessageId => Some(Field::Text(Cow::Borrowed(context.message.id.as_ref()))),
        FieldSource::ReceivedAt => {
            Some(Field::Int(context.received_at_ms.unwrap_or(context.now_ms)))
        }
        FieldSource::Constant(value) => Some(Field::Text(Cow::Borrowed(value))),
    }
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
    // Keys that are metadata, not metrics, when every numeric field is taken.
    let mut consumed = Consumed::default();

    let device = match mapping.and_then(|m| m.device.as_ref()) {
        Some(source) => text_value(&required(source, view, context)?, source)?,
        None => auto_device(view, context, &mut consumed),
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
) -> CompactString {
    if let View::Object(fields) = view {
        for key in DEVICE_KEYS {
            if let Some(Field::Text(text)) = fields.get(key) {
                if !text.trim().is_empty() {
                    consumed.push(key);
                    return CompactString::from(text.trim());
                }
            }
        }
    }
    let from_context = context
        .message
        .attribute("deviceId")
        .or(context.client_id.as_deref())
        .or_else(|| context.topic.as_deref().and_then(device_from_topic));
    CompactString::from(from_context.unwrap_or(UNKNOWN_DEVICE))
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
}
