//! The warehouse against a PostgreSQL that fails in scripted ways (a
//! fault proxy on loopback between them): connections refused, delayed,
//! cut before an INSERT reaches the server, and cut after the server ran
//! it but before the answer came back. Each invocation reports exactly
//! what it did not write; SQS's redelivery of those records then completes
//! the work: every good reading is one row (duplicates: 0) and every bad
//! record one dead letter, whatever the fault.

use std::time::Duration;

use e2e_tests::{retry_ids, sqs_event, FaultyTcp, PostgresServer, TcpFault};
use serde_json::json;
use telemetry_core::invocation::InvocationSettings;
use telemetry_warehouse::postgres::PostgresTables;

const GOOD: usize = 40;
const BAD: usize = 2;

fn batch(now_s: i64) -> Vec<(String, String)> {
    let mut records: Vec<(String, String)> = (0..GOOD)
        .map(|index| {
            (
                format!("m-{index:03}"),
                json!({"device": format!("t-{index}"), "timestamp": now_s - index as i64, "temperature": 20.0 + index as f64}).to_string(),
            )
        })
        .collect();
    for index in 0..BAD {
        records.push((
            format!("bad-{index}"),
            json!({"device": "", "temperature": 1}).to_string(),
        ));
    }
    records
}

/// Invokes the warehouse with `records`, then again with whatever it asked
/// to retry, as SQS redelivers, until nothing is left (at most `rounds`).
/// Returns the number of invocations that asked for a retry.
async fn deliver_until_done(
    writer: &PostgresTables,
    mut records: Vec<(String, String)>,
    rounds: usize,
    now_ms: i64,
) -> usize {
    let settings = InvocationSettings::default();
    for round in 0..rounds {
        let event = sqs_event(&records);
        let (response, _) = settings
            .process_warehouse(&event, &format!("round-{round}"), now_ms, writer)
            .await
            .expect("answered");
        let failed = retry_ids(&response.to_json());
        if failed.is_empty() {
            // Every round before this one asked for a retry.
            return round;
        }
        records.retain(|(id, _)| failed.contains(id));
        assert_eq!(records.len(), failed.len(), "only records of this batch");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("still failing after {rounds} deliveries");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fault_script_ends_with_each_reading_written_once() {
    let server = PostgresServer::start();
    let proxy = FaultyTcp::start(server.port);
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", proxy.port);
    let scripts: [(&str, Vec<TcpFault>, bool); 6] = [
        ("no fault", vec![], false),
        (
            "connections refused",
            vec![TcpFault::Refuse, TcpFault::Refuse],
            true,
        ),
        (
            "a slow connection",
            vec![TcpFault::Delay(Duration::from_secs(2))],
            false,
        ),
        (
            "cut before the table is created",
            vec![TcpFault::CutBefore("CREATE TABLE")],
            true,
        ),
        (
            "cut before the insert",
            vec![TcpFault::CutBefore("INSERT")],
            true,
        ),
        (
            "cut after the insert ran, before its answer",
            vec![TcpFault::CutAfter("INSERT")],
            true,
        ),
    ];
    let now_ms = chrono::Utc::now().timestamp_millis();
    for (name, script, fails_first) in scripts {
        server.psql("DROP TABLE IF EXISTS readings, dead_letter");
        let injected_before = proxy.injected.load(std::sync::atomic::Ordering::SeqCst);
        proxy.script(script.clone());
        // A new writer: a cold start, so the script meets its connections.
        let writer = PostgresTables::from_url(&url).unwrap();
        let retried = deliver_until_done(&writer, batch(now_ms / 1000), 8, now_ms).await;
        let injected = proxy.injected.load(std::sync::atomic::Ordering::SeqCst) - injected_before;
        assert_eq!(injected > 0, fails_first, "{name}: the fault took effect");
        assert_eq!(
            retried > 0,
            fails_first,
            "{name}: retried {retried} time(s)"
        );
        assert_eq!(
            server.psql("SELECT count(*), count(DISTINCT (message_id, message_row)) FROM readings"),
            format!("{GOOD}|{GOOD}"),
            "{name}: every reading once"
        );
        assert_eq!(
            server.psql("SELECT count(*) FROM dead_letter WHERE message_id LIKE 'bad-%'"),
            BAD.to_string(),
            "{name}: every bad record dead-lettered once"
        );
    }
}
