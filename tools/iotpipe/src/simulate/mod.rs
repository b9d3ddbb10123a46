//! `iotpipe simulate`: the references' devices on MQTT, one connection per
//! device, with a progress bar and a summary (exit code 1 when anything
//! sent was not acknowledged).
//!
//! - `fleet.rs`: what each fleet's devices publish (and the night light's
//!   commands); `custom.rs`: fleets described in TOML; `host.rs`: this
//!   machine's status for `host-status`.
//! - `connection.rs`: broker URLs, TLS, connection options.
//! - `device.rs`: one device's connection, publishing and acknowledgements.

pub mod connection;
pub mod custom;
pub mod device;
pub mod fleet;
pub mod host;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rumqttc::QoS;
use tokio::sync::watch;

use crate::device_files::{read_devices, DeviceFilesError};
use connection::{mqtt_options, Broker, TlsFiles};
use device::{run_device, switch_latency, BatchForm, Counters, DeviceOutcome, Plan, Route};
use fleet::{FleetKind, FLEET_NAMES};

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("--fleet {fleet:?}: not a fleet; use one of {names} or a .toml file describing your own", names = FLEET_NAMES.join(", "))]
    UnknownFleet { fleet: String },
    #[error("{path}: {reason}")]
    FleetFile { path: PathBuf, reason: String },
    #[error("--broker {broker:?}: {reason}")]
    Broker { broker: String, reason: String },
    #[error("{path}: {reason}")]
    TlsFile { path: PathBuf, reason: String },
    #[error("{0}")]
    Options(String),
    #[error(transparent)]
    Keys(#[from] DeviceFilesError),
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// gcp-iot-lab, host-status, co2-meter, nightlight, or a TOML file
    /// describing your own device (see README).
    #[arg(long)]
    fleet: String,
    /// How many devices (default: 2 for gcp-iot-lab as in reference 000,
    /// else 1; with --keys, every provisioned device).
    #[arg(long)]
    devices: Option<usize>,
    /// Device names, comma-separated (instead of the fleet's).
    #[arg(long, value_delimiter = ',')]
    names: Option<Vec<String>>,
    /// Messages per device (default 100, as reference 000's script).
    #[arg(long, conflicts_with = "duration")]
    messages: Option<u64>,
    /// Or publish for this many seconds, at --rate.
    #[arg(long)]
    duration: Option<f64>,
    /// Messages per second per device; 0: as fast as the broker takes them.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// mqtt://127.0.0.1:1883 (this machine) or mqtts://<endpoint>:8883
    /// (default: the provisioned devices' endpoint with --keys, else
    /// mqtt://127.0.0.1:1883).
    #[arg(long)]
    broker: Option<String>,
    /// 0 (at most once) or 1 (at least once: nothing lost when the
    /// connection drops).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// The directory `iotpipe provision --out` wrote: devices connect with
    /// their own certificate and key, client id = thing name.
    #[arg(long)]
    keys: Option<PathBuf>,
    /// CA certificate(s) to verify the broker with (default: the device's
    /// root CA from provisioning, else the system's trusted roots).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Topics are <prefix>/<device>/telemetry|status|text and
    /// .../commands; "" for reference 004's <device>/telemetry. Default:
    /// the provisioned prefix, else the template's "devices".
    #[arg(long)]
    topic_prefix: Option<String>,
    /// Seconds to keep trying while the broker is unreachable, and to wait
    /// for acknowledgements after the last publish.
    #[arg(long, default_value_t = 30.0)]
    patience: f64,
    /// Device-side batching: readings per message (--rate is then readings
    /// per second; --messages counts messages).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    batch: u64,
    /// How a batch is sent: `{"readings": [...]}` (object), which topic
    /// rules that add fields carry, or a bare JSON array.
    #[arg(long, value_enum, default_value_t = BatchForm::Object)]
    batch_form: BatchForm,
    /// Basic Ingest: publish to `$aws/rules/<RULE>/<topic>`, straight to
    /// that topic rule (AWS charges no messaging for it; the stack's device
    /// policy allows it with IngestPath=basic-ingest). Without RULE, each
    /// message goes to the template's rule for its topic
    /// (`<rule-name-prefix>_telemetry`, `_status`, `_text`).
    #[arg(long, value_name = "RULE", num_args = 0..=1, default_missing_value = "")]
    basic_ingest: Option<String>,
    /// The stack's RuleNamePrefix, for --basic-ingest without a rule
    /// (default: the template's, `iotpipe`).
    #[arg(long, requires = "basic_ingest")]
    rule_name_prefix: Option<String>,
}

/// Messages per device: `--messages`, or `--duration` seconds at `--rate`,
/// or `default`.
pub fn messages_per_device(
    messages: Option<u64>,
    duration: Option<f64>,
    rate: f64,
    batch: u64,
    default: u64,
) -> Result<u64, SimulateError> {
    match (messages, duration) {
        (Some(messages), _) => Ok(messages),
        // `rate` counts readings, `batch` of them to a message.
        (None, Some(seconds)) if seconds.is_finite() && seconds > 0.0 && rate > 0.0 => {
            Ok((seconds * rate / batch.max(1) as f64).ceil() as u64)
        }
        (None, Some(seconds)) => Err(SimulateError::Options(format!(
            "--duration {seconds} needs a positive duration and a --rate above 0"
        ))),
        (None, None) => Ok(default),
    }
}

/// Prints lines above the progress bar (or plainly when there is none).
#[derive(Clone)]
pub struct Reporter {
    bar: ProgressBar,
}

impl Reporter {
    pub fn new(bar: ProgressBar) -> Reporter {
        Reporter { bar }
    }

    pub fn line(&self, line: String) {
        if line.is_empty() {
            return;
        }
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

/// One device of a run and how it connects.
struct SimulatedDevice {
    name: String,
    client_id: String,
    tls: Option<TlsFiles>,
}

/// The whole run, resolved from the arguments.
struct FleetRun {
    fleet: FleetKind,
    devices: Vec<SimulatedDevice>,
    broker: Broker,
    prefix: String,
    plan: Plan,
}

impl FleetRun {
    fn from_args(args: SimulateArgs) -> Result<FleetRun, SimulateError> {
        let fleet = FleetKind::parse(&args.fleet)?;
        let rule_names = [args.basic_ingest.as_ref(), args.rule_name_prefix.as_ref()];
        for rule in rule_names
            .into_iter()
            .flatten()
            .filter(|rule| !rule.is_empty())
        {
            let valid = rule.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(SimulateError::Options(format!(
                    "--basic-ingest {rule:?}: a topic rule's name (and prefix) is letters, digits and '_'"
                )));
            }
        }
        if args.batch > 1 && matches!(fleet, FleetKind::Co2Meter) {
            return Err(SimulateError::Options(format!(
                "--batch {}: co2-meter sends text lines, which do not batch into JSON; use a JSON fleet",
                args.batch
            )));
        }
        if !(args.rate.is_finite() && args.rate >= 0.0) {
            return Err(SimulateError::Options(format!(
                "--rate {}: give messages per second per device, 0 for as fast as possible",
                args.rate
            )));
        }
        if !(args.patience.is_finite() && args.patience > 0.0) {
            return Err(SimulateError::Options(format!(
                "--patience {}: give seconds, more than 0",
                args.patience
            )));
        }
        let messages =
            messages_per_device(args.messages, args.duration, args.rate, args.batch, 100)?;

        let provisioned = match &args.keys {
            Some(directory) => read_devices(directory)?,
            None => Vec::new(),
        };
        let (devices, default_broker, provisioned_prefix) = if provisioned.is_empty() {
            let count = args
                .devices
                .unwrap_or(if matches!(fleet, FleetKind::GcpIotLab) {
                    2
                } else {
                    1
                });
            let names = args
                .names
                .clone()
                .unwrap_or_else(|| fleet.default_names(count));
            let devices: Vec<SimulatedDevice> = names
                .into_iter()
                .map(|name| SimulatedDevice {
                    client_id: name.clone(),
                    name,
                    tls: None,
                })
                .collect();
            (devices, "mqtt://127.0.0.1:1883".to_owned(), None)
        } else {
            let mut chosen: Vec<_> = provisioned
                .into_iter()
                .filter(|device| {
                    args.names
                        .as_ref()
                        .is_none_or(|names| names.contains(&device.config.thing_name))
                })
                .collect();
            if let Some(count) = args.devices {
                if count > chosen.len() {
                    return Err(SimulateError::Options(format!(
                        "--devices {count}: only {} provisioned in {}; provision more with `iotpipe provision`",
                        chosen.len(),
                        args.keys.as_ref().expect("keys given").display()
                    )));
                }
                chosen.truncate(count);
            }
            if chosen.is_empty() {
                return Err(SimulateError::Options(format!(
                    "--names {:?}: none of them is provisioned in {}",
                    args.names.unwrap_or_default(),
                    args.keys.as_ref().expect("keys given").display()
                )));
            }
            let broker = chosen[0].config.broker.clone();
            let prefix = chosen[0].config.topic_prefix.clone();
            let devices = chosen
                .into_iter()
                .map(|device| {
                    let tls = device.private_key_path().map(|private_key| TlsFiles {
                        certificate: device.certificate_path(),
                        private_key,
                        root_ca: args.ca.clone().or_else(|| device.root_ca_path()),
                    });
                    SimulatedDevice {
                        name: device.config.thing_name.clone(),
                        client_id: device.config.client_id.clone(),
                        tls,
                    }
                })
                .collect();
            (devices, broker, Some(prefix))
        };
        if devices.is_empty() {
            return Err(SimulateError::Options(
                "--devices 0: nothing to simulate".into(),
            ));
        }
        let broker = Broker::parse(args.broker.as_deref().unwrap_or(&default_broker))?;
        let prefix = args
            .topic_prefix
            .or(provisioned_prefix)
            .unwrap_or_else(|| "devices".to_owned());
        let route = match args.basic_ingest.as_deref() {
            None => Route::Topic,
            Some("") => {
                let mut parameters = vec![
                    ("TopicPrefix".to_owned(), prefix.clone()),
                    ("IngestPath".to_owned(), "basic-ingest".to_owned()),
                ];
                if let Some(rule_prefix) = &args.rule_name_prefix {
                    parameters.push(("RuleNamePrefix".to_owned(), rule_prefix.clone()));
                }
                let wiring = iot_rules::template::load(iot_rules::TEMPLATE, &parameters)
                    .map_err(|error| SimulateError::Options(format!("--basic-ingest: {error}")))?;
                Route::RuleOf(Arc::new(wiring))
            }
            Some(rule) => Route::Rule(rule.to_owned()),
        };
        Ok(FleetRun {
            fleet,
            devices,
            broker,
            prefix,
            plan: Plan {
                messages,
                interval: (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate)),
                qos: if args.qos == 0 {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                },
                patience: Duration::from_secs_f64(args.patience),
                linger: None,
                batch: args.batch as usize,
                batch_form: args.batch_form,
                route,
            },
        })
    }
}

/// `iotpipe simulate`: runs the fleet, prints the summary; `Ok(false)` when
/// anything sent was not acknowledged.
pub async fn simulate(args: SimulateArgs) -> Result<bool, SimulateError> {
    let run = FleetRun::from_args(args)?;
    let total = run.plan.messages * run.devices.len() as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} acknowledged · {msg}")
            .expect("a valid template"),
    );
    let reporter = Reporter::new(bar.clone());
    let counters = Arc::new(Counters::default());
    let (stop_sender, stop) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_sender.send(true);
        }
    });

    println!(
        "{}: {} device(s) x {} message(s){}, QoS {}, {} -> {}",
        run.fleet.name(),
        run.devices.len(),
        run.plan.messages,
        if run.plan.batch > 1 {
            format!(" of {} readings", run.plan.batch)
        } else {
            String::new()
        },
        if run.plan.qos == QoS::AtMostOnce {
            0
        } else {
            1
        },
        match run.plan.interval {
            Some(interval) => format!("{:.3} s apart", interval.as_secs_f64()),
            None => "as fast as acknowledged".to_owned(),
        },
        run.broker
    );
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(run.devices.len());
    for device in &run.devices {
        let options = mqtt_options(&run.broker, &device.client_id, device.tls.as_ref())?;
        let model = run.fleet.device(&device.name, &run.prefix);
        tasks.push(tokio::spawn(run_device(
            device.name.clone(),
            model,
            options,
            run.plan.clone(),
            counters.clone(),
            stop.clone(),
            reporter.clone(),
        )));
    }

    let ticker = {
        let (bar, counters) = (bar.clone(), counters.clone());
        tokio::spawn(async move {
            loop {
                show_progress(&bar, &counters, started);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.expect("device tasks do not panic"));
    }
    ticker.abort();
    show_progress(&bar, &counters, started);
    bar.finish_and_clear();

    let summary = Summary::of(&outcomes, started.elapsed());
    for outcome in &outcomes {
        if let Some(reason) = &outcome.gave_up {
            println!(
                "{}: {} not acknowledged: {reason}",
                outcome.name,
                outcome.failed()
            );
        }
    }
    println!("{summary}");
    if let Some((switches, p50, p99)) = switch_latency(&[&counters]) {
        println!("LED switches timed: {switches}, from the reading that called for one to the LED: p50 {p50:.1} ms, p99 {p99:.1} ms");
    }
    if *stop.borrow() {
        println!("stopped by Ctrl-C");
    }
    Ok(summary.failed == 0 && summary.gave_up == 0)
}

fn show_progress(bar: &ProgressBar, counters: &Counters, started: Instant) {
    let sent = counters.sent.load(Ordering::Relaxed);
    let acknowledged = counters.acknowledged.load(Ordering::Relaxed);
    bar.set_position(acknowledged);
    bar.set_message(format!(
        "sent {sent} · in flight {} · reconnections {} · {:.1} msg/s",
        sent.saturating_sub(acknowledged),
        counters.reconnections.load(Ordering::Relaxed),
        acknowledged as f64 / started.elapsed().as_secs_f64().max(1e-3)
    ));
}

/// The run's totals.
#[derive(Debug, PartialEq)]
pub struct Summary {
    pub sent: u64,
    pub acknowledged: u64,
    pub failed: u64,
    pub reconnections: u64,
    pub gave_up: usize,
    pub elapsed: Duration,
}

impl Summary {
    pub fn of(outcomes: &[DeviceOutcome], elapsed: Duration) -> Summary {
        Summary {
            sent: outcomes.iter().map(|o| o.sent).sum(),
            acknowledged: outcomes.iter().map(|o| o.acknowledged).sum(),
            failed: outcomes.iter().map(DeviceOutcome::failed).sum(),
            reconnections: outcomes.iter().map(|o| o.reconnections).sum(),
            gave_up: outcomes.iter().filter(|o| o.gave_up.is_some()).count(),
            elapsed,
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        write!(
            f,
            "sent {}, acknowledged {}, failed {} in {seconds:.1} s ({:.1} messages/s); reconnections {}",
            self.sent,
            self.acknowledged,
            self.failed,
            self.acknowledged as f64 / seconds.max(1e-3),
            self.reconnections
        )
    }
}
