//! The rules' actions, delivered as AWS delivers them:
//!
//! - Lambda: one asynchronous invocation per message, retried twice on a
//!   function error, then to the local on-failure destination.
//! - SQS: batches of the consumer's `BatchSize`, sent after its
//!   `MaximumBatchingWindowInSeconds`; records named in `batchItemFailures`
//!   come back after a visibility delay, and after `maxReceiveCount`
//!   receives go to the local redrive queue (a dead letter with the reason).
//! - Kinesis: records partitioned into shards by partition key; batches per
//!   shard in order; with `TumblingWindowInSeconds`, each invocation carries
//!   the window and the state the previous one answered, and the window
//!   ends with an `isFinalInvokeForWindow` invocation. A failed batch is
//!   retried from the first failed record, then goes to the on-failure
//!   destination.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::lambda::LocalFunction;
use super::ledger::{delivery_id, sequence_number, Ledger};
use iot_rules::sql::{evaluate, Message};
use iot_rules::template::{Action, EventSource, KeyPart, Wiring};

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
/// Lambda retries a failed asynchronous invocation twice.
const ASYNC_ATTEMPTS: u32 = 3;
/// Locally a failed SQS record is visible again after this (the queue's
/// VisibilityTimeout, minutes in the template, would only slow the demo).
const REDELIVERY_DELAY: Duration = Duration::from_millis(500);
/// Retries of a failed Kinesis batch before the on-failure destination
/// (the template allows more; locally a few show the behaviour).
const KINESIS_RETRIES: u32 = 3;

/// What a delivery needs from the run.
#[derive(Clone)]
pub struct Delivery {
    pub functions: Arc<BTreeMap<String, Arc<LocalFunction>>>,
    pub ledger: Arc<Ledger>,
    /// Shutting down: send what is buffered now, close windows.
    pub draining: Arc<AtomicBool>,
    pub shards: u32,
}

struct SqsRecord {
    message: u64,
    body: String,
    receive_count: u32,
    sent_ms: i64,
}

/// A stream's record; each consumer of the stream reads its own copy.
#[derive(Clone)]
struct KinesisRecord {
    message: u64,
    key: String,
    data: Vec<u8>,
    arrival_ms: i64,
}

/// The rules engine's outlet: routes one message through every rule.
pub struct Router {
    wiring: Wiring,
    delivery: Delivery,
    /// Each queue's consumer (a function name) and the channel to it, found
    /// once here rather than searched for in the wiring per message.
    queues: HashMap<String, (String, UnboundedSender<SqsRecord>)>,
    /// Each stream's consumers (every one reads every record).
    streams: HashMap<String, Vec<(String, UnboundedSender<KinesisRecord>)>>,
    pub tasks: Vec<JoinHandle<()>>,
}

impl Router {
    pub fn new(wiring: Wiring, delivery: Delivery) -> Router {
        let mut router = Router {
            wiring,
            delivery,
            queues: HashMap::new(),
            streams: HashMap::new(),
            tasks: Vec::new(),
        };
        let sources: Vec<(String, EventSource, String)> = router
            .wiring
            .functions
            .values()
            .flat_map(|function| {
                function.events.iter().map(|event| {
                    let name = match event {
                        EventSource::Sqs { queue, .. } => queue.clone(),
                        EventSource::Kinesis { stream, .. } => stream.clone(),
                    };
                    (name, event.clone(), function.name.clone())
                })
            })
            .collect();
        for (index, (source, event, function)) in sources.into_iter().enumerate() {
            if !router.delivery.functions.contains_key(&function) {
                continue;
            }
            match event {
                EventSource::Sqs { .. } => {
                    let (sender, receiver) = unbounded_channel();
                    let task = tokio::spawn(run_queue(
                        router.delivery.clone(),
                        source.clone(),
                        index as u32 + 1,
                        event,
                        function.clone(),
                        sender.clone(),
                        receiver,
                    ));
                    router.queues.insert(source, (function, sender));
                    router.tasks.push(task);
                }
                EventSource::Kinesis { .. } => {
                    let (sender, receiver) = unbounded_channel();
                    let task = tokio::spawn(run_stream(
                        router.delivery.clone(),
                        source.clone(),
                        event,
                        function.clone(),
                        receiver,
                    ));
                    router
                        .streams
                        .entry(source)
                        .or_default()
                        .push((function, sender));
                    router.tasks.push(task);
                }
            }
        }
        router
    }

    /// Every rule's output for one message, delivered by its actions; a
    /// message no rule routes is dead-lettered.
    /// `json` is the payload parsed as JSON (once, by the rules engine).
    pub fn route(&self, received_on: &str, payload: &[u8], json: Option<&Value>) {
        let ledger = &self.delivery.ledger;
        let number = ledger.arrived(received_on);
        // Basic Ingest: `$aws/rules/<rule>/<topic>` reaches that rule only,
        // which sees `<topic>`.
        let (topic, only_rule) = match received_on
            .strip_prefix("$aws/rules/")
            .and_then(|rest| rest.split_once('/'))
        {
            Some((rule, rest)) => (rest, Some(rule)),
            None => (received_on, None),
        };
        let client_id = self.client_id(topic);
        let now_ms = chrono::Utc::now().timestamp_millis();
        let message = Message {
            topic,
            client_id: &client_id,
            timestamp_ms: now_ms,
            payload,
            json,
        };
        let mut routed = false;
        let named = |rule: &&iot_rules::template::TopicRule| {
            only_rule
                .is_none_or(|name| rule.name == name || rule.rule_name.as_deref() == Some(name))
        };
        for rule in self.wiring.rules.iter().filter(named) {
            let output = match rule.query.evaluate(&message) {
                Ok(Some(output)) => output,
                Ok(None) => continue,
                Err(reason) => {
                    routed = true;
                    ledger.routed(&rule.name);
                    ledger.dead_letter_here(
                        number,
                        "rules engine",
                        format!("rule {}: {reason}", rule.name),
                        payload,
                    );
                    continue;
                }
            };
            routed = true;
            ledger.routed(&rule.name);
            // SELECT * of a payload that is not JSON passes it on as it is.
            let body = match &output {
                Value::String(raw) if json.is_none() => raw.clone(),
                other => other.to_string(),
            };
            for action in &rule.actions {
                match action {
                    Action::Lambda { function } => {
                        self.invoke_async(function, number, body.clone().into_bytes())
                    }
                    Action::Sqs { queue, base64 } => {
                        let body = if *base64 {
                            base64::engine::general_purpose::STANDARD.encode(&body)
                        } else {
                            body.clone()
                        };
                        if let Some((consumer, sender)) = self.queues.get(queue) {
                            ledger.deliver(consumer);
                            let _ = sender.send(SqsRecord {
                                message: number,
                                body,
                                receive_count: 0,
                                sent_ms: now_ms,
                            });
                        }
                    }
                    Action::Kinesis {
                        stream,
                        partition_key,
                    } => {
                        let key: String = partition_key
                            .iter()
                            .map(|part| match part {
                                KeyPart::Text(text) => text.clone(),
                                KeyPart::Expr(expr) => match evaluate(expr, &message) {
                                    Some(Value::String(text)) => text,
                                    Some(other) => other.to_string(),
                                    None => String::new(),
                                },
                            })
                            .collect();
                        let consumers = self.streams.get(stream).map_or(&[][..], Vec::as_slice);
                        // Counted for every reader before any can finish.
                        for (consumer, _) in consumers {
                            ledger.deliver(consumer);
                        }
                        let record = KinesisRecord {
                            message: number,
                            key,
                            data: body.clone().into_bytes(),
                            arrival_ms: now_ms,
                        };
                        for (_, sender) in consumers {
                            let _ = sender.send(record.clone());
                        }
                    }
                }
            }
        }
        if !routed {
            let reason = match only_rule {
                Some(name) if !self.wiring.rules.iter().any(|rule| named(&rule)) => {
                    format!("Basic Ingest to rule {name:?}, which the template does not have")
                }
                Some(name) => {
                    format!("rule {name} (Basic Ingest) does not select messages on {topic}")
                }
                None => format!("no enabled rule selects messages on {topic}"),
            };
            ledger.dead_letter_here(number, "rules engine", reason, payload);
        }
    }

    /// AWS IoT's `clientid()` is the publisher's MQTT client id, which a
    /// broker does not pass to subscribers. The device policy makes it the
    /// thing name, which is the topic level after the prefix; locally that
    /// level stands in for it.
    fn client_id(&self, topic: &str) -> String {
        let levels: Vec<&str> = topic.split('/').collect();
        let prefix_levels = if self.wiring.topic_prefix.is_empty() {
            0
        } else {
            self.wiring.topic_prefix.split('/').count()
        };
        levels
            .get(prefix_levels)
            .copied()
            .unwrap_or_default()
            .to_owned()
    }

    fn invoke_async(&self, function: &str, message: u64, event: Vec<u8>) {
        let Some(local) = self.delivery.functions.get(function).cloned() else {
            return;
        };
        let ledger = self.delivery.ledger.clone();
        ledger.deliver(function);
        let function = function.to_owned();
        tokio::spawn(async move {
            let mut last_error = String::new();
            for attempt in 0..ASYNC_ATTEMPTS {
                ledger.invoked(&function);
                // The request id carries the message number (and the
                // attempt), so the function's dead letters trace back.
                match local
                    .invoke(&delivery_id(0xA000 + attempt, message), event.clone())
                    .await
                {
                    Ok(_) => {
                        ledger.taken(&function);
                        return;
                    }
                    Err(error) => {
                        last_error = error;
                        ledger.retried(&function, 1);
                    }
                }
            }
            ledger.failed_for_good(
                message,
                &function,
                format!("asynchronous invocation failed {ASYNC_ATTEMPTS} times (on-failure destination): {last_error}"),
                &event,
            );
        });
    }
}

async fn run_queue(
    delivery: Delivery,
    queue: String,
    kind: u32,
    source: EventSource,
    function: String,
    requeue: UnboundedSender<SqsRecord>,
    mut receiver: UnboundedReceiver<SqsRecord>,
) {
    let EventSource::Sqs {
        batch_size,
        window_seconds,
        max_receive_count,
        ..
    } = source
    else {
        return;
    };
    let local = delivery.functions[&function].clone();
    let window = Duration::from_secs_f64(window_seconds);
    let mut buffer: Vec<SqsRecord> = Vec::new();
    let mut deadline: Option<Instant> = None;
    loop {
        let draining = delivery.draining.load(Ordering::SeqCst);
        let due = buffer.len() >= batch_size.max(1)
            || (!buffer.is_empty() && (draining || deadline.is_some_and(|d| Instant::now() >= d)));
        if due {
            let batch: Vec<SqsRecord> = buffer
                .drain(..buffer.len().min(batch_size.max(1)))
                .collect();
            deadline = (!buffer.is_empty()).then(|| Instant::now() + window);
            deliver_sqs(
                &delivery,
                &local,
                &queue,
                kind,
                &function,
                batch,
                max_receive_count,
                &requeue,
            )
            .await;
            continue;
        }
        let wake = deadline.unwrap_or_else(|| Instant::now() + Duration::from_millis(100));
        tokio::select! {
            record = receiver.recv() => match record {
                Some(record) => {
                    if buffer.is_empty() {
                        deadline = Some(Instant::now() + window);
                    }
                    buffer.push(record);
                }
                None => return,
            },
            _ = tokio::time::sleep_until(wake.min(Instant::now() + Duration::from_millis(100))) => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn deliver_sqs(
    delivery: &Delivery,
    local: &LocalFunction,
    queue: &str,
    kind: u32,
    function: &str,
    batch: Vec<SqsRecord>,
    max_receive_count: u32,
    requeue: &UnboundedSender<SqsRecord>,
) {
    let ledger = &delivery.ledger;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let records: Vec<Value> = batch
        .iter()
        .map(|record| {
            json!({
                "messageId": delivery_id(kind, record.message),
                "receiptHandle": format!("local-{}-{}", record.message, record.receive_count + 1),
                "body": record.body,
                "attributes": {
                    "ApproximateReceiveCount": (record.receive_count + 1).to_string(),
                    "SentTimestamp": record.sent_ms.to_string(),
                    "SenderId": "iotpipe-rules-engine",
                    "ApproximateFirstReceiveTimestamp": now_ms.to_string(),
                },
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"),
                "awsRegion": REGION,
            })
        })
        .collect();
    let event = serde_json::to_vec(&json!({ "Records": records })).expect("JSON values serialise");
    ledger.invoked(function);
    let answer = local.invoke(&batch_request_id(queue), event).await;
    let (failed, reason): (Vec<String>, String) = match &answer {
        Ok(response) => (
            response["batchItemFailures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|failure| failure["itemIdentifier"].as_str().map(str::to_owned))
                .collect(),
            "reported in batchItemFailures".to_owned(),
        ),
        Err(error) => (
            batch
                .iter()
                .map(|record| delivery_id(kind, record.message))
                .collect(),
            format!("the invocation failed: {error}"),
        ),
    };
    for mut record in batch {
        if !failed.contains(&delivery_id(kind, record.message)) {
            ledger.taken(function);
            continue;
        }
        record.receive_count += 1;
        if record.receive_count >= max_receive_count {
            ledger.failed_for_good(
                record.message,
                function,
                format!("{queue}: not processed after {} receives, moved to the redrive queue ({reason})", record.receive_count),
                record.body.as_bytes(),
            );
        } else {
            ledger.retried(function, 1);
            let requeue = requeue.clone();
            tokio::spawn(async move {
                tokio::time::sleep(REDELIVERY_DELAY).await;
                let _ = requeue.send(record);
            });
        }
    }
}

/// A batch invocation's request id: unique, and (unlike a Lambda action's)
/// not a message's, since a batch holds many.
fn batch_request_id(source: &str) -> String {
    static BATCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("batch-{source}-{}", BATCHES.fetch_add(1, Ordering::Relaxed))
}

/// One shard's open tumbling window.
struct ShardWindow {
    start_ms: i64,
    state: Value,
}

async fn run_stream(
    delivery: Delivery,
    stream: String,
    source: EventSource,
    function: String,
    mut receiver: UnboundedReceiver<KinesisRecord>,
) {
    let EventSource::Kinesis {
        batch_size,
        window_seconds,
        tumbling_window_seconds,
        ..
    } = source
    else {
        return;
    };
    let local = delivery.functions[&function].clone();
    let shards = delivery.shards.max(1) as usize;
    let batching = Duration::from_secs_f64(window_seconds);
    let tumbling_ms = tumbling_window_seconds.map(|seconds| seconds as i64 * 1000);
    let mut buffers: Vec<Vec<KinesisRecord>> = (0..shards).map(|_| Vec::new()).collect();
    let mut windows: Vec<Option<ShardWindow>> = (0..shards).map(|_| None).collect();
    let mut deadlines: Vec<Option<Instant>> = vec![None; shards];
    let stream_arn = format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream}");
    let shard_stream = ShardStream {
        delivery: &delivery,
        local: &local,
        function: &function,
        stream_arn: &stream_arn,
    };
    let mut closed = false;
    loop {
        let draining = delivery.draining.load(Ordering::SeqCst);
        let now_ms = chrono::Utc::now().timestamp_millis();
        for shard in 0..shards {
            // The shard's window ended (by the clock, or the run is ending).
            let window_over = match (&windows[shard], tumbling_ms) {
                (Some(window), Some(length)) => {
                    now_ms >= window.start_ms + length || (draining && closed)
                }
                _ => false,
            };
            let batch_due = buffers[shard].len() >= batch_size.max(1)
                || (!buffers[shard].is_empty()
                    && (draining
                        || deadlines[shard].is_some_and(|deadline| Instant::now() >= deadline)));
            if window_over {
                let records = std::mem::take(&mut buffers[shard]);
                let window = windows[shard].take().expect("checked above");
                shard_stream
                    .invoke(
                        shard as u32,
                        records,
                        Some((window, tumbling_ms.unwrap_or(0), true)),
                    )
                    .await;
                deadlines[shard] = None;
            } else if batch_due {
                let take = buffers[shard].len().min(batch_size.max(1));
                let records: Vec<KinesisRecord> = buffers[shard].drain(..take).collect();
                deadlines[shard] = (!buffers[shard].is_empty()).then(|| Instant::now() + batching);
                match (windows[shard].take(), tumbling_ms) {
                    (Some(window), Some(length)) => {
                        let state = shard_stream
                            .invoke(shard as u32, records, Some((window, length, false)))
                            .await;
                        windows[shard] = state;
                    }
                    _ => {
                        shard_stream.invoke(shard as u32, records, None).await;
                    }
                }
            }
        }
        if closed && buffers.iter().all(Vec::is_empty) && windows.iter().all(Option::is_none) {
            return;
        }
        tokio::select! {
            record = receiver.recv(), if !closed => match record {
                Some(record) => {
                    let shard = shard_of(&record.key, shards);
                    if let Some(length) = tumbling_ms {
                        let start_ms = record.arrival_ms - record.arrival_ms.rem_euclid(length);
                        let open = windows[shard].as_ref().map(|window| window.start_ms);
                        if open.is_some_and(|open| open != start_ms) {
                            // The record belongs to the next window: close this one first.
                            let records = std::mem::take(&mut buffers[shard]);
                            let window = windows[shard].take().expect("checked above");
                            shard_stream.invoke(shard as u32, records, Some((window, length, true))).await;
                        }
                        if windows[shard].is_none() {
                            windows[shard] = Some(ShardWindow { start_ms, state: json!({}) });
                        }
                    }
                    if buffers[shard].is_empty() {
                        deadlines[shard] = Some(Instant::now() + batching);
                    }
                    buffers[shard].push(record);
                }
                None => closed = true,
            },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if draining && receiver.is_empty() {
                    closed = true;
                }
            }
        }
    }
}

/// Kinesis maps a partition key to a shard by its MD5 hash; locally a
/// SHA-256 prefix spreads the keys the same way (one key, one shard).
fn shard_of(key: &str, shards: usize) -> usize {
    let digest = Sha256::digest(key.as_bytes());
    (u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) % shards as u64) as usize
}

struct ShardStream<'a> {
    delivery: &'a Delivery,
    local: &'a LocalFunction,
    function: &'a str,
    stream_arn: &'a str,
}

impl ShardStream<'_> {
    /// Delivers `records` (retrying from the first failed one); with a
    /// window, returns it with the function's new state unless it was the
    /// final invocation.
    async fn invoke(
        &self,
        shard: u32,
        mut records: Vec<KinesisRecord>,
        window: Option<(ShardWindow, i64, bool)>,
    ) -> Option<ShardWindow> {
        let ledger = &self.delivery.ledger;
        let shard_id = format!("shardId-{shard:012}");
        let mut window = window;
        let mut attempts = 0;
        loop {
            let event_records: Vec<Value> = records
                .iter()
                .map(|record| {
                    let sequence = sequence_number(shard, record.message);
                    json!({
                        "kinesis": {
                            "kinesisSchemaVersion": "1.0",
                            "partitionKey": record.key,
                            "sequenceNumber": sequence,
                            "data": base64::engine::general_purpose::STANDARD.encode(&record.data),
                            "approximateArrivalTimestamp": record.arrival_ms as f64 / 1000.0,
                        },
                        "eventSource": "aws:kinesis",
                        "eventVersion": "1.0",
                        "eventID": format!("{shard_id}:{sequence}"),
                        "eventName": "aws:kinesis:record",
                        "invokeIdentityArn": format!("arn:aws:iam::{ACCOUNT}:role/iotpipe-local"),
                        "awsRegion": REGION,
                        "eventSourceARN": self.stream_arn,
                    })
                })
                .collect();
            let mut event = json!({ "Records": event_records });
            if let Some((open, length, final_invoke)) = &window {
                let time = |ms: i64| {
                    chrono::DateTime::from_timestamp_millis(ms)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                        .unwrap_or_default()
                };
                event["window"] =
                    json!({"start": time(open.start_ms), "end": time(open.start_ms + length)});
                event["state"] = open.state.clone();
                event["shardId"] = json!(shard_id);
                event["eventSourceARN"] = json!(self.stream_arn);
                event["isFinalInvokeForWindow"] = json!(final_invoke);
                event["isWindowTerminatedEarly"] = json!(false);
            }
            ledger.invoked(self.function);
            let answer = self
                .local
                .invoke(
                    &batch_request_id(&shard_id),
                    serde_json::to_vec(&event).expect("JSON values serialise"),
                )
                .await;
            let (first_failed, reason) = match &answer {
                Ok(response) => {
                    if let (Some((open, _, _)), Some(state)) =
                        (window.as_mut(), response.get("state"))
                    {
                        open.state = state.clone();
                    }
                    let failed = response["batchItemFailures"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|failure| failure["itemIdentifier"].as_str())
                        .filter_map(|id| {
                            records
                                .iter()
                                .position(|r| sequence_number(shard, r.message) == id)
                        })
                        .min();
                    (failed, "reported in batchItemFailures".to_owned())
                }
                Err(error) => (
                    (!records.is_empty()).then_some(0),
                    format!("the invocation failed: {error}"),
                ),
            };
            let failed_from = first_failed.unwrap_or(records.len());
            for _ in records.drain(..failed_from) {
                ledger.taken(self.function);
            }
            if records.is_empty() {
                break;
            }
            attempts += 1;
            if attempts > KINESIS_RETRIES {
                for record in records.drain(..) {
                    ledger.failed_for_good(
                        record.message,
                        self.function,
                        format!("{}: not processed after {attempts} attempts, sent to the on-failure destination ({reason})", self.stream_arn),
                        &record.data,
                    );
                }
                break;
            }
            ledger.retried(self.function, records.len() as u64);
            tokio::time::sleep(REDELIVERY_DELAY).await;
        }
        match window {
            Some((open, _, false)) => Some(open),
            _ => None,
        }
    }
}
