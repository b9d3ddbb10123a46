//! `iotpipe`: the toolkit's command line.
//!
//! `iotpipe replay [--now RFC3339] [FILE|DIR ...]` sends sample events
//! through the `telemetry-metrics` pipeline exactly as the Lambda function
//! would (same configuration variables, same sinks) and prints the function's
//! response for each; EMF metrics go to stdout as in Lambda.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use telemetry_aws::app::MetricsApp;
use telemetry_core::config::MetricsConfig;

const USAGE: &str = "usage: iotpipe replay [--now RFC3339] [FILE|DIR ...]   (default: events/)";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("replay") => replay(&args[1..]).await,
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

async fn replay(args: &[String]) -> Result<(), String> {
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
    let config = MetricsConfig::from_env().map_err(|error| error.to_string())?;
    let app = MetricsApp::build(config).await;
    let clock = now_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    for (index, file) in files.iter().enumerate() {
        let event = std::fs::read(file).map_err(|error| format!("{}: {error}", file.display()))?;
        println!("### {}", file.display());
        let request_id = format!("replay-{index}");
        let result = app
            .config
            .pipeline
            .process_metrics(
                &event,
                &request_id,
                clock,
                app.metrics.as_ref(),
                app.dead_letters.as_ref(),
            )
            .await;
        match result {
            Ok((response, _)) => println!("=> {}", response.to_json()),
            Err(retry) => println!("=> error (the trigger would retry): {retry}"),
        }
    }
    Ok(())
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
