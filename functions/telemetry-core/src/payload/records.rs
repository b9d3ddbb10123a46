//! The records of a payload: an object, each object of an array, or the
//! columns of a line of delimited text, after unwrapping what a topic rule
//! adds (its metadata fields, base64 `data`), with the message they came
//! from. Readings (`reading::decode`) and warehouse rows are read from them.

use std::borrow::Cow;
use std::cell::RefCell;

use base64::Engine;
use serde_json::value::RawValue;

use crate::envelope::{Payload, RawMessage};
use crate::payload::fields::{guess_delimiter, split_columns, truncate, Field, ObjectFields};
use crate::payload::mapping::{FieldSource, PayloadFormat};
use crate::payload::timestamp::TimestampFormat;
use crate::payload::topic::topic_segment;

/// Keys a topic rule's SQL adds next to the device payload
/// (`topic() AS topic, clientid() AS client_id, timestamp() AS received_at`).
pub(crate) const RULE_FIELDS: [&str; 4] = ["topic", "client_id", "clientid", "received_at"];

/// The largest device payload decoded: 1 MiB, above every transport's own
/// limit (IoT Core 128 KB, SQS and EventBridge 1 MiB, Kinesis records 1 MiB),
/// so only a message that could not have come from a device (or a test) is
/// refused for its size. Its bytes are kept in the dead letter.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

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
    /// A payload that parsed but holds nothing to read (`[]`): it is
    /// dead-lettered like any other, so a device's empty batch leaves a trace.
    #[error("payload holds no reading: {value}")]
    NoReadings { value: String },
    #[error("payload is {bytes} bytes, above the {limit}-byte limit for one message")]
    TooLarge { bytes: usize, limit: usize },
}

/// Per-message facts the decoder may read besides the payload.
pub(crate) struct Context<'a> {
    pub(crate) message: &'a RawMessage<'a>,
    pub(crate) topic: Option<Cow<'a, str>>,
    pub(crate) client_id: Option<Cow<'a, str>>,
    pub(crate) received_at_ms: Option<i64>,
    pub(crate) now_ms: i64,
    pub(crate) index: u32,
    /// Where the decoder notes the topic its first record came on, for a
    /// caller that needs it (the commands' `from` filters) without reading
    /// the payload a second time.
    pub(crate) topic_seen: Option<&'a RefCell<Option<String>>>,
}

impl<'a> Context<'a> {
    /// What the envelope told about `message`; rule metadata found in the
    /// payload later replaces the topic and client id.
    pub(crate) fn of(message: &'a RawMessage<'a>, now_ms: i64, index: u32) -> Self {
        Context {
            message,
            topic: message.topic.as_deref().map(Cow::Borrowed),
            client_id: None,
            received_at_ms: message.received_at_ms,
            now_ms,
            index,
            topic_seen: None,
        }
    }

    /// Notes the topic, unless an earlier record of the message did.
    pub(crate) fn note_topic(&self) {
        if let Some(seen) = self.topic_seen {
            let mut seen = seen.borrow_mut();
            if seen.is_none() {
                *seen = self.topic.as_deref().map(str::to_owned);
            }
        }
    }
}

/// Refuses a payload above [`MAX_PAYLOAD_BYTES`].
pub(crate) fn check_size(message: &RawMessage<'_>) -> Result<(), DecodeError> {
    let bytes = message.payload.len();
    if bytes > MAX_PAYLOAD_BYTES {
        return Err(DecodeError::TooLarge {
            bytes,
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(())
}

/// The payload as a flat object read where it sits, when it is an SQS body
/// left escaped that holds one (see [`Payload::Escaped`]); otherwise `None`,
/// and its bytes are read the ordinary way.
pub(crate) fn object_in_place<'m>(payload: &'m Payload<'_>) -> Option<ObjectFields<'m>> {
    match payload {
        Payload::Escaped(text) => ObjectFields::from_escaped_json(text.raw()),
        Payload::Bytes(_) => None,
    }
}

/// The elements of an array payload, with their positions.
pub(crate) fn array_items(
    payload: &[u8],
) -> Result<impl Iterator<Item = (usize, &RawValue)>, DecodeError> {
    let items: Vec<&RawValue> =
        serde_json::from_slice(payload).map_err(|error| DecodeError::Json(error.to_string()))?;
    Ok(items.into_iter().enumerate())
}

/// One element of an array payload, which must be an object.
pub(crate) fn object_item(
    (position, item): (usize, &RawValue),
) -> Result<ObjectFields<'_>, DecodeError> {
    ObjectFields::from_json(item.get().as_bytes()).map_err(|_| DecodeError::Invalid {
        field: format!("/{position}"),
        value: truncate(item.get(), 60).to_owned(),
        why: "an array payload must hold objects".into(),
    })
}

/// Keys under which a device sends several readings in one object, each
/// with its own timestamp: `{"device": "d1", "readings": [{"timestamp": 1,
/// "temperature": 20.5}, ...]}` (device-side batching, no mapping needed).
pub(crate) const BATCH_KEYS: [&str; 4] = ["readings", "records", "samples", "measurements"];

/// The records of a batched object: each element of its array under one of
/// [`BATCH_KEYS`], merged with the object's other fields (the element's own
/// fields win, so each carries its timestamp and shares the device). `None`
/// when the object is not batched.
pub(crate) fn batched_records<'a>(
    fields: &ObjectFields<'a>,
) -> Option<Result<Vec<ObjectFields<'a>>, DecodeError>> {
    let (key, raw) = BATCH_KEYS.iter().find_map(|key| match fields.get(key) {
        Some(Field::Nested(raw)) if raw.starts_with('[') => Some((*key, *raw)),
        _ => None,
    })?;
    Some(batch_elements(fields, key, raw))
}

fn batch_elements<'a>(
    fields: &ObjectFields<'a>,
    key: &str,
    raw: &'a str,
) -> Result<Vec<ObjectFields<'a>>, DecodeError> {
    let mut records = Vec::new();
    for (position, item) in array_items(raw.as_bytes())? {
        let element =
            ObjectFields::from_json(item.get().as_bytes()).map_err(|_| DecodeError::Invalid {
                field: format!("/{key}/{position}"),
                value: truncate(item.get(), 60).to_owned(),
                why: "a batch of readings must hold objects".into(),
            })?;
        let mut merged: Vec<_> = fields
            .entries()
            .iter()
            .filter(|(name, _)| name != key && element.get(name).is_none())
            .cloned()
            .collect();
        merged.extend(element.into_entries());
        records.push(ObjectFields::new(merged));
    }
    if records.is_empty() {
        return Err(DecodeError::NoReadings {
            value: format!("an empty `{key}` array"),
        });
    }
    Ok(records)
}

/// The context of an object payload: rule fields override the envelope's.
pub(crate) fn object_context<'a>(fields: &'a ObjectFields<'a>, outer: &Context<'a>) -> Context<'a> {
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
        topic_seen: outer.topic_seen,
    }
}

/// The inner payload of a rule output that carries only base64 `data` and
/// rule metadata.
pub(crate) fn base64_wrapped(fields: &ObjectFields<'_>) -> Result<Option<Vec<u8>>, DecodeError> {
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
    let context = Context::of(message, now_ms, 0);
    check_size(message)?;
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
    if let Some(records) = batched_records(fields) {
        for record in records? {
            let record_context = object_context(&record, context);
            visit(&PayloadRecord {
                view: View::Object(&record),
                context: &record_context,
            })?;
        }
        return Ok(());
    }
    visit(&PayloadRecord {
        view: View::Object(fields),
        context: &inner_context,
    })
}

/// The payload as the resolver sees it.
#[derive(Clone, Copy)]
pub(crate) enum View<'v, 'a> {
    Object(&'v ObjectFields<'a>),
    Columns(&'v [&'a str]),
}

impl<'a> View<'_, 'a> {
    pub(crate) fn describe(&self) -> String {
        match self {
            View::Object(fields) => {
                let keys: Vec<&str> = fields.entries().iter().map(|(k, _)| k.as_ref()).collect();
                format!("object with keys {keys:?}")
            }
            View::Columns(columns) => format!("{:?}", truncate(&columns.join("|"), 80)),
        }
    }
}

pub(crate) fn resolve<'a>(
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
