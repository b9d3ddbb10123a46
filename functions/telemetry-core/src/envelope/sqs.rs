//! SQS: `Records[].body`, with `attributes.SentTimestamp` as the time it
//! was received. The common case, a batch of plain SQS records, is read by
//! the scanner; bodies from an SNS subscription are unwrapped.

use std::borrow::Cow;

use serde::Deserialize;

use super::records::Record;
use super::sns::{looks_like_sns_notification, notification_message, SnsNotification};
use super::{cow_bytes, Envelope, EscapedText, EventKind, MessageSource, Payload, RawMessage};
use crate::json::scanner::{escaped_object_starts_with_key, Scan, Scanner, Unusual};
use crate::json::text::Text;

#[derive(Deserialize)]
pub(super) struct SqsAttributes<'a> {
    #[serde(rename = "SentTimestamp", borrow, default)]
    pub(super) sent_timestamp: Option<Text<'a>>,
}

/// The common case, an SQS batch (`{"Records": [...]}` of `aws:sqs`
/// records), read by the scanner: only the fields used are looked at.
/// Anything else is [`Unusual`] and goes through serde, which gives the same
/// result for what the scanner accepts (tested on every sample event).
pub(super) fn scan_sqs_batch(event: &str) -> Scan<Envelope<'_>> {
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
        window: None,
    })
}

pub(super) fn scan_sqs_record<'a>(scanner: &mut Scanner<'a>) -> Scan<RawMessage<'a>> {
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
pub(super) fn scan_sent_timestamp<'a>(scanner: &mut Scanner<'a>) -> Scan<Option<Cow<'a, str>>> {
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

pub(super) fn sqs_message(record: Record<'_>) -> RawMessage<'_> {
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
pub(super) fn sqs_message_of<'a>(
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

pub(super) fn sent_at_ms(sent_timestamp: Option<&str>) -> Option<i64> {
    sent_timestamp.and_then(|sent| sent.parse().ok())
}
