//! Runs the metrics pipeline over a 10,000-record SQS batch in a loop, for
//! profilers (`perf record`, `valgrind --tool=callgrind`):
//! `cargo build --release --example profile_handler -p telemetry-core`.

use telemetry_core::pipeline::Pipeline;
use telemetry_core::sink::EmfSink;

fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let start = 1_645_938_000;
    let mut records = Vec::new();
    for i in 0..10_000 {
        let body = format!(
            "{{\n    \"timestamp\": {},\n    \"device\": \"temp-sensor-{:03}\",\n    \"temperature\": {}\n}}",
            start + i / 100,
            i % 100,
            17.0 + (i % 97) as f64 * 0.013
        );
        records.push(serde_json::json!({
            "messageId": format!("059f36b4-87a3-44ab-83d2-{i:012}"),
            "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
            "body": body,
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1645938062000"},
            "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:iot-telemetry",
            "awsRegion": "us-east-1"
        }));
    }
    let event = serde_json::to_vec(&serde_json::json!({"Records": records})).unwrap();
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
