//! Micro-benchmarks of the per-record path, next to serde_json's own
//! parsing of the same bytes (the practical ceiling). `make bench` runs them
//! and copies the figures into BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use library_envelope::{library_messages, rest_of_handler};
use telemetry_core::envelope::parse_event;
use telemetry_core::invocation::metrics::MetricsStep;
use telemetry_core::invocation::InvocationSettings;
use telemetry_core::payload::mapping::Mappings;
use telemetry_core::reading::decode::decode_message;
use telemetry_core::reading::Reading;
use telemetry_core::sink::emf;
use telemetry_core::sink::emf::EmfSink;

mod library_envelope;
mod sqs_batch;

use sqs_batch::{sqs_batch, MESSAGES};

const NOW_MS: i64 = 1_645_938_300_000;

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
    // The libraries that could replace the scanner, on the same bytes, into
    // the fields the scanner reads (borrowed where JSON escaping allows).
    group.bench_function("envelope_serde_json_borrowed", |b| {
        b.iter(|| library_messages(serde_json::from_slice(&event).unwrap()).len())
    });
    group.bench_function("envelope_sonic_rs", |b| {
        b.iter(|| library_messages(sonic_rs::from_slice(&event).unwrap()).len())
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
        let encoder = emf::EmfEncoder::new("IoT/Telemetry");
        let mut out = Vec::with_capacity(readings.len() * 220);
        b.iter(|| {
            out.clear();
            encoder.encode(&readings, &mut out)
        })
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pipeline = InvocationSettings::default();
    let sink = EmfSink::new("IoT/Telemetry", Box::new(std::io::sink()));
    let dead = telemetry_core::sink::dead_letter::LocalDeadLetters {
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
    // The whole handler again, with a library reading the envelope: the
    // same step (decode, validate, EMF) on the messages it gives.
    let step = MetricsStep {
        settings: &pipeline,
        sink: &sink,
    };
    let rest_of_handler = |messages| rest_of_handler(&step, &runtime, messages);
    group.bench_function("whole_handler_emf_serde_json_envelope", |b| {
        b.iter(|| rest_of_handler(library_messages(serde_json::from_slice(&event).unwrap())))
    });
    group.bench_function("whole_handler_emf_sonic_rs_envelope", |b| {
        b.iter(|| rest_of_handler(library_messages(sonic_rs::from_slice(&event).unwrap())))
    });
    group.finish();
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
