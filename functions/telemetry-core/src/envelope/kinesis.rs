//! Kinesis: `Records[].kinesis.data` (base64), the sequence number as the
//! message id, the approximate arrival time as the time it was received.

use std::borrow::Cow;

use base64::Engine;
use serde::Deserialize;

use super::records::Record;
use super::{broken, cow_bytes, epoch_seconds_to_ms, MessageSource, RawMessage};
use crate::json::text::Text;

#[derive(Deserialize)]
pub(super) struct KinesisData<'a> {
    #[serde(borrow)]
    pub(super) data: Text<'a>,
    #[serde(rename = "sequenceNumber", borrow)]
    pub(super) sequence_number: Text<'a>,
    #[serde(rename = "approximateArrivalTimestamp", default)]
    pub(super) approximate_arrival_timestamp: Option<f64>,
}

pub(super) fn kinesis_message(record: Record<'_>) -> RawMessage<'_> {
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
        .and_then(epoch_seconds_to_ms);
    message
}
