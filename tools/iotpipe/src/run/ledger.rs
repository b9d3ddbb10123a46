//! Where every message went: the rules that routed it, the functions that
//! took it, and the dead letters that name it. At the end each message is
//! accepted (by every function its rules route it to) or dead-lettered
//! (with a reason), so `sent == accepted + dead_lettered`.
//!
//! Every delivery carries the message's number inside its ids (SQS
//! `messageId`, Kinesis `sequenceNumber`, a Lambda action's request id), so
//! the functions' own dead letters can be traced back to the message.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::Notify;

/// A function's counts over the run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FunctionCounts {
    pub invocations: u64,
    pub records: u64,
    pub records_retried: u64,
    pub accepted: u64,
    pub dead_lettered: u64,
}

#[derive(Debug, Default, Clone)]
struct MessageState {
    topic: String,
    /// Who rejected it, and why.
    dead_letters: Vec<String>,
}

#[derive(Default)]
struct Books {
    messages: Vec<MessageState>,
    rules: BTreeMap<String, u64>,
    functions: BTreeMap<String, FunctionCounts>,
}

/// Shared by the rules engine and every delivery task.
#[derive(Default)]
pub struct Ledger {
    books: Mutex<Books>,
    /// The local pipeline's own dead letters (no rule, redrive queue,
    /// on-failure destination), with reason and raw bytes.
    file: Mutex<Option<std::fs::File>>,
    /// Deliveries not yet settled (taken, or dead-lettered for good).
    in_flight: AtomicI64,
    settled: Notify,
    /// When the last delivery settled, and each function last took one.
    last_settled: Mutex<Option<std::time::Instant>>,
    last_taken: Mutex<BTreeMap<String, std::time::Instant>>,
}

/// The run's totals.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub sent: u64,
    pub accepted: u64,
    pub dead_lettered: u64,
}

impl Ledger {
    /// Writes the local pipeline's dead letters to `path` (JSON lines).
    pub fn with_dead_letter_file(path: &std::path::Path) -> std::io::Result<Ledger> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Ledger {
            file: Mutex::new(Some(file)),
            ..Ledger::default()
        })
    }

    /// A dead letter of the local pipeline itself, written with the raw
    /// bytes.
    pub fn dead_letter_here(&self, message: u64, by: &str, reason: String, payload: &[u8]) {
        use std::io::Write;
        let (payload, encoding) = match std::str::from_utf8(payload) {
            Ok(text) => (text.to_owned(), "utf-8"),
            Err(_) => {
                use base64::Engine;
                (
                    base64::engine::general_purpose::STANDARD.encode(payload),
                    "base64",
                )
            }
        };
        let letter = serde_json::json!({
            "rejected_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "source": by,
            "message_id": format!("message-{message}"),
            "reason": reason,
            "payload": payload,
            "payload_encoding": encoding,
        });
        if let Some(file) = self.file.lock().expect("no panic while held").as_mut() {
            let _ = writeln!(file, "{letter}");
        }
        self.dead_letter(message, by, reason);
    }

    /// A message arrived from the broker; its number.
    pub fn arrived(&self, topic: &str) -> u64 {
        let mut books = self.books.lock().expect("no panic while held");
        books.messages.push(MessageState {
            topic: topic.to_owned(),
            ..MessageState::default()
        });
        books.messages.len() as u64 - 1
    }

    pub fn routed(&self, rule: &str) {
        let mut books = self.books.lock().expect("no panic while held");
        *books.rules.entry(rule.to_owned()).or_default() += 1;
    }

    /// A delivery to `function` starts.
    pub fn deliver(&self, function: &str) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.count(function, |counts| counts.records += 1);
    }

    fn count(&self, function: &str, update: impl FnOnce(&mut FunctionCounts)) {
        let mut books = self.books.lock().expect("no panic while held");
        update(books.functions.entry(function.to_owned()).or_default());
    }

    /// The function took it (wrote it, or dead-lettered it itself: its
    /// dead letters are read at the end).
    pub fn taken(&self, function: &str) {
        self.count(function, |counts| counts.accepted += 1);
        self.last_taken
            .lock()
            .expect("no panic while held")
            .insert(function.to_owned(), std::time::Instant::now());
        self.settle();
    }

    /// Given up on: the local redrive queue or on-failure destination.
    pub fn failed_for_good(&self, message: u64, function: &str, reason: String, payload: &[u8]) {
        self.dead_letter_here(message, function, reason, payload);
        self.settle();
    }

    pub fn retried(&self, function: &str, records: u64) {
        self.count(function, |counts| counts.records_retried += records);
    }

    pub fn invoked(&self, function: &str) {
        self.count(function, |counts| counts.invocations += 1);
    }

    /// A dead letter naming `message` (from a function, or the rules
    /// engine for a message no rule routes).
    pub fn dead_letter(&self, message: u64, by: &str, reason: String) {
        let mut books = self.books.lock().expect("no panic while held");
        if let Some(state) = books.messages.get_mut(message as usize) {
            state.dead_letters.push(format!("{by}: {reason}"));
        }
        if let Some(counts) = books.functions.get_mut(by) {
            counts.dead_lettered += 1;
        }
    }

    fn settle(&self) {
        *self.last_settled.lock().expect("no panic while held") = Some(std::time::Instant::now());
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.settled.notify_waiters();
        }
    }

    pub fn last_settled(&self) -> Option<std::time::Instant> {
        *self.last_settled.lock().expect("no panic while held")
    }

    /// When `function` last took a delivery.
    pub fn last_taken_by(&self, function: &str) -> Option<std::time::Instant> {
        self.last_taken
            .lock()
            .expect("no panic while held")
            .get(function)
            .copied()
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until every delivery is settled.
    pub async fn wait_settled(&self) {
        loop {
            let notified = self.settled.notified();
            if self.in_flight() <= 0 {
                return;
            }
            let _ = tokio::time::timeout(std::time::Duration::from_millis(200), notified).await;
        }
    }

    pub fn totals(&self) -> Totals {
        let books = self.books.lock().expect("no panic while held");
        let sent = books.messages.len() as u64;
        let dead_lettered = books
            .messages
            .iter()
            .filter(|m| !m.dead_letters.is_empty())
            .count() as u64;
        Totals {
            sent,
            accepted: sent - dead_lettered,
            dead_lettered,
        }
    }

    /// Reasons with how many messages each, most frequent first.
    pub fn reasons(&self) -> Vec<(String, u64)> {
        let books = self.books.lock().expect("no panic while held");
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for message in &books.messages {
            if let Some(reason) = message.dead_letters.first() {
                *counts.entry(reason.clone()).or_default() += 1;
            }
        }
        let mut reasons: Vec<(String, u64)> = counts.into_iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        reasons
    }

    pub fn rules(&self) -> BTreeMap<String, u64> {
        self.books
            .lock()
            .expect("no panic while held")
            .rules
            .clone()
    }

    pub fn functions(&self) -> BTreeMap<String, FunctionCounts> {
        self.books
            .lock()
            .expect("no panic while held")
            .functions
            .clone()
    }

    /// Per topic: sent, accepted, dead-lettered.
    pub fn by_topic(&self) -> BTreeMap<String, Totals> {
        let books = self.books.lock().expect("no panic while held");
        let mut topics: BTreeMap<String, Totals> = BTreeMap::new();
        for message in &books.messages {
            let totals = topics.entry(message.topic.clone()).or_insert(Totals {
                sent: 0,
                accepted: 0,
                dead_lettered: 0,
            });
            totals.sent += 1;
            if message.dead_letters.is_empty() {
                totals.accepted += 1;
            } else {
                totals.dead_lettered += 1;
            }
        }
        topics
    }
}

/// The message number inside an id this run gave a delivery: SQS message
/// ids and Lambda request ids `xxxxxxxx-0000-4000-8000-<12 hex>`, Kinesis
/// sequence numbers `<shard 20 digits><message 20 digits>`.
pub fn message_of(id: &str) -> Option<u64> {
    if id.len() == 36 && id.get(8..24) == Some("-0000-4000-8000-") {
        return u64::from_str_radix(&id[24..], 16).ok();
    }
    if id.len() == 40 && id.bytes().all(|b| b.is_ascii_digit()) {
        return id[20..].parse().ok();
    }
    None
}

/// A delivery id carrying `message`: `kind` tells deliveries of one message
/// apart (a queue, a function).
pub fn delivery_id(kind: u32, message: u64) -> String {
    format!("{kind:08x}-0000-4000-8000-{message:012x}")
}

/// A Kinesis sequence number carrying `message`.
pub fn sequence_number(shard: u32, message: u64) -> String {
    format!("{shard:020}{message:020}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_message_number_back() {
        assert_eq!(message_of(&delivery_id(3, 77)), Some(77));
        assert_eq!(message_of(&sequence_number(1, 123_456)), Some(123_456));
        assert_eq!(message_of("iot-9970f050a2d057381c9f068a64ed74b9"), None);
        assert_eq!(message_of("059f36b4-87a3-44ab-83d2-66197516temp"), None);
    }

    #[test]
    fn every_message_is_accepted_or_dead_lettered_once() {
        let ledger = Ledger::default();
        ledger.arrived("devices/a/telemetry");
        let second = ledger.arrived("devices/a/telemetry");
        let third = ledger.arrived("devices/a/oops");
        // Both telemetry messages reach two functions, which take them.
        for _ in 0..2 {
            ledger.deliver("metrics");
            ledger.deliver("warehouse");
            ledger.taken("metrics");
            ledger.taken("warehouse");
        }
        ledger.dead_letter(second, "metrics", "not a number".into());
        ledger.dead_letter(second, "warehouse", "not a number".into());
        ledger.dead_letter(
            third,
            "rules engine",
            "no rule routes devices/a/oops".into(),
        );
        assert_eq!(ledger.in_flight(), 0);
        assert_eq!(
            ledger.totals(),
            Totals {
                sent: 3,
                accepted: 1,
                dead_lettered: 2
            }
        );
        assert_eq!(ledger.reasons().len(), 2);
    }
}
