//! The skeleton every function runs, once per invocation:
//!
//! 1. read the event (an event that cannot be unwrapped is dead-lettered whole);
//! 2. refuse what must be refused (a Pub/Sub push request without its token);
//! 3. decode: hand every message to the function's [`Step`], which takes it
//!    into its work or rejects it (dead-lettered with the reason);
//! 4. the step delivers its work; what the backend refused for good is
//!    dead-lettered, what failed transiently is retried;
//! 5. answer in the trigger's form ([`answer`]).
//!
//! The steps: [`metrics`] (readings -> a metrics sink), [`warehouse`]
//! (rows -> a table writer) and [`commands`] (readings -> commands back to
//! devices); [`windows`] runs its own order around the same pieces
//! (readings -> event-time aggregates carried in a tumbling window's state).

pub mod commands;
#[cfg(test)]
pub(crate) mod hostile;
pub mod metrics;
pub mod warehouse;
pub mod windows;

use async_trait::async_trait;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::command::CommandRule;
use crate::envelope::{parse_event, EnvelopeError, EventKind, HttpRequestInfo, RawMessage};
use crate::outcome::{Counts, Delivery, FailureKind, Response, RetryLater};
use crate::payload::mapping::Mappings;
use crate::sink::dead_letter::DeadLetter;
use crate::sink::{DeadLetterError, DeadLetterSink};
use crate::warehouse::tables::TableDef;
use crate::warehouse::PlausibleTimes;

/// What every invocation of a function needs, read once per cold start.
#[derive(Debug, Clone, Default)]
pub struct InvocationSettings {
    /// How device payloads are read (`[[mapping]]` of the pipeline file).
    pub mappings: Mappings,
    /// The warehouse's declared tables (`[[table]]` of the pipeline file).
    pub tables: Vec<TableDef>,
    /// Shared token a Pub/Sub push subscription appends as `?token=`.
    pub verification_token: Option<String>,
    /// Store every reading at one-second resolution.
    pub high_resolution: bool,
    /// The times the warehouse takes (readings and declared timestamp columns).
    pub plausible_times: PlausibleTimes,
    /// Commands back to devices (`[[command]]` of the pipeline file).
    pub commands: Vec<CommandRule>,
}

/// How long before its deadline an invocation stops starting writes: a
/// write cut off by Lambda's timeout would leave the whole batch to be
/// retried, and a half-written file or statement behind.
pub const DEADLINE_MARGIN_MS: i64 = 2_000;

/// The invocation in progress.
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    pub request_id: &'a str,
    /// The function's clock when the invocation began, in epoch ms.
    pub now_ms: i64,
    /// When Lambda stops the invocation (the context's deadline), in epoch
    /// ms; `None` when nothing will (tests, local replays).
    pub deadline_ms: Option<i64>,
}

impl<'a> Invocation<'a> {
    pub fn new(request_id: &'a str, now_ms: i64) -> Self {
        Invocation {
            request_id,
            now_ms,
            deadline_ms: None,
        }
    }

    /// The same invocation, stopped by Lambda at `deadline_ms`.
    pub fn until(self, deadline_ms: Option<i64>) -> Self {
        Invocation {
            deadline_ms,
            ..self
        }
    }

    /// Whether a write may still start: false within
    /// [`DEADLINE_MARGIN_MS`] of the deadline. Work not started is reported
    /// for a retry instead of being cut off half-done.
    pub fn may_start_writes(&self) -> bool {
        let Some(deadline) = self.deadline_ms else {
            return true;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as i64)
            .unwrap_or_default();
        deadline - now > DEADLINE_MARGIN_MS
    }
}

/// Why a step did not take a message: it is dead-lettered whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: String,
    /// Readings of the message that failed their checks (for the counts).
    pub readings: usize,
}

impl Rejection {
    pub fn new(reason: impl Into<String>) -> Self {
        Rejection {
            reason: reason.into(),
            readings: 0,
        }
    }
}

/// A function's own step between decoding the envelope and answering.
#[async_trait]
pub trait Step: Send + Sync {
    /// What the messages of one invocation become (readings, rows, ...).
    type Work: Send + Sync;

    /// Empty work for an event of `messages` messages.
    fn start(&self, messages: usize) -> Self::Work;

    /// Takes message `index` into `work`. A rejected message is
    /// dead-lettered whole; the step decides whether what it took from it
    /// before finding the fault is still delivered.
    fn take(
        &self,
        work: &mut Self::Work,
        message: &RawMessage<'_>,
        index: u32,
        now_ms: i64,
    ) -> Result<(), Rejection>;

    /// How many readings (or rows) `work` holds, for the counts.
    fn accepted(&self, work: &Self::Work) -> usize;

    /// Delivers the work (none when it is empty); reports per message what
    /// failed and how.
    async fn deliver(&self, work: &Self::Work, invocation: Invocation<'_>) -> Delivery;
}

impl InvocationSettings {
    /// Runs one invocation through `step`; dead letters go to `dead_letters`.
    pub async fn run<S: Step>(
        &self,
        step: &S,
        event: &[u8],
        invocation: Invocation<'_>,
        dead_letters: &dyn DeadLetterSink,
    ) -> Result<(Response, Counts), RetryLater> {
        let Invocation { now_ms, .. } = invocation;
        let envelope = match parse_event(event) {
            Ok(envelope) => envelope,
            Err(error) => {
                return dead_letter_whole_event(event, &error, invocation, dead_letters).await
            }
        };
        if let Some(http) = &envelope.http {
            if let Some(refusal) = self.refuse_http(http) {
                return Ok((refusal, Counts::default()));
            }
        }
        let messages = envelope.messages;
        let mut rejected = Rejected::default();
        let mut work = step.start(messages.len());
        for (index, message) in messages.iter().enumerate() {
            let index = index as u32;
            let taken = match &message.problem {
                Some(problem) => Err(Rejection::new(problem.clone())),
                None => step.take(&mut work, message, index, now_ms),
            };
            if let Err(rejection) = taken {
                rejected.add(message, index, rejection, invocation);
            }
        }
        let accepted = step.accepted(&work);
        let mut lettered = vec![false; messages.len()];
        for &index in &rejected.messages {
            lettered[index as usize] = true;
        }
        let mut delivery = if invocation.may_start_writes() {
            step.deliver(&work, invocation).await
        } else {
            // Too close to the deadline to start: everything taken is retried.
            tracing::warn!("the deadline is near; the batch is left for a retry");
            let taken: Vec<u32> = (0..messages.len() as u32)
                .filter(|index| !lettered[*index as usize])
                .collect();
            Delivery::failed(
                &taken,
                "not delivered: the invocation's deadline was near".into(),
                FailureKind::Transient,
            )
        };
        delivery.settle();
        for (index, reason) in std::mem::take(&mut delivery.refused) {
            // A message already dead-lettered is kept whole there.
            if !lettered[index as usize] {
                let rejection = Rejection::new(reason);
                rejected.add(&messages[index as usize], index, rejection, invocation);
            }
        }
        let mut failed = delivery.retry;
        let mut reason = delivery.error;
        let mut dead_lettered = rejected.letters.len();
        if !rejected.letters.is_empty() && !invocation.may_start_writes() {
            // No time left to write them: they come back and are
            // dead-lettered then.
            failed.extend(&rejected.messages);
            reason = Some("dead letters not written: the deadline was near".into());
            dead_lettered = 0;
        } else if !rejected.letters.is_empty() {
            match dead_letters.write(&rejected.letters).await {
                Ok(location) => {
                    for letter in &rejected.letters {
                        tracing::warn!(
                            message_id = %letter.message_id,
                            source = %letter.source,
                            reason = %letter.reason,
                            location = %location,
                            "dead-lettered"
                        );
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "dead letters not written; their messages will be retried");
                    failed.extend(&rejected.messages);
                    reason = Some(error.to_string());
                    dead_lettered = 0;
                }
            }
        }
        failed.sort_unstable();
        failed.dedup();
        let counts = Counts {
            messages: messages.len(),
            readings_accepted: accepted,
            readings_rejected: rejected.readings,
            dead_lettered,
            retried: failed.len(),
            api_calls: delivery.api_calls,
        };
        answer(envelope.kind, &messages, &failed, reason, counts)
    }

    /// Checks a Pub/Sub push request's token; `Some` is the refusal to send.
    pub fn refuse_http(&self, http: &HttpRequestInfo) -> Option<Response> {
        let refuse = |status: u16, reason: &str| {
            tracing::warn!(status, reason, "refused a Pub/Sub push request");
            Some(Response::Http {
                status,
                body: json!({"error": reason}),
            })
        };
        let Some(expected) = self.verification_token.as_deref().filter(|t| !t.is_empty()) else {
            return refuse(
                403,
                "PUBSUB_VERIFICATION_TOKEN is not set on the function; push requests are refused until it is",
            );
        };
        match http.token.as_deref() {
            None => refuse(401, "missing ?token= verification token"),
            // Constant time: how much of a guess matched must not show.
            Some(token) if bool::from(token.as_bytes().ct_eq(expected.as_bytes())) => None,
            Some(_) => refuse(403, "wrong verification token"),
        }
    }
}

/// The messages dead-lettered so far, with the letters to write.
#[derive(Default)]
struct Rejected {
    letters: Vec<DeadLetter>,
    /// Message indexes behind `letters` (same order).
    messages: Vec<u32>,
    readings: usize,
}

impl Rejected {
    fn add(
        &mut self,
        message: &RawMessage<'_>,
        index: u32,
        rejection: Rejection,
        invocation: Invocation<'_>,
    ) {
        self.readings += rejection.readings;
        self.letters.push(DeadLetter::new(
            message,
            invocation.request_id,
            rejection.reason,
            invocation.now_ms,
        ));
        self.messages.push(index);
    }
}

/// Dead-letters an event that could not be unwrapped, whole, and answers
/// for it: done, or retried when the letter could not be written.
async fn dead_letter_whole_event(
    event: &[u8],
    error: &EnvelopeError,
    invocation: Invocation<'_>,
    dead_letters: &dyn DeadLetterSink,
) -> Result<(Response, Counts), RetryLater> {
    let reason = format!("unreadable event: {error}");
    tracing::warn!(%reason, "dead-lettering the whole event");
    let letter = DeadLetter::whole_event(
        event,
        invocation.request_id,
        reason.clone(),
        invocation.now_ms,
    );
    let written = dead_letters.write(&[letter]).await;
    unreadable_event_outcome(reason, written)
}

/// The answer for an event that could not be unwrapped, once it was (or
/// could not be) dead-lettered whole: done, or retried.
pub fn unreadable_event_outcome(
    reason: String,
    written: Result<String, DeadLetterError>,
) -> Result<(Response, Counts), RetryLater> {
    match written {
        Ok(location) => Ok((
            Response::Summary(
                json!({"dead_lettered": 1, "reason": reason, "dead_letters": location}),
            ),
            Counts {
                messages: 1,
                dead_lettered: 1,
                ..Counts::default()
            },
        )),
        Err(error) => Err(RetryLater {
            failed: 1,
            messages: 1,
            reason: error.to_string(),
            counts: Counts {
                messages: 1,
                retried: 1,
                ..Counts::default()
            },
        }),
    }
}

/// The trigger's answer, given the indexes of the messages to retry.
pub fn answer(
    kind: EventKind,
    messages: &[RawMessage<'_>],
    failed: &[u32],
    reason: Option<String>,
    counts: Counts,
) -> Result<(Response, Counts), RetryLater> {
    tracing::info!(
        trigger = kind.as_str(),
        messages = counts.messages,
        readings_accepted = counts.readings_accepted,
        readings_rejected = counts.readings_rejected,
        dead_lettered = counts.dead_lettered,
        retried = counts.retried,
        api_calls = counts.api_calls,
        "processed"
    );
    let failed_ids = || {
        failed
            .iter()
            .filter_map(|index| messages.get(*index as usize))
            .map(|message| message.id.to_string())
            .collect()
    };
    let summary = || {
        json!({
            "messages": counts.messages,
            "readings_accepted": counts.readings_accepted,
            "readings_rejected": counts.readings_rejected,
            "dead_lettered": counts.dead_lettered,
            "retried": counts.retried,
        })
    };
    match kind {
        EventKind::Sqs => Ok((Response::SqsBatchItemFailures(failed_ids()), counts)),
        EventKind::Kinesis => Ok((Response::KinesisBatchItemFailures(failed_ids()), counts)),
        EventKind::PubSubHttp => {
            // Pub/Sub redelivers on any status but 102, 200, 201, 202 and 204.
            let status = if failed.is_empty() { 200 } else { 503 };
            let mut body = summary();
            if let Some(reason) = reason.filter(|_| !failed.is_empty()) {
                body["error"] = json!(reason);
            }
            Ok((Response::Http { status, body }, counts))
        }
        _ if !failed.is_empty() => Err(RetryLater {
            failed: failed.len(),
            messages: counts.messages,
            reason: reason.unwrap_or_else(|| "delivery failed".into()),
            counts,
        }),
        _ => Ok((Response::Summary(summary()), counts)),
    }
}
