//! The run's report: printed, and written to `<out>/report.json` with the
//! same counts per fleet, rule and function, and a `total` in which every
//! message sent is accepted or dead-lettered.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::chart::WindowMaximum;
use super::lambda::Metrics;
use super::ledger::{FunctionCounts, Ledger, Totals};
use super::tables::read_table;
use crate::simulate::device::DeviceOutcome;

#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    pub fleet: String,
    pub devices: Vec<String>,
    pub sent: u64,
    pub acknowledged: u64,
    pub commands_applied: u64,
}

#[derive(Debug, Serialize)]
pub struct Total {
    pub sent: u64,
    pub accepted: u64,
    pub dead_lettered: u64,
    pub commands_sent: u64,
    pub commands_applied: u64,
}

#[derive(Debug, Serialize)]
struct FleetCounts {
    #[serde(flatten)]
    fleet: FleetReport,
    accepted: u64,
    dead_lettered: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub total: Total,
    fleets: Vec<FleetCounts>,
    rules: BTreeMap<String, u64>,
    functions: BTreeMap<String, FunctionCounts>,
    dead_letter_reasons: Vec<Value>,
    topics: BTreeMap<String, Totals>,
    /// Per function binary, device and metric (from the EMF lines).
    metrics: BTreeMap<String, Metrics>,
    /// Published by devices and acknowledged by the broker, and received by
    /// the rules engine: equal unless the broker lost messages.
    broker: Value,
    devices_that_gave_up: Vec<Value>,
    /// From a night light's reading that called for a switch to its LED
    /// switching (ms).
    command_latency_ms: Value,
    /// Messages per second from the first publish to the last delivery.
    throughput: Value,
    interrupted: bool,
    elapsed_seconds: f64,
}

pub struct Inputs<'a> {
    pub ledger: &'a Ledger,
    pub fleets: Vec<FleetReport>,
    pub outcomes: &'a [DeviceOutcome],
    pub metrics: BTreeMap<String, Metrics>,
    pub commands_sent: u64,
    pub received: u64,
    pub device_acknowledged: u64,
    pub interrupted: bool,
    pub elapsed: Duration,
    pub switch_latency: Option<(usize, f64, f64)>,
    /// From the devices' start to every delivery settled.
    pub pipeline_time: Duration,
    /// From the devices' start to the warehouse's last rows.
    pub rows_written_time: Option<Duration>,
}

impl Report {
    pub fn build(inputs: Inputs<'_>) -> Report {
        let totals = inputs.ledger.totals();
        let topics = inputs.ledger.by_topic();
        let fleets = inputs
            .fleets
            .into_iter()
            .map(|fleet| {
                let (mut accepted, mut dead_lettered) = (0, 0);
                for (topic, counts) in &topics {
                    let levels: Vec<&str> = topic.split('/').collect();
                    if fleet
                        .devices
                        .iter()
                        .any(|device| levels.contains(&device.as_str()))
                    {
                        accepted += counts.accepted;
                        dead_lettered += counts.dead_lettered;
                    }
                }
                FleetCounts {
                    fleet,
                    accepted,
                    dead_lettered,
                }
            })
            .collect::<Vec<_>>();
        let commands_applied = fleets.iter().map(|f| f.fleet.commands_applied).sum();
        Report {
            total: Total {
                sent: totals.sent,
                accepted: totals.accepted,
                dead_lettered: totals.dead_lettered,
                commands_sent: inputs.commands_sent,
                commands_applied,
            },
            fleets,
            rules: inputs.ledger.rules(),
            functions: inputs.ledger.functions(),
            dead_letter_reasons: inputs
                .ledger
                .reasons()
                .into_iter()
                .map(|(reason, messages)| serde_json::json!({"reason": reason, "messages": messages}))
                .collect(),
            topics,
            metrics: inputs.metrics,
            broker: serde_json::json!({
                "acknowledged_to_devices": inputs.device_acknowledged,
                "received_by_rules_engine": inputs.received,
            }),
            devices_that_gave_up: inputs
                .outcomes
                .iter()
                .filter_map(|outcome| {
                    outcome
                        .gave_up
                        .as_ref()
                        .map(|reason| serde_json::json!({"device": outcome.name, "not_acknowledged": outcome.failed(), "reason": reason}))
                })
                .collect(),
            command_latency_ms: match inputs.switch_latency {
                Some((switches, p50, p99)) => serde_json::json!({"switches": switches, "p50": p50, "p99": p99}),
                None => Value::Null,
            },
            throughput: serde_json::json!({
                "messages": totals.sent,
                "seconds": inputs.pipeline_time.as_secs_f64(),
                "messages_per_second": totals.sent as f64 / inputs.pipeline_time.as_secs_f64().max(1e-3),
                "rows_written_seconds": inputs.rows_written_time.map(|time| time.as_secs_f64()),
                "messages_per_second_to_rows_written": inputs
                    .rows_written_time
                    .map(|time| totals.sent as f64 / time.as_secs_f64().max(1e-3)),
            }),
            interrupted: inputs.interrupted,
            elapsed_seconds: inputs.elapsed.as_secs_f64(),
        }
    }

    /// Every message the devices had acknowledged reached the rules engine,
    /// no device gave up, and the books balance.
    pub fn is_complete(&self) -> bool {
        self.devices_that_gave_up.is_empty()
            && self.broker["received_by_rules_engine"].as_u64()
                >= self.broker["acknowledged_to_devices"].as_u64()
            && self.total.sent == self.total.accepted + self.total.dead_lettered
    }

    pub fn write(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).expect("the report serialises");
        std::fs::write(path, text).map_err(|error| format!("{}: {error}", path.display()))
    }

    pub fn print(&self, out: &Path, chart: &Path, maxima: &[WindowMaximum]) {
        let total = &self.total;
        println!();
        println!("== messages");
        println!(
            "sent {}, accepted {}, dead-lettered {} (acknowledged to devices {}, received by the rules engine {})",
            total.sent,
            total.accepted,
            total.dead_lettered,
            self.broker["acknowledged_to_devices"],
            self.broker["received_by_rules_engine"]
        );
        for fleet in &self.fleets {
            println!(
                "  {:<14} {} device(s): sent {}, accepted {}, dead-lettered {}",
                fleet.fleet.fleet,
                fleet.fleet.devices.len(),
                fleet.fleet.sent,
                fleet.accepted,
                fleet.dead_lettered
            );
        }
        println!("== rules (messages routed)");
        for (rule, routed) in &self.rules {
            println!("  {rule:<20} {routed}");
        }
        println!("== functions");
        for (function, counts) in &self.functions {
            println!(
                "  {function:<28} {} invocation(s), {} record(s), {} retried, {} dead-lettered",
                counts.invocations, counts.records, counts.records_retried, counts.dead_lettered
            );
        }
        if !self.dead_letter_reasons.is_empty() {
            println!(
                "== dead letters (reasons; files in {})",
                out.join("dead-letters").display()
            );
            for reason in &self.dead_letter_reasons {
                println!(
                    "  {} x {}",
                    reason["messages"],
                    reason["reason"].as_str().unwrap_or_default()
                );
            }
        }
        println!("== commands");
        println!(
            "  sent {}, applied by the devices {}",
            total.commands_sent, total.commands_applied
        );
        if let (Some(p50), Some(p99)) = (
            self.command_latency_ms["p50"].as_f64(),
            self.command_latency_ms["p99"].as_f64(),
        ) {
            println!(
                "  {} LED switch(es) timed from the reading that called for one: p50 {p50:.1} ms, p99 {p99:.1} ms",
                self.command_latency_ms["switches"]
            );
        }
        println!(
            "== pace: {} messages in {:.2} s from the devices' start to the last delivery ({:.0} messages/s; --rate bounds it unless 0)",
            self.throughput["messages"],
            self.throughput["seconds"].as_f64().unwrap_or_default(),
            self.throughput["messages_per_second"].as_f64().unwrap_or_default()
        );
        println!("== metrics per device (EMF of telemetry-metrics: count, min, max, last)");
        if let Some(metrics) = self.metrics.get("telemetry-metrics") {
            for (device, values) in metrics {
                let line: Vec<String> = values
                    .iter()
                    .map(|(name, s)| {
                        format!(
                            "{name} {}x {:.2}..{:.2} last {:.2}",
                            s.count, s.min, s.max, s.last
                        )
                    })
                    .collect();
                println!("  {device:<26} {}", line.join("; "));
            }
        }
        if !maxima.is_empty() {
            println!("== telemetry-windows: maximum temperature per device and window");
            for (device, start, _, max) in maxima {
                let start = chrono::DateTime::from_timestamp_millis(*start)
                    .map(|t| t.format("%H:%M:%S").to_string())
                    .unwrap_or_default();
                println!("  {device:<26} {start}  {max:.3}");
            }
        }
        println!("== files");
        println!("  report    {}", out.join("report.json").display());
        println!("  chart     {}", chart.display());
        println!(
            "  warehouse {} (make query WAREHOUSE_URL={} ...)",
            out.join("warehouse").display(),
            out.join("warehouse").display()
        );
        println!("  logs      {}", out.join("logs").display());
        if self.interrupted {
            println!("stopped by Ctrl-C: what the devices had sent was delivered and written");
        }
    }
}

/// The windows function's maximum temperature per device and window, late
/// partials merged, oldest first.
pub fn window_maxima(warehouse: &Path) -> Result<Vec<WindowMaximum>, String> {
    let mut maxima: BTreeMap<(i64, String), (i64, f64)> = BTreeMap::new();
    for row in read_table(warehouse, "window_aggregates")? {
        if row.get("metric").and_then(Value::as_str) != Some("temperature") {
            continue;
        }
        let (Some(device), Some(start), Some(end), Some(max)) = (
            row.get("device").and_then(Value::as_str),
            row.get("window_start").and_then(Value::as_i64),
            row.get("window_end").and_then(Value::as_i64),
            row.get("max").and_then(Value::as_f64),
        ) else {
            continue;
        };
        let entry = maxima
            .entry((start, device.to_owned()))
            .or_insert((end, max));
        entry.1 = entry.1.max(max);
    }
    Ok(maxima
        .into_iter()
        .map(|((start, device), (end, max))| (device, start, end, max))
        .collect())
}
