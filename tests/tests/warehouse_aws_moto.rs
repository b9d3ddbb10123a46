//! telemetry-warehouse's AWS backends against a real moto server: Parquet
//! objects in S3 (read back by DuckDB), and Firehose -> S3 with batching and
//! retries of only the failed records.

use aws_sdk_firehose::types::ExtendedS3DestinationConfiguration;
use e2e_tests::{
    duckdb_query, recorded_actions, repo_root, sdk_config, start_recording, Canned, MotoServer,
    Sample, ThrottlingProxy,
};
use serde_json::{json, Value};
use telemetry_aws::firehose::FirehoseTables;
use telemetry_aws::s3::S3Objects;
use telemetry_core::config::pipeline_file::PipelineFile;
use telemetry_core::invocation::InvocationSettings;
use telemetry_core::warehouse::tables::{Cell, Schema, TableRows};
use telemetry_core::warehouse::TableWriter;
use telemetry_warehouse::parquet_tables::ParquetTables;

const NOW_MS: i64 = 1_645_938_300_000;

fn warehouse() -> InvocationSettings {
    PipelineFile::load(&repo_root().join("config/reference-pipelines.toml"))
        .unwrap()
        .into()
}

async fn object_keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let listing = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let mut keys: Vec<String> = listing
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    keys.sort();
    keys
}

async fn object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn parquet_in_s3_has_the_local_layout_and_reads_back() {
    let moto = MotoServer::start();
    let sdk = sdk_config(&moto.endpoint).await;
    let s3 = aws_sdk_s3::Client::new(&sdk);
    s3.create_bucket().bucket("warehouse").send().await.unwrap();
    let writer = ParquetTables {
        store: S3Objects::new(&sdk, "warehouse", "iot/"),
    };
    let sample = Sample::load("iot-rule--batch.json");
    let (response, counts) = warehouse()
        .process_warehouse(&sample.bytes, "req-s3", NOW_MS, &writer)
        .await
        .unwrap();
    assert_eq!(
        counts.readings_accepted,
        sample.metrics().len(),
        "{}",
        response.to_json()
    );

    let keys = object_keys(&s3, "warehouse").await;
    let tables: Vec<&str> = keys.iter().map(|k| k.split('/').nth(1).unwrap()).collect();
    assert_eq!(
        tables,
        vec!["co2_emissions", "readings", "sensordata"],
        "{keys:?}"
    );
    for key in &keys {
        assert!(
            key.contains("/date=2022-02-27/part-") && key.ends_with(".parquet"),
            "{key}"
        );
    }
    let sensordata = keys.iter().find(|k| k.contains("/sensordata/")).unwrap();
    let local = std::env::temp_dir().join(format!("iotpipe-s3-{}.parquet", std::process::id()));
    std::fs::write(&local, object(&s3, "warehouse", sensordata).await).unwrap();
    let rows = duckdb_query(&format!(
        "SELECT timestamp, device, temperature FROM read_parquet('{}')",
        local.display()
    ));
    assert_eq!(
        rows,
        vec![
            json!({"timestamp": 1_645_938_060_000_i64, "device": "temp-sensor-istanbul", "temperature": 17.95215062408679})
        ]
    );
    std::fs::remove_file(local).unwrap();
}

async fn delivery_stream(sdk: &aws_config::SdkConfig, s3: &aws_sdk_s3::Client, name: &str) {
    s3.create_bucket()
        .bucket("firehose-out")
        .send()
        .await
        .unwrap();
    aws_sdk_firehose::Client::new(sdk)
        .create_delivery_stream()
        .delivery_stream_name(name)
        .extended_s3_destination_configuration(
            ExtendedS3DestinationConfiguration::builder()
                .bucket_arn("arn:aws:s3:::firehose-out")
                .role_arn("arn:aws:iam::123456789012:role/firehose")
                .prefix("rows/")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

fn many_rows(count: usize) -> TableRows {
    let mut rows = TableRows::new(Schema::readings());
    for index in 0..count {
        rows.rows.push(vec![
            Cell::Timestamp(NOW_MS),
            Cell::Text(format!("device-{index}")),
            Cell::Text("temperature".into()),
            Cell::Float(index as f64),
            Cell::Text("None".into()),
            Cell::Text("{}".into()),
            Cell::Text("sqs".into()),
            Cell::Timestamp(NOW_MS),
            Cell::Text(format!("m-{index}")),
            Cell::Int(0),
        ]);
        rows.messages.push(index as u32);
    }
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn firehose_batches_at_500_records_and_delivers_to_s3() {
    let moto = MotoServer::start();
    let sdk = sdk_config(&moto.endpoint).await;
    let s3 = aws_sdk_s3::Client::new(&sdk);
    delivery_stream(&sdk, &s3, "telemetry-rows").await;
    start_recording(&moto.endpoint);
    let writer = FirehoseTables::new(&sdk, "telemetry-rows", 3);
    writer.write(&many_rows(1200), "b", NOW_MS).await.unwrap();

    let calls = recorded_actions(&moto.endpoint)
        .iter()
        .filter(|a| a.contains("firehose") || a.contains("POST"))
        .count();
    assert_eq!(calls, 3, "1200 records in calls of at most 500");
    let mut lines: Vec<Value> = Vec::new();
    for key in object_keys(&s3, "firehose-out").await {
        assert!(key.starts_with("rows/"), "{key}");
        let body = object(&s3, "firehose-out", &key).await;
        lines.extend(
            String::from_utf8(body)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    assert_eq!(lines.len(), 1200);
    assert_eq!(lines[0]["table"], "readings");
    assert_eq!(lines[0]["timestamp"], "2022-02-27T05:05:00.000Z");
}

#[tokio::test(flavor = "multi_thread")]
async fn firehose_resends_only_the_records_marked_failed() {
    let moto = MotoServer::start();
    let sdk = sdk_config(&moto.endpoint).await;
    let s3 = aws_sdk_s3::Client::new(&sdk);
    delivery_stream(&sdk, &s3, "telemetry-rows").await;
    // The first call "succeeds" for records 0 and 2 and fails record 1.
    let partial = Canned {
        status: 200,
        content_type: "application/x-amz-json-1.1",
        body: json!({"FailedPutCount": 1, "Encrypted": false, "RequestResponses": [
            {"RecordId": "r-0"},
            {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."},
            {"RecordId": "r-2"}
        ]})
        .to_string(),
    };
    let proxy = ThrottlingProxy::scripted(&moto.endpoint, vec![partial], false);
    let writer = FirehoseTables::new(&sdk_config(&proxy.endpoint).await, "telemetry-rows", 3);
    writer.write(&many_rows(3), "b", NOW_MS).await.unwrap();

    let bodies = proxy.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "one retry call");
    let retry: Value = serde_json::from_slice(&bodies[1]).unwrap();
    assert_eq!(
        retry["Records"].as_array().unwrap().len(),
        1,
        "only the failed record again"
    );
    let mut delivered = Vec::new();
    for key in object_keys(&s3, "firehose-out").await {
        delivered.extend(
            String::from_utf8(object(&s3, "firehose-out", &key).await)
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
    }
    assert_eq!(delivered.len(), 1);
    assert!(
        delivered[0].contains("\"device\":\"device-1\""),
        "{delivered:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn firehose_records_still_failing_are_reported_by_row() {
    let failure = |entries: Vec<Value>| Canned {
        status: 200,
        content_type: "application/x-amz-json-1.1",
        body: json!({"FailedPutCount": 1, "RequestResponses": entries}).to_string(),
    };
    let unavailable =
        json!({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."});
    // Row 1 fails in the first call and in every retry (which carry it alone).
    let script = vec![
        failure(vec![json!({"RecordId": "r-0"}), unavailable.clone()]),
        failure(vec![unavailable]),
    ];
    let moto = MotoServer::start();
    let proxy = ThrottlingProxy::scripted(&moto.endpoint, script, true);
    let writer = FirehoseTables::new(&sdk_config(&proxy.endpoint).await, "telemetry-rows", 3);
    let error = writer.write(&many_rows(2), "b", NOW_MS).await.unwrap_err();
    assert_eq!(error.failed_rows, Some(vec![1]), "{error}");
    assert!(
        error.reason.contains("ServiceUnavailableException"),
        "{error}"
    );
    assert_eq!(
        proxy.requests.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "max attempts"
    );
}
