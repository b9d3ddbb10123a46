//! `iotpipe run` end to end, small: all four reference fleets and a few
//! hostile messages through the embedded broker, the template's rules and
//! the real function binaries. Every message is accounted for (accepted, or
//! dead-lettered with a reason), reference 000's query returns the newest
//! rows, the window maxima equal the maxima of the rows written, and the
//! night lights got their commands.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e_tests::{duckdb_query, free_port, function_binary, repo_root, scratch_dir};
use serde_json::Value;

const WINDOW_SECONDS: i64 = 2;

/// `report.json` of the run that wrote to `out`.
fn report(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

/// The DuckDB source for one table of a run's Parquet warehouse.
fn table(out: &Path, name: &str) -> String {
    format!(
        "read_parquet('{}/warehouse/{name}/**/*.parquet', hive_partitioning = true)",
        out.display()
    )
}

/// `iotpipe run --out <out> <args>` to its end, which must be a success;
/// what it printed.
fn run_to_end(out: &Path, args: &[&str]) -> String {
    let output = Command::new(function_binary("iotpipe"))
        .args(["run", "--out", out.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{said}");
    said
}

#[test]
fn the_references_run_end_to_end_and_every_message_is_accounted_for() {
    let out = scratch_dir("local-pipeline");
    let port = free_port();
    let config = repo_root().join("config/reference-pipelines.toml");
    let mut run = Command::new(function_binary("iotpipe"))
        .args([
            "run",
            "--out",
            out.to_str().unwrap(),
            "--listen",
            &port.to_string(),
        ])
        .args([
            "--messages",
            "20",
            "--rate",
            "10",
            "--window-seconds",
            &WINDOW_SECONDS.to_string(),
        ])
        .arg("--env")
        .arg(format!(
            "telemetry-warehouse:PIPELINE_CONFIG={}",
            config.display()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("iotpipe runs");
    let mut stdout = BufReader::new(run.stdout.take().unwrap()).lines();
    let first = stdout.next().expect("a first line").unwrap();
    assert!(first.starts_with("iotpipe run:"), "{first}");

    // Hostile messages from another publisher while the devices run.
    let publish = |topic: &str, payload: &str| {
        let status = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-q",
                "1",
                "-t",
                topic,
                "-m",
                payload,
            ])
            .status()
            .expect("mosquitto_pub runs (Debian's mosquitto-clients)");
        assert!(status.success());
    };
    publish(
        "devices/bad-1/telemetry",
        r#"{"device": "bad-1", "temperature": "hot"}"#,
    );
    publish("devices/bad-1/unknown", "{}");
    publish("devices/bad-1/telemetry", "not json");

    let rest: Vec<String> = stdout.map_while(Result::ok).collect();
    let status = run.wait().unwrap();
    let said = rest.join("\n");
    assert!(status.success(), "{said}");

    let report = report(&out);
    let total = &report["total"];
    let number = |value: &Value| value.as_u64().unwrap();
    // 2 sensors, 1 host, 1 CO2 meter, 2 night lights, 20 messages each; 3 hostile.
    assert_eq!(number(&total["sent"]), 6 * 20 + 3, "{said}");
    assert_eq!(
        number(&total["sent"]),
        number(&total["accepted"]) + number(&total["dead_lettered"])
    );
    assert_eq!(
        number(&total["dead_lettered"]),
        3,
        "{}",
        report["dead_letter_reasons"]
    );
    for fleet in report["fleets"].as_array().unwrap() {
        assert_eq!(fleet["sent"], fleet["acknowledged"], "{fleet}");
        assert_eq!(fleet["sent"], fleet["accepted"], "{fleet}");
    }
    let reasons = report["dead_letter_reasons"].to_string();
    assert!(
        reasons.contains("no enabled rule selects messages on devices/bad-1/unknown"),
        "{reasons}"
    );
    let unrouted = std::fs::read_to_string(out.join("dead-letters/local-pipeline.jsonl")).unwrap();
    assert!(
        unrouted.contains("devices/bad-1/unknown") && unrouted.contains("\"payload\":\"{}\""),
        "{unrouted}"
    );
    // `SELECT *, topic() ...` cannot merge a payload that is not a JSON
    // object: the rules engine dead-letters it with its raw bytes.
    assert!(
        unrouted.contains("SELECT * with other fields")
            && unrouted.contains("\"payload\":\"not json\""),
        "{unrouted}"
    );
    for rule in [
        "StatusRule",
        "CommandsRule",
        "TelemetryRule",
        "TextTelemetryRule",
    ] {
        assert!(
            number(&report["rules"][rule]) > 0,
            "{rule}: {}",
            report["rules"]
        );
    }
    // The first decision for each night light is always sent.
    assert!(number(&total["commands_sent"]) >= 2, "{total}");
    assert_eq!(total["commands_sent"], total["commands_applied"], "{said}");
    assert!(said.contains("nightlight-1: LED"), "{said}");
    assert!(
        report["metrics"]["telemetry-metrics"]["temp-sensor-istanbul"]["temperature"]["count"]
            == 20,
        "{}",
        report["metrics"]
    );

    // Reference 000's query over the run's warehouse.
    let table = |name: &str| table(&out, name);
    let newest = duckdb_query(&format!(
        "SELECT timestamp, device, temperature FROM {} ORDER BY timestamp DESC LIMIT 100",
        table("sensordata")
    ));
    assert_eq!(newest.len(), 40, "both sensors' 20 readings");
    let latest = duckdb_query(&format!(
        "SELECT max(timestamp) AS t FROM {}",
        table("sensordata")
    ));
    assert_eq!(newest[0]["timestamp"], latest[0]["t"]);

    // The windows function's maxima equal the maxima of the rows written.
    let expected = duckdb_query(&format!(
        "SELECT device, (epoch(timestamp)::BIGINT // {WINDOW_SECONDS}) * {WINDOW_SECONDS} * 1000 AS start, max(value) AS max \
         FROM {} WHERE metric = 'temperature' GROUP BY ALL ORDER BY device, start",
        table("readings")
    ));
    let windows = duckdb_query(&format!(
        "SELECT device, epoch_ms(window_start) AS start, max(max) AS max FROM {} \
         WHERE metric = 'temperature' GROUP BY ALL ORDER BY device, start",
        table("window_aggregates")
    ));
    assert!(!windows.is_empty());
    assert_eq!(windows, expected);

    let chart = std::fs::read_to_string(out.join("chart.html")).unwrap();
    assert_eq!(chart.matches("<svg").count(), 3);
}

/// Runs `iotpipe run` expecting it to fail; its one line of error.
fn refused(args: &[&str]) -> String {
    let output = Command::new(function_binary("iotpipe"))
        .arg("run")
        .args(args)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(said.lines().count(), 1, "{said}");
    said
}

#[test]
fn a_port_taken_or_a_template_without_rules_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = scratch_dir("local-pipeline-errors");
    let out_arg = out.to_str().unwrap();
    let said = refused(&[
        "--out",
        out_arg,
        "--listen",
        &port.to_string(),
        "--messages",
        "1",
    ]);
    assert!(
        said.contains(&format!("127.0.0.1:{port}")) && said.contains("--listen"),
        "{said}"
    );

    let template = out.join("template.yaml");
    std::fs::write(
        &template,
        "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n",
    )
    .unwrap();
    let said = refused(&["--out", out_arg, "--template", template.to_str().unwrap()]);
    assert!(said.contains("no enabled AWS::IoT::TopicRule"), "{said}");

    let empty = out.join("no-functions");
    std::fs::create_dir_all(&empty).unwrap();
    let said = refused(&["--out", out_arg, "--functions", empty.to_str().unwrap()]);
    assert!(
        said.contains("not found in") && said.contains("cargo build --workspace --bins"),
        "{said}"
    );
}

#[test]
fn a_backend_that_keeps_failing_ends_in_the_redrive_queue_and_nothing_is_lost() {
    let out = scratch_dir("local-pipeline-redrive");
    // The warehouse's database is down for the whole run: every batch is
    // reported back, redelivered, and after the queue's 5 receives moved to
    // the redrive queue.
    let closed = free_port();
    let warehouse =
        format!("telemetry-warehouse:WAREHOUSE_URL=mysql://iot:x@127.0.0.1:{closed}/iot");
    let said = run_to_end(
        &out,
        &[
            "--fleet",
            "gcp-iot-lab",
            "--devices",
            "1",
            "--messages",
            "5",
            "--rate",
            "20",
            "--env",
            &warehouse,
        ],
    );
    let report = report(&out);
    let total = &report["total"];
    assert_eq!(total["sent"], 5, "{said}");
    assert_eq!(total["dead_lettered"], 5, "{said}");
    assert_eq!(total["accepted"], 0);
    let warehouse = &report["functions"]["TelemetryWarehouseFunction"];
    assert_eq!(warehouse["records"], 5);
    assert_eq!(warehouse["records_retried"], 5 * 4, "{warehouse}");
    let redriven = std::fs::read_to_string(out.join("dead-letters/local-pipeline.jsonl")).unwrap();
    assert_eq!(redriven.lines().count(), 5, "{redriven}");
    for letter in redriven.lines() {
        let letter: Value = serde_json::from_str(letter).unwrap();
        assert!(
            letter["reason"]
                .as_str()
                .unwrap()
                .contains("WarehouseQueue: not processed after 5 receives"),
            "{letter}"
        );
        assert!(
            letter["payload"]
                .as_str()
                .unwrap()
                .contains("\"temperature\""),
            "the raw message is kept: {letter}"
        );
    }
}

#[test]
fn ctrl_c_stops_the_devices_and_still_delivers_and_reports() {
    let out = scratch_dir("local-pipeline-interrupt");
    let mut run = Command::new(function_binary("iotpipe"))
        .args([
            "run",
            "--out",
            out.to_str().unwrap(),
            "--messages",
            "1000",
            "--rate",
            "5",
        ])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(run.stdout.take().unwrap()).lines();
    let first = stdout.next().unwrap().unwrap();
    assert!(first.starts_with("iotpipe run:"), "{first}");
    std::thread::sleep(Duration::from_secs(2));
    // What a terminal's Ctrl-C does: SIGINT to the whole process group.
    let status = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", run.id())])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = stdout.map_while(Result::ok).collect();
    assert!(run.wait().unwrap().success(), "{}", rest.join("\n"));
    assert!(
        rest.iter()
            .any(|line| line.starts_with("stopped by Ctrl-C")),
        "{}",
        rest.join("\n")
    );
    let report = report(&out);
    let total = &report["total"];
    let sent = total["sent"].as_u64().unwrap();
    assert!(sent > 0 && sent < 6 * 1000, "{total}");
    assert_eq!(
        total["dead_lettered"], 0,
        "nothing half-delivered: {}",
        report["dead_letter_reasons"]
    );
    assert_eq!(report["interrupted"], true);
    let rows = duckdb_query(&format!(
        "SELECT count(*) AS n FROM {} WHERE metric = 'temperature'",
        table(&out, "readings")
    ));
    let sensors_sent: u64 = report["fleets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|fleet| fleet["fleet"] == "gcp-iot-lab")
        .map(|fleet| fleet["sent"].as_u64().unwrap())
        .sum();
    assert_eq!(
        rows[0]["n"].as_u64().unwrap(),
        sensors_sent,
        "every reading sent before Ctrl-C is written"
    );
}

#[test]
fn basic_ingest_messages_reach_only_their_rule_through_mosquitto() {
    let out = scratch_dir("local-pipeline-basic-ingest");
    let broker = e2e_tests::MosquittoServer::start(&out.join("broker"));
    let mut run = Command::new(function_binary("iotpipe"))
        .args([
            "run",
            "--out",
            out.to_str().unwrap(),
            "--broker",
            &broker.url(),
        ])
        .args(["--fleet", "host-status", "--messages", "15", "--rate", "5"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(run.stdout.take().unwrap()).lines();
    let first = stdout.next().unwrap().unwrap();
    assert!(first.starts_with("iotpipe run:"), "{first}");
    for (rule, messages) in [("TelemetryRule", "3"), ("NoSuchRule", "1")] {
        let sent = Command::new(function_binary("iotpipe"))
            .args([
                "simulate",
                "--fleet",
                "gcp-iot-lab",
                "--devices",
                "1",
                "--messages",
                messages,
            ])
            .args([
                "--rate",
                "0",
                "--basic-ingest",
                rule,
                "--broker",
                &broker.url(),
            ])
            .output()
            .unwrap();
        assert!(
            sent.status.success(),
            "{}",
            String::from_utf8_lossy(&sent.stdout)
        );
    }
    let said: Vec<String> = stdout.map_while(Result::ok).collect();
    assert!(run.wait().unwrap().success(), "{}", said.join("\n"));
    let report = report(&out);
    assert_eq!(report["total"]["sent"], 15 + 3 + 1);
    assert_eq!(report["total"]["dead_lettered"], 1);
    assert_eq!(report["rules"]["TelemetryRule"], 3, "{}", report["rules"]);
    assert!(
        report["rules"].get("CommandsRule").is_none(),
        "Basic Ingest skips the other rules: {}",
        report["rules"]
    );
    let reasons = report["dead_letter_reasons"].to_string();
    assert!(
        reasons.contains("Basic Ingest to rule \\\"NoSuchRule\\\""),
        "{reasons}"
    );
}

/// Device-side batching through the template's rules: each message of 4
/// readings (`{"readings": [...]}`) passes `SELECT *, topic() AS topic`
/// and becomes 4 rows, each at its own timestamp.
#[test]
fn batched_messages_become_one_row_per_reading() {
    let out = scratch_dir("local-pipeline-batch");
    run_to_end(
        &out,
        &[
            "--fleet",
            "gcp-iot-lab,nightlight",
            "--messages",
            "5",
            "--batch",
            "4",
            "--rate",
            "20",
        ],
    );
    let report = report(&out);
    let total = &report["total"];
    assert_eq!(total["sent"], 4 * 5, "{total}");
    assert_eq!(
        total["accepted"],
        4 * 5,
        "{}",
        report["dead_letter_reasons"]
    );
    assert_eq!(total["commands_sent"], total["commands_applied"], "{total}");
    let rows = duckdb_query(&format!(
        "SELECT metric, count(*) AS n, count(DISTINCT timestamp) AS times FROM {} GROUP BY metric ORDER BY metric",
        table(&out, "readings")
    ));
    let counts: Vec<(&str, u64)> = rows
        .iter()
        .map(|row| (row["metric"].as_str().unwrap(), row["n"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        counts,
        [
            ("led", 2 * 5 * 4),
            ("light", 2 * 5 * 4),
            ("temperature", 2 * 5 * 4)
        ]
    );
    // The night lights' readings carry no time of their own (the rule's
    // receipt time); the sensors' each carry their own second.
    let sensor_times = rows[2]["times"].as_u64().unwrap();
    assert!(sensor_times >= 2, "{rows:?}");
}

/// The stack as it deploys with IngestPath=basic-ingest and
/// Transport=kinesis: devices publish to `$aws/rules/<rule>/<topic>`
/// (mosquitto passes `$` topics), and one Kinesis action per message feeds
/// all four stream readers (device-commands among them).
#[test]
fn basic_ingest_and_kinesis_transport_deliver_everything() {
    let out = scratch_dir("local-pipeline-basic-ingest-kinesis");
    let broker = e2e_tests::MosquittoServer::start(&out.join("broker"));
    run_to_end(
        &out,
        &[
            "--broker",
            &broker.url(),
            "--parameter",
            "IngestPath=basic-ingest",
            "--parameter",
            "Transport=kinesis",
            "--messages",
            "6",
            "--rate",
            "10",
        ],
    );
    let report = report(&out);
    let total = &report["total"];
    assert_eq!(total["sent"], 6 * 6, "{total}");
    assert_eq!(
        total["accepted"],
        6 * 6,
        "{}",
        report["dead_letter_reasons"]
    );
    assert!(
        report["rules"].get("CommandsRule").is_none(),
        "{}",
        report["rules"]
    );
    assert_eq!(
        report["rules"]["TelemetryRule"],
        4 * 6,
        "{}",
        report["rules"]
    );
    let commands_sent = total["commands_sent"].as_u64().unwrap();
    assert!(commands_sent >= 2, "{total}");
    assert_eq!(total["commands_applied"], commands_sent, "{total}");
    let rows = duckdb_query(&format!(
        "SELECT count(*) AS n FROM {} WHERE metric = 'temperature'",
        table(&out, "readings")
    ));
    assert_eq!(
        rows[0]["n"],
        2 * 6,
        "every sensor reading through the stream"
    );
    // The stream's three readers each got every telemetry and text
    // message (the metrics function also the status messages, by Lambda).
    let functions = &report["functions"];
    let stream_messages = 6 * (2 + 2 + 1);
    for (function, expected) in [
        ("TelemetryWarehouseFunction", stream_messages),
        ("TelemetryWindowsFunction", stream_messages),
        ("TelemetryMetricsFunction", stream_messages + 6),
    ] {
        assert_eq!(
            functions[function]["accepted"], expected,
            "{function}: {functions}"
        );
    }
}

/// Basic Ingest needs a broker that passes `$` topics; the embedded one
/// does not, which is said in one line.
#[test]
fn basic_ingest_without_a_broker_that_passes_dollar_topics_is_refused() {
    let error = refused(&["--parameter", "IngestPath=basic-ingest"]);
    assert!(error.contains("give --broker"), "{error}");
    let error = refused(&["--parameter", "Transport=mqtt"]);
    assert!(error.contains("not one of sqs, kinesis"), "{error}");
}
