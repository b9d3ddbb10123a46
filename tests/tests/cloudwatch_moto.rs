//! The `cloudwatch` sink against a real moto server: data read back with
//! GetMetricStatistics/GetMetricData, requests counted by moto's recorder and
//! by a throttling proxy.

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, Statistic};
use aws_smithy_types::DateTime;
use chrono::{DurationRound, TimeDelta, Utc};
use e2e_tests::{
    recorded_actions, recorded_requests, sdk_config, start_recording, CapturedDeadLetters,
    MotoServer, ThrottlingProxy,
};
use serde_json::Value;
use telemetry_aws::cloudwatch::CloudWatchSink;
use telemetry_core::invocation::InvocationSettings;

const NAMESPACE: &str = "IoT/Test";

/// An SQS event built with the official `aws_lambda_events` types, carrying
/// reference 000's payload for `devices` devices x `per_device` seconds.
fn sqs_event(devices: usize, per_device: usize, start_s: i64) -> Vec<u8> {
    use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
    let mut event = SqsEvent::default();
    for device in 0..devices {
        for second in 0..per_device {
            let body = serde_json::json!({
                "timestamp": start_s + second as i64,
                "device": format!("temp-sensor-{device:03}"),
                "temperature": 20.0 + (second % 10) as f64 * 0.5,
            });
            let mut message = SqsMessage::default();
            message.message_id = Some(format!("msg-{device}-{second}"));
            message.body = Some(body.to_string());
            message.event_source = Some("aws:sqs".into());
            event.records.push(message);
        }
    }
    serde_json::to_vec(&event).unwrap()
}

fn dimension(device: &str) -> Dimension {
    Dimension::builder().name("device").value(device).build()
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_readings_from_100_devices_take_one_call_and_read_back() {
    let moto = MotoServer::start();
    let sdk = sdk_config(&moto.endpoint).await;
    let sink = CloudWatchSink::new(&sdk, NAMESPACE, 3);

    // Start on a minute boundary, so 100 seconds span exactly two minutes.
    let start = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap() - TimeDelta::minutes(10);
    let event = sqs_event(100, 100, start.timestamp());
    start_recording(&moto.endpoint);
    let dead = CapturedDeadLetters::default();
    let (response, counts) = InvocationSettings::default()
        .process_metrics(&event, "req-1", Utc::now().timestamp_millis(), &sink, &dead)
        .await
        .unwrap();

    assert_eq!(
        response.to_json(),
        serde_json::json!({"batchItemFailures": []})
    );
    assert_eq!(counts.readings_accepted, 10_000);
    // 100 devices x 2 minutes = 200 datums with folded values: one request,
    // where the IoT rule's CloudWatch action makes 10,000.
    let puts: Vec<String> = recorded_actions(&moto.endpoint)
        .into_iter()
        .filter(|action| action == "PutMetricData")
        .collect();
    assert_eq!(puts.len(), 1, "PutMetricData calls");
    assert_eq!(counts.api_calls, 1);

    let client = sink.client();
    let statistics = client
        .get_metric_statistics()
        .namespace(NAMESPACE)
        .metric_name("temperature")
        .dimensions(dimension("temp-sensor-007"))
        .start_time(DateTime::from_secs(start.timestamp() - 60))
        .end_time(DateTime::from_secs(start.timestamp() + 300))
        .period(60)
        .statistics(Statistic::SampleCount)
        .statistics(Statistic::Sum)
        .statistics(Statistic::Maximum)
        .statistics(Statistic::Minimum)
        .send()
        .await
        .unwrap();
    let points = statistics.datapoints();
    let samples: f64 = points.iter().filter_map(|p| p.sample_count()).sum();
    let sum: f64 = points.iter().filter_map(|p| p.sum()).sum();
    let max = points
        .iter()
        .filter_map(|p| p.maximum())
        .fold(f64::MIN, f64::max);
    let min = points
        .iter()
        .filter_map(|p| p.minimum())
        .fold(f64::MAX, f64::min);
    let expected_sum: f64 = (0..100).map(|s| 20.0 + (s % 10) as f64 * 0.5).sum();
    assert_eq!(samples, 100.0);
    assert!(
        (sum - expected_sum).abs() < 1e-9,
        "sum {sum} != {expected_sum}"
    );
    assert_eq!((min, max), (20.0, 24.5));

    let data = client
        .get_metric_data()
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("t")
                .metric_stat(
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace(NAMESPACE)
                                .metric_name("temperature")
                                .dimensions(dimension("temp-sensor-099"))
                                .build(),
                        )
                        .period(60)
                        .stat("SampleCount")
                        .build(),
                )
                .build(),
        )
        .start_time(DateTime::from_secs(start.timestamp() - 60))
        .end_time(DateTime::from_secs(start.timestamp() + 300))
        .send()
        .await
        .unwrap();
    let total: f64 = data.metric_data_results()[0].values().iter().sum();
    assert_eq!(total, 100.0);
}

/// Requests are packed by an upper bound of their size: filled with values
/// whose text is as long as floats get, every body the SDK sends stays
/// under PutMetricData's 1 MB, and requests are still packed well.
#[tokio::test(flavor = "multi_thread")]
async fn full_requests_stay_under_one_megabyte_as_the_sdk_sends_them() {
    use telemetry_core::reading::Reading;
    use telemetry_core::sink::cloudwatch::{plan_requests, MAX_REQUEST_BYTES};
    use telemetry_core::sink::MetricsSink;
    let moto = MotoServer::start();
    let sdk = sdk_config(&moto.endpoint).await;
    let sink = CloudWatchSink::new(&sdk, NAMESPACE, 1);
    let minute_ms = (Utc::now().timestamp() / 60 - 5) * 60_000;
    // 150 distinct 17-digit values per datum, negative with negative
    // exponents: the longest text a float takes.
    let readings: Vec<Reading> = (0..30_000u32)
        .map(|i| Reading {
            device: format!("sensor-with-a-long-device-name-{:03}", i % 200).into(),
            metric: "temperature".into(),
            value: -(1.234_567_890_123_456_7e-100 * (1.0 + f64::from(i) * 1e-9)),
            unit: telemetry_core::payload::unit::Unit::None,
            timestamp_ms: minute_ms,
            dimensions: Vec::new(),
            high_resolution: false,
            message: i,
        })
        .collect();
    let planned = plan_requests(&readings);
    assert!(planned.len() >= 2, "the batch must fill a request");

    start_recording(&moto.endpoint);
    let delivery = sink.send(&readings).await;
    assert!(
        delivery.retry.is_empty() && delivery.refused.is_empty(),
        "{:?}",
        delivery.error
    );
    let bodies: Vec<Vec<u8>> = recorded_requests(&moto.endpoint)
        .into_iter()
        .filter(|(action, _)| action == "PutMetricData")
        .map(|(_, body)| body)
        .collect();
    assert_eq!(bodies.len(), planned.len());
    for (body, request) in bodies.iter().zip(&planned) {
        assert!(body.len() <= 1_000_000, "{} bytes", body.len());
        let estimate: usize = request.datums.iter().map(|d| d.estimated_bytes()).sum();
        // The estimate covers the datums; the action, version and namespace
        // fit in the 1,000 bytes MAX_REQUEST_BYTES leaves.
        assert!(
            body.len() <= estimate + 1_000,
            "{} bytes > estimate {estimate}",
            body.len()
        );
    }
    // Packed well: every request but the last is at least 3/4 full.
    for body in &bodies[..bodies.len() - 1] {
        assert!(
            body.len() >= MAX_REQUEST_BYTES * 3 / 4,
            "{} bytes",
            body.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_retried_and_persistent_failure_is_reported_per_record() {
    let moto = MotoServer::start();
    let start = Utc::now().timestamp() - 120;
    let now_ms = Utc::now().timestamp_millis();
    let dead = CapturedDeadLetters::default();

    // Throttled twice, then through: the SDK's retry delivers everything.
    let proxy = ThrottlingProxy::start(&moto.endpoint, 2);
    let sdk = sdk_config(&proxy.endpoint).await;
    let sink = CloudWatchSink::new(&sdk, NAMESPACE, 5);
    let (response, _) = InvocationSettings::default()
        .process_metrics(&sqs_event(2, 3, start), "req-2", now_ms, &sink, &dead)
        .await
        .unwrap();
    assert_eq!(
        response.to_json()["batchItemFailures"],
        serde_json::json!([])
    );
    assert_eq!(proxy.requests.load(std::sync::atomic::Ordering::SeqCst), 3);

    // Throttled on every attempt: each record is reported for retry, none is lost.
    let proxy = ThrottlingProxy::start(&moto.endpoint, usize::MAX);
    let sdk = sdk_config(&proxy.endpoint).await;
    let sink = CloudWatchSink::new(&sdk, NAMESPACE, 2);
    let (response, counts) = InvocationSettings::default()
        .process_metrics(&sqs_event(2, 3, start), "req-3", now_ms, &sink, &dead)
        .await
        .unwrap();
    let failures: Vec<Value> = response.to_json()["batchItemFailures"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(failures.len(), 6, "{failures:?}");
    assert_eq!(counts.retried, 6);
    assert_eq!(
        proxy.requests.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "max attempts"
    );
    assert!(
        dead.letters.lock().unwrap().is_empty(),
        "transient failures are retried, not dead-lettered"
    );
}

/// Scripted HTTP faults between the sink and moto: 500s, a reset
/// connection, an answer cut short and a slow answer are retried (the
/// SDK's backoff, then `batchItemFailures` and redelivery) until every
/// reading is stored; a 400 the request itself causes is permanent, so its
/// records are dead-lettered, not retried forever. A cut answer may store a
/// reading twice (CloudWatch is at-least-once), never zero times.
#[tokio::test(flavor = "multi_thread")]
async fn http_faults_end_with_every_reading_stored_or_dead_lettered() {
    use e2e_tests::{Canned, Step};
    let moto = MotoServer::start();
    let start = Utc::now().timestamp() - 120;
    let now_ms = Utc::now().timestamp_millis();
    let scripts: Vec<(&str, Vec<Step>, bool)> = vec![
        (
            "500 twice",
            vec![Step::Respond(Canned::internal_error()); 2],
            false,
        ),
        ("connection reset", vec![Step::Reset], false),
        ("answer cut short", vec![Step::Truncate], false),
        (
            "a slow answer",
            vec![Step::Delay(std::time::Duration::from_secs(2))],
            false,
        ),
        (
            "500 on every attempt, then healed",
            vec![Step::Respond(Canned::internal_error()); 8],
            false,
        ),
        (
            "400 invalid parameter",
            vec![Step::Respond(Canned::invalid_parameter())],
            true,
        ),
    ];
    for (index, (name, script, permanent)) in scripts.into_iter().enumerate() {
        let namespace = format!("IoT/Fault{index}");
        let proxy = ThrottlingProxy::steps(&moto.endpoint, script, false);
        let sdk = sdk_config(&proxy.endpoint).await;
        let sink = CloudWatchSink::new(&sdk, &namespace, 3);
        let dead = CapturedDeadLetters::default();
        let mut event = sqs_event(2, 3, start);
        let mut deliveries = 0;
        loop {
            deliveries += 1;
            assert!(deliveries <= 6, "{name}: still failing");
            let (response, _) = InvocationSettings::default()
                .process_metrics(
                    &event,
                    &format!("fault-{index}-{deliveries}"),
                    now_ms,
                    &sink,
                    &dead,
                )
                .await
                .unwrap();
            let failed = e2e_tests::retry_ids(&response.to_json());
            if failed.is_empty() {
                break;
            }
            // SQS redelivers exactly the reported records.
            let mut redelivered: Value = serde_json::from_slice(&event).unwrap();
            redelivered["Records"]
                .as_array_mut()
                .unwrap()
                .retain(|record| failed.iter().any(|id| record["messageId"] == id.as_str()));
            event = serde_json::to_vec(&redelivered).unwrap();
        }
        let letters = dead.letters.lock().unwrap().len();
        let mut stored = 0.0;
        for device in ["temp-sensor-000", "temp-sensor-001"] {
            let statistics = sink
                .client()
                .get_metric_statistics()
                .namespace(&namespace)
                .metric_name("temperature")
                .dimensions(dimension(device))
                .start_time(DateTime::from_secs(start - 60))
                .end_time(DateTime::from_secs(start + 300))
                .period(60)
                .statistics(Statistic::SampleCount)
                .send()
                .await
                .unwrap();
            stored += statistics
                .datapoints()
                .iter()
                .filter_map(|point| point.sample_count())
                .sum::<f64>();
        }
        if permanent {
            assert_eq!(
                (letters, stored),
                (6, 0.0),
                "{name}: dead-lettered, not stored"
            );
        } else {
            assert_eq!(letters, 0, "{name}: nothing dead-lettered");
            assert!(stored >= 6.0, "{name}: {stored} of 6 readings stored");
            if name != "answer cut short" {
                assert_eq!(stored, 6.0, "{name}: each reading once");
            }
        }
        assert!(
            proxy.requests.load(std::sync::atomic::Ordering::SeqCst) >= 2 || permanent,
            "{name}: the fault was met"
        );
    }
}
