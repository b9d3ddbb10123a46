//! `iotpipe metrics|warehouse|windows`: sample events through the functions,
//! in process, exactly as Lambda would run them (same variables, same sinks).

use std::path::{Path, PathBuf};

use clap::Args;

use telemetry_aws::app::MetricsApp;
use telemetry_core::config::MetricsConfig;
use telemetry_core::invocation::Invocation;
use telemetry_warehouse::{build_writer, WarehouseConfig};
use telemetry_windows::WindowsApp;

#[derive(Args)]
pub struct ReplayArgs {
    /// The functions' clock, e.g. 2022-02-27T05:05:00Z (default: now).
    #[arg(long, value_parser = parse_time)]
    now: Option<i64>,
    /// Event files, or directories of `*.json` events.
    #[arg(default_value = "events")]
    inputs: Vec<PathBuf>,
}

/// Which function to run the events through.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Metrics,
    Warehouse,
    Windows,
}

fn parse_time(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.timestamp_millis())
        .map_err(|error| {
            format!("{text:?} is not an RFC 3339 time such as 2022-02-27T05:05:00Z: {error}")
        })
}

pub async fn replay(function: Function, args: ReplayArgs) -> Result<(), String> {
    let ReplayArgs {
        now: now_ms,
        inputs,
    } = args;
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
                    .settings
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
                    .settings
                    .process_warehouse(event, &format!("load-{index}"), clock, writer.as_ref())
                    .await;
                print!("{}: ", file.display());
                print_result(result.map(|(response, _)| response.to_json()));
            }
        }
        Function::Windows => {
            let app = WindowsApp::from_env()
                .await
                .map_err(|error| error.to_string())?;
            let mut state: Option<serde_json::Value> = None;
            for (index, (file, event)) in events.iter().enumerate() {
                let event = chain_state(event, state.take())
                    .map_err(|error| format!("{}: {error}", file.display()))?;
                let result = app
                    .process(&event, Invocation::new(&format!("windows-{index}"), clock))
                    .await;
                print!("{}: ", file.display());
                match result {
                    Ok((response, counts)) => {
                        let answer = response.to_json();
                        // Lambda deletes the state after a window's final
                        // invocation; the next window starts empty.
                        state = answer.get("state").cloned().filter(|_| !is_final(&event));
                        println!(
                            "=> {} readings, {} aggregates emitted ({} late, {} early), {} dead letters; state: {} series, {} bytes",
                            counts.counts.readings_accepted,
                            counts.aggregates_emitted,
                            counts.late_aggregates,
                            counts.emitted_early,
                            counts.counts.dead_lettered + counts.aggregates_dead_lettered,
                            counts.series_in_state,
                            counts.state_bytes,
                        );
                    }
                    Err(retry) => println!("=> error (Lambda would retry): {retry}"),
                }
            }
        }
    }
    Ok(())
}

/// Whether `event` is a window's final invocation.
fn is_final(event: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(event)
        .ok()
        .and_then(|event| event.get("isFinalInvokeForWindow")?.as_bool())
        .unwrap_or(false)
}

/// The event with the previous answer's `state` in place of its own, as
/// Lambda hands it on within a window (the first event keeps its own).
fn chain_state(
    event: &[u8],
    state: Option<serde_json::Value>,
) -> Result<Vec<u8>, serde_json::Error> {
    let Some(state) = state else {
        return Ok(event.to_vec());
    };
    let mut value: serde_json::Value = serde_json::from_slice(event)?;
    if let Some(object) = value.as_object_mut().filter(|o| o.contains_key("window")) {
        object.insert("state".into(), state);
    }
    serde_json::to_vec(&value)
}

fn print_result(result: Result<serde_json::Value, telemetry_core::outcome::RetryLater>) {
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
