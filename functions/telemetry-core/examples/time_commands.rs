//! Times the device-commands step in process on reference 004's night
//! light messages, with reference 004's rule from
//! config/reference-pipelines.toml (every message decided, every command
//! serialised for its publish): `time_commands <runs>` prints
//! `{"batch_best_s", "batch_median_s", "decisions", "single_median_us"}`,
//! a 10,000-message SQS batch and one message as the IoT rule's Lambda
//! action delivers it (reading -> command inside the handler).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use serde_json::{json, Value};
use telemetry_core::config::pipeline_file::PipelineFile;
use telemetry_core::invocation::commands::{CommandTally, CommandsStep};
use telemetry_core::invocation::InvocationSettings;
use telemetry_core::sink::commands::{CommandError, CommandSink};
use telemetry_core::sink::dead_letter::LocalDeadLetters;

const MESSAGES: usize = 10_000;
const DEVICES: usize = 100;

/// Serialises each command as a publish would and counts it.
#[derive(Default)]
struct Serialised(AtomicUsize);

#[async_trait]
impl CommandSink for Serialised {
    async fn last_commands(&self, _: &str) -> Result<HashMap<String, Value>, CommandError> {
        Ok(HashMap::new())
    }
    async fn publish(&self, _: &str, topic: &str, payload: &Value) -> Result<(), CommandError> {
        let bytes = serde_json::to_vec(payload).expect("JSON");
        std::hint::black_box((topic, bytes));
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn set_desired(&self, _: &str, _: &Value) -> Result<(), CommandError> {
        Ok(())
    }
    async fn remember(&self, _: &str, _: &HashMap<String, Value>) -> Result<(), CommandError> {
        Ok(())
    }
}

/// Reference 004's message of reading `index`: `{"light": ...}` on
/// `nightlight-NN/telemetry`, as the topic rule passes it on.
fn message(index: usize) -> Value {
    json!({"light": (index * 37) % 1000, "topic": format!("nightlight-{:02}/telemetry", index % DEVICES)})
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(20);
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/reference-pipelines.toml"
    );
    let settings: InvocationSettings = PipelineFile::load(std::path::Path::new(file))?.into();
    let sink = Serialised::default();
    let step = CommandsStep {
        settings: &settings,
        sink: &sink,
        tally: CommandTally::default(),
    };
    let dead = LocalDeadLetters {
        directory: std::env::temp_dir().join("time-commands-dead"),
    };
    let records: Vec<Value> = (0..MESSAGES)
        .map(|i| json!({"messageId": format!("m-{i}"), "eventSource": "aws:sqs", "body": message(i).to_string()}))
        .collect();
    let batch = serde_json::to_vec(&json!({ "Records": records }))?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let now_ms = 1_645_938_300_000;
    let time = |event: &[u8]| -> Result<f64, Box<dyn std::error::Error>> {
        let start = Instant::now();
        runtime.block_on(settings.process_commands(&step, event, "time", now_ms, &dead))?;
        Ok(start.elapsed().as_secs_f64())
    };
    time(&batch)?;
    sink.0.store(0, Ordering::Relaxed);
    let mut batch_times: Vec<f64> = (0..runs).map(|_| time(&batch)).collect::<Result<_, _>>()?;
    let decisions = sink.0.load(Ordering::Relaxed) / runs;
    assert_eq!(decisions, MESSAGES, "every message gives a command");
    let single = message(7).to_string().into_bytes();
    let mut single_times: Vec<f64> = (0..2_000)
        .map(|_| time(&single))
        .collect::<Result<_, _>>()?;
    batch_times.sort_by(f64::total_cmp);
    single_times.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "batch_best_s": batch_times[0],
            "batch_median_s": batch_times[batch_times.len() / 2],
            "decisions": decisions,
            "single_median_us": single_times[single_times.len() / 2] * 1e6,
        })
    );
    Ok(())
}
