//! `iotpipe cost`: what a fleet costs a month in AWS (us-east-1), per
//! component, for three designs:
//!
//! - `reference`: reference 003's design, a topic rule whose CloudWatch
//!   action writes one metric per message;
//! - `sqs`: the template's topics, a rule sending each message to the
//!   metrics and warehouse queues, our functions in batches;
//! - `basic-ingest-kinesis`: devices publish to `$aws/rules/<rule>` (no
//!   messaging charge), one Kinesis action, our functions on 10,000-record
//!   batches.
//!
//! Our functions' figures are measured (`bench/results.json`: the warm
//! 10,000-message invocation, EMF bytes per reading, Parquet files and bytes
//! per invocation), not assumed. Prices are in [`PRICES`], each with the page
//! it comes from. `SCALE.md` is this module's output for 1,000, 100,000 and
//! 1,000,000 devices.

use std::fmt::Write as _;

use serde_json::Value;

/// Seconds and minutes in the 30-day month AWS's examples use.
const MONTH_SECONDS: f64 = 30.0 * 24.0 * 3600.0;
const MONTH_MINUTES: f64 = 30.0 * 24.0 * 60.0;
const MONTH_HOURS: f64 = 30.0 * 24.0;
/// Readings per invocation of our functions on the Kinesis path (and the
/// bench's batch), and on the SQS path (the template's BatchSize).
const KINESIS_BATCH: f64 = 10_000.0;
const SQS_BATCH: f64 = 1_000.0;

/// A price and where it was read.
pub struct Price {
    pub name: &'static str,
    pub usd: f64,
    pub per: &'static str,
    pub source: &'static str,
}

/// us-east-1 list prices, as published on the AWS pricing pages.
pub const PRICES: &[Price] = &[
    Price {
        name: "IoT connectivity",
        usd: 0.08,
        per: "million connection-minutes",
        source: "https://aws.amazon.com/iot-core/pricing/",
    },
    Price {
        name: "IoT messaging, first 1 billion",
        usd: 1.00,
        per: "million messages (up to 5 KB)",
        source: "https://aws.amazon.com/iot-core/pricing/",
    },
    Price {
        name: "IoT messaging, next 4 billion",
        usd: 0.80,
        per: "million messages",
        source: "https://aws.amazon.com/iot-core/pricing/",
    },
    Price {
        name: "IoT messaging, over 5 billion",
        usd: 0.70,
        per: "million messages",
        source: "https://aws.amazon.com/iot-core/pricing/",
    },
    Price {
        name: "IoT rules triggered",
        usd: 0.15,
        per: "million rules triggered",
        source: "https://aws.amazon.com/iot-core/pricing/",
    },
    Price {
        name: "IoT actions executed",
        usd: 0.15,
        per: "million actions",
        source: "https://aws.amazon.com/iot-core/pricing/",
    },
    Price {
        name: "SQS standard requests",
        usd: 0.40,
        per: "million requests (64 KB chunks)",
        source: "https://aws.amazon.com/sqs/pricing/",
    },
    Price {
        name: "Kinesis shard-hour (provisioned)",
        usd: 0.015,
        per: "shard-hour",
        source: "https://aws.amazon.com/kinesis/data-streams/pricing/",
    },
    Price {
        name: "Kinesis PUT payload units",
        usd: 0.014,
        per: "million 25 KB units",
        source: "https://aws.amazon.com/kinesis/data-streams/pricing/",
    },
    Price {
        name: "Lambda arm64 duration",
        usd: 0.000_013_333_4,
        per: "GB-second",
        source: "https://aws.amazon.com/lambda/pricing/",
    },
    Price {
        name: "Lambda requests",
        usd: 0.20,
        per: "million requests",
        source: "https://aws.amazon.com/lambda/pricing/",
    },
    Price {
        name: "CloudWatch PutMetricData",
        usd: 0.01,
        per: "thousand requests",
        source: "https://aws.amazon.com/cloudwatch/pricing/",
    },
    Price {
        name: "CloudWatch Logs ingestion",
        usd: 0.50,
        per: "GB",
        source: "https://aws.amazon.com/cloudwatch/pricing/",
    },
    Price {
        name: "S3 PUT requests",
        usd: 0.005,
        per: "thousand requests",
        source: "https://aws.amazon.com/s3/pricing/",
    },
    Price {
        name: "S3 Standard storage",
        usd: 0.023,
        per: "GB-month",
        source: "https://aws.amazon.com/s3/pricing/",
    },
];

fn price(name: &str) -> f64 {
    PRICES
        .iter()
        .find(|price| price.name == name)
        .unwrap_or_else(|| panic!("a price named {name}"))
        .usd
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Design {
    Reference,
    Sqs,
    BasicIngestKinesis,
}

impl Design {
    pub const ALL: [Design; 3] = [Design::Reference, Design::Sqs, Design::BasicIngestKinesis];

    pub fn label(self) -> &'static str {
        match self {
            Design::Reference => "reference: rule -> CloudWatch action per message",
            Design::Sqs => "topics -> rule -> 2 SQS queues -> our functions",
            Design::BasicIngestKinesis => "Basic Ingest -> rule -> Kinesis -> our functions",
        }
    }
}

/// The fleet: devices, readings per device per second, readings per MQTT
/// message (device-side batching), bytes per reading.
#[derive(Debug, Clone, Copy)]
pub struct Fleet {
    pub devices: f64,
    pub rate: f64,
    pub batch: f64,
    pub reading_bytes: f64,
}

/// What the bench measured of our functions.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// telemetry-metrics, warm, per reading (ms).
    pub metrics_ms_per_reading: f64,
    /// telemetry-warehouse, warm, per reading (ms).
    pub warehouse_ms_per_reading: f64,
    /// EMF bytes written per reading.
    pub emf_bytes_per_reading: f64,
    /// Parquet files per warehouse invocation, and bytes per reading stored.
    pub parquet_files_per_invocation: f64,
    pub parquet_bytes_per_reading: f64,
}

impl Measured {
    /// From `bench/results.json` (`make bench`).
    pub fn from_results(results: &Value) -> Result<Measured, String> {
        let number = |path: &[&str]| -> Result<f64, String> {
            let mut value = results;
            for key in path {
                value = &value[*key];
            }
            value.as_f64().ok_or_else(|| {
                format!(
                    "bench/results.json has no {}: run `make bench`",
                    path.join(".")
                )
            })
        };
        // The bench's warm runs: one warm-up and WARM_RUNS measured, each of
        // 10,000 messages, all printing to the same stdout.
        let printed_batches = 6.0;
        Ok(Measured {
            metrics_ms_per_reading: number(&["warm", "reference_000", "ours", "median_ms"])?
                / KINESIS_BATCH,
            warehouse_ms_per_reading: number(&["warehouse", "median_ms"])? / KINESIS_BATCH,
            emf_bytes_per_reading: number(&["warm", "reference_000", "ours", "stdout_bytes"])?
                / (printed_batches * KINESIS_BATCH),
            parquet_files_per_invocation: number(&["warehouse", "parquet_files_per_invocation"])?,
            parquet_bytes_per_reading: number(&["warehouse", "parquet_bytes_per_file"])?
                / KINESIS_BATCH,
        })
    }
}

/// One design's month: cost per component, shards, Lambda concurrency.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub lines: Vec<(&'static str, f64)>,
    pub kinesis_shards: f64,
    pub lambda_concurrency: f64,
}

impl Estimate {
    pub fn total(&self) -> f64 {
        self.lines.iter().map(|(_, usd)| usd).sum()
    }
}

/// IoT Core's tiered messaging charge for `messages` a month.
fn messaging(messages: f64) -> f64 {
    let tiers = [
        (1e9, price("IoT messaging, first 1 billion")),
        (4e9, price("IoT messaging, next 4 billion")),
        (f64::INFINITY, price("IoT messaging, over 5 billion")),
    ];
    let (mut left, mut usd) = (messages, 0.0);
    for (size, rate) in tiers {
        let here = left.min(size);
        usd += here / 1e6 * rate;
        left -= here;
    }
    usd
}

pub fn estimate(design: Design, fleet: Fleet, measured: Measured) -> Estimate {
    let readings = fleet.devices * fleet.rate * MONTH_SECONDS;
    let messages = readings / fleet.batch;
    let message_bytes = fleet.batch * fleet.reading_bytes;
    let mut lines = vec![(
        "IoT connectivity",
        fleet.devices * MONTH_MINUTES / 1e6 * price("IoT connectivity"),
    )];
    let rules = |actions: f64| {
        messages / 1e6 * (price("IoT rules triggered") + actions * price("IoT actions executed"))
    };
    let mut kinesis_shards = 0.0;
    let mut lambda_concurrency = 0.0;
    // Our two functions (metrics, warehouse) each read every reading.
    let mut ours = |lines: &mut Vec<(&'static str, f64)>, readings_per_invocation: f64| {
        let gb_seconds = readings
            * (measured.metrics_ms_per_reading + measured.warehouse_ms_per_reading)
            / 1000.0
            * 0.125;
        let invocations = 2.0 * readings / readings_per_invocation;
        lines.push((
            "Lambda (our functions, 128 MB arm64)",
            gb_seconds * price("Lambda arm64 duration")
                + invocations / 1e6 * price("Lambda requests"),
        ));
        lambda_concurrency = gb_seconds / 0.125 / MONTH_SECONDS;
        lines.push((
            "CloudWatch (EMF log ingestion)",
            readings * measured.emf_bytes_per_reading / 1e9 * price("CloudWatch Logs ingestion"),
        ));
        let warehouse_invocations = readings / readings_per_invocation;
        lines.push((
            "S3 (Parquet PUTs and the month's storage)",
            warehouse_invocations * measured.parquet_files_per_invocation / 1000.0
                * price("S3 PUT requests")
                + readings * measured.parquet_bytes_per_reading / 1e9
                    * price("S3 Standard storage"),
        ));
    };
    match design {
        Design::Reference => {
            lines.push(("IoT messaging", messaging(messages)));
            lines.push(("IoT rules and actions", rules(1.0)));
            // The CloudWatch action: one PutMetricData per message.
            lines.push((
                "CloudWatch (PutMetricData per message)",
                messages / 1000.0 * price("CloudWatch PutMetricData"),
            ));
        }
        Design::Sqs => {
            lines.push(("IoT messaging", messaging(messages)));
            lines.push(("IoT rules and actions", rules(2.0)));
            // Per queue and message: SendMessage, plus the poller's receive
            // and delete in tens.
            let chunks = (message_bytes / 65_536.0).ceil().max(1.0);
            lines.push((
                "SQS (2 queues)",
                2.0 * messages * (chunks + 0.2) / 1e6 * price("SQS standard requests"),
            ));
            ours(&mut lines, SQS_BATCH);
        }
        Design::BasicIngestKinesis => {
            lines.push(("IoT messaging (Basic Ingest: none)", 0.0));
            lines.push(("IoT rules and actions", rules(1.0)));
            let per_second = messages / MONTH_SECONDS;
            kinesis_shards = (per_second / 1000.0)
                .max(per_second * message_bytes / 1_048_576.0)
                .ceil()
                .max(1.0);
            let units = (message_bytes / 25_600.0).ceil().max(1.0);
            lines.push((
                "Kinesis (provisioned shards, PUT units)",
                kinesis_shards * MONTH_HOURS * price("Kinesis shard-hour (provisioned)")
                    + messages * units / 1e6 * price("Kinesis PUT payload units"),
            ));
            ours(&mut lines, KINESIS_BATCH);
        }
    }
    Estimate {
        lines,
        kinesis_shards,
        lambda_concurrency,
    }
}

/// `iotpipe cost`'s arguments.
#[derive(clap::Args, Debug)]
pub struct CostArgs {
    /// One fleet size (default: 1,000, 100,000 and 1,000,000 devices).
    #[arg(long)]
    devices: Option<f64>,
    /// Readings per device per second.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Readings per MQTT message with device-side batching.
    #[arg(long, default_value_t = 10.0)]
    batch: f64,
    /// The bench's measurements of our functions.
    #[arg(long, default_value = "bench/results.json")]
    results: std::path::PathBuf,
    /// Write the whole SCALE.md (prices and their sources, the tables) to
    /// stdout.
    #[arg(long)]
    scale_md: bool,
}

pub fn cost(args: CostArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.results).map_err(|error| {
        format!(
            "{}: {error} (run `make bench` first, or give --results)",
            args.results.display()
        )
    })?;
    let results: Value = serde_json::from_str(&text)
        .map_err(|error| format!("{}: {error}", args.results.display()))?;
    let measured = Measured::from_results(&results)?;
    if !(args.rate > 0.0 && args.batch >= 1.0) {
        return Err(format!(
            "--rate {} --batch {}: a positive rate and a batch of at least 1",
            args.rate, args.batch
        ));
    }
    let sizes = match args.devices {
        Some(devices) if devices >= 1.0 => vec![devices],
        Some(devices) => return Err(format!("--devices {devices}: at least 1")),
        None => vec![1e3, 1e5, 1e6],
    };
    let tables = markdown(&sizes, args.rate, args.batch, measured);
    if args.scale_md {
        print!("{}", scale_md(&tables, measured, &results));
    } else {
        print!("{tables}");
    }
    Ok(())
}

fn scale_md(tables: &str, measured: Measured, results: &Value) -> String {
    let date = results["machine"]["date"]
        .as_str()
        .unwrap_or("unknown date");
    let mut out = String::new();
    let _ = writeln!(out, "# Scale: what a fleet costs a month\n");
    let _ = writeln!(
        out,
        "Generated by `make cost` (`iotpipe cost --scale-md`, `tools/iotpipe/src/cost.rs`) from the prices below and \
         our functions' measured figures in `bench/results.json` (bench run of {date}). Change a price or re-run \
         `make bench`, then `make cost`, and this page follows. us-east-1, a 30-day month, 100-byte readings, \
         every device connected all month.\n"
    );
    let _ = writeln!(out, "## What dominates\n");
    let _ = writeln!(
        out,
        "At scale the functions are a rounding error; the design around them is the bill. The reference design \
         (a topic rule whose CloudWatch action writes one metric per message) pays a PutMetricData request per \
         reading. Routing through SQS to our functions replaces that with EMF log lines, but still pays IoT \
         messaging, two rule actions and an SQS request per message and queue (receives and deletes go in tens). \
         Basic Ingest (devices publish to `$aws/rules/<rule name>/...`, which skips the messaging charge) into one \
         Kinesis action removes the largest per-message lines; device-side batching (several readings per MQTT \
         message) divides what is left per message. Switch from SQS to Kinesis when the fleet sends more than a \
         few hundred messages a second: a provisioned shard carries 1,000 records a second for about $11 a month.\n"
    );
    let _ = writeln!(out, "## In the template\n");
    let _ = writeln!(
        out,
        "`infra/template.yaml` deploys each design by its parameters (defaults suit a small fleet):\n\n\
         | design | parameters |\n| --- | --- |\n\
         | SQS + our functions (default) | `IngestPath=topics Transport=sqs` |\n\
         | Basic Ingest + Kinesis + our functions | `IngestPath=basic-ingest Transport=kinesis StreamShards=<shards below>` \
         (and `StreamBatchingWindowSeconds`, 10 by default, to fill 10,000-record batches) |\n\n\
         Device-side batching needs no parameter: a device sends `{{\"readings\": [...]}}` (`iotpipe simulate \
         --batch N`). The tables leave out `device-commands`. With `Transport=kinesis` it reads the stream in \
         batches (commands within about a second) and adds next to nothing; with `Transport=sqs` every JSON \
         telemetry message is one more rule action and one Lambda invocation (its own rule, or with Basic Ingest \
         the telemetry rule's Lambda action, since a Basic Ingest message reaches one rule only): at 1,000,000 \
         devices a reading a second, about $389,000 of actions and $518,000 of requests a month, divided by the \
         device batch. `iotpipe run --parameter IngestPath=basic-ingest --parameter Transport=kinesis --broker \
         mqtt://...` runs the large-fleet design locally.\n"
    );
    let _ = writeln!(out, "## Our functions, as measured\n");
    let _ = writeln!(out, "| figure | value |\n| --- | --- |");
    let _ = writeln!(
        out,
        "| telemetry-metrics, ms per reading (warm 10,000-message invocation) | {:.6} |",
        measured.metrics_ms_per_reading
    );
    let _ = writeln!(
        out,
        "| telemetry-warehouse, ms per reading | {:.6} |",
        measured.warehouse_ms_per_reading
    );
    let _ = writeln!(
        out,
        "| EMF bytes per reading | {:.1} |",
        measured.emf_bytes_per_reading
    );
    let _ = writeln!(
        out,
        "| Parquet files per warehouse invocation / bytes per reading | {} / {:.1} |\n",
        measured.parquet_files_per_invocation, measured.parquet_bytes_per_reading
    );
    let _ = writeln!(out, "## Monthly cost\n");
    out.push_str(tables);
    let _ = writeln!(out, "## Prices\n");
    let _ = writeln!(
        out,
        "List prices for us-east-1 as published on the AWS pricing pages below (first tiers where tiers exist, \
         except IoT messaging, whose tiers are applied). Not included: custom-metric storage ($0.30 per metric per \
         month, the same for every design), data transfer, free tiers, and the registry and shadow operations of \
         commands. The pricing pages render their tables by script; the stored copies this project could read on \
         2026-12-02 show the structure but not every figure, so check each figure on its page before relying on it.\n"
    );
    let _ = writeln!(
        out,
        "| price | USD | per | source |\n| --- | --- | --- | --- |"
    );
    for price in PRICES {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            price.name, price.usd, price.per, price.source
        );
    }
    out
}

/// `SCALE.md`'s tables: every design, with and without batching, for each
/// fleet size.
pub fn markdown(sizes: &[f64], rate: f64, batch: f64, measured: Measured) -> String {
    let mut out = String::new();
    for &devices in sizes {
        let _ = writeln!(
            out,
            "### {} devices, {rate} reading/s each\n",
            group(devices)
        );
        let _ = writeln!(out, "| design | device batch | monthly USD | largest lines | Kinesis shards | Lambda concurrency |");
        let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
        for design in Design::ALL {
            // The reference's CloudWatch action records one value per
            // message: its devices cannot batch.
            let batches: &[f64] = if design == Design::Reference {
                &[1.0]
            } else {
                &[1.0, batch]
            };
            for &device_batch in batches {
                let fleet = Fleet {
                    devices,
                    rate,
                    batch: device_batch,
                    reading_bytes: 100.0,
                };
                let estimate = estimate(design, fleet, measured);
                let mut lines = estimate.lines.clone();
                lines.sort_by(|a, b| b.1.total_cmp(&a.1));
                let largest: Vec<String> = lines
                    .iter()
                    .take(3)
                    .map(|(name, usd)| format!("{name} {}", money(*usd)))
                    .collect();
                let _ = writeln!(
                    out,
                    "| {} | {device_batch} | {} | {} | {} | {} |",
                    design.label(),
                    money(estimate.total()),
                    largest.join("; "),
                    if estimate.kinesis_shards > 0.0 {
                        format!("{}", estimate.kinesis_shards)
                    } else {
                        "-".into()
                    },
                    if design == Design::Reference {
                        "-".to_owned()
                    } else {
                        format!("{:.3}", estimate.lambda_concurrency)
                    }
                );
            }
        }
        out.push('\n');
    }
    out
}

fn money(usd: f64) -> String {
    if usd >= 100.0 {
        format!("${}", group(usd.round()))
    } else {
        format!("${usd:.2}")
    }
}

fn group(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEASURED: Measured = Measured {
        metrics_ms_per_reading: 0.001,
        warehouse_ms_per_reading: 0.002,
        emf_bytes_per_reading: 10.0,
        parquet_files_per_invocation: 2.0,
        parquet_bytes_per_reading: 5.0,
    };

    fn line(estimate: &Estimate, name: &str) -> f64 {
        estimate
            .lines
            .iter()
            .find(|(n, _)| n.starts_with(name))
            .unwrap()
            .1
    }

    fn close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() <= 1e-6 * expected.abs().max(1.0),
            "{actual} != {expected}"
        );
    }

    /// `devices` sending one 100-byte reading a second, unbatched.
    fn one_reading_a_second(devices: f64) -> Fleet {
        Fleet {
            devices,
            rate: 1.0,
            batch: 1.0,
            reading_bytes: 100.0,
        }
    }

    #[test]
    fn a_million_devices_computed_by_hand() {
        let fleet = one_reading_a_second(1e6);
        // 1e6 devices x 2,592,000 s = 2.592e12 messages a month.
        let reference = estimate(Design::Reference, fleet, MEASURED);
        close(
            line(&reference, "IoT connectivity"),
            1e6 * 43_200.0 / 1e6 * 0.08,
        ); // 3,456
        close(
            line(&reference, "IoT messaging"),
            1_000.0 + 4_000.0 * 0.8 + (2_592_000.0 - 5_000.0) * 0.7,
        ); // 1,815,100
        close(line(&reference, "IoT rules"), 2_592_000.0 * 0.30); // 777,600
        close(line(&reference, "CloudWatch"), 2.592e12 / 1000.0 * 0.01); // 25,920,000
        close(
            reference.total(),
            3_456.0 + 1_815_100.0 + 777_600.0 + 25_920_000.0,
        );

        let kinesis = estimate(Design::BasicIngestKinesis, fleet, MEASURED);
        close(line(&kinesis, "IoT messaging"), 0.0);
        close(line(&kinesis, "IoT rules"), 777_600.0);
        // 1,000,000 records/s -> 1,000 shards; 2.592e12 PUT units.
        assert_eq!(kinesis.kinesis_shards, 1000.0);
        close(
            line(&kinesis, "Kinesis"),
            1000.0 * 720.0 * 0.015 + 2_592_000.0 * 0.014,
        );
        // 2.592e12 readings x 0.003 ms = 7.776e9 ms = 7.776e6 s x 0.125 GB;
        // 2 x 2.592e8 invocations.
        close(
            line(&kinesis, "Lambda"),
            7.776e6 * 0.125 * 0.000_013_333_4 + 518.4 * 0.20,
        );
        close(line(&kinesis, "CloudWatch"), 2.592e13 / 1e9 * 0.5); // 12,960
        close(
            line(&kinesis, "S3"),
            2.592e8 * 2.0 / 1000.0 * 0.005 + 1.296e13 / 1e9 * 0.023,
        );
        assert!(
            kinesis.total() * 30.0 < reference.total(),
            "about 30x less than the reference"
        );
    }

    #[test]
    fn a_thousand_devices_on_sqs_and_device_batching_divides_the_per_message_lines() {
        let single = one_reading_a_second(1000.0);
        let sqs = estimate(Design::Sqs, single, MEASURED);
        // 2.592e9 messages: 1e9 at $1, 1.592e9 at $0.80.
        close(line(&sqs, "IoT messaging"), 1_000.0 + 1_592.0 * 0.8);
        close(line(&sqs, "IoT rules"), 2_592.0 * 0.45);
        close(line(&sqs, "SQS"), 2.0 * 2_592.0 * 1.2 * 0.40);
        let batched = estimate(
            Design::Sqs,
            Fleet {
                batch: 10.0,
                ..single
            },
            MEASURED,
        );
        close(line(&batched, "IoT messaging"), 259.2);
        close(line(&batched, "IoT rules"), line(&sqs, "IoT rules") / 10.0);
        close(line(&batched, "Lambda"), line(&sqs, "Lambda"));
    }

    #[test]
    fn the_bench_results_give_the_measured_figures() {
        let results: Value =
            serde_json::from_str(include_str!("../../../bench/results.json")).unwrap();
        let measured = Measured::from_results(&results).unwrap();
        assert!(measured.metrics_ms_per_reading > 0.0 && measured.metrics_ms_per_reading < 0.01);
        assert!(measured.emf_bytes_per_reading > 1.0 && measured.emf_bytes_per_reading < 200.0);
        let error = Measured::from_results(&serde_json::json!({})).unwrap_err();
        assert!(error.contains("make bench"), "{error}");
    }
}
