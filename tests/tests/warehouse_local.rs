//! telemetry-warehouse on its embedded default: Parquet files in a local
//! directory, read back by DuckDB (an independent reader).

use std::path::{Path, PathBuf};

use e2e_tests::{duckdb_query, repo_root, scratch_dir, Sample};
use serde_json::{json, Value};
use telemetry_core::config::pipeline_file::PipelineFile;
use telemetry_core::invocation::InvocationSettings;
use telemetry_core::warehouse::LocalDirectory;
use telemetry_warehouse::parquet_tables::ParquetTables;

const NOW_MS: i64 = 1_645_938_300_000; // 2022-02-27T05:05:00Z

fn warehouse() -> InvocationSettings {
    PipelineFile::load(&repo_root().join("config/reference-pipelines.toml"))
        .unwrap()
        .into()
}

async fn ingest(dir: &Path, file: &str, request_id: &str) -> Value {
    let writer = ParquetTables {
        store: LocalDirectory {
            root: dir.to_path_buf(),
        },
    };
    let event = std::fs::read(repo_root().join("events").join(file)).unwrap();
    let (response, _) = warehouse()
        .process_warehouse(&event, request_id, NOW_MS, &writer)
        .await
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    response.to_json()
}

fn table(dir: &Path, name: &str) -> String {
    format!(
        "read_parquet('{}/{name}/**/*.parquet', hive_partitioning = true)",
        dir.display()
    )
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn reference_tables_land_as_parquet_that_duckdb_reads() {
    let dir = scratch_dir("warehouse");
    let samples = [
        "sqs--temp.json",
        "iot-rule--batch.json",
        "pubsub-push--tweet.json",
        "malformed--sqs-mixed-batch.json",
    ];
    assert_eq!(
        ingest(&dir, samples[0], "req-a").await,
        json!({"batchItemFailures": []})
    );
    ingest(&dir, samples[1], "req-b").await;
    ingest(&dir, samples[2], "req-c").await;
    let mixed = ingest(&dir, samples[3], "req-d").await;
    assert_eq!(
        mixed,
        json!({"batchItemFailures": []}),
        "rejected records are dead-lettered, not retried"
    );

    // Reference 000's query, unchanged.
    let rows = duckdb_query(&format!(
        "SELECT timestamp, device, temperature FROM {} ORDER BY timestamp DESC LIMIT 100",
        table(&dir, "sensordata")
    ));
    // One row per temperature reading of the samples.
    let temperatures: usize = samples
        .iter()
        .map(|file| Sample::load(file).metrics_named("temperature"))
        .sum();
    assert_eq!(rows.len(), temperatures, "{rows:?}");
    for row in &rows {
        assert_eq!(
            row,
            &json!({"timestamp": 1_645_938_060_000_i64, "device": "temp-sensor-istanbul", "temperature": 17.95215062408679})
        );
    }

    // Reference 002's table: one from the IoT rule batch (base64 text), one
    // from the mixed batch (2020, too old for CloudWatch, fine for a warehouse).
    let rows = duckdb_query(&format!(
        "SELECT date_time, emissions FROM {} ORDER BY date_time",
        table(&dir, "co2_emissions")
    ));
    assert_eq!(
        rows,
        vec![
            json!({"date_time": 1_594_680_203_000_i64, "emissions": 3500.0}),
            json!({"date_time": 1_645_938_203_000_i64, "emissions": 3500.0}),
        ]
    );

    // Reference 001's table, the id exact beyond 2^53.
    let rows = duckdb_query(&format!(
        "SELECT id::VARCHAR AS id, created_at, text FROM {}",
        table(&dir, "tweets")
    ));
    assert_eq!(
        rows,
        vec![
            json!({"id": "1419657712345678848", "created_at": 1_627_310_253_000_i64, "text": "Tesla's new battery day announcement is live"})
        ]
    );

    // Every reading in the long table, with where it came from.
    let rows = duckdb_query(&format!(
        "SELECT device, metric, value, unit, source, dimensions FROM {} ORDER BY device, metric, source",
        table(&dir, "readings")
    ));
    let summary: Vec<(String, String, f64, String)> = rows
        .iter()
        .map(|r| {
            (
                r["device"].as_str().unwrap().into(),
                r["metric"].as_str().unwrap().into(),
                r["value"].as_f64().unwrap(),
                r["source"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "nightlight-7f3a".into(),
                "light".into(),
                400.0,
                "iot-rule".into()
            ),
            (
                "nightlight-7f3a".into(),
                "light".into(),
                400.0,
                "sqs".into()
            ),
            (
                "raspberrypi".into(),
                "cpu usage (raspberrypi)".into(),
                42.0,
                "iot-rule".into()
            ),
            (
                "raspberrypi-co2".into(),
                "value".into(),
                3500.0,
                "iot-rule".into()
            ),
            (
                "temp-sensor-istanbul".into(),
                "temperature".into(),
                17.95215062408679,
                "iot-rule".into()
            ),
            (
                "temp-sensor-istanbul".into(),
                "temperature".into(),
                17.95215062408679,
                "sqs".into()
            ),
            (
                "temp-sensor-istanbul".into(),
                "temperature".into(),
                17.95215062408679,
                "sqs".into()
            ),
            ("unknown".into(), "value".into(), 3500.0, "sqs".into()),
        ]
    );
    assert!(rows.iter().all(|r| r["dimensions"] == "{}"));

    // Rejected records, with reason and raw payload: the mixed batch's, as
    // its expectation lists them.
    let rows = duckdb_query(&format!(
        "SELECT message_id, reason, payload FROM {} ORDER BY message_id",
        table(&dir, "dead_letter")
    ));
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["message_id"].as_str().unwrap())
        .collect();
    let batch = Sample::load(samples[3]);
    let mut letters = batch.warehouse_dead_letters();
    letters.sort();
    let expected_ids: Vec<&str> = letters.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, expected_ids);
    for (row, (id, reason)) in rows.iter().zip(&letters) {
        assert_eq!(row["payload"], batch.sqs_body(id), "{id}");
        assert!(
            row["reason"].as_str().unwrap().contains(reason),
            "{id}: {row}"
        );
    }

    // One file per table per invocation.
    let files = parquet_files(&dir);
    let per_table = |name: &str| {
        files
            .iter()
            .filter(|f| f.starts_with(dir.join(name)))
            .count()
    };
    assert_eq!(per_table("sensordata"), 3);
    assert_eq!(per_table("readings"), 3);
    assert_eq!(per_table("tweets"), 1);
    assert_eq!(per_table("dead_letter"), 1);
    assert!(
        files
            .iter()
            .all(|f| f.to_str().unwrap().contains("/date=2022-02-27/part-")),
        "{files:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn hostile_device_names_are_data_and_duplicates_are_removable_by_query() {
    let dir = scratch_dir("hostile");
    let writer = ParquetTables {
        store: LocalDirectory { root: dir.clone() },
    };
    let event = json!({"Records": [
        {"messageId": "m-1", "eventSource": "aws:sqs", "body": r#"{"device": "../../etc", "temperature": 1.5, "timestamp": 1645938060}"#},
        {"messageId": "m-2", "eventSource": "aws:sqs", "body": r#"{"device": "x'; DROP TABLE readings;--", "temperature": 2.5, "timestamp": 1645938060}"#},
    ]})
    .to_string();
    // Delivered twice, as at-least-once sources do.
    for request in ["first", "again"] {
        warehouse()
            .process_warehouse(event.as_bytes(), request, NOW_MS, &writer)
            .await
            .unwrap();
    }
    for file in parquet_files(&dir) {
        assert!(
            file.starts_with(&dir),
            "{} escaped the warehouse",
            file.display()
        );
    }
    let all = duckdb_query(&format!(
        "SELECT count(*) AS n FROM {}",
        table(&dir, "readings")
    ));
    assert_eq!(all[0]["n"], 4);
    // The README's deduplication query.
    let unique = duckdb_query(&format!(
        "SELECT device, value FROM {} QUALIFY row_number() OVER (PARTITION BY message_id, message_row ORDER BY received_at) = 1 ORDER BY value",
        table(&dir, "readings")
    ));
    assert_eq!(
        unique,
        vec![
            json!({"device": "../../etc", "value": 1.5}),
            json!({"device": "x'; DROP TABLE readings;--", "value": 2.5})
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn make_query_runs_the_reference_query() {
    let dir = scratch_dir("query");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(ingest(&dir, "sqs--temp.json", "q"));
    let output = std::process::Command::new(repo_root().join(".venv/bin/python"))
        .arg(repo_root().join("tools/query.py"))
        .env("WAREHOUSE_URL", &dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("temp-sensor-istanbul") && text.contains("17.95215062408679"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
