//! The metrics function's step: every message decoded into readings, each
//! reading checked against what CloudWatch accepts, the valid ones sent to
//! the metrics sink.

use async_trait::async_trait;

use crate::envelope::RawMessage;
use crate::invocation::{Invocation, InvocationSettings, Rejection, Step};
use crate::outcome::{Counts, Delivery, Response, RetryLater};
use crate::reading::decode::decode_message;
use crate::reading::validate::validate;
use crate::reading::Reading;
use crate::sink::{DeadLetterSink, MetricsSink};

/// Readings -> a metrics sink.
pub struct MetricsStep<'a> {
    pub settings: &'a InvocationSettings,
    pub sink: &'a dyn MetricsSink,
}

#[async_trait]
impl Step for MetricsStep<'_> {
    /// Valid readings; `Reading::message` is the index of their message.
    type Work = Vec<Reading>;

    fn start(&self, messages: usize) -> Vec<Reading> {
        Vec::with_capacity(messages * 2)
    }

    fn take(
        &self,
        readings: &mut Vec<Reading>,
        message: &RawMessage<'_>,
        index: u32,
        now_ms: i64,
    ) -> Result<(), Rejection> {
        take_valid_readings(self.settings, readings, message, index, now_ms)
    }

    fn accepted(&self, readings: &Vec<Reading>) -> usize {
        readings.len()
    }

    async fn deliver(&self, readings: &Vec<Reading>, _: Invocation<'_>) -> Delivery {
        if readings.is_empty() {
            return Delivery::default();
        }
        self.sink.send(readings).await
    }
}

/// Decodes message `index` into `readings`, keeping the valid ones; the
/// others make the message a dead letter (kept whole, even when some of its
/// readings are delivered).
pub(crate) fn take_valid_readings(
    settings: &InvocationSettings,
    readings: &mut Vec<Reading>,
    message: &RawMessage<'_>,
    index: u32,
    now_ms: i64,
) -> Result<(), Rejection> {
    let start = readings.len();
    decode_message(&settings.mappings, message, index, now_ms, readings)
        .map_err(|error| Rejection::new(error.to_string()))?;
    let mut reasons = Vec::new();
    let mut kept = start;
    for position in start..readings.len() {
        if settings.high_resolution {
            readings[position].high_resolution = true;
        }
        match validate(&readings[position], now_ms) {
            Ok(()) => {
                readings.swap(kept, position);
                kept += 1;
            }
            Err(invalid) => reasons.push(invalid.to_string()),
        }
    }
    readings.truncate(kept);
    if reasons.is_empty() {
        return Ok(());
    }
    // The message is kept whole in the dead letter, even when some of
    // its readings are delivered.
    Err(Rejection {
        readings: reasons.len(),
        reason: reasons.join("; "),
    })
}

impl InvocationSettings {
    /// Runs one invocation of the metrics function.
    pub async fn process_metrics(
        &self,
        event: &[u8],
        request_id: &str,
        now_ms: i64,
        metrics: &dyn MetricsSink,
        dead_letters: &dyn DeadLetterSink,
    ) -> Result<(Response, Counts), RetryLater> {
        let invocation = Invocation::new(request_id, now_ms);
        self.process_metrics_in(event, invocation, metrics, dead_letters)
            .await
    }

    /// [`InvocationSettings::process_metrics`] within an invocation that
    /// has a deadline.
    pub async fn process_metrics_in(
        &self,
        event: &[u8],
        invocation: Invocation<'_>,
        metrics: &dyn MetricsSink,
        dead_letters: &dyn DeadLetterSink,
    ) -> Result<(Response, Counts), RetryLater> {
        let step = MetricsStep {
            settings: self,
            sink: metrics,
        };
        self.run(&step, event, invocation, dead_letters).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use proptest::prelude::*;

    use super::*;
    use crate::invocation::hostile::one_message_event;
    use crate::sink::dead_letter::DeadLetter;
    use crate::sink::DeadLetterError;

    const NOW_MS: i64 = 1_645_938_300_000;

    /// Keeps the readings it is sent.
    #[derive(Default)]
    struct CapturedReadings(Mutex<Vec<Reading>>);

    #[async_trait]
    impl MetricsSink for CapturedReadings {
        async fn send(&self, readings: &[Reading]) -> Delivery {
            self.0.lock().unwrap().extend_from_slice(readings);
            Delivery::default()
        }
    }

    #[derive(Default)]
    struct CapturedDeadLetters(Mutex<Vec<DeadLetter>>);

    #[async_trait]
    impl DeadLetterSink for CapturedDeadLetters {
        async fn write(&self, letters: &[DeadLetter]) -> Result<String, DeadLetterError> {
            self.0.lock().unwrap().extend_from_slice(letters);
            Ok("memory".into())
        }
    }

    fn run(event: &[u8]) -> (Result<(Response, Counts), RetryLater>, usize, usize) {
        let sink = CapturedReadings::default();
        let dead = CapturedDeadLetters::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let outcome = runtime.block_on(
            InvocationSettings::default().process_metrics(event, "req", NOW_MS, &sink, &dead),
        );
        let readings = sink.0.lock().unwrap().len();
        let letters = dead.0.lock().unwrap().len();
        (outcome, readings, letters)
    }

    #[test]
    fn an_empty_array_is_dead_lettered_with_its_reason() {
        for body in ["[]", "\n[] ", "[{}, {}]"] {
            let event = serde_json::json!({"Records": [
                {"messageId": "m-1", "eventSource": "aws:sqs", "body": body}
            ]});
            let (outcome, readings, letters) = run(&serde_json::to_vec(&event).unwrap());
            let (response, counts) = outcome.unwrap();
            assert_eq!(response.batch_item_failures(), Some(&[][..]));
            assert_eq!(
                (readings, letters, counts.dead_lettered),
                (0, 1, 1),
                "{body:?}"
            );
        }
    }

    /// A mapping that gives a reading 31 dimensions (30 declared, plus the
    /// device): CloudWatch takes 30, so the reading is dead-lettered naming
    /// the count and the limit, and a reading with 30 passes.
    #[test]
    fn a_reading_with_31_dimensions_is_dead_lettered_naming_the_limit() {
        let settings = |count: usize| -> InvocationSettings {
            let dimensions: String = (0..count)
                .map(|index| format!("d{index} = \"const:v{index}\"\n"))
                .collect();
            let file = format!(
                "[[mapping]]\nname = \"wide\"\ntopic = \"#\"\ndevice = \"/device\"\n[[mapping.metric]]\nname = \"temperature\"\nvalue = \"/temperature\"\n[mapping.dimensions]\n{dimensions}"
            );
            crate::config::pipeline_file::PipelineFile::parse(&file)
                .unwrap()
                .into()
        };
        let event = serde_json::to_vec(&serde_json::json!({"Records": [{
            "messageId": "wide", "eventSource": "aws:sqs",
            "body": serde_json::json!({"device": "t-1", "temperature": 1.5, "topic": "devices/t-1/telemetry"}).to_string(),
        }]}))
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for (declared, accepted) in [(29, true), (30, false)] {
            let sink = CapturedReadings::default();
            let dead = CapturedDeadLetters::default();
            let (response, _) = runtime
                .block_on(settings(declared).process_metrics(&event, "req", NOW_MS, &sink, &dead))
                .unwrap();
            assert_eq!(response.batch_item_failures(), Some(&[][..]));
            let letters = dead.0.lock().unwrap();
            let readings = sink.0.lock().unwrap();
            assert_eq!(
                readings.len(),
                usize::from(accepted),
                "{declared}: {:?} {:?}",
                readings.first().map(|r| r.dimensions.len()),
                letters.first().map(|l| &l.reason)
            );
            if !accepted {
                assert!(
                    letters[0]
                        .reason
                        .contains("31 dimensions on \"temperature\"; the limit is 30"),
                    "{}",
                    letters[0].reason
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Every message that comes in is accounted for: it gave readings,
        /// or it was dead-lettered, or it is to be retried.
        #[test]
        fn no_message_vanishes(event in one_message_event()) {
            let (outcome, readings, letters) = run(&event);
            let counts = match &outcome {
                Ok((_, counts)) => counts.clone(),
                Err(retry) => retry.counts.clone(),
            };
            prop_assert_eq!(letters, counts.dead_lettered);
            if counts.messages == 1 {
                prop_assert!(
                    readings > 0 || counts.dead_lettered == 1 || counts.retried == 1,
                    "{:?} vanished: {:?}", String::from_utf8_lossy(&event), counts
                );
            } else {
                // An IoT rule batch (a top-level array): each element.
                prop_assert!(
                    counts.dead_lettered + counts.retried + readings >= counts.messages,
                    "{:?}: {:?}", String::from_utf8_lossy(&event), counts
                );
            }
        }
    }
}
