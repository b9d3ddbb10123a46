//! The hand-written scanner against the libraries that could replace it,
//! on the 10,000-record SQS batch of reference 000, in rounds that
//! alternate the three so a change of machine speed hits all alike:
//! `cargo run --release -p telemetry-core --example compare_envelopes [rounds]`
//! prints one JSON object (median of each round's best, and the per-round
//! ratio to ours). `make bench` records it in BENCHMARKS.md.

#[path = "../benches/library_envelope.rs"]
mod library_envelope;
#[path = "../benches/sqs_batch.rs"]
mod sqs_batch;

use std::time::Instant;

use library_envelope::{library_messages, rest_of_handler};
use telemetry_core::invocation::metrics::MetricsStep;
use telemetry_core::invocation::InvocationSettings;
use telemetry_core::sink::emf::EmfSink;

const NOW_MS: i64 = 1_645_938_300_000;
const RUNS_PER_ROUND: usize = 15;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|rounds| rounds.parse())
        .transpose()?
        .unwrap_or(15);
    let event = sqs_batch::sqs_batch();
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let settings = InvocationSettings::default();
    let sink = EmfSink::new("IoT/Telemetry", Box::new(std::io::sink()));
    let dead = telemetry_core::sink::dead_letter::LocalDeadLetters {
        directory: std::env::temp_dir().join("compare-envelopes-dead"),
    };
    let step = MetricsStep {
        settings: &settings,
        sink: &sink,
    };
    let rest_of_handler = |messages| rest_of_handler(&step, &runtime, messages);
    let ours = || {
        runtime
            .block_on(settings.process_metrics(&event, "compare", NOW_MS, &sink, &dead))
            .expect("the batch is delivered")
            .1
            .readings_accepted
    };
    let with_serde = || rest_of_handler(library_messages(serde_json::from_slice(&event).unwrap()));
    let with_sonic = || rest_of_handler(library_messages(sonic_rs::from_slice(&event).unwrap()));
    let variants: [(&str, &dyn Fn() -> usize); 3] = [
        ("scanner", &ours),
        ("serde_json_borrowed", &with_serde),
        ("sonic_rs", &with_sonic),
    ];
    for (_, run) in &variants {
        assert_eq!(run(), sqs_batch::MESSAGES, "every reading is accepted");
    }
    let mut bests: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        for (index, (_, run)) in variants.iter().enumerate() {
            let best = (0..RUNS_PER_ROUND)
                .map(|_| {
                    let start = Instant::now();
                    std::hint::black_box(run());
                    start.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min);
            bests[index].push(best);
        }
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let mut report = serde_json::Map::new();
    for (index, (name, _)) in variants.iter().enumerate() {
        let ratios: Vec<f64> = bests[index]
            .iter()
            .zip(&bests[0])
            .map(|(theirs, ours)| theirs / ours)
            .collect();
        let (low, high) = ratios.iter().fold((f64::INFINITY, 0f64), |(low, high), r| {
            (low.min(*r), high.max(*r))
        });
        report.insert(
            (*name).to_owned(),
            serde_json::json!({
                "whole_handler_ms": median(bests[index].clone()) * 1e3,
                "ratio_to_scanner": median(ratios),
                "ratio_range": [low, high],
            }),
        );
    }
    report.insert("rounds".into(), rounds.into());
    println!("{}", serde_json::Value::Object(report));
    Ok(())
}
