//! Runs the metrics pipeline over one event in a loop, in process, and
//! prints how long a run took: `time_handler <event> <runs>` prints
//! `{"median_s": ..., "best_s": ..., "readings": ...}`. The first run warms
//! up and is not counted.
//!
//! `<event>` is a file (the bench's paired comparison with the baseline's
//! handler, `bench/run.py`), or `000` / `003` for the 10,000-record batches
//! of `benches/sqs_batch.rs`, for profilers: `cargo build --release
//! --example time_handler -p telemetry-core`, then run it under
//! `perf record` or `valgrind --tool=callgrind`.

#[path = "../benches/sqs_batch.rs"]
mod sqs_batch;

use std::time::Instant;

use telemetry_core::invocation::InvocationSettings;
use telemetry_core::sink::emf::EmfSink;

/// The clock the generated batches were written for (2022-02-27).
const SAMPLE_NOW_MS: i64 = 1_645_938_300_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let source = args
        .next()
        .ok_or("usage: time_handler <event.json | 000 | 003> <runs>")?;
    let runs: usize = args
        .next()
        .map(|runs| runs.parse())
        .transpose()?
        .unwrap_or(5)
        .max(1);
    let (event, now_ms) = match source.as_str() {
        "000" => (sqs_batch::sqs_batch(), SAMPLE_NOW_MS),
        "003" => (sqs_batch::sqs_batch_003(), SAMPLE_NOW_MS),
        path => (std::fs::read(path)?, chrono::Utc::now().timestamp_millis()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let pipeline = InvocationSettings::default();
    // EMF documents are formatted in full and then discarded, like the
    // baseline's prints into /dev/null.
    let sink = EmfSink::new("IoT/Telemetry", Box::new(std::io::sink()));
    let dead = telemetry_core::sink::dead_letter::LocalDeadLetters {
        directory: std::env::temp_dir().join("time-handler-dead"),
    };
    let mut times = Vec::with_capacity(runs);
    let mut readings = 0;
    for run in 0..=runs {
        let start = Instant::now();
        let (_, counts) =
            runtime.block_on(pipeline.process_metrics(&event, "time", now_ms, &sink, &dead))?;
        let elapsed = start.elapsed().as_secs_f64();
        if run > 0 {
            times.push(elapsed);
        }
        readings = counts.readings_accepted;
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"median_s\": {}, \"best_s\": {}, \"readings\": {readings}}}",
        times[times.len() / 2],
        times[0]
    );
    Ok(())
}
