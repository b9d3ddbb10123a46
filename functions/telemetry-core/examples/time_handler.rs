//! Times the metrics pipeline on an event file, in process, for the bench's
//! paired comparison with the baseline's handler (`bench/run.py`):
//! `time_handler <event.json> <runs>` prints
//! `{"median_s": ..., "best_s": ..., "readings": ...}`.
//! The first run warms up and is not counted, as on the baseline's side.

use std::time::Instant;

use telemetry_core::pipeline::Pipeline;
use telemetry_core::sink::EmfSink;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: time_handler <event.json> <runs>")?;
    let runs: usize = args
        .next()
        .map(|runs| runs.parse())
        .transpose()?
        .unwrap_or(5)
        .max(1);
    let event = std::fs::read(&path)?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let pipeline = Pipeline::default();
    // EMF documents are formatted in full and then discarded, like the
    // baseline's prints into /dev/null.
    let sink = EmfSink::new("IoT/Telemetry", Box::new(std::io::sink()));
    let dead = telemetry_core::deadletter::LocalDeadLetters {
        directory: std::env::temp_dir().join("time-handler-dead"),
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
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
