//! The `device-commands` function's step: every message decoded into
//! readings, the `[[command]]` rules decided on them (`command::decide`),
//! and what is to be sent sent through a [`CommandSink`]: to the device's
//! command topic or its shadow. `on_change` remembers the last command per
//! device and rule in the sink (a named shadow), read once per device per
//! invocation and written only when a command went out.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use compact_str::CompactString;

use crate::command::{decide, record_sent, LastCommands, SendPolicy, Via};
use crate::envelope::RawMessage;
use crate::invocation::{Invocation, InvocationSettings, Rejection, Step};
use crate::outcome::{Counts, Delivery, FailureKind, Response, RetryLater};
use crate::payload::records::DecodeError;
use crate::reading::decode::{decode_message, decode_message_with_topic};
use crate::reading::Reading;
use crate::sink::commands::CommandSink;
use crate::sink::DeadLetterSink;

/// Readings -> decisions -> commands.
pub struct CommandsStep<'a> {
    pub settings: &'a InvocationSettings,
    pub sink: &'a dyn CommandSink,
    /// What the last invocation did, for the function's own metrics.
    pub tally: CommandTally,
}

/// Commands sent, held back by `on_change`, and failed.
#[derive(Debug, Default)]
pub struct CommandTally {
    pub sent: AtomicUsize,
    pub suppressed: AtomicUsize,
    pub failed: AtomicUsize,
}

impl CommandTally {
    /// (sent, suppressed, failed), and back to zero.
    pub fn take(&self) -> (usize, usize, usize) {
        (
            self.sent.swap(0, Ordering::Relaxed),
            self.suppressed.swap(0, Ordering::Relaxed),
            self.failed.swap(0, Ordering::Relaxed),
        )
    }
}

/// One invocation's readings, and the topic each message came on.
#[derive(Default)]
pub struct CommandWork {
    readings: Vec<Reading>,
    topics: Vec<Option<String>>,
}

impl CommandsStep<'_> {
    fn reads_topics(&self) -> bool {
        self.settings
            .commands
            .iter()
            .any(|rule| rule.from.is_some())
    }
}

#[async_trait]
impl Step for CommandsStep<'_> {
    type Work = CommandWork;

    fn start(&self, messages: usize) -> CommandWork {
        CommandWork {
            readings: Vec::with_capacity(messages),
            topics: Vec::new(),
        }
    }

    fn take(
        &self,
        work: &mut CommandWork,
        message: &RawMessage<'_>,
        index: u32,
        now_ms: i64,
    ) -> Result<(), Rejection> {
        let mappings = &self.settings.mappings;
        let readings = &mut work.readings;
        let rejected = |error: DecodeError| Rejection::new(error.to_string());
        if !self.reads_topics() {
            decode_message(mappings, message, index, now_ms, readings).map_err(rejected)?;
            return Ok(());
        }
        let (_, topic) = decode_message_with_topic(mappings, message, index, now_ms, readings)
            .map_err(rejected)?;
        let index = index as usize;
        if work.topics.len() <= index {
            work.topics.resize(index + 1, None);
        }
        work.topics[index] = topic;
        Ok(())
    }

    fn accepted(&self, work: &CommandWork) -> usize {
        work.readings.len()
    }

    async fn deliver(&self, work: &CommandWork, invocation: Invocation<'_>) -> Delivery {
        let rules = &self.settings.commands;
        let mut delivery = Delivery::default();
        if rules.is_empty() || work.readings.is_empty() {
            return delivery;
        }
        // What each device was last sent, read once per device.
        let mut last = LastCommands::new();
        let mut unreadable: Vec<&str> = Vec::new();
        if rules.iter().any(|rule| rule.send == SendPolicy::OnChange) {
            let mut devices: Vec<&str> = work.readings.iter().map(|r| r.device.as_str()).collect();
            devices.sort_unstable();
            devices.dedup();
            for device in devices {
                delivery.api_calls += 1;
                match self.sink.last_commands(device).await {
                    Ok(sent) => {
                        last.insert(CompactString::from(device), sent);
                    }
                    Err(error) => {
                        tracing::error!(%error, "last commands not read; the device's messages will be retried");
                        let messages: Vec<u32> = work
                            .readings
                            .iter()
                            .filter(|r| r.device == device)
                            .map(|r| r.message)
                            .collect();
                        delivery.fail(&messages, error.to_string(), error.kind);
                        unreadable.push(device);
                    }
                }
            }
        }
        let readings: Vec<Reading>;
        let decided_on = if unreadable.is_empty() {
            &work.readings[..]
        } else {
            readings = work
                .readings
                .iter()
                .filter(|r| !unreadable.contains(&r.device.as_str()))
                .cloned()
                .collect();
            &readings[..]
        };
        let topic_of = |message: u32| work.topics.get(message as usize)?.as_deref();
        let decisions = decide(rules, decided_on, topic_of, &last);
        // Devices whose memory changed: only commands that went out count,
        // so a failed send is decided again on the retry.
        let mut changed: BTreeSet<&str> = BTreeSet::new();
        for decision in &decisions {
            tracing::info!(
                device = %decision.device,
                rule = %decision.rule.name,
                condition = decision.condition,
                command = ?decision.command,
                sent = decision.sends(),
                suppressed = decision.suppressed,
                "decided"
            );
            if decision.suppressed {
                self.tally.suppressed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let Some(command) = decision.command else {
                continue;
            };
            if !invocation.may_start_writes() {
                let reason = "command not sent: the deadline was near".to_owned();
                delivery.fail(&[decision.message], reason, FailureKind::Transient);
                continue;
            }
            delivery.api_calls += 1;
            let sent = match decision.rule.via {
                Via::Topic => {
                    let topic = decision.rule.topic_for(&decision.device);
                    self.sink.publish(&decision.device, &topic, command).await
                }
                Via::Shadow => self.sink.set_desired(&decision.device, command).await,
            };
            match sent {
                Ok(()) => {
                    self.tally.sent.fetch_add(1, Ordering::Relaxed);
                    if record_sent(&mut last, decision) {
                        changed.insert(decision.device.as_str());
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "command not sent");
                    self.tally.failed.fetch_add(1, Ordering::Relaxed);
                    delivery.fail(&[decision.message], error.to_string(), error.kind);
                }
            }
        }
        for device in changed {
            let Some(memory) = last.get(device) else {
                continue;
            };
            delivery.api_calls += 1;
            if let Err(error) = self.sink.remember(device, memory).await {
                // The commands went out: at worst the next one is sent again.
                tracing::warn!(%error, "last commands not kept; a command may be sent twice");
            }
        }
        delivery
    }
}

impl InvocationSettings {
    /// Runs one invocation of the device-commands function.
    pub async fn process_commands(
        &self,
        step: &CommandsStep<'_>,
        event: &[u8],
        request_id: &str,
        now_ms: i64,
        dead_letters: &dyn DeadLetterSink,
    ) -> Result<(Response, Counts), RetryLater> {
        let invocation = Invocation::new(request_id, now_ms);
        self.process_commands_in(step, event, invocation, dead_letters)
            .await
    }

    /// [`InvocationSettings::process_commands`] within an invocation that
    /// has a deadline.
    pub async fn process_commands_in(
        &self,
        step: &CommandsStep<'_>,
        event: &[u8],
        invocation: Invocation<'_>,
        dead_letters: &dyn DeadLetterSink,
    ) -> Result<(Response, Counts), RetryLater> {
        self.run(step, event, invocation, dead_letters).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use serde_json::{json, Value};

    use super::*;
    use crate::config::pipeline_file::PipelineFile;
    use crate::outcome::FailureKind;
    use crate::sink::commands::CommandError;
    use crate::sink::dead_letter::DeadLetter;
    use crate::sink::DeadLetterError;

    /// A sink's failure.
    fn failure(action: &str, device: &str, reason: String, kind: FailureKind) -> CommandError {
        CommandError {
            action: action.to_owned(),
            device: device.to_owned(),
            reason,
            kind,
        }
    }

    /// Keeps what would be sent; fails publishes to `failing` devices.
    #[derive(Default)]
    struct Recorded {
        published: Mutex<Vec<(String, Value)>>,
        desired: Mutex<Vec<(String, Value)>>,
        memory: Mutex<HashMap<String, HashMap<String, Value>>>,
        failing: Option<(&'static str, FailureKind)>,
        /// Fails publishes of this command, whatever the device.
        failing_command: Option<Value>,
    }

    #[async_trait]
    impl CommandSink for Recorded {
        async fn last_commands(
            &self,
            device: &str,
        ) -> Result<HashMap<String, Value>, CommandError> {
            Ok(self
                .memory
                .lock()
                .unwrap()
                .get(device)
                .cloned()
                .unwrap_or_default())
        }
        async fn publish(
            &self,
            device: &str,
            topic: &str,
            payload: &Value,
        ) -> Result<(), CommandError> {
            if let Some((failing, kind)) = self.failing.filter(|(d, _)| *d == device) {
                return Err(failure("Publish", failing, "refused".into(), kind));
            }
            if self.failing_command.as_ref() == Some(payload) {
                let kind = FailureKind::Transient;
                return Err(failure("Publish", device, "refused".into(), kind));
            }
            self.published
                .lock()
                .unwrap()
                .push((topic.to_owned(), payload.clone()));
            Ok(())
        }
        async fn set_desired(&self, device: &str, desired: &Value) -> Result<(), CommandError> {
            self.desired
                .lock()
                .unwrap()
                .push((device.to_owned(), desired.clone()));
            Ok(())
        }
        async fn remember(
            &self,
            device: &str,
            sent: &HashMap<String, Value>,
        ) -> Result<(), CommandError> {
            self.memory
                .lock()
                .unwrap()
                .insert(device.to_owned(), sent.clone());
            Ok(())
        }
    }

    #[derive(Default)]
    struct Letters(Mutex<Vec<DeadLetter>>);

    #[async_trait]
    impl DeadLetterSink for Letters {
        async fn write(&self, letters: &[DeadLetter]) -> Result<String, DeadLetterError> {
            self.0.lock().unwrap().extend_from_slice(letters);
            Ok("memory".into())
        }
    }

    fn settings(send: &str, via: &str) -> InvocationSettings {
        PipelineFile::parse(&format!(
            r#"
            [[command]]
            name = "nightlight"
            from = "+/telemetry"
            when = "light < 300"
            topic = "{{device}}/commands"
            payload = {{ led_on = true }}
            otherwise = {{ led_on = false }}
            send = "{send}"
            via = "{via}"
            "#
        ))
        .unwrap()
        .into()
    }

    /// Reference 004's messages as an IoT rule -> SQS batch.
    fn lights(device: &str, lights: &[u32]) -> Vec<u8> {
        let records: Vec<Value> = lights
            .iter()
            .enumerate()
            .map(|(n, light)| {
                let body = json!({"light": light, "topic": format!("{device}/telemetry")});
                json!({"messageId": format!("{device}-{n}"), "eventSource": "aws:sqs", "body": body.to_string()})
            })
            .collect();
        serde_json::to_vec(&json!({ "Records": records })).unwrap()
    }

    async fn run(settings: &InvocationSettings, sink: &Recorded, event: &[u8]) -> Value {
        let step = CommandsStep {
            settings,
            sink,
            tally: CommandTally::default(),
        };
        let (response, _) = settings
            .process_commands(&step, event, "req", 0, &Letters::default())
            .await
            .unwrap();
        response.to_json()
    }

    #[tokio::test]
    async fn the_nightlight_sequence_sends_two_commands_on_change_and_five_always() {
        let sink = Recorded::default();
        run(
            &settings("on_change", "topic"),
            &sink,
            &lights("n-1", &[250, 240, 260, 350, 400]),
        )
        .await;
        assert_eq!(
            *sink.published.lock().unwrap(),
            [
                ("n-1/commands".to_owned(), json!({"led_on": true})),
                ("n-1/commands".to_owned(), json!({"led_on": false})),
            ]
        );
        // The next invocation remembers: still dark, nothing new.
        run(
            &settings("on_change", "topic"),
            &sink,
            &lights("n-1", &[500]),
        )
        .await;
        assert_eq!(sink.published.lock().unwrap().len(), 2);

        let sink = Recorded::default();
        run(
            &settings("always", "topic"),
            &sink,
            &lights("n-1", &[250, 240, 260, 350, 400]),
        )
        .await;
        let sent: Vec<Value> = sink
            .published
            .lock()
            .unwrap()
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        assert_eq!(
            sent,
            [true, true, true, false, false].map(|on| json!({"led_on": on}))
        );
    }

    #[tokio::test]
    async fn the_shadow_gets_the_desired_state() {
        let sink = Recorded::default();
        run(
            &settings("on_change", "shadow"),
            &sink,
            &lights("n-2", &[250, 400]),
        )
        .await;
        assert_eq!(
            *sink.desired.lock().unwrap(),
            [
                ("n-2".to_owned(), json!({"led_on": true})),
                ("n-2".to_owned(), json!({"led_on": false}))
            ]
        );
        assert!(sink.published.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failed_publish_is_retried_and_not_remembered() {
        let sink = Recorded {
            failing: Some(("n-3", FailureKind::Transient)),
            ..Recorded::default()
        };
        let answer = run(
            &settings("on_change", "topic"),
            &sink,
            &lights("n-3", &[250]),
        )
        .await;
        assert_eq!(
            answer,
            json!({"batchItemFailures": [{"itemIdentifier": "n-3-0"}]})
        );
        assert!(sink.memory.lock().unwrap().get("n-3").is_none());
    }

    #[tokio::test]
    async fn a_later_failed_command_leaves_the_earlier_sent_one_remembered() {
        let sink = Recorded {
            failing_command: Some(json!({"led_on": false})),
            ..Recorded::default()
        };
        let answer = run(
            &settings("on_change", "topic"),
            &sink,
            &lights("n-4", &[250, 400]),
        )
        .await;
        assert_eq!(
            answer,
            json!({"batchItemFailures": [{"itemIdentifier": "n-4-1"}]})
        );
        // The device got `true`; the retry of `false` is compared with it.
        assert_eq!(
            sink.memory.lock().unwrap()["n-4"],
            HashMap::from([("nightlight".to_owned(), json!({"led_on": true}))])
        );
    }
}
