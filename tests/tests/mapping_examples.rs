//! The mapping file shipped in config/ (and quoted in the README) decodes
//! each reference payload as documented.

use e2e_tests::{parse_emf, repo_root, CapturedDeadLetters, EmittedMetric};
use serde_json::json;
use telemetry_core::config::pipeline_file::PipelineFile;
use telemetry_core::invocation::InvocationSettings;
use telemetry_core::sink::emf::EmfSink;
use telemetry_core::sink::SharedBuffer;

async fn run(event: serde_json::Value, now_ms: i64) -> (Vec<EmittedMetric>, usize) {
    let file = PipelineFile::load(&repo_root().join("config/reference-pipelines.toml")).unwrap();
    assert_eq!(file.namespace.as_deref(), Some("IoT/Telemetry"));
    let pipeline = InvocationSettings::from(file);
    let output = SharedBuffer::default();
    let emf = EmfSink::new("IoT/Telemetry", Box::new(output.clone()));
    let dead = CapturedDeadLetters::default();
    pipeline
        .process_metrics(event.to_string().as_bytes(), "r", now_ms, &emf, &dead)
        .await
        .unwrap();
    let letters = dead.letters.lock().unwrap().len();
    (parse_emf(&output.take()), letters)
}

#[tokio::test]
async fn gcp_lab_temperature_gets_a_registry_dimension() {
    let event = json!({
        "timestamp": 1645938060, "device": "temp-sensor-istanbul", "temperature": 17.95215062408679,
        "topic": "devices/temp-sensor-istanbul/events"
    });
    let (metrics, _) = run(event, 1_645_938_100_000).await;
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].metric, "temperature");
    assert_eq!(metrics[0].device, "temp-sensor-istanbul");
    assert_eq!(
        metrics[0].dimensions,
        vec![("registry".to_owned(), "iotlab-registry".to_owned())]
    );
    assert_eq!(metrics[0].timestamp_ms, 1_645_938_060_000);
}

#[tokio::test]
async fn host_status_takes_name_unit_and_value_from_the_payload() {
    let event = json!({"name": "memory usage (raspberrypi)", "unit": "Megabytes", "value": " 512 ",
                       "topic": "hosts/raspberrypi/status", "received_at": 1_645_938_061_000_i64});
    let (metrics, _) = run(event, 1_645_938_100_000).await;
    assert_eq!(metrics[0].metric, "memory usage (raspberrypi)");
    assert_eq!(metrics[0].unit, "Megabytes");
    assert_eq!(metrics[0].value, 512.0);
    assert_eq!(metrics[0].device, "raspberrypi");
}

#[tokio::test]
async fn co2_text_is_read_in_korean_time() {
    // The rule carries the text payload base64-encoded.
    let event =
        json!({"data": "MjAyMC03LTEzIDIyOjQzOjIzfDM1MDA=", "topic": "co2/raspberrypi/emissions"});
    let (metrics, letters) = run(event, 1_594_680_300_000).await;
    assert_eq!(letters, 0);
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].metric, "emissions");
    assert_eq!(metrics[0].value, 3500.0);
    // 2020-07-13 22:43:23 +09:00, carried under its minute (22:43:00), the
    // finest time CloudWatch keeps a standard-resolution datapoint at.
    assert_eq!(metrics[0].timestamp_ms, 1_594_647_780_000);
    assert_eq!(metrics[0].device, "raspberrypi");
}

#[tokio::test]
async fn nightlight_is_high_resolution_and_named_by_its_topic() {
    let event = json!({"light": 400, "topic": "nightlight-7f3a/telemetry", "received_at": 1_645_938_061_000_i64});
    let (metrics, _) = run(event.clone(), 1_645_938_100_000).await;
    assert_eq!(metrics[0].device, "nightlight-7f3a");
    assert_eq!(metrics[0].metric, "light");
    let output = SharedBuffer::default();
    let emf = EmfSink::new("N", Box::new(output.clone()));
    let pipeline = InvocationSettings {
        ..PipelineFile::load(&repo_root().join("config/reference-pipelines.toml"))
            .unwrap()
            .into()
    };
    pipeline
        .process_metrics(
            event.to_string().as_bytes(),
            "r",
            1_645_938_100_000,
            &emf,
            &CapturedDeadLetters::default(),
        )
        .await
        .unwrap();
    assert!(String::from_utf8(output.take())
        .unwrap()
        .contains("\"StorageResolution\":1"));
}

#[tokio::test]
async fn a_payload_that_breaks_its_mapping_is_dead_lettered_with_the_field() {
    let event =
        json!({"name": "cpu usage", "unit": "Celsius", "value": "48", "topic": "hosts/pi/status"});
    let (metrics, letters) = run(event, 1_645_938_100_000).await;
    assert!(metrics.is_empty());
    assert_eq!(letters, 1);
}
