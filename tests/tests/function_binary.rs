//! The real `telemetry-metrics` binary, run against a local Lambda Runtime
//! API, configured only through its environment: CloudWatch and S3 dead
//! letters on moto via `AWS_ENDPOINT_URL`, and the default EMF sink.

use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use aws_smithy_types::DateTime;
use chrono::Utc;
use e2e_tests::runtime::{Function, LocalRuntime};
use e2e_tests::{parse_emf, sdk_config, MotoServer, Sample};
use serde_json::{json, Value};

fn sqs_event(bodies: &[(String, String)]) -> Vec<u8> {
    let records: Vec<Value> = bodies
        .iter()
        .map(|(id, body)| json!({"messageId": id, "body": body, "eventSource": "aws:sqs", "attributes": {"SentTimestamp": "0"}}))
        .collect();
    serde_json::to_vec(&json!({"Records": records})).unwrap()
}

fn reference_000(device: &str, timestamp_s: i64, temperature: f64) -> String {
    // Indented, as the lab's simulator sends it.
    format!("{{\n  \"timestamp\": {timestamp_s},\n  \"device\": \"{device}\",\n  \"temperature\": {temperature}\n}}")
}

#[tokio::test(flavor = "multi_thread")]
async fn cloudwatch_sink_and_s3_dead_letters_through_the_binary() {
    let moto = MotoServer::start();
    let sdk = sdk_config(&moto.endpoint).await;
    let s3 = aws_sdk_s3::Client::new(&sdk);
    s3.create_bucket()
        .bucket("telemetry-dead-letters")
        .send()
        .await
        .unwrap();

    let runtime = LocalRuntime::start();
    let mut env = moto.env();
    env.extend([
        ("METRICS_SINK", "cloudwatch".to_owned()),
        ("METRICS_NAMESPACE", "IoT/E2E".to_owned()),
        (
            "DEAD_LETTER_URL",
            "s3://telemetry-dead-letters/telemetry-metrics".to_owned(),
        ),
    ]);
    let function = Function::start(&runtime, &env);

    let now = Utc::now().timestamp();
    let event = sqs_event(&[
        (
            "m-1".into(),
            reference_000("temp-sensor-istanbul", now - 60, 17.95215062408679),
        ),
        (
            "m-2".into(),
            reference_000("temp-sensor-istanbul", now - 59, 17.93978667617052),
        ),
        ("m-3".into(), "{\"temperature\": 17.9".into()),
    ]);
    let response = runtime
        .invoke(&event, Duration::from_secs(30))
        .expect("invocation succeeds");
    assert_eq!(response, json!({"batchItemFailures": []}));

    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk);
    let statistics = cloudwatch
        .get_metric_statistics()
        .namespace("IoT/E2E")
        .metric_name("temperature")
        .dimensions(
            Dimension::builder()
                .name("device")
                .value("temp-sensor-istanbul")
                .build(),
        )
        .start_time(DateTime::from_secs(now - 300))
        .end_time(DateTime::from_secs(now + 60))
        .period(60)
        .statistics(Statistic::SampleCount)
        .statistics(Statistic::Maximum)
        .send()
        .await
        .unwrap();
    let samples: f64 = statistics
        .datapoints()
        .iter()
        .filter_map(|p| p.sample_count())
        .sum();
    let max = statistics
        .datapoints()
        .iter()
        .filter_map(|p| p.maximum())
        .fold(f64::MIN, f64::max);
    assert_eq!(samples, 2.0);
    assert_eq!(max, 17.95215062408679);

    let objects = s3
        .list_objects_v2()
        .bucket("telemetry-dead-letters")
        .prefix("telemetry-metrics/")
        .send()
        .await
        .unwrap();
    assert_eq!(
        objects.contents().len(),
        1,
        "one dead-letter object per invocation"
    );
    let key = objects.contents()[0].key().unwrap().to_owned();
    let body = s3
        .get_object()
        .bucket("telemetry-dead-letters")
        .key(&key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let letter: Value = serde_json::from_slice(body.strip_suffix(b"\n").unwrap()).unwrap();
    assert_eq!(letter["message_id"], "m-3");
    assert_eq!(letter["payload"], "{\"temperature\": 17.9");
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{letter}"
    );

    // Structured JSON logs carrying the counts.
    let logs = function.output();
    let processed: Vec<Value> = logs
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|log| log["fields"]["message"] == "processed")
        .collect();
    assert_eq!(processed.len(), 1, "{logs:#?}");
    assert_eq!(processed[0]["fields"]["readings_accepted"], 2);
    assert_eq!(processed[0]["fields"]["dead_lettered"], 1);
    assert!(
        logs.iter()
            .any(|line| line.contains("00000000-0000-4000-8000-000000000001")),
        "request id in the logs: {logs:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn default_emf_sink_writes_metrics_to_stdout() {
    let runtime = LocalRuntime::start();
    let dead_letters = std::env::temp_dir().join(format!("tm-dead-{}", std::process::id()));
    let function = Function::start(
        &runtime,
        &[("DEAD_LETTER_URL", dead_letters.display().to_string())],
    );
    let now = Utc::now().timestamp();
    // Reference 004: the device id is in the topic.
    let event =
        json!({"light": 400, "topic": "nightlight-7f3a/telemetry", "received_at": now * 1000});
    let response = runtime
        .invoke(event.to_string().as_bytes(), Duration::from_secs(30))
        .expect("invocation succeeds");
    assert_eq!(response["readings_accepted"], 1);
    let output = function.output().join("\n");
    let emf: String = output
        .lines()
        // Device metrics; the pipeline's own counts carry `function` instead.
        .filter(|l| l.contains("\"_aws\"") && l.contains("\"device\""))
        .collect::<Vec<_>>()
        .join("\n");
    let metrics = parse_emf(emf.as_bytes());
    assert_eq!(metrics.len(), 1, "{output}");
    assert_eq!(metrics[0].device, "nightlight-7f3a");
    assert_eq!(metrics[0].metric, "light");
    assert_eq!(metrics[0].value, 400.0);
    assert_eq!(metrics[0].namespace, "IoT/Telemetry");

    // Lambda only accepts JSON payloads; should one arrive broken anyway, the
    // function gets its bytes untouched and dead-letters them whole, no panic.
    let response = runtime
        .invoke(b"[1, 2", Duration::from_secs(30))
        .expect("a broken event is answered");
    assert_eq!(response["dead_lettered"], 1, "{response}");
    assert!(
        response["reason"].as_str().unwrap().contains("not JSON"),
        "{response}"
    );
    let letters: String = std::fs::read_dir(&dead_letters)
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    let letter: Value = letters
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|letter| letter["payload"] == "[1, 2")
        .unwrap_or_else(|| panic!("the broken event is not dead-lettered: {letters}"));
    assert_eq!(letter["payload_encoding"], "utf-8", "{letter}");
    // And the function is still serving.
    let again = runtime
        .invoke(event.to_string().as_bytes(), Duration::from_secs(30))
        .expect("still serving");
    assert_eq!(again["readings_accepted"], 1);
    let _ = std::fs::remove_dir_all(dead_letters);
}

#[tokio::test(flavor = "multi_thread")]
async fn warehouse_binary_writes_parquet_tables_from_its_environment() {
    let runtime = LocalRuntime::start();
    let warehouse = std::env::temp_dir().join(format!("iotpipe-wh-bin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&warehouse);
    let _function = Function::start_binary(
        "telemetry-warehouse",
        &runtime,
        &[
            ("WAREHOUSE_URL", warehouse.display().to_string()),
            (
                "PIPELINE_CONFIG",
                e2e_tests::repo_root()
                    .join("config/reference-pipelines.toml")
                    .display()
                    .to_string(),
            ),
            ("PUBSUB_VERIFICATION_TOKEN", "sample-token".to_owned()),
        ],
    );
    let sample = Sample::load("pubsub-http--temp.json");
    let response = runtime
        .invoke(&sample.bytes, Duration::from_secs(30))
        .expect("invocation succeeds");
    assert_eq!(response["statusCode"], 200, "{response}");
    let rows = e2e_tests::duckdb_query(&format!(
        "SELECT device, temperature FROM read_parquet('{}/sensordata/**/*.parquet')",
        warehouse.display()
    ));
    assert_eq!(
        rows,
        vec![json!({"device": "temp-sensor-istanbul", "temperature": 17.95215062408679})]
    );
    let readings = e2e_tests::duckdb_query(&format!(
        "SELECT count(*) AS n FROM read_parquet('{}/readings/**/*.parquet')",
        warehouse.display()
    ));
    assert_eq!(readings[0]["n"], sample.metrics().len());
    std::fs::remove_dir_all(&warehouse).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undelivered_invocation_fails_with_an_error_type_that_names_it() {
    let runtime = LocalRuntime::start();
    // CloudWatch at a loopback port where nothing listens: the connection
    // is refused, a transient failure, so the IoT rule's invocation fails
    // and Lambda retries it.
    let closed = format!("http://127.0.0.1:{}", e2e_tests::free_port());
    let env = [
        ("METRICS_SINK", "cloudwatch".to_owned()),
        ("CLOUDWATCH_MAX_ATTEMPTS", "1".to_owned()),
        ("AWS_ENDPOINT_URL", closed),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ];
    let function = Function::start(&runtime, &env);
    let reading = reference_000("temp-sensor-istanbul", Utc::now().timestamp() - 60, 17.9);
    let error = runtime
        .invoke(reading.as_bytes(), Duration::from_secs(30))
        .expect_err("the reading could not be delivered");
    assert_eq!(error["errorType"], "Telemetry.NotDelivered", "{error}");
    let message = error["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("1 of 1 messages were not delivered") && message.contains("PutMetricData"),
        "{message}"
    );
    drop(function);
}

#[tokio::test(flavor = "multi_thread")]
async fn device_commands_binary_sends_reference_004_commands_through_moto() {
    let moto = MotoServer::start();
    let scope = "AWS4-HMAC-SHA256 Credential=testing/20261201/us-east-1/iot/aws4_request, SignedHeaders=host, Signature=0";
    let (status, _) = e2e_tests::http_request_with_headers(
        &moto.endpoint,
        "POST",
        "/things/nightlight-7f3a",
        &[
            ("Authorization", scope),
            ("Content-Type", "application/json"),
        ],
        b"{}",
    );
    assert_eq!(status, 200);
    e2e_tests::start_recording(&moto.endpoint);
    let runtime = LocalRuntime::start();
    let mut env = moto.env();
    let dead_letters = std::env::temp_dir().join(format!("dc-dead-{}", std::process::id()));
    env.extend([
        (
            "PIPELINE_CONFIG",
            e2e_tests::repo_root()
                .join("config/reference-pipelines.toml")
                .display()
                .to_string(),
        ),
        ("DEAD_LETTER_URL", dead_letters.display().to_string()),
    ]);
    let function = Function::start_binary("device-commands", &runtime, &env);
    // The IoT rule's Lambda action: one reading, the topic from the rule.
    for light in [250, 400] {
        let event = json!({"light": light, "topic": "nightlight-7f3a/telemetry"});
        let response = runtime
            .invoke(event.to_string().as_bytes(), Duration::from_secs(30))
            .expect("invocation succeeds");
        assert_eq!(response["messages"], 1, "{response}");
    }
    // Reference 004's rule: always, led_on = light < 300.
    let published: Vec<Value> = e2e_tests::recorded_requests(&moto.endpoint)
        .into_iter()
        .filter(|(action, _)| action.contains("/topics/nightlight-7f3a%2Fcommands"))
        .map(|(_, body)| serde_json::from_slice(&body).unwrap())
        .collect();
    assert_eq!(
        published,
        [json!({"led_on": true}), json!({"led_on": false})]
    );
    // Its own counts, as EMF.
    let output = function.output().join("\n");
    assert!(
        output.contains("\"CommandsSent\":1")
            && output.contains("\"function\":\"device-commands\""),
        "{output}"
    );
    let _ = std::fs::remove_dir_all(dead_letters);
}
