//! One simulated device on its own MQTT connection: a producer that
//! publishes at the device's rate, and the connection's event loop, which
//! counts acknowledgements, applies commands and reconnects.
//!
//! Nothing the user asked for is lost across a dropped connection. The
//! session is persistent (`clean_session = false`), and rumqttc moves
//! unacknowledged publishes to `EventLoop::pending` when the connection
//! fails; but it clears that list when the broker answers the reconnect
//! with `session_present = false` (a broker restarted without persistence).
//! So the device takes the pending list itself after every failure and
//! puts it back after every successful connect: the broker gets them again
//! either way (at least once, as QoS 1 promises).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iot_rules::template::Wiring;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, Incoming, MqttOptions, Outgoing, QoS,
    Request,
};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::fleet::{Device, Message};
use super::Reporter;

/// What every device of a run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Messages per device.
    pub messages: u64,
    /// Time between two messages of one device; `None`: as fast as the
    /// connection takes them.
    pub interval: Option<Duration>,
    pub qos: QoS,
    /// How long to keep trying when the broker is unreachable or has not
    /// acknowledged everything after the last publish.
    pub patience: Duration,
    /// Stay connected (taking commands) after the last acknowledgement,
    /// until this turns true; `None`: disconnect at once.
    pub linger: Option<watch::Receiver<bool>>,
    /// Readings per message (device-side batching); the interval is
    /// between readings.
    pub batch: usize,
    /// How a message of several readings holds them.
    pub batch_form: BatchForm,
    /// The topic a message is published to.
    pub route: Route,
}

/// Counts shared with the progress bar, summed over devices.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub acknowledged: AtomicU64,
    pub reconnections: AtomicU64,
    /// Commands the devices understood and applied.
    pub commands_applied: AtomicU64,
    /// Microseconds from a reading that called for a switch to the switch.
    pub switch_latencies_us: Mutex<Vec<u64>>,
}

/// The switch latencies' count, median and 99th percentile (ms).
pub fn switch_latency(counters: &[&Counters]) -> Option<(usize, f64, f64)> {
    let mut samples: Vec<u64> = counters
        .iter()
        .flat_map(|counters| {
            counters
                .switch_latencies_us
                .lock()
                .expect("no panic while held")
                .clone()
        })
        .collect();
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let at = |quantile: f64| {
        samples[((samples.len() - 1) as f64 * quantile).round() as usize] as f64 / 1000.0
    };
    Some((samples.len(), at(0.5), at(0.99)))
}

/// How one device's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceOutcome {
    pub name: String,
    pub sent: u64,
    pub acknowledged: u64,
    pub reconnections: u64,
    /// Why it stopped early, if it did.
    pub gave_up: Option<String>,
}

impl DeviceOutcome {
    pub fn failed(&self) -> u64 {
        self.sent - self.acknowledged.min(self.sent)
    }
}

/// Runs one device until it has sent `plan.messages` (or `stop` fires) and
/// the broker has acknowledged them (or `plan.patience` runs out).
pub async fn run_device(
    name: String,
    device: Box<dyn Device>,
    options: MqttOptions,
    plan: Plan,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
    reporter: Reporter,
) -> DeviceOutcome {
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let command_topic = device.command_topic().map(str::to_owned);
    let device = Arc::new(Mutex::new(device));
    let sent = Arc::new(AtomicU64::new(0));
    let producer_done = Arc::new(AtomicBool::new(false));

    let producer = {
        let (client, device, sent, done, counters) = (
            client.clone(),
            device.clone(),
            sent.clone(),
            producer_done.clone(),
            counters.clone(),
        );
        let plan = plan.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut ticker = plan.interval.map(|interval| {
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                ticker
            });
            let mut stopped = false;
            for _ in 0..plan.messages {
                let mut readings = Vec::with_capacity(plan.batch.max(1));
                while readings.len() < plan.batch.max(1) {
                    if let Some(ticker) = ticker.as_mut() {
                        tokio::select! {
                            _ = ticker.tick() => {}
                            _ = stop.wait_for(|stopped| *stopped) => stopped = true,
                        }
                    } else {
                        stopped = *stop.borrow();
                    }
                    if stopped {
                        break;
                    }
                    readings.push(
                        device
                            .lock()
                            .expect("no panic while holding the device")
                            .next_message(chrono::Utc::now()),
                    );
                }
                // Readings taken before Ctrl-C are still sent.
                let Some(message) = batch_message(readings, plan.batch_form) else {
                    break;
                };
                let topic = plan.route.topic(message.topic);
                if client
                    .publish(topic, plan.qos, false, message.payload)
                    .await
                    .is_err()
                {
                    break; // the event loop is gone: the device gave up
                }
                sent.fetch_add(1, Ordering::SeqCst);
                counters.sent.fetch_add(1, Ordering::Relaxed);
                if stopped {
                    break;
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };

    let mut acknowledged = 0u64;
    let mut reconnections = 0u64;
    let mut connected_once = false;
    let mut saved: VecDeque<Request> = VecDeque::new();
    let mut backoff = Duration::from_millis(100);
    let mut disconnected_since: Option<Instant> = Some(Instant::now());
    let mut finished_at: Option<Instant> = None;
    let mut gave_up = None;
    let mut last_error = String::new();

    loop {
        let done = producer_done.load(Ordering::SeqCst);
        let target = if done || *stop.borrow() {
            sent.load(Ordering::SeqCst)
        } else {
            plan.messages
        };
        if acknowledged >= target && (done || acknowledged >= plan.messages) {
            break;
        }
        if done && finished_at.is_none() {
            finished_at = Some(Instant::now());
        }
        // Once everything is sent, wait for acknowledgements only so long;
        // dropping the event loop then is fine: the device stops anyway.
        let event = match finished_at {
            Some(since) => {
                let left = plan.patience.saturating_sub(since.elapsed());
                match tokio::time::timeout(left, eventloop.poll()).await {
                    Ok(event) => event,
                    Err(_) => {
                        gave_up = Some(format!(
                            "{} not acknowledged within {:?} of the last publish{}",
                            target - acknowledged,
                            plan.patience,
                            if last_error.is_empty() {
                                String::new()
                            } else {
                                format!(" (last error: {last_error})")
                            }
                        ));
                        break;
                    }
                }
            }
            None => tokio::select! {
                event = eventloop.poll() => event,
                // Ctrl-C while the connection is quiet: re-check the target.
                // Should this cut a write short, the broker drops the
                // connection and the unacknowledged publishes go again.
                _ = stop.wait_for(|stopped| *stopped), if !*stop.borrow() => continue,
            },
        };
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                eventloop.pending.extend(saved.drain(..));
                if let Some(topic) = &command_topic {
                    // Again on every connect: a broker that lost the session
                    // lost the subscription too.
                    let _ = client.try_subscribe(topic.clone(), QoS::AtLeastOnce);
                }
                if connected_once {
                    reconnections += 1;
                    counters.reconnections.fetch_add(1, Ordering::Relaxed);
                    reporter.line(format!("{name}: reconnected"));
                }
                connected_once = true;
                disconnected_since = None;
                backoff = Duration::from_millis(100);
            }
            Ok(Event::Incoming(Incoming::PubAck(_))) => {
                acknowledged += 1;
                counters.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) if plan.qos == QoS::AtMostOnce => {
                // QoS 0 has no acknowledgement: written to the connection is
                // as far as it goes.
                acknowledged += 1;
                counters.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Incoming(Incoming::Publish(command))) => {
                apply_command(&device, &command.payload, &counters, &reporter);
            }
            Ok(_) => {}
            Err(error) => {
                saved.extend(eventloop.pending.drain(..));
                if let Some(refusal) = refusal(&error, &name) {
                    gave_up = Some(refusal);
                    break;
                }
                let message = error.to_string();
                if disconnected_since.is_none() {
                    reporter.line(format!("{name}: connection lost ({message}); reconnecting"));
                }
                last_error = message;
                let since = *disconnected_since.get_or_insert_with(Instant::now);
                if since.elapsed() > plan.patience {
                    gave_up = Some(format!(
                        "{} the broker for {:?}: {last_error}",
                        if connected_once {
                            "lost"
                        } else {
                            "could not reach"
                        },
                        plan.patience
                    ));
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    if let (None, Some(mut linger)) = (&gave_up, plan.linger.clone()) {
        // Everything is acknowledged; keep taking commands until told.
        loop {
            let event = tokio::select! {
                _ = async { let _ = linger.wait_for(|done| *done).await; } => break,
                event = eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Incoming::Publish(command))) => {
                    apply_command(&device, &command.payload, &counters, &reporter);
                }
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    if let Some(topic) = &command_topic {
                        let _ = client.try_subscribe(topic.clone(), QoS::AtLeastOnce);
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    if gave_up.is_none() {
        // A clean goodbye, so the broker does not keep waiting for us.
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(event) = eventloop.poll().await {
                if matches!(event, Event::Outgoing(Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
    }
    producer.abort();
    let sent = sent.load(Ordering::SeqCst);
    DeviceOutcome {
        name,
        sent,
        acknowledged: acknowledged.min(sent),
        reconnections,
        gave_up,
    }
}

/// Where a device publishes a message on `topic`.
#[derive(Debug, Clone, Default)]
pub enum Route {
    /// To `topic`, through the broker.
    #[default]
    Topic,
    /// Basic Ingest (`$aws/rules/<rule>/<topic>`): straight to that rule,
    /// with no messaging charge in AWS.
    Rule(String),
    /// Basic Ingest to the template's rule whose `FROM` takes `topic` (as
    /// the template pairs its rules and the device policy); to `topic`
    /// itself when none does.
    RuleOf(Arc<Wiring>),
}

impl Route {
    pub fn topic(&self, topic: String) -> String {
        let rule = match self {
            Route::Topic => None,
            Route::Rule(rule) => Some(rule.as_str()),
            Route::RuleOf(wiring) => wiring.basic_ingest_rule(&topic),
        };
        match rule {
            Some(rule) => format!("$aws/rules/{rule}/{topic}"),
            None => topic,
        }
    }
}

/// How a device sends several readings in one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BatchForm {
    /// `{"readings": [reading, ...]}`: an object, so a topic rule's
    /// `SELECT *, topic() AS topic` carries it (AWS IoT SQL merges fields
    /// into objects only).
    Object,
    /// `[reading, ...]`: a bare JSON array (for a rule that forwards the
    /// payload untouched, such as `SELECT * FROM ...` to Kinesis).
    Array,
}

/// One message of `readings`: the reading itself, or all of them in
/// `form` on the first one's topic; `None` when there is none.
pub fn batch_message(mut readings: Vec<Message>, form: BatchForm) -> Option<Message> {
    if readings.len() <= 1 {
        return readings.pop();
    }
    let (open, close): (&[u8], &[u8]) = match form {
        BatchForm::Object => (b"{\"readings\": [", b"]}"),
        BatchForm::Array => (b"[", b"]"),
    };
    let mut payload = Vec::with_capacity(
        readings.iter().map(|r| r.payload.len() + 1).sum::<usize>() + open.len() + close.len(),
    );
    payload.extend_from_slice(open);
    for (index, reading) in readings.iter().enumerate() {
        if index > 0 {
            payload.push(b',');
        }
        payload.extend_from_slice(&reading.payload);
    }
    payload.extend_from_slice(close);
    Some(Message {
        topic: readings.swap_remove(0).topic,
        payload,
    })
}

/// A command for the device: applied (and counted) if it understands it,
/// reported either way.
fn apply_command(
    device: &Mutex<Box<dyn Device>>,
    payload: &[u8],
    counters: &Counters,
    reporter: &Reporter,
) {
    let outcome = device
        .lock()
        .expect("no panic while holding the device")
        .on_command(payload);
    if outcome.applied {
        counters.commands_applied.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(latency) = outcome.latency {
        counters
            .switch_latencies_us
            .lock()
            .expect("no panic while held")
            .push(latency.as_micros() as u64);
    }
    reporter.line(outcome.line);
}

/// A broker that refuses the device's credentials will refuse them again:
/// stop at once and say what to check.
fn refusal(error: &ConnectionError, name: &str) -> Option<String> {
    let ConnectionError::ConnectionRefused(code) = error else {
        return None;
    };
    let hint = match code {
        ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword => {
            "check that the device's certificate is ACTIVE and attached to the thing, and that the policy lets it connect with its thing name as client id"
        }
        ConnectReturnCode::BadClientId => "the client id is the thing name; check the device's device.toml",
        _ => "check the broker's logs",
    };
    Some(format!("the broker refused {name:?} ({code:?}): {hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_readings_are_one_message_on_the_first_topic() {
        let reading = |n: u32| Message {
            topic: "devices/a/telemetry".into(),
            payload: format!("{{\n    \"n\": {n}\n}}").into_bytes(),
        };
        for form in [BatchForm::Object, BatchForm::Array] {
            assert_eq!(batch_message(Vec::new(), form), None);
            assert_eq!(batch_message(vec![reading(1)], form), Some(reading(1)));
        }
        let three = || vec![reading(1), reading(2), reading(3)];
        let batch = batch_message(three(), BatchForm::Array).unwrap();
        assert_eq!(batch.topic, "devices/a/telemetry");
        let value: serde_json::Value = serde_json::from_slice(&batch.payload).unwrap();
        assert_eq!(value, serde_json::json!([{"n": 1}, {"n": 2}, {"n": 3}]));
        let batch = batch_message(three(), BatchForm::Object).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&batch.payload).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"readings": [{"n": 1}, {"n": 2}, {"n": 3}]})
        );
    }
}
