//! `iotpipe run`: the references' pipelines end to end on this machine, the
//! way they run in AWS, with no cloud account:
//!
//! devices (`simulate`) -> MQTT broker (`broker.rs`, embedded rumqttd) ->
//! rules engine (`rules/`: the topic rules of `infra/template.yaml`) ->
//! actions (`delivery.rs`: Lambda, SQS batches, Kinesis tumbling windows)
//! -> the real function binaries behind a Runtime API (`lambda.rs`) ->
//! Parquet warehouse, EMF metrics, dead letters, and commands back through
//! the IoT data plane (`iot_data.rs`) to the night lights.
//!
//! At the end: `ledger.rs` accounts for every message (accepted or
//! dead-lettered, with reasons), `tables.rs` reads the warehouse back,
//! `chart.rs` draws the page, `report.rs` prints and writes `report.json`.

mod broker;
mod chart;
mod delivery;
mod http;
mod iot_data;
mod lambda;
mod ledger;
mod report;
mod tables;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::sync::watch;

use crate::simulate::connection::{mqtt_options, Broker};
use crate::simulate::device::{run_device, switch_latency, BatchForm, Counters, Plan, Route};
use crate::simulate::fleet::FleetKind;
use crate::simulate::Reporter;
use chart::Series;
use delivery::{Delivery, Router};
use iot_data::IotData;
use iot_rules::template;
use lambda::LocalFunction;
use ledger::{message_of, Ledger};

const DEFAULT_FLEETS: &[&str] = &["gcp-iot-lab", "host-status", "co2-meter", "nightlight"];

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Fleets to run (comma-separated): gcp-iot-lab, host-status,
    /// co2-meter, nightlight, or TOML fleet files. Default: all four.
    #[arg(long, value_delimiter = ',')]
    fleet: Vec<String>,
    /// Devices per fleet (default: 2 temperature sensors and 2 night
    /// lights, 1 of the others).
    #[arg(long)]
    devices: Option<usize>,
    /// Messages per device (default 30).
    #[arg(long, conflicts_with = "duration")]
    messages: Option<u64>,
    /// Or publish for this many seconds, at --rate.
    #[arg(long)]
    duration: Option<f64>,
    /// Messages per second per device (readings per second with --batch).
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Device-side batching: readings per message for the JSON fleets, as
    /// `{"readings": [...]}` (the CO2 meter's text lines stay one a message).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    batch: u64,
    /// Where the warehouse, dead letters, logs, report.json and the chart
    /// go (emptied first).
    #[arg(long, default_value = "run")]
    out: PathBuf,
    /// The embedded broker's port on 127.0.0.1 (default: a free one).
    #[arg(long)]
    listen: Option<u16>,
    /// Use this broker instead of the embedded one (mqtt://127.0.0.1:1883).
    #[arg(long, conflicts_with = "listen")]
    broker: Option<String>,
    /// The SAM template whose topic rules and functions run (default: the
    /// one iotpipe was built with).
    #[arg(long)]
    template: Option<PathBuf>,
    /// Directory of the function binaries (default: next to iotpipe).
    #[arg(long)]
    functions: Option<PathBuf>,
    /// Event-time window of telemetry-windows and the stream's tumbling
    /// window, in seconds (default: the template's).
    #[arg(long)]
    window_seconds: Option<u64>,
    /// Kinesis shards (records are spread by partition key).
    #[arg(long, default_value_t = 2)]
    shards: u32,
    /// Instances (processes) per function: per-message invocations run side
    /// by side, as Lambda's concurrency runs them. A shard's records, and
    /// locally a queue's batches, still go one invocation at a time.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Extra environment, [FUNCTION:]KEY=VALUE (repeatable; FUNCTION is a
    /// binary such as telemetry-warehouse, else every function), e.g.
    /// telemetry-warehouse:PIPELINE_CONFIG=config/reference-pipelines.toml.
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(Option<String>, String, String)>,
    /// A template parameter, NAME=VALUE (repeatable), as the stack would be
    /// deployed with: e.g. Transport=kinesis (all functions read the
    /// stream), IngestPath=basic-ingest (devices publish to
    /// `$aws/rules/<rule>/...`; needs --broker, since the embedded broker
    /// takes no `$` subscriptions).
    #[arg(long = "parameter", value_parser = iot_rules::cloudformation::parse_parameter)]
    parameters: Vec<(String, String)>,
}

fn parse_env(text: &str) -> Result<(Option<String>, String, String), String> {
    let (target, assignment) = match text.split_once(':') {
        Some((function, rest)) if !function.contains('=') => (Some(function.to_owned()), rest),
        _ => (None, text),
    };
    assignment
        .split_once('=')
        .map(|(key, value)| (target, key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("{text:?}: write [FUNCTION:]KEY=VALUE"))
}

/// One fleet of the run.
struct FleetRun {
    kind: FleetKind,
    names: Vec<String>,
    counters: Arc<Counters>,
}

/// Messages the local IoT data plane published: the rules engine sees them
/// too (it subscribes to everything) and must not count them as devices'.
#[derive(Default)]
struct Echoes {
    topics: Mutex<HashMap<String, u32>>,
    published: AtomicU64,
    acknowledged: AtomicU64,
}

impl Echoes {
    fn expect(&self, topic: &str) {
        *self
            .topics
            .lock()
            .expect("no panic while held")
            .entry(topic.to_owned())
            .or_default() += 1;
    }

    fn is_echo(&self, topic: &str) -> bool {
        let mut topics = self.topics.lock().expect("no panic while held");
        match topics.get_mut(topic) {
            Some(count) if *count > 0 => {
                *count -= 1;
                true
            }
            _ => false,
        }
    }
}

pub async fn run(args: RunArgs) -> Result<bool, String> {
    let started = Instant::now();
    let template_text = match &args.template {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?
        }
        None => iot_rules::TEMPLATE.to_owned(),
    };
    let template_name = args
        .template
        .as_ref()
        .map_or("infra/template.yaml (built in)".to_owned(), |path| {
            path.display().to_string()
        });
    let wiring = template::load(&template_text, &args.parameters)
        .map_err(|error| format!("{template_name}: {error}"))?;
    let basic_ingest =
        wiring.parameters.get("IngestPath").map(String::as_str) == Some("basic-ingest");
    if basic_ingest && args.broker.is_none() {
        return Err("--parameter IngestPath=basic-ingest: devices publish to $aws/rules/..., which the embedded broker (rumqttd) cannot pass on; give --broker mqtt://127.0.0.1:<port> (mosquitto)".into());
    }
    let fleets = fleets(&args)?;
    let messages = crate::simulate::messages_per_device(
        args.messages,
        args.duration,
        args.rate,
        args.batch,
        30,
    )
    .map_err(|error| error.to_string())?;
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        return Err(format!(
            "--rate {}: messages per second per device, 0 for as fast as possible",
            args.rate
        ));
    }
    let functions_dir = match &args.functions {
        Some(directory) => directory.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("target/debug")),
    };

    let out = &args.out;
    prepare_out(out)?;
    let logs = out.join("logs");

    // The broker.
    let broker_url = match &args.broker {
        Some(url) => url.clone(),
        None => format!("mqtt://{}", broker::start(args.listen.unwrap_or(0))?),
    };
    let broker = Broker::parse(&broker_url).map_err(|error| error.to_string())?;
    if broker.tls {
        return Err(
            "--broker: the local pipeline runs on a plain local broker (mqtt://127.0.0.1:<port>)"
                .into(),
        );
    }

    // Commands: the local IoT data plane publishes through the broker.
    let echoes = Arc::new(Echoes::default());
    let (command_sender, command_receiver) = tokio::sync::mpsc::unbounded_channel();
    let iot_data = IotData::new(command_sender);
    let iot_data_address = http::serve(0, move |request| {
        let iot_data = iot_data.clone();
        async move { iot_data.handle(&request) }
    })
    .await
    .map_err(|error| format!("the local IoT data plane cannot listen: {error}"))?;
    let publisher = tokio::spawn(publish_commands(
        broker.clone(),
        command_receiver,
        echoes.clone(),
    ));

    // The functions, each behind its own Runtime API.
    let mut functions = BTreeMap::new();
    for function in wiring.functions.values() {
        let environment = function_environment(function, &args, out, iot_data_address);
        let local = LocalFunction::start(
            &function.binary,
            &functions_dir,
            &environment,
            Duration::from_secs(30),
            &logs,
            usize::from(args.concurrency),
        )
        .await
        .map_err(|error| error.to_string())?;
        functions.insert(function.name.clone(), Arc::new(local));
    }
    let functions = Arc::new(functions);
    let ledger = Arc::new(
        Ledger::with_dead_letter_file(&out.join("dead-letters/local-pipeline.jsonl"))
            .map_err(|error| error.to_string())?,
    );
    let draining = Arc::new(AtomicBool::new(false));
    let delivery = Delivery {
        functions: functions.clone(),
        ledger: ledger.clone(),
        draining: draining.clone(),
        shards: args.shards,
    };
    let router = Arc::new(Router::new(wiring.clone(), delivery));
    let series = Arc::new(Mutex::new(Series::default()));
    let received = Arc::new(AtomicU64::new(0));
    let last_received = Arc::new(Mutex::new(Instant::now()));
    let rules_engine = start_rules_engine(
        &broker,
        args.broker.is_some(),
        router.clone(),
        echoes.clone(),
        series.clone(),
        received.clone(),
        last_received.clone(),
    )
    .await?;

    // The devices.
    let total: u64 = fleets
        .iter()
        .map(|fleet| fleet.names.len() as u64 * messages)
        .sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} messages acknowledged by the broker · {msg}",
        )
        .expect("a valid template"),
    );
    let reporter = Reporter::new(bar.clone());
    let (stop_sender, stop) = watch::channel(false);
    let (linger_sender, linger) = watch::channel(false);
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let (stop_sender, interrupted) = (stop_sender.clone(), interrupted.clone());
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::SeqCst);
                let _ = stop_sender.send(true);
            }
        });
    }
    println!(
        "iotpipe run: {} fleet(s), {} device(s) x {messages} message(s) -> {broker} -> {} rule(s) of {template_name} -> {} function(s); output in {}",
        fleets.len(),
        fleets.iter().map(|fleet| fleet.names.len()).sum::<usize>(),
        wiring.rules.len(),
        functions.len(),
        out.display()
    );
    let plan = Plan {
        messages,
        interval: (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate)),
        qos: QoS::AtLeastOnce,
        patience: Duration::from_secs(30),
        linger: Some(linger),
        batch: 1,
        batch_form: BatchForm::Object,
        route: if basic_ingest {
            Route::RuleOf(Arc::new(wiring.clone()))
        } else {
            Route::Topic
        },
    };
    let devices_started = Instant::now();
    let mut devices = Vec::new();
    for fleet in &fleets {
        for name in &fleet.names {
            let options = mqtt_options(&broker, name, None).map_err(|error| error.to_string())?;
            devices.push(tokio::spawn(run_device(
                name.clone(),
                fleet.kind.device(name, &wiring.topic_prefix),
                options,
                Plan {
                    // Text lines do not batch: the CO2 meter sends one a message.
                    batch: if matches!(fleet.kind, FleetKind::Co2Meter) {
                        1
                    } else {
                        args.batch as usize
                    },
                    ..plan.clone()
                },
                fleet.counters.clone(),
                stop.clone(),
                reporter.clone(),
            )));
        }
    }

    // Until every device's messages are acknowledged by the broker (or
    // Ctrl-C), then until the rules engine has them all.
    let all_counters: Vec<Arc<Counters>> =
        fleets.iter().map(|fleet| fleet.counters.clone()).collect();
    let acknowledged = || {
        all_counters
            .iter()
            .map(|c| c.acknowledged.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let sent = || {
        all_counters
            .iter()
            .map(|c| c.sent.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    loop {
        bar.set_position(acknowledged());
        bar.set_message(format!(
            "routed {} · deliveries in flight {}",
            received.load(Ordering::Relaxed),
            ledger.in_flight()
        ));
        let done = acknowledged() >= total || (*stop.borrow() && acknowledged() >= sent());
        if done || started.elapsed() > Duration::from_secs(3600) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expected = acknowledged();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::SeqCst) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anyone else's messages: wait for a quiet moment.
    while last_received.lock().expect("no panic while held").elapsed() < Duration::from_millis(500)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Deliver what is buffered, close the windows, let commands arrive.
    bar.set_message("draining queues and windows".to_owned());
    draining.store(true, Ordering::SeqCst);
    ledger.wait_settled().await;
    let pipeline_time = ledger.last_settled().map_or_else(
        || devices_started.elapsed(),
        |last| last.duration_since(devices_started),
    );
    let rows_written_time = wiring
        .functions
        .values()
        .find(|function| function.binary == "telemetry-warehouse")
        .and_then(|function| ledger.last_taken_by(&function.name))
        .map(|last| last.duration_since(devices_started));
    for task in &router.tasks {
        if !task.is_finished() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let command_deadline = Instant::now() + Duration::from_secs(10);
    while echoes.acknowledged.load(Ordering::SeqCst) < echoes.published.load(Ordering::SeqCst)
        && Instant::now() < command_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = linger_sender.send(true);
    let mut outcomes = Vec::new();
    for device in devices {
        outcomes.push(device.await.map_err(|error| error.to_string())?);
    }
    bar.finish_and_clear();
    for task in &router.tasks {
        task.abort();
    }
    rules_engine.abort();
    publisher.abort();

    // The functions' own dead letters name messages by their delivery ids.
    for function in wiring.functions.values() {
        for (id, request, reason) in
            read_dead_letters(&out.join("dead-letters").join(&function.binary))
        {
            if let Some(message) = message_of(&id).or_else(|| message_of(&request)) {
                ledger.dead_letter(message, &function.name, reason);
            }
        }
    }
    let warehouse = out.join("warehouse");
    let warehouse_function = wiring
        .functions
        .values()
        .find(|function| function.binary == "telemetry-warehouse")
        .map(|function| function.name.clone())
        .unwrap_or_default();
    for row in tables::read_table(&warehouse, "dead_letter")? {
        let id = row
            .get("message_id")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if let Some(message) = message_of(id) {
            let reason = row
                .get("reason")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            ledger.dead_letter(message, &warehouse_function, reason);
        }
    }
    let metrics: BTreeMap<String, lambda::Metrics> = functions
        .values()
        .map(|function| (function.binary.clone(), function.metrics()))
        .collect();
    for function in functions.values() {
        function.stop();
    }

    let fleet_reports: Vec<report::FleetReport> = fleets
        .iter()
        .map(|fleet| report::FleetReport {
            fleet: fleet.kind.name().to_owned(),
            devices: fleet.names.clone(),
            sent: fleet.counters.sent.load(Ordering::Relaxed),
            acknowledged: fleet.counters.acknowledged.load(Ordering::Relaxed),
            commands_applied: fleet.counters.commands_applied.load(Ordering::Relaxed),
        })
        .collect();
    let report = report::Report::build(report::Inputs {
        ledger: &ledger,
        fleets: fleet_reports,
        outcomes: &outcomes,
        metrics,
        commands_sent: echoes.published.load(Ordering::Relaxed),
        received: received.load(Ordering::Relaxed),
        device_acknowledged: expected,
        interrupted: interrupted.load(Ordering::SeqCst),
        elapsed: started.elapsed(),
        switch_latency: switch_latency(
            &fleets
                .iter()
                .map(|fleet| fleet.counters.as_ref())
                .collect::<Vec<_>>(),
        ),
        pipeline_time,
        rows_written_time,
    });
    let maxima = report::window_maxima(&warehouse)?;
    let page = chart::html(
        "iotpipe run",
        &series.lock().expect("no panic while held"),
        &maxima,
    )?;
    let chart_path = out.join("chart.html");
    std::fs::write(&chart_path, page)
        .map_err(|error| format!("{}: {error}", chart_path.display()))?;
    report.write(&out.join("report.json"))?;
    report.print(out, &chart_path, &maxima);
    Ok(report.is_complete())
}

/// The fleets asked for, with their device names.
fn fleets(args: &RunArgs) -> Result<Vec<FleetRun>, String> {
    let names: Vec<String> = if args.fleet.is_empty() {
        DEFAULT_FLEETS
            .iter()
            .map(|name| (*name).to_owned())
            .collect()
    } else {
        args.fleet.clone()
    };
    names
        .iter()
        .map(|name| {
            let kind = FleetKind::parse(name).map_err(|error| error.to_string())?;
            let count = args.devices.unwrap_or(match kind {
                FleetKind::GcpIotLab | FleetKind::Nightlight => 2,
                _ => 1,
            });
            Ok(FleetRun {
                names: kind.default_names(count),
                kind,
                counters: Arc::default(),
            })
        })
        .collect()
}

/// Empties the run's output directory of a previous run's files.
fn prepare_out(out: &Path) -> Result<(), String> {
    for part in ["warehouse", "dead-letters", "logs"] {
        let path = out.join(part);
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .map_err(|error| format!("{}: {error}", path.display()))?;
        }
    }
    for part in ["report.json", "chart.html"] {
        let _ = std::fs::remove_file(out.join(part));
    }
    for part in ["warehouse", "dead-letters", "logs"] {
        std::fs::create_dir_all(out.join(part))
            .map_err(|error| format!("{}: {error}", out.join(part).display()))?;
    }
    Ok(())
}

/// A function's environment: the template's variables, local places for
/// what lives in AWS (bucket -> directory, CloudWatch -> EMF lines, the IoT
/// data plane -> ours), no way out of this machine, then `--env`.
fn function_environment(
    function: &template::FunctionSpec,
    args: &RunArgs,
    out: &Path,
    iot_data: std::net::SocketAddr,
) -> BTreeMap<String, String> {
    let mut environment = function.environment.clone();
    let absolute = |path: PathBuf| {
        std::path::absolute(&path)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    environment.insert("METRICS_SINK".into(), "emf".into());
    environment.insert(
        "DEAD_LETTER_URL".into(),
        absolute(out.join("dead-letters").join(&function.binary)),
    );
    if matches!(
        function.binary.as_str(),
        "telemetry-warehouse" | "telemetry-windows"
    ) {
        environment.insert("WAREHOUSE_URL".into(), absolute(out.join("warehouse")));
    }
    if let Some(seconds) = args.window_seconds {
        if environment.contains_key("WINDOW_SECONDS") {
            environment.insert("WINDOW_SECONDS".into(), seconds.to_string());
        }
    }
    for (key, value) in [
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "local".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "local".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        // Any AWS call but the IoT data plane goes nowhere.
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".to_owned()),
        (
            "AWS_ENDPOINT_URL_IOT_DATA_PLANE",
            format!("http://{iot_data}"),
        ),
        ("AWS_MAX_ATTEMPTS", "2".to_owned()),
    ] {
        environment.insert(key.into(), value);
    }
    for (target, key, value) in &args.env {
        if target
            .as_ref()
            .is_none_or(|target| *target == function.binary || *target == function.name)
        {
            environment.insert(key.clone(), value.clone());
        }
    }
    environment
}

/// The rules engine's MQTT client: every message on the broker, through
/// the router.
async fn start_rules_engine(
    broker: &Broker,
    basic_ingest: bool,
    router: Arc<Router>,
    echoes: Arc<Echoes>,
    series: Arc<Mutex<Series>>,
    received: Arc<AtomicU64>,
    last_received: Arc<Mutex<Instant>>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let mut options = MqttOptions::new("iotpipe-rules-engine", broker.host.clone(), broker.port);
    options
        .set_max_packet_size(256 * 1024, 256 * 1024)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    client
        .subscribe("#", QoS::AtLeastOnce)
        .await
        .map_err(|error| error.to_string())?;
    // Subscribed before any device publishes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::SubAck(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(error)) if Instant::now() > deadline => {
                return Err(format!("the rules engine cannot reach {broker}: {error}"))
            }
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => return Err(format!("the rules engine got no answer from {broker}")),
        }
    }
    // `#` does not match topics that begin with `$`: Basic Ingest's
    // `$aws/rules/...` needs its own filter. rumqttd refuses `$` filters, so
    // only a broker given with --broker (mosquitto) gets one.
    if basic_ingest {
        client
            .subscribe("$aws/rules/#", QoS::AtLeastOnce)
            .await
            .map_err(|error| error.to_string())?;
    }
    Ok(tokio::spawn(async move {
        let _client = client;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::Publish(publish))) => {
                    if echoes.is_echo(&publish.topic) {
                        continue;
                    }
                    let now_ms = chrono::Utc::now().timestamp_millis();
                    // Parsed once, for the chart and the rules.
                    let json: Option<serde_json::Value> =
                        serde_json::from_slice(&publish.payload).ok();
                    series.lock().expect("no panic while held").observe(
                        &publish.topic,
                        &publish.payload,
                        json.as_ref(),
                        now_ms,
                    );
                    router.route(&publish.topic, &publish.payload, json.as_ref());
                    received.fetch_add(1, Ordering::SeqCst);
                    *last_received.lock().expect("no panic while held") = Instant::now();
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }))
}

/// Publishes the IoT data plane's commands to the broker (QoS 1).
async fn publish_commands(
    broker: Broker,
    mut commands: tokio::sync::mpsc::UnboundedReceiver<iot_data::Outgoing>,
    echoes: Arc<Echoes>,
) {
    let mut options = MqttOptions::new("iotpipe-iot-data-plane", broker.host.clone(), broker.port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let acknowledged = echoes.clone();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::PubAck(_))) => {
                    acknowledged.acknowledged.fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    while let Some((topic, payload)) = commands.recv().await {
        echoes.expect(&topic);
        echoes.published.fetch_add(1, Ordering::SeqCst);
        let _ = client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await;
    }
}

/// (message id, request id, reason) of every dead letter a function wrote
/// to its local directory.
fn read_dead_letters(directory: &Path) -> Vec<(String, String, String)> {
    let mut letters = Vec::new();
    let Ok(entries) = std::fs::read_dir(directory) else {
        return letters;
    };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines() {
            if let Ok(letter) = serde_json::from_str::<serde_json::Value>(line) {
                let field = |name: &str| letter[name].as_str().unwrap_or_default().to_owned();
                letters.push((field("message_id"), field("request_id"), field("reason")));
            }
        }
    }
    letters
}
