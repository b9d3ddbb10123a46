//! `iotpipe`: the toolkit's command line.
//!
//! `iotpipe metrics [--now RFC3339] [FILE|DIR ...]` (alias `replay`) sends
//! events through the `telemetry-metrics` pipeline exactly as the Lambda
//! function would (same configuration variables, same sinks) and prints the
//! function's response for each; EMF metrics go to stdout as in Lambda.
//!
//! `iotpipe warehouse [--now RFC3339] [FILE|DIR ...]` does the same with
//! `telemetry-warehouse` (rows to `WAREHOUSE_URL`, `./warehouse` by default).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use telemetry_aws::app::MetricsApp;
use telemetry_core::config::MetricsConfig;
use telemetry_warehouse::{build_writer, WarehouseConfig};

const USAGE: &str =
    "usage: iotpipe metrics|warehouse [--now RFC3339] [FILE|DIR ...]   (default: events/)";

/// Which function to run the events through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Function {
    Metrics,
    Warehouse,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("replay") | Some("metrics") => replay(Function::Metrics, &args[1..]).await,
        Some("warehouse") => replay(Function::Warehouse, &args[1..]).await,
        Some("-h") | Some("--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("iotpipe: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn replay(function: Function, args: &[String]) -> Result<(), String> {
    let mut now_ms = None;
    let mut inputs = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--now" => {
                let text = rest
                    .next()
                    .ok_or("--now needs a time such as 2022-02-27T05:05:00Z")?;
                let time = chrono::DateTime::parse_from_rfc3339(text)
                    .map_err(|error| format!("--now {text:?}: {error}"))?;
                now_ms = Some(time.timestamp_millis());
            }
            flag if flag.starts_with('-') => {
                return Err(format!("unknown option {flag:?}\n{USAGE}"))
            }
            path => inputs.push(PathBuf::from(path)),
        }
    }
    if inputs.is_empty() {
        inputs.push(PathBuf::from("events"));
    }
    let files = event_files(&inputs)?;
    let clock = now_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let events: Vec<(PathBuf, Vec<u8>)> = files
        .into_iter()
        .map(|file| {
            std::fs::read(&file)
                .map(|event| (file.clone(), event))
                .map_err(|e| format!("{}: {e}", file.display()))
        })
        .collect::<Result<_, _>>()?;
    match function {
        Function::Metrics => {
            let config = MetricsConfig::from_env().map_err(|error| error.to_string())?;
            let app = MetricsApp::build(config).await;
            for (index, (file, event)) in events.iter().enumerate() {
                println!("### {}", file.display());
                let result = app
                    .config
                    .pipeline
                    .process_metrics(
                        event,
                        &format!("replay-{index}"),
                        clock,
                        app.metrics.as_ref(),
                        app.dead_letters.as_ref(),
                    )
                    .await;
                print_result(result.map(|(response, _)| response.to_json()));
            }
        }
        Function::Warehouse => {
            let config = WarehouseConfig::from_env().map_err(|error| error.to_string())?;
            let writer = build_writer(&config.target, config.firehose_max_attempts)
                .await
                .map_err(|error| error.to_string())?;
            println!("rows go to {}", config.target);
            for (index, (file, event)) in events.iter().enumerate() {
                let result = config
                    .warehouse
                    .process(event, &format!("load-{index}"), clock, writer.as_ref())
                    .await;
                print!("{}: ", file.display());
                print_result(result.map(|(response, _)| response.to_json()));
            }
        }
    }
    Ok(())
}

fn print_result(result: Result<serde_json::Value, telemetry_core::pipeline::RetryLater>) {
    match result {
        Ok(response) => println!("=> {response}"),
        Err(retry) => println!("=> error (the trigger would retry): {retry}"),
    }
}

/// JSON files named directly, or found (sorted) in the directories given.
fn event_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|error| format!("{}: {error}", input.display()))?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| is_event(path))
                .collect();
            found.sort();
            files.extend(found);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            return Err(format!("{}: no such file or directory", input.display()));
        }
    }
    Ok(files)
}

fn is_event(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|ext| ext == "json")
}
