//! Envelopes: how an event reached the function, unwrapped into raw device
//! messages. This file holds the types and tells the triggers apart
//! (automatically, in one pass); each trigger's shape is read in its own
//! file. The structs borrow from the event so that the hot path copies only
//! what JSON escaping forces it to.
//!
//! A new trigger is a new file here, a variant of [`EventKind`] and a
//! branch in [`envelope_from_top`] (or in `records` for a new `Records`
//! source).

mod eventbridge;
mod http;
mod iot_rule;
mod kinesis;
pub mod kinesis_window;
mod pubsub;
mod records;
mod sns;
mod sqs;

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json::scanner::Unusual;
use crate::json::text::Text;
use records::RecordMessages;

/// The trigger that delivered an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// IoT Core topic rule, Lambda action: one object or an array of them.
    IotRule,
    Sqs,
    Sns,
    EventBridge,
    Kinesis,
    /// A Pub/Sub push envelope passed as the invocation payload.
    PubSubPush,
    /// A Pub/Sub push request delivered over HTTP (Lambda function URL or
    /// API Gateway): the envelope is the request body.
    PubSubHttp,
}

impl EventKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::IotRule => "iot-rule",
            EventKind::Sqs => "sqs",
            EventKind::Sns => "sns",
            EventKind::EventBridge => "eventbridge",
            EventKind::Kinesis => "kinesis",
            EventKind::PubSubPush => "pubsub-push",
            EventKind::PubSubHttp => "pubsub-http",
        }
    }
}

/// Where one message came from, finer than [`EventKind`] (an SQS record may
/// carry an SNS notification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageSource {
    IotRule,
    Sqs,
    SnsViaSqs,
    Sns,
    EventBridge,
    Kinesis,
    PubSub,
}

impl MessageSource {
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageSource::IotRule => "iot-rule",
            MessageSource::Sqs => "sqs",
            MessageSource::SnsViaSqs => "sns-via-sqs",
            MessageSource::Sns => "sns",
            MessageSource::EventBridge => "eventbridge",
            MessageSource::Kinesis => "kinesis",
            MessageSource::PubSub => "pubsub",
        }
    }
}

/// One device message as delivered, before its payload is decoded.
#[derive(Debug, Clone)]
pub struct RawMessage<'a> {
    pub source: MessageSource,
    /// The id the source gave it (SQS message id, Kinesis sequence number,
    /// Pub/Sub message id, ...); for IoT rule events, the position in the event.
    pub id: Cow<'a, str>,
    /// What the device sent (for IoT rule events: the rule's SELECT output).
    pub payload: Payload<'a>,
    pub topic: Option<Cow<'a, str>>,
    /// When the source received it, in epoch milliseconds.
    pub received_at_ms: Option<i64>,
    /// Message attributes (Pub/Sub attributes, SNS message attributes).
    pub attributes: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Set when the envelope itself of this message is broken (bad base64,
    /// unreadable SNS wrapper): the message is dead-lettered with this reason.
    pub problem: Option<String>,
}

/// What a device sent, as its envelope carries it.
#[derive(Debug, Clone)]
pub enum Payload<'a> {
    Bytes(Cow<'a, [u8]>),
    /// The text of the JSON string that holds it, as an SQS body sits in
    /// its event: the decoder reads a flat object in place, anything else
    /// is unescaped when it is needed.
    Escaped(EscapedText<'a>),
}

/// The content of a JSON string whose only escapes are one-character ones
/// (`\"`, `\n`, ...), checked by the scanner: it always unescapes.
#[derive(Debug, Clone, Copy)]
pub struct EscapedText<'a>(&'a str);

impl<'a> EscapedText<'a> {
    pub fn raw(&self) -> &'a str {
        self.0
    }
}

impl<'a> Payload<'a> {
    /// The payload's bytes, unescaped if need be.
    pub fn bytes(&self) -> Cow<'_, [u8]> {
        match self {
            Payload::Bytes(bytes) => Cow::Borrowed(bytes),
            // The scanner checked every escape, so unescaping cannot fail;
            // were it to, the raw text is still the message's content.
            Payload::Escaped(text) => Cow::Owned(
                crate::json::scanner::unescape(text.0)
                    .map(String::into_bytes)
                    .unwrap_or_else(|Unusual| text.0.as_bytes().to_vec()),
            ),
        }
    }

    /// The payload's length as it sits in the event: exact for bytes, an
    /// upper bound (escapes count twice) for an escaped body. Enough for a
    /// size limit without unescaping.
    pub fn len(&self) -> usize {
        match self {
            Payload::Bytes(bytes) => bytes.len(),
            Payload::Escaped(text) => text.0.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn into_owned(self) -> Payload<'static> {
        match self {
            Payload::Bytes(bytes) => Payload::Bytes(Cow::Owned(bytes.into_owned())),
            escaped => Payload::Bytes(Cow::Owned(escaped.bytes().into_owned())),
        }
    }
}

impl<'a> From<Cow<'a, [u8]>> for Payload<'a> {
    fn from(bytes: Cow<'a, [u8]>) -> Self {
        Payload::Bytes(bytes)
    }
}

impl<'a> RawMessage<'a> {
    pub fn new(source: MessageSource, id: Cow<'a, str>, payload: impl Into<Payload<'a>>) -> Self {
        RawMessage {
            source,
            id,
            payload: payload.into(),
            topic: None,
            received_at_ms: None,
            attributes: Vec::new(),
            problem: None,
        }
    }

    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_ref())
    }

    pub fn into_owned(self) -> RawMessage<'static> {
        RawMessage {
            source: self.source,
            id: Cow::Owned(self.id.into_owned()),
            payload: self.payload.into_owned(),
            topic: self.topic.map(|topic| Cow::Owned(topic.into_owned())),
            received_at_ms: self.received_at_ms,
            attributes: self
                .attributes
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
            problem: self.problem,
        }
    }
}

/// The HTTP request around a Pub/Sub push delivered to a function URL.
#[derive(Debug, Clone, Default)]
pub struct HttpRequestInfo {
    /// The `token` query parameter (Google's shared verification token scheme).
    pub token: Option<String>,
    pub method: Option<String>,
}

/// An event unwrapped into its messages.
#[derive(Debug)]
pub struct Envelope<'a> {
    pub kind: EventKind,
    pub messages: Vec<RawMessage<'a>>,
    /// Present for [`EventKind::PubSubHttp`].
    pub http: Option<HttpRequestInfo>,
    /// Present for Kinesis with a tumbling window (`TumblingWindowInSeconds`).
    pub window: Option<kinesis_window::TumblingWindow>,
}

/// The event as a whole could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the event is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the event is a JSON {found}, expected an object or an array of objects")]
    NotAnObject { found: &'static str },
    #[error("record {index} has an unknown eventSource {source_name:?}; expected aws:sqs, aws:sns or aws:kinesis")]
    UnknownRecordSource { index: usize, source_name: String },
    #[error("field `{field}` is invalid: {why}")]
    InvalidField { field: &'static str, why: String },
}

/// The top level of any event, all trigger shapes at once: one pass over
/// the members tells the shapes apart.
#[derive(Default)]
struct TopLevel<'a> {
    records: Option<RecordMessages<'a>>,
    // Pub/Sub push
    message: Option<&'a RawValue>,
    subscription: Option<&'a RawValue>,
    // EventBridge
    detail_type: Option<&'a RawValue>,
    detail: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    time: Option<&'a RawValue>,
    // HTTP (function URL / API Gateway)
    request_context: Option<&'a RawValue>,
    body: Option<&'a RawValue>,
    is_base64_encoded: Option<&'a RawValue>,
    query_string_parameters: Option<&'a RawValue>,
    raw_query_string: Option<&'a RawValue>,
    // Kinesis tumbling window
    window: Option<&'a RawValue>,
    state: Option<&'a RawValue>,
    shard_id: Option<&'a RawValue>,
    is_final_invoke_for_window: Option<&'a RawValue>,
    is_window_terminated_early: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for TopLevel<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TopVisitor;
        impl<'de> serde::de::Visitor<'de> for TopVisitor {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut top = TopLevel::default();
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    if &*key == "Records" {
                        top.records = Some(map.next_value()?);
                        continue;
                    }
                    let raw: &'de RawValue = map.next_value()?;
                    match &*key {
                        "message" => top.message = Some(raw),
                        "subscription" => top.subscription = Some(raw),
                        "detail-type" => top.detail_type = Some(raw),
                        "detail" => top.detail = Some(raw),
                        "id" => top.id = Some(raw),
                        "time" => top.time = Some(raw),
                        "requestContext" => top.request_context = Some(raw),
                        "body" => top.body = Some(raw),
                        "isBase64Encoded" => top.is_base64_encoded = Some(raw),
                        "queryStringParameters" => top.query_string_parameters = Some(raw),
                        "rawQueryString" => top.raw_query_string = Some(raw),
                        "window" => top.window = Some(raw),
                        "state" => top.state = Some(raw),
                        "shardId" => top.shard_id = Some(raw),
                        "isFinalInvokeForWindow" => top.is_final_invoke_for_window = Some(raw),
                        "isWindowTerminatedEarly" => top.is_window_terminated_early = Some(raw),
                        _ => {}
                    }
                }
                Ok(top)
            }
        }
        deserializer.deserialize_map(TopVisitor)
    }
}

/// Unwraps an event of any supported trigger into its messages.
pub fn parse_event(event: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    // SIMD validation: several times std's speed on a 6 MB batch.
    match simdutf8::basic::from_utf8(event) {
        Ok(text) => parse_event_str(text),
        // Not UTF-8, so not JSON: let serde_json say where.
        Err(_) => Err(EnvelopeError::NotJson(
            serde_json::from_slice::<serde_json::Value>(event)
                .err()
                .unwrap_or_else(|| serde::de::Error::custom("the event is not UTF-8")),
        )),
    }
}

/// As [`parse_event`], for text already known to be UTF-8 (serde_json then
/// skips validating every string again).
fn parse_event_str(event: &str) -> Result<Envelope<'_>, EnvelopeError> {
    let first = event.bytes().find(|byte| !byte.is_ascii_whitespace());
    match first {
        Some(b'[') => iot_rule::parse_iot_batch(event),
        Some(b'{') => parse_object(event),
        _ => {
            let value: serde_json::Value =
                serde_json::from_str(event).map_err(EnvelopeError::NotJson)?;
            Err(EnvelopeError::NotAnObject {
                found: json_kind(&value),
            })
        }
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn parse_object(event: &str) -> Result<Envelope<'_>, EnvelopeError> {
    if let Ok(envelope) = sqs::scan_sqs_batch(event) {
        return Ok(envelope);
    }
    parse_object_with_serde(event)
}

/// What the SQS scanner reads from `event`, next to what the serde path
/// reads, each as comparable text (a payload left escaped reads as its
/// unescaped bytes); `None` when the scanner leaves the event to serde.
/// For the tests and fuzz checks that hold the two paths to agreeing.
pub(crate) fn scanner_and_serde_reads(event: &str) -> Option<(String, Result<String, String>)> {
    let scanned = sqs::scan_sqs_batch(event).ok()?;
    let serde = parse_object_with_serde(event)
        .map(envelope_as_read)
        .map_err(|error| error.to_string());
    Some((envelope_as_read(scanned), serde))
}

fn envelope_as_read(envelope: Envelope<'_>) -> String {
    let messages: Vec<RawMessage<'static>> = envelope
        .messages
        .into_iter()
        .map(RawMessage::into_owned)
        .collect();
    format!("{:?} {messages:?} {:?}", envelope.kind, envelope.http)
}

fn parse_object_with_serde(event: &str) -> Result<Envelope<'_>, EnvelopeError> {
    let top: TopLevel<'_> = serde_json::from_str(event).map_err(EnvelopeError::NotJson)?;
    envelope_from_top(top, event.as_bytes())
}

/// Tells the shapes apart; `original` is the event's bytes (an IoT rule
/// object is its own payload, byte for byte).
fn envelope_from_top<'a>(
    mut top: TopLevel<'a>,
    original: &'a [u8],
) -> Result<Envelope<'a>, EnvelopeError> {
    if let Some(records) = top.records.take() {
        if let Some(error) = records.error {
            return Err(error);
        }
        return Ok(Envelope {
            // An empty Records list has nothing to report on; SQS is as good as any.
            kind: records.kind.unwrap_or(EventKind::Sqs),
            messages: records.messages,
            http: None,
            window: kinesis_window::tumbling_window(&top)?,
        });
    }
    if top.request_context.is_some() && top.body.is_some() {
        return http::parse_http(&top);
    }
    if let (Some(message), Some(_)) = (top.message, top.subscription) {
        if message.get().starts_with('{') {
            return pubsub::parse_push(message);
        }
    }
    if let (Some(_), Some(detail)) = (top.detail_type, top.detail) {
        return Ok(eventbridge::event(top.id, top.time, detail));
    }
    // Anything else is a topic rule's SELECT output: the device payload itself.
    Ok(iot_rule::rule_output(original))
}

/// RFC 3339 text (as AWS and Google stamp their messages) to epoch ms.
fn rfc3339_to_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|time| time.timestamp_millis())
}

/// Epoch seconds with a fraction (Kinesis' arrival time) to epoch ms.
fn epoch_seconds_to_ms(seconds: f64) -> Option<i64> {
    let millis = seconds * 1000.0;
    // Beyond ±2^53 ms the number is no time at all.
    (millis.abs() < 9.0e15).then_some(millis.round() as i64)
}

/// An id for messages their source did not name (IoT rule events): the
/// first 128 bits of the payload's SHA-256, so a redelivered event keeps its
/// id (and stays deduplicable) while different events do not share one.
/// With the rule's `timestamp() AS received_at` two readings never collide.
pub fn content_id(payload: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(payload);
    let mut id = String::with_capacity(4 + 32);
    id.push_str("iot-");
    push_hex(&mut id, &digest[..16]);
    id
}

/// Appends `bytes` as lowercase hexadecimal (digests in ids).
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    for byte in bytes {
        out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
}

/// The text of a JSON string held as a raw value (unescaped when needed).
fn raw_string(raw: &RawValue) -> Cow<'_, str> {
    serde_json::from_str::<Cow<'_, str>>(raw.get()).unwrap_or(Cow::Borrowed(raw.get()))
}

fn broken(source: MessageSource, id: &'static str, why: &str) -> RawMessage<'static> {
    let mut message = RawMessage::new(source, Cow::Borrowed(id), Cow::Borrowed(&b""[..]));
    message.problem = Some(why.to_owned());
    message
}

fn cow_bytes(text: Cow<'_, str>) -> Cow<'_, [u8]> {
    match text {
        Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
        Cow::Owned(text) => Cow::Owned(text.into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::sqs::scan_sqs_batch;
    use super::*;

    fn sample_events() -> Vec<(String, String)> {
        let directory = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events");
        let mut events: Vec<_> = std::fs::read_dir(directory)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "json"))
            .map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(entry.path()).unwrap())
            })
            .collect();
        events.sort();
        assert!(events.len() >= 40, "the events/ samples are missing");
        events
    }

    /// What the scanner accepts, serde reads the same way; what serde
    /// refuses, the scanner refuses too.
    fn assert_scan_agrees(name: &str, event: &str) -> bool {
        let Some((scanned, serde)) = scanner_and_serde_reads(event) else {
            return false;
        };
        let serde = serde
            .unwrap_or_else(|error| panic!("{name}: scanner accepted what serde refuses: {error}"));
        assert_eq!(scanned, serde, "{name}");
        true
    }

    #[test]
    fn sqs_scanner_reads_every_sample_like_serde() {
        let (mut scanned, mut sqs_samples) = (0, 0);
        for (name, event) in sample_events() {
            sqs_samples += usize::from(name.contains("sqs"));
            if assert_scan_agrees(&name, &event) {
                scanned += 1;
                assert!(name.contains("sqs"), "{name} is not an SQS event");
            }
        }
        // Every SQS and SNS-via-SQS sample takes the fast path.
        assert!(sqs_samples >= 9);
        assert_eq!(scanned, sqs_samples);
    }

    #[test]
    fn sqs_scanner_agrees_with_serde_on_damaged_events() {
        let mut accepted = 0;
        for (name, event) in sample_events()
            .into_iter()
            .filter(|(n, _)| n.starts_with("sqs"))
        {
            for (index, mutated) in crate::json::scanner::mutations(&event, 400)
                .iter()
                .enumerate()
            {
                if assert_scan_agrees(&format!("{name} #{index}"), mutated) {
                    accepted += 1;
                }
            }
        }
        // Harmless damage (inside a string, whitespace) is still read.
        assert!(accepted > 100, "only {accepted} damaged events scanned");
    }

    #[test]
    fn unusual_sqs_batches_go_through_serde() {
        let record = |extra: &str| {
            format!(r#"{{"messageId":"m","body":"{{}}","eventSource":"aws:sqs"{extra}}}"#)
        };
        for event in [
            format!(r#"{{"Records":[{}]}}"#, record(r#","body":"again""#)),
            format!(r#"{{"Records":[{}],"extra":1}}"#, record("")),
            format!(r#"{{"Records":[{}]}}"#, record(r#","attributes":null"#)),
            format!(r#"{{"Records":[{}]}}"#, record(r#","kinesis":{}"#)),
            r#"{"Records":[]}"#.to_owned(),
            r#"{"Records":[{"messageId":"m","body":"x","eventSource":"aws:sns"}]}"#.to_owned(),
            format!(r#"{{"Records":[{}]}} x"#, record("")),
        ] {
            assert_eq!(scan_sqs_batch(&event).err(), Some(Unusual), "{event}");
        }
        let event = format!(
            r#"{{"Records":[{}]}}"#,
            record(r#","attributes":{"SentTimestamp":"1645938062000","x":[1,{"y":null}]}"#)
        );
        let envelope = scan_sqs_batch(&event).unwrap();
        assert_eq!(envelope.messages[0].received_at_ms, Some(1_645_938_062_000));
        assert_eq!(&*envelope.messages[0].payload.bytes(), b"{}");
    }
}
