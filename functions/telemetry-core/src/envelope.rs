//! Envelopes: how an event reached the function (IoT rule, SQS, SNS,
//! EventBridge, Kinesis, Pub/Sub push, or Pub/Sub push over HTTP), unwrapped
//! into raw device messages. Detection is automatic and single-pass; the
//! structs borrow from the event so that the hot path copies only what JSON
//! escaping forces it to.

use std::borrow::Cow;

use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json_scan::{escaped_object_starts_with_key, Scan, Scanner, Unusual};
use crate::text::{Text, TextPairs};
use crate::timestamp::TimestampFormat;

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

    /// Sources whose response lists the records to retry (`batchItemFailures`).
    pub const fn reports_batch_item_failures(self) -> bool {
        matches!(self, EventKind::Sqs | EventKind::Kinesis)
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
                crate::json_scan::unescape(text.0)
                    .map(String::into_bytes)
                    .unwrap_or_else(|Unusual| text.0.as_bytes().to_vec()),
            ),
        }
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
    fn new(source: MessageSource, id: Cow<'a, str>, payload: impl Into<Payload<'a>>) -> Self {
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

// ---- wire types -------------------------------------------------------------

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
                        _ => {}
                    }
                }
                Ok(top)
            }
        }
        deserializer.deserialize_map(TopVisitor)
    }
}

/// A `Records` entry of SQS, SNS or Kinesis, all shapes at once.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(rename = "eventSource", borrow, default)]
    event_source: Option<Text<'a>>,
    #[serde(rename = "EventSource", borrow, default)]
    event_source_sns: Option<Text<'a>>,
    // SQS
    #[serde(rename = "messageId", borrow, default)]
    message_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    body: Option<Text<'a>>,
    #[serde(borrow, default)]
    attributes: Option<SqsAttributes<'a>>,
    // Kinesis
    #[serde(borrow, default)]
    kinesis: Option<KinesisData<'a>>,
    // SNS
    #[serde(rename = "Sns", borrow, default)]
    sns: Option<SnsNotification<'a>>,
}

#[derive(Deserialize)]
struct SqsAttributes<'a> {
    #[serde(rename = "SentTimestamp", borrow, default)]
    sent_timestamp: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct KinesisData<'a> {
    #[serde(borrow)]
    data: Text<'a>,
    #[serde(rename = "sequenceNumber", borrow)]
    sequence_number: Text<'a>,
    #[serde(rename = "approximateArrivalTimestamp", default)]
    approximate_arrival_timestamp: Option<f64>,
}

/// An SNS notification: the `Sns` object of an SNS event, or the body of an
/// SQS message from an SNS subscription without raw message delivery.
#[derive(Deserialize)]
struct SnsNotification<'a> {
    #[serde(rename = "Type", borrow, default)]
    kind: Option<Text<'a>>,
    #[serde(rename = "MessageId", borrow)]
    message_id: Text<'a>,
    #[serde(rename = "TopicArn", borrow, default)]
    topic_arn: Option<Text<'a>>,
    #[serde(rename = "Message", borrow)]
    message: Text<'a>,
    #[serde(rename = "Timestamp", borrow, default)]
    timestamp: Option<Text<'a>>,
    #[serde(rename = "MessageAttributes", borrow, default)]
    message_attributes: Option<SnsAttributes<'a>>,
}

#[derive(Deserialize)]
struct SnsAttribute<'a> {
    #[serde(rename = "Value", alias = "value", borrow, default)]
    value: Option<Text<'a>>,
}

/// SNS `MessageAttributes`: name -> `{"Type": ..., "Value": ...}`.
#[derive(Default)]
struct SnsAttributes<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for SnsAttributes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AttributesVisitor;
        impl<'de> serde::de::Visitor<'de> for AttributesVisitor {
            type Value = SnsAttributes<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of SNS message attributes")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut pairs = Vec::new();
                while let Some((name, attribute)) =
                    map.next_entry::<Text<'de>, SnsAttribute<'de>>()?
                {
                    if let Some(value) = attribute.value {
                        pairs.push((name.0, value.0));
                    }
                }
                Ok(SnsAttributes(pairs))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(SnsAttributes::default())
            }
        }
        deserializer.deserialize_any(AttributesVisitor)
    }
}

/// Google Pub/Sub push: `{"message": {...}, "subscription": "..."}`.
#[derive(Deserialize)]
struct PubSubPushEnvelope<'a> {
    #[serde(borrow)]
    message: PubSubMessage<'a>,
    #[serde(borrow, default)]
    #[allow(dead_code)] // part of the documented shape; only its presence matters
    subscription: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct PubSubMessage<'a> {
    #[serde(borrow, default)]
    data: Option<Text<'a>>,
    #[serde(borrow, default)]
    attributes: Option<TextPairs<'a>>,
    // Pub/Sub sends both spellings of these two; either may be alone.
    #[serde(rename = "messageId", borrow, default)]
    message_id: Option<Text<'a>>,
    #[serde(rename = "message_id", borrow, default)]
    message_id_snake: Option<Text<'a>>,
    #[serde(rename = "publishTime", borrow, default)]
    publish_time: Option<Text<'a>>,
    #[serde(rename = "publish_time", borrow, default)]
    publish_time_snake: Option<Text<'a>>,
}

// ---- detection ---------------------------------------------------------------

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
        Some(b'[') => parse_iot_batch(event),
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

fn parse_iot_batch(event: &str) -> Result<Envelope<'_>, EnvelopeError> {
    let items: Vec<&RawValue> = serde_json::from_str(event).map_err(EnvelopeError::NotJson)?;
    let messages = items
        .into_iter()
        .map(|item| {
            let payload = item.get().as_bytes();
            RawMessage::new(
                MessageSource::IotRule,
                Cow::Owned(content_id(payload)),
                Cow::Borrowed(payload),
            )
        })
        .collect();
    Ok(Envelope {
        kind: EventKind::IotRule,
        messages,
        http: None,
    })
}

fn parse_object(event: &str) -> Result<Envelope<'_>, EnvelopeError> {
    if let Ok(envelope) = scan_sqs_batch(event) {
        return Ok(envelope);
    }
    parse_object_with_serde(event)
}

fn parse_object_with_serde(event: &str) -> Result<Envelope<'_>, EnvelopeError> {
    let top: TopLevel<'_> = serde_json::from_str(event).map_err(EnvelopeError::NotJson)?;
    envelope_from_top(top, event.as_bytes())
}

/// The common case, an SQS batch (`{"Records": [...]}` of `aws:sqs`
/// records), read by the scanner: only the fields used are looked at.
/// Anything else is [`Unusual`] and goes through serde, which gives the same
/// result for what the scanner accepts (tested on every sample event).
fn scan_sqs_batch(event: &str) -> Scan<Envelope<'_>> {
    let mut scanner = Scanner::new(event);
    scanner.expect(b'{')?;
    let mut first = true;
    let key = scanner.next_key(&mut first)?.ok_or(Unusual)?;
    if key.raw() != Some("Records") {
        return Err(Unusual);
    }
    scanner.expect(b'[')?;
    let mut messages = Vec::with_capacity(event.len() / 512 + 1);
    let mut first_record = true;
    while scanner.next_element(&mut first_record)? {
        messages.push(scan_sqs_record(&mut scanner)?);
    }
    if messages.is_empty() || scanner.next_key(&mut first)?.is_some() {
        return Err(Unusual);
    }
    scanner.finish()?;
    Ok(Envelope {
        kind: EventKind::Sqs,
        messages,
        http: None,
    })
}

fn scan_sqs_record<'a>(scanner: &mut Scanner<'a>) -> Scan<RawMessage<'a>> {
    let (mut id, mut body, mut sent_timestamp, mut is_sqs) = (None, None, None, false);
    scanner.expect(b'{')?;
    let mut first = true;
    while let Some(key) = scanner.next_key(&mut first)? {
        // Every field `Record` reads is either handled here or unusual
        // (duplicates too: serde refuses them).
        match key.raw().ok_or(Unusual)? {
            "messageId" if id.is_none() => id = Some(scanner.string_value()?),
            "body" if body.is_none() => body = Some(scanner.string()?),
            "eventSource" if !is_sqs => {
                if scanner.string()?.raw() != Some("aws:sqs") {
                    return Err(Unusual);
                }
                is_sqs = true;
            }
            "attributes" if sent_timestamp.is_none() => {
                sent_timestamp = Some(scan_sent_timestamp(scanner)?);
            }
            "messageId" | "body" | "eventSource" | "attributes" | "EventSource" | "kinesis"
            | "Sns" => return Err(Unusual),
            _ => scanner.skip_value()?,
        }
    }
    if !is_sqs {
        return Err(Unusual);
    }
    let id = id.unwrap_or_default();
    let sent_timestamp = sent_timestamp.flatten();
    // An escaped body is left as it is for the decoder to read in place,
    // unless it is an SNS notification to unwrap here.
    if let Some(text) = body.and_then(|body| body.simply_escaped()) {
        if !escaped_object_starts_with_key(text, "Type") {
            let mut message =
                RawMessage::new(MessageSource::Sqs, id, Payload::Escaped(EscapedText(text)));
            message.received_at_ms = sent_at_ms(sent_timestamp.as_deref());
            return Ok(message);
        }
    }
    let body = body.map(|body| body.value()).transpose()?;
    Ok(sqs_message_of(
        id,
        body.unwrap_or_default(),
        sent_timestamp.as_deref(),
    ))
}

/// `attributes.SentTimestamp`, if present.
fn scan_sent_timestamp<'a>(scanner: &mut Scanner<'a>) -> Scan<Option<Cow<'a, str>>> {
    scanner.expect(b'{')?;
    let mut sent = None;
    let mut first = true;
    while let Some(key) = scanner.next_key(&mut first)? {
        match key.raw().ok_or(Unusual)? {
            "SentTimestamp" if sent.is_none() => sent = Some(scanner.string_value()?),
            "SentTimestamp" => return Err(Unusual),
            _ => scanner.skip_value()?,
        }
    }
    Ok(sent)
}

/// Tells the shapes apart; `original` is the event's bytes (an IoT rule
/// object is its own payload, byte for byte).
fn envelope_from_top<'a>(
    top: TopLevel<'a>,
    original: &'a [u8],
) -> Result<Envelope<'a>, EnvelopeError> {
    if let Some(records) = top.records {
        if let Some(error) = records.error {
            return Err(error);
        }
        return Ok(Envelope {
            // An empty Records list has nothing to report on; SQS is as good as any.
            kind: records.kind.unwrap_or(EventKind::Sqs),
            messages: records.messages,
            http: None,
        });
    }
    if top.request_context.is_some() && top.body.is_some() {
        return parse_http(&top);
    }
    if let (Some(message), Some(_)) = (top.message, top.subscription) {
        if message.get().starts_with('{') {
            let message = parse_pubsub_message(message.get().as_bytes())?;
            return Ok(Envelope {
                kind: EventKind::PubSubPush,
                messages: vec![message],
                http: None,
            });
        }
    }
    if let (Some(_), Some(detail)) = (top.detail_type, top.detail) {
        let mut message = RawMessage::new(
            MessageSource::EventBridge,
            top.id.map(raw_string).unwrap_or(Cow::Borrowed("")),
            Cow::Borrowed(detail.get().as_bytes()),
        );
        message.received_at_ms = top
            .time
            .map(raw_string)
            .and_then(|time| TimestampFormat::Rfc3339.from_text(&time));
        return Ok(Envelope {
            kind: EventKind::EventBridge,
            messages: vec![message],
            http: None,
        });
    }
    // Anything else is a topic rule's SELECT output: the device payload itself.
    Ok(Envelope {
        kind: EventKind::IotRule,
        messages: vec![RawMessage::new(
            MessageSource::IotRule,
            Cow::Owned(content_id(original)),
            Cow::Borrowed(original),
        )],
        http: None,
    })
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
    for byte in &digest[..16] {
        id.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        id.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    id
}

/// The text of a JSON string held as a raw value (unescaped when needed).
fn raw_string(raw: &RawValue) -> Cow<'_, str> {
    serde_json::from_str::<Cow<'_, str>>(raw.get()).unwrap_or(Cow::Borrowed(raw.get()))
}

/// `Records` turned into messages one record at a time, as serde reads
/// them: no intermediate list of wire records.
struct RecordMessages<'a> {
    kind: Option<EventKind>,
    messages: Vec<RawMessage<'a>>,
    error: Option<EnvelopeError>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RecordMessages<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RecordsVisitor;
        impl<'de> serde::de::Visitor<'de> for RecordsVisitor {
            type Value = RecordMessages<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of SQS, SNS or Kinesis records")
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                mut seq: S,
            ) -> Result<Self::Value, S::Error> {
                let mut records = RecordMessages {
                    kind: None,
                    messages: Vec::with_capacity(seq.size_hint().unwrap_or(16)),
                    error: None,
                };
                let mut index = 0;
                while let Some(record) = seq.next_element::<Record<'de>>()? {
                    if records.error.is_none() {
                        records.add(index, record);
                    }
                    index += 1;
                }
                Ok(records)
            }
        }
        deserializer.deserialize_seq(RecordsVisitor)
    }
}

impl<'a> RecordMessages<'a> {
    fn add(&mut self, index: usize, record: Record<'a>) {
        let source_name = record
            .event_source
            .as_deref()
            .or(record.event_source_sns.as_deref())
            .unwrap_or("");
        let (record_kind, message) = match source_name {
            "aws:sqs" => (EventKind::Sqs, sqs_message(record)),
            "aws:kinesis" => (EventKind::Kinesis, kinesis_message(record)),
            "aws:sns" => (EventKind::Sns, sns_message(record)),
            other => {
                self.error = Some(EnvelopeError::UnknownRecordSource {
                    index,
                    source_name: other.to_owned(),
                });
                return;
            }
        };
        if self.kind.is_some_and(|kind| kind != record_kind) {
            self.error = Some(EnvelopeError::InvalidField {
                field: "Records",
                why: format!(
                    "record {index} is from {}, but earlier records are from another source",
                    record_kind.as_str()
                ),
            });
            return;
        }
        self.kind = Some(record_kind);
        self.messages.push(message);
    }
}

fn sqs_message(record: Record<'_>) -> RawMessage<'_> {
    sqs_message_of(
        record.message_id.map(Text::into_cow).unwrap_or_default(),
        record.body.map(Text::into_cow).unwrap_or_default(),
        record
            .attributes
            .and_then(|attributes| attributes.sent_timestamp)
            .as_deref(),
    )
}

/// An SQS message from its id, body and `attributes.SentTimestamp`.
fn sqs_message_of<'a>(
    id: Cow<'a, str>,
    body: Cow<'a, str>,
    sent_timestamp: Option<&str>,
) -> RawMessage<'a> {
    let sent_at = sent_at_ms(sent_timestamp);
    // SNS -> SQS without raw message delivery wraps the message in a notification.
    if looks_like_sns_notification(&body) {
        if let Ok(notification) = serde_json::from_str::<SnsNotification<'_>>(&body) {
            if notification.kind.as_deref() == Some("Notification") {
                let mut message = notification_message(notification, MessageSource::SnsViaSqs);
                // Retries are reported by SQS message id, whatever SNS called it.
                message.id = Cow::Owned(id.into_owned());
                message.received_at_ms = message.received_at_ms.or(sent_at);
                return message.into_owned();
            }
        }
    }
    let mut message = RawMessage::new(MessageSource::Sqs, id, cow_bytes(body));
    message.received_at_ms = sent_at;
    message
}

fn sent_at_ms(sent_timestamp: Option<&str>) -> Option<i64> {
    sent_timestamp.and_then(|sent| sent.parse().ok())
}

/// SNS writes `Type` first in its JSON; checking the first key keeps the
/// common case (a device payload) to a few byte comparisons.
fn looks_like_sns_notification(body: &str) -> bool {
    body.trim_start()
        .strip_prefix('{')
        .is_some_and(|rest| rest.trim_start().starts_with("\"Type\""))
}

fn notification_message(
    notification: SnsNotification<'_>,
    source: MessageSource,
) -> RawMessage<'_> {
    let mut message = RawMessage::new(
        source,
        notification.message_id.0,
        cow_bytes(notification.message.0),
    );
    message.received_at_ms = notification
        .timestamp
        .and_then(|time| TimestampFormat::Rfc3339.from_text(&time));
    if let Some(topic_arn) = notification.topic_arn {
        message
            .attributes
            .push((Cow::Borrowed("TopicArn"), topic_arn.0));
    }
    if let Some(attributes) = notification.message_attributes {
        message.attributes.extend(attributes.0);
    }
    message
}

fn sns_message(record: Record<'_>) -> RawMessage<'_> {
    match record.sns {
        Some(notification) => notification_message(notification, MessageSource::Sns),
        None => broken(MessageSource::Sns, "", "the SNS record has no `Sns` object"),
    }
}

fn kinesis_message(record: Record<'_>) -> RawMessage<'_> {
    let Some(kinesis) = record.kinesis else {
        return broken(
            MessageSource::Kinesis,
            "",
            "the Kinesis record has no `kinesis` object",
        );
    };
    let mut message = match base64::engine::general_purpose::STANDARD
        .decode(kinesis.data.as_bytes())
    {
        Ok(data) => RawMessage::new(
            MessageSource::Kinesis,
            kinesis.sequence_number.0,
            Cow::Owned(data),
        ),
        Err(error) => {
            let mut message = RawMessage::new(
                MessageSource::Kinesis,
                kinesis.sequence_number.0,
                cow_bytes(kinesis.data.0),
            );
            message.problem = Some(format!("field `kinesis.data` is not valid base64: {error}"));
            message
        }
    };
    message.received_at_ms = kinesis
        .approximate_arrival_timestamp
        .and_then(|seconds| TimestampFormat::EpochSeconds.from_number(seconds));
    message
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

fn parse_pubsub_message(message: &[u8]) -> Result<RawMessage<'_>, EnvelopeError> {
    let message: PubSubMessage<'_> =
        serde_json::from_slice(message).map_err(|error| EnvelopeError::InvalidField {
            field: "message",
            why: error.to_string(),
        })?;
    Ok(pubsub_message(message))
}

fn pubsub_message(message: PubSubMessage<'_>) -> RawMessage<'_> {
    let id = message
        .message_id
        .or(message.message_id_snake)
        .map(Text::into_cow)
        .unwrap_or_default();
    let data = message.data.map(Text::into_cow).unwrap_or_default();
    let mut raw = match base64::engine::general_purpose::STANDARD.decode(data.as_bytes()) {
        Ok(decoded) => RawMessage::new(MessageSource::PubSub, id, Cow::Owned(decoded)),
        Err(error) => {
            let mut raw = RawMessage::new(MessageSource::PubSub, id, cow_bytes(data));
            raw.problem = Some(format!("field `message.data` is not valid base64: {error}"));
            raw
        }
    };
    raw.received_at_ms = message
        .publish_time
        .or(message.publish_time_snake)
        .and_then(|time| TimestampFormat::Rfc3339.from_text(&time));
    raw.attributes = message.attributes.unwrap_or_default().0;
    // Cloud IoT Core style attributes carry the topic folder.
    raw.topic = raw
        .attribute("subFolder")
        .filter(|folder| !folder.is_empty())
        .map(|folder| Cow::Owned(folder.to_owned()));
    raw
}

fn parse_http<'a>(top: &TopLevel<'a>) -> Result<Envelope<'a>, EnvelopeError> {
    let invalid = |field: &'static str, why: String| EnvelopeError::InvalidField { field, why };
    let body = top.body.map(raw_string).unwrap_or_default();
    let is_base64 = top
        .is_base64_encoded
        .is_some_and(|raw| raw.get().trim() == "true");
    let body: Vec<u8> = if is_base64 {
        base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|error| invalid("body", format!("not valid base64: {error}")))?
    } else {
        body.into_owned().into_bytes()
    };
    let mut http = HttpRequestInfo::default();
    if let Some(params) = top.query_string_parameters {
        let params: TextPairs<'_> = serde_json::from_str(params.get())
            .map_err(|error| invalid("queryStringParameters", error.to_string()))?;
        http.token = params
            .0
            .into_iter()
            .find(|(name, _)| name == "token")
            .map(|(_, value)| value.into_owned());
    }
    if http.token.is_none() {
        if let Some(raw_query) = top.raw_query_string.map(raw_string) {
            http.token = raw_query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| *name == "token")
                .map(|(_, value)| percent_decode(value));
        }
    }
    if let Some(context) = top.request_context {
        #[derive(Deserialize)]
        struct Context {
            #[serde(default)]
            http: Option<HttpContext>,
        }
        #[derive(Deserialize)]
        struct HttpContext {
            #[serde(default)]
            method: Option<String>,
        }
        if let Ok(context) = serde_json::from_str::<Context>(context.get()) {
            http.method = context.http.and_then(|h| h.method);
        }
    }
    // The token is known now; a body we cannot read becomes a dead letter
    // (after the caller has checked the token), not an error for the sender.
    let message = match serde_json::from_slice::<PubSubPushEnvelope<'_>>(&body) {
        Ok(envelope) => pubsub_message(envelope.message).into_owned(),
        Err(error) => {
            let mut message = RawMessage::new(
                MessageSource::PubSub,
                Cow::Borrowed(""),
                Cow::Owned(body.clone()),
            );
            message.problem = Some(format!(
                "HTTP body is not a Pub/Sub push envelope ({{\"message\": {{\"data\": ...}}, \"subscription\": ...}}): {error}"
            ));
            message.into_owned()
        }
    };
    Ok(Envelope {
        kind: EventKind::PubSubHttp,
        messages: vec![message],
        http: Some(http),
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        index += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
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
        let Ok(scanned) = scan_sqs_batch(event) else {
            return false;
        };
        let serde = parse_object_with_serde(event)
            .unwrap_or_else(|error| panic!("{name}: scanner accepted what serde refuses: {error}"));
        assert_eq!(as_read(scanned), as_read(serde), "{name}");
        true
    }

    /// The envelope as the decoder sees it: a payload left escaped reads
    /// as its unescaped bytes.
    fn as_read(envelope: Envelope<'_>) -> String {
        let messages: Vec<RawMessage<'static>> = envelope
            .messages
            .into_iter()
            .map(RawMessage::into_owned)
            .collect();
        format!("{:?} {messages:?} {:?}", envelope.kind, envelope.http)
    }

    #[test]
    fn sqs_scanner_reads_every_sample_like_serde() {
        let mut scanned = 0;
        for (name, event) in sample_events() {
            if assert_scan_agrees(&name, &event) {
                scanned += 1;
                assert!(name.contains("sqs"), "{name} is not an SQS event");
            }
        }
        // Every SQS and SNS-via-SQS sample takes the fast path.
        assert_eq!(scanned, 9);
    }

    #[test]
    fn sqs_scanner_agrees_with_serde_on_damaged_events() {
        let mut accepted = 0;
        for (name, event) in sample_events()
            .into_iter()
            .filter(|(n, _)| n.starts_with("sqs"))
        {
            for (index, mutated) in crate::json_scan::mutations(&event, 400).iter().enumerate() {
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
