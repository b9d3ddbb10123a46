//! Times the windows function's work in process: `time_windows <runs>`
//! prints one JSON line with
//! - `fold_best_s`: folding 10,000 readings (100 devices x 100 seconds,
//!   reference 000's temperature) into event-time aggregates;
//! - `invocation_best_s`: a whole invocation on a 10,000-record Kinesis
//!   tumbling-window event (envelope, base64, decode, validate, fold, emit
//!   what is due as EMF into memory, encode the state);
//! - `state_bytes_10000x4`: the state for 10,000 devices x 4 metrics, one
//!   minute of one reading a second each (values with two decimals, as
//!   sensors report), and `series_10000x4`.

use std::time::Instant;

use base64::Engine;
use serde_json::json;
use telemetry_core::invocation::windows::WindowOutputs;
use telemetry_core::invocation::{Invocation, InvocationSettings};
use telemetry_core::reading::Reading;
use telemetry_core::sink::dead_letter::LocalDeadLetters;
use telemetry_core::sink::emf::EmfSink;
use telemetry_core::sink::SharedBuffer;
use telemetry_core::window::state::{encode_state, state_bytes};
use telemetry_core::window::{WindowSettings, Windows};

const RECORDS: usize = 10_000;
const DEVICES: usize = 100;
const T0_MS: i64 = 1_645_938_000_000;

fn reading(device: &str, metric: &str, value: f64, at: i64) -> Reading {
    Reading {
        device: device.into(),
        metric: metric.into(),
        value,
        unit: Default::default(),
        timestamp_ms: at,
        dimensions: Vec::new(),
        high_resolution: false,
        message: 0,
    }
}

fn best(runs: usize, mut run: impl FnMut()) -> f64 {
    run();
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn window_event() -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<_> = (0..RECORDS)
        .map(|i| {
            let device = format!("temp-sensor-{:03}", i % DEVICES);
            let at_s = T0_MS / 1000 + (i / DEVICES) as i64;
            let text = format!(
                "{{\n    \"timestamp\": {at_s},\n    \"device\": \"{device}\",\n    \"temperature\": {}\n}}",
                17.0 + (i % 97) as f64 * 0.0731
            );
            json!({
                "eventSource": "aws:kinesis",
                "kinesis": {"sequenceNumber": format!("{}", 49_590_000 + i), "partitionKey": device,
                            "data": b64.encode(text), "approximateArrivalTimestamp": at_s as f64 + 1.0},
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "Records": records,
        "window": {"start": "2022-02-27T05:00:00Z", "end": "2022-02-27T05:05:00Z"},
        "state": {},
        "shardId": "shardId-000000000000",
        "isFinalInvokeForWindow": false,
        "isWindowTerminatedEarly": false,
    }))
    .expect("JSON")
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let settings = WindowSettings::default();

    let names: Vec<String> = (0..DEVICES)
        .map(|d| format!("temp-sensor-{d:03}"))
        .collect();
    let readings: Vec<Reading> = (0..RECORDS)
        .map(|i| {
            let at = T0_MS + (i / DEVICES) as i64 * 1000;
            reading(
                &names[i % DEVICES],
                "temperature",
                17.0 + (i % 97) as f64 * 0.0731,
                at,
            )
        })
        .collect();
    let fold_best_s = best(runs * 5, || {
        let mut windows = Windows::default();
        let folding = windows.folding(settings, Some(T0_MS));
        for reading in &readings {
            windows.fold(&folding, reading);
        }
        std::hint::black_box(windows);
    });

    let event = window_event();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let invocation_settings = InvocationSettings::default();
    let emf = EmfSink::new("IoT/Bench", Box::new(SharedBuffer::default()));
    let letters_dir = std::env::temp_dir().join(format!("time-windows-{}", std::process::id()));
    let letters = LocalDeadLetters {
        directory: letters_dir.clone(),
    };
    let now_ms = T0_MS + 300_000;
    let mut emitted = 0;
    let invocation_best_s = best(runs, || {
        let outputs = WindowOutputs {
            metrics: Some(&emf),
            table: None,
        };
        let (_, counts) = runtime
            .block_on(invocation_settings.process_windows(
                settings,
                &event,
                Invocation::new("bench", now_ms),
                outputs,
                &letters,
            ))
            .expect("the invocation succeeds");
        assert_eq!(counts.counts.readings_accepted, RECORDS);
        emitted = counts.aggregates_emitted;
    });
    let _ = std::fs::remove_dir_all(letters_dir);

    // 10,000 devices x 4 metrics, one minute at one reading a second.
    let mut windows = Windows::default();
    let folding = windows.folding(settings, None);
    let mut seed = 1u64;
    let bases = [
        ("temperature", 20.0),
        ("humidity", 50.0),
        ("pressure", 1000.0),
        ("co2", 400.0),
    ];
    let devices: Vec<String> = (0..10_000).map(|d| format!("sensor-{d}")).collect();
    for second in 0..60 {
        for (d, device) in devices.iter().enumerate() {
            for (metric, base) in bases {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let noise = ((seed >> 33) % 1000) as f64 / 100.0;
                let value = ((base + noise) * 100.0).round() / 100.0;
                let at = T0_MS + second * 1000 + (d as i64 % 1000);
                windows.fold(&folding, &reading(device, metric, value, at));
            }
        }
    }
    let state = encode_state(&windows);
    println!(
        "{}",
        json!({
            "records": RECORDS,
            "fold_best_s": fold_best_s,
            "invocation_best_s": invocation_best_s,
            "aggregates_emitted": emitted,
            "series_10000x4": windows.series.len(),
            "state_bytes_10000x4": state_bytes(&state),
        })
    );
}
