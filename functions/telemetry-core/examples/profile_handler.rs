//! Runs the metrics pipeline over a 10,000-record SQS batch in a loop, for
//! profilers (`perf record`, `valgrind --tool=callgrind`):
//! `cargo build --release --example profile_handler -p telemetry-core`.

#[path = "../benches/sqs_batch.rs"]
mod sqs_batch;

use telemetry_core::pipeline::Pipeline;
use telemetry_core::sink::EmfSink;

fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    // `profile_handler <iterations> 003` profiles reference 003's payload.
    let event = match std::env::args().nth(2).as_deref() {
        Some("003") => sqs_batch::sqs_batch_003(),
        _ => sqs_batch::sqs_batch(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pipeline = Pipeline::default();
    let sink = EmfSink::new("IoT/Telemetry", Box::new(std::io::sink()));
    let dead = telemetry_core::deadletter::LocalDeadLetters {
        directory: std::env::temp_dir().join("profile-dead"),
    };
    let mut total = 0;
    for _ in 0..iterations {
        total += runtime
            .block_on(pipeline.process_metrics(&event, "p", 1_645_938_300_000, &sink, &dead))
            .unwrap()
            .1
            .readings_accepted;
    }
    println!("{total}");
}
