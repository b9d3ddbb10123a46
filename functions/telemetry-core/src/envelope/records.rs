//! The `Records` list of SQS, SNS and Kinesis events, read by serde one
//! record at a time and handed to the trigger's own file.

use serde::Deserialize;

use super::kinesis::{kinesis_message, KinesisData};
use super::sns::{sns_message, SnsNotification};
use super::sqs::{sqs_message, SqsAttributes};
use super::{EnvelopeError, EventKind, RawMessage};
use crate::json::text::Text;

/// A `Records` entry of SQS, SNS or Kinesis, all shapes at once.
#[derive(Deserialize)]
pub(super) struct Record<'a> {
    #[serde(rename = "eventSource", borrow, default)]
    pub(super) event_source: Option<Text<'a>>,
    #[serde(rename = "EventSource", borrow, default)]
    pub(super) event_source_sns: Option<Text<'a>>,
    // SQS
    #[serde(rename = "messageId", borrow, default)]
    pub(super) message_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) body: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) attributes: Option<SqsAttributes<'a>>,
    // Kinesis
    #[serde(borrow, default)]
    pub(super) kinesis: Option<KinesisData<'a>>,
    // SNS
    #[serde(rename = "Sns", borrow, default)]
    pub(super) sns: Option<SnsNotification<'a>>,
}

/// `Records` turned into messages one record at a time, as serde reads
/// them: no intermediate list of wire records.
pub(super) struct RecordMessages<'a> {
    pub(super) kind: Option<EventKind>,
    pub(super) messages: Vec<RawMessage<'a>>,
    pub(super) error: Option<EnvelopeError>,
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
