//! Commands back to devices: the `[[command]]` rules of the pipeline file,
//! evaluated on each message's readings (reference 004's night light:
//! `{"led_on": light < 300}` to `<device>/commands`), and what is sent or
//! suppressed. Pure: the `device-commands` function does the sending.

pub mod condition;

use std::collections::HashMap;

use compact_str::CompactString;
use serde_json::Value;

use crate::payload::topic::TopicFilter;
use crate::reading::Reading;
pub use condition::{Condition, ConditionError};

/// When a rule's command is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendPolicy {
    /// For every message the rule applies to.
    Always,
    /// Only when it differs from the last command the device was sent by
    /// this rule: a device reporting every second below a threshold gets one
    /// command, not one a second.
    OnChange,
}

/// How a command reaches the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Published to a topic the device subscribes to (QoS 1).
    Topic,
    /// Written to the desired state of the device's shadow; the device gets
    /// the delta.
    Shadow,
}

/// A `[[command]]` of the pipeline file.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRule {
    pub name: String,
    /// Messages the rule reads, by topic (every message when `None`).
    pub from: Option<TopicFilter>,
    pub when: Condition,
    /// Where to publish, `{device}` replaced by the device id.
    pub topic: String,
    /// Sent when `when` is true.
    pub payload: Value,
    /// Sent when `when` is false, if given.
    pub otherwise: Option<Value>,
    pub send: SendPolicy,
    pub via: Via,
}

impl CommandRule {
    /// The topic for `device`.
    pub fn topic_for(&self, device: &str) -> String {
        self.topic.replace("{device}", device)
    }
}

/// The last command each device was sent by each `on_change` rule
/// (device -> rule -> command): what `on_change` compares with. The function
/// fills it from where it keeps it (a named shadow, one per device) and
/// records there what it sent ([`record_sent`]).
pub type LastCommands = HashMap<CompactString, HashMap<String, Value>>;

/// What a rule decided for one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<'r> {
    pub rule: &'r CommandRule,
    pub device: CompactString,
    /// The index of the message in its batch.
    pub message: u32,
    /// The condition's value.
    pub condition: bool,
    /// What the value asks for: `payload`, `otherwise`, or nothing.
    pub command: Option<&'r Value>,
    /// True when `on_change` holds the command back (the device has it).
    pub suppressed: bool,
}

impl Decision<'_> {
    /// Whether a command goes out.
    pub fn sends(&self) -> bool {
        self.command.is_some() && !self.suppressed
    }
}

/// The rules' decisions for a batch's readings, in message order.
/// `topic_of(message)` is the MQTT topic a message came on (for the rules'
/// `from` filters). `last` is what each device was sent before the batch;
/// what the batch itself decides counts too, so a batch holding several
/// messages of one device suppresses repeats within it.
pub fn decide<'r, 't>(
    rules: &'r [CommandRule],
    readings: &[Reading],
    topic_of: impl Fn(u32) -> Option<&'t str>,
    last: &LastCommands,
) -> Vec<Decision<'r>> {
    let mut decisions = Vec::new();
    // Commands decided earlier in this batch, by (device, rule), borrowed.
    let mut decided: HashMap<(&str, &str), &'r Value> = HashMap::new();
    let mut start = 0;
    while start < readings.len() {
        // The readings of one message and device, as decoding keeps them.
        let (message, device) = (readings[start].message, &readings[start].device);
        let end = start
            + readings[start..]
                .iter()
                .take_while(|r| r.message == message && r.device == *device)
                .count();
        let message_readings = &readings[start..end];
        // A message holds a few readings: a scan beats building a map. The
        // last reading of a metric wins, as it would in a map.
        let value_of = |metric: &str| {
            message_readings
                .iter()
                .rev()
                .find(|reading| reading.metric == metric)
                .map(|reading| reading.value)
        };
        let topic = topic_of(message);
        for rule in rules {
            let applies = match &rule.from {
                None => true,
                Some(filter) => topic.is_some_and(|topic| filter.matches(topic)),
            };
            let Some(condition) = applies.then(|| rule.when.evaluate(&value_of)).flatten() else {
                continue;
            };
            let command = if condition {
                Some(&rule.payload)
            } else {
                rule.otherwise.as_ref()
            };
            // Only on_change needs to know what was sent before.
            let suppressed = match command {
                Some(command) if rule.send == SendPolicy::OnChange => {
                    let key = (device.as_str(), rule.name.as_str());
                    let previous = decided.get(&key).copied().or_else(|| {
                        last.get(device.as_str())
                            .and_then(|sent| sent.get(&rule.name))
                    });
                    let same = previous == Some(command);
                    if !same {
                        decided.insert(key, command);
                    }
                    same
                }
                _ => false,
            };
            decisions.push(Decision {
                rule,
                device: device.clone(),
                message,
                condition,
                command,
                suppressed,
            });
        }
        start = end;
    }
    decisions
}

/// Records in `last` a command that went out, if its rule is `on_change`
/// (only those are compared with later). Returns whether `last` changed.
pub fn record_sent(last: &mut LastCommands, decision: &Decision<'_>) -> bool {
    let Some(command) = decision.command.filter(|_| decision.sends()) else {
        return false;
    };
    if decision.rule.send != SendPolicy::OnChange {
        return false;
    }
    let sent = match last.get_mut(decision.device.as_str()) {
        Some(sent) => sent,
        None => last.entry(decision.device.clone()).or_default(),
    };
    sent.insert(decision.rule.name.clone(), command.clone());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nightlight(send: SendPolicy, otherwise: bool) -> CommandRule {
        CommandRule {
            name: "nightlight".into(),
            from: Some(TopicFilter::new("+/telemetry").unwrap()),
            when: Condition::parse("light < 300").unwrap(),
            topic: "{device}/commands".into(),
            payload: json!({"led_on": true}),
            otherwise: otherwise.then(|| json!({"led_on": false})),
            send,
            via: Via::Topic,
        }
    }

    /// One message per light value, alternating two devices when asked.
    fn readings(lights: &[f64], devices: &[&str]) -> Vec<Reading> {
        lights
            .iter()
            .enumerate()
            .map(|(index, light)| Reading {
                message: index as u32,
                ..Reading::sample(devices[index % devices.len()], "light", *light, 0)
            })
            .collect()
    }

    fn sent(decisions: &[Decision<'_>]) -> Vec<(String, Value)> {
        decisions
            .iter()
            .filter(|d| d.sends())
            .map(|d| (d.device.to_string(), d.command.unwrap().clone()))
            .collect()
    }

    const SEQUENCE: [f64; 5] = [250.0, 240.0, 260.0, 350.0, 400.0];

    #[test]
    fn on_change_sends_once_per_change_and_always_sends_every_time() {
        let topic = |_| Some("nightlight-1/telemetry");
        let rules = [nightlight(SendPolicy::OnChange, true)];
        let decisions = decide(
            &rules,
            &readings(&SEQUENCE, &["n-1"]),
            topic,
            &LastCommands::new(),
        );
        assert_eq!(
            sent(&decisions),
            [
                ("n-1".into(), json!({"led_on": true})),
                ("n-1".into(), json!({"led_on": false}))
            ]
        );
        assert_eq!(decisions.iter().filter(|d| d.suppressed).count(), 3);

        let rules = [nightlight(SendPolicy::Always, true)];
        let decisions = decide(
            &rules,
            &readings(&SEQUENCE, &["n-1"]),
            topic,
            &LastCommands::new(),
        );
        let commands: Vec<Value> = sent(&decisions).into_iter().map(|(_, c)| c).collect();
        assert_eq!(
            commands,
            [true, true, true, false, false].map(|on| json!({"led_on": on}))
        );
    }

    #[test]
    fn on_change_is_per_device_and_remembers_earlier_invocations() {
        let topic = |_| Some("x/telemetry");
        let rules = [nightlight(SendPolicy::OnChange, true)];
        let two = readings(&[250.0, 250.0, 250.0, 500.0], &["a", "b"]);
        let mut last = LastCommands::new();
        let first = decide(&rules, &two, topic, &last);
        assert_eq!(
            sent(&first),
            [
                ("a".into(), json!({"led_on": true})),
                ("b".into(), json!({"led_on": true})),
                ("b".into(), json!({"led_on": false})),
            ]
        );
        // The next invocation starts from what was sent.
        for decision in &first {
            record_sent(&mut last, decision);
        }
        let again = decide(&rules, &readings(&[100.0], &["a"]), topic, &last);
        assert!(sent(&again).is_empty());
    }

    #[test]
    fn a_rule_applies_only_to_its_topics_and_messages_with_its_metrics() {
        let rules = [nightlight(SendPolicy::Always, false)];
        let last = LastCommands::new();
        // Another topic: not this rule's message.
        let elsewhere = decide(
            &rules,
            &readings(&[100.0], &["n"]),
            |_| Some("n/status"),
            &last,
        );
        assert!(elsewhere.is_empty());
        // No `light` in the message: no decision.
        let other = vec![Reading::sample("n", "temperature", 20.0, 0)];
        assert!(decide(&rules, &other, |_| Some("n/telemetry"), &last).is_empty());
        // False without `otherwise`: decided, nothing to send.
        let bright = decide(
            &rules,
            &readings(&[900.0], &["n"]),
            |_| Some("n/telemetry"),
            &last,
        );
        assert_eq!(bright.len(), 1);
        assert!(!bright[0].condition && bright[0].command.is_none() && !bright[0].sends());
    }

    #[test]
    fn the_topic_names_the_device() {
        assert_eq!(
            nightlight(SendPolicy::Always, false).topic_for("pi-7"),
            "pi-7/commands"
        );
    }
}
