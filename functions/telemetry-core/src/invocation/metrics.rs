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
        let start = readings.len();
        decode_message(&self.settings.mappings, message, index, now_ms, readings)
            .map_err(|error| Rejection::new(error.to_string()))?;
        let mut reasons = Vec::new();
        let mut kept = start;
        for position in start..readings.len() {
            if self.settings.high_resolution {
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
        let step = MetricsStep {
            settings: self,
            sink: metrics,
        };
        let invocation = Invocation { request_id, now_ms };
        self.run(&step, event, invocation, dead_letters).await
    }
}
