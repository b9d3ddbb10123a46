//! Micro-benchmarks of the per-record path, next to serde_json's own
//! parsing of the same bytes (the practical ceiling). `make bench` runs them
//! and copies the figures into BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::json;
use telemetry_core::decode::decode_message;
use telemetry_core::emf;
use telemetry_core::envelope::parse_event;
use telemetry_core::mapping::Mappings;
use telemetry_core::pipeline::Pipeline;
use telemetry_core::reading::Reading;
use telemetry_core::sink::EmfSink;

const MESSAGES: usize = 10_000;
const NOW_MS: i64 = 1_645_938_300_000;

/// An SQS batch of reference 000's payload from 100 devices.
fn sqs_batch() -> Vec<u8> {
    let records: Vec<_> = (0..MESSAGES)
        .map(|i| {
            let body = format!(
                "{{\n    \"timestamp\": {},\n    \"device\": \"temp-sensor-{:03}\",\n    \"temperature\": {}\n}}",
                1_645_938_000 + (i / 100) as i64,
                i % 100,
                17.0 + (i % 97) as f64 * 0.013
            );
            json!({
                "messageId": format!("059f36b4-87a3-44ab-83d2-{i:012}"),
                "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1645938062000", "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1645938062005"},
                "messageAttributes": {},
                "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:iot-telemetry",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::to_vec(&json!({"Records": records})).unwrap()
}

fn benches(c: &mut Criterion) {
    let event = sqs_batch();
    let mut group = c.benchmark_group("sqs_10k_ref000");
    group.throughput(Throughput::Bytes(event.len() as u64));
    group.sample_size(20);

    group.bench_function("ceiling_serde_json_value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(&event).unwrap())
    });
    group.bench_function("envelope", |b| {
        b.iter(|| parse_event(&event).unwrap().messages.len())
    });

    let envelope = parse_event(&event).unwrap();
    let mappings = Mappings::default();
    group.bench_function("payload_decoding", |b| {
        let mut out: Vec<Reading> = Vec::with_capacity(MESSAGES);
        b.iter(|| {
            out.clear();
            for (index, message) in envelope.messages.iter().enumerate() {
                decode_message(&mappings, message, index as u32, NOW_MS, &mut out).unwrap();
            }
            out.len()
        })
    });

    let mut readings = Vec::new();
    for (index, message) in envelope.messages.iter().enumerate() {
        decode_message(&mappings, message, index as u32, NOW_MS, &mut readings).unwrap();
    }
    group.bench_function("emf_encoding", |b| {
        let mut out = Vec::with_capacity(readings.len() * 220);
        b.iter(|| {
            out.clear();
            emf::encode("IoT/Telemetry", &readings, &mut out)
        })
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pipeline = Pipeline::default();
    let sink = EmfSink::new("IoT/Telemetry", Box::new(std::io::sink()));
    let dead = telemetry_core::deadletter::LocalDeadLetters {
        directory: std::env::temp_dir().join("iotpipe-bench-dead-letters"),
    };
    group.bench_function("whole_handler_emf", |b| {
        b.iter_batched(
            || (),
            |()| {
                runtime
                    .block_on(pipeline.process_metrics(&event, "bench", NOW_MS, &sink, &dead))
                    .unwrap()
                    .1
                    .readings_accepted
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
