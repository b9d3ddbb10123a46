//! `iotpipe`: the toolkit's command line (`iotpipe --help`).
//!
//! - `provision` (`provision/`): things, certificates and the device policy
//!   in AWS IoT, keys to a local owner-only directory.
//! - `simulate` (`simulate/`): the references' devices on MQTT.
//! - `run` (`run/`, with `rules/`): the whole pipeline locally, from
//!   simulated devices through the template's rules to the functions.
//! - `metrics`, `warehouse`, `windows` (`replay.rs`): sample events through
//!   the functions, in process, as Lambda would run them.
//! - `cost` (`cost.rs`): the monthly bill per design, for SCALE.md.
//! - `device_files.rs`: the key directory `provision` writes and
//!   `simulate --keys` reads.

mod cost;
mod device_files;
mod provision;
mod replay;
mod run;
mod simulate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use replay::{replay, Function, ReplayArgs};

/// The toolkit's command line: devices, simulation, and the functions run
/// locally.
#[derive(Parser)]
#[command(name = "iotpipe", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Register devices in AWS IoT (thing group, things, a certificate
    /// each, the template's device policy) and write their keys locally.
    Provision(provision::ProvisionArgs),
    /// The references' pipelines end to end on this machine: devices, an
    /// embedded MQTT broker, the template's topic rules, the real function
    /// binaries, commands back to the devices; a report and a chart.
    Run(run::RunArgs),
    /// Run simulated devices of the references (or a TOML fleet) against
    /// an MQTT broker: local, or AWS IoT Core with the provisioned keys.
    Simulate(simulate::SimulateArgs),
    /// What a fleet costs a month in AWS, per component, for the reference
    /// design and ours (prices and sources in the output; our functions'
    /// figures from bench/results.json).
    Cost(cost::CostArgs),
    /// Send events through `telemetry-metrics` as the Lambda function would
    /// (same variables, same sinks); EMF metrics go to stdout.
    #[command(alias = "replay")]
    Metrics(ReplayArgs),
    /// Send events through `telemetry-warehouse` (rows to `WAREHOUSE_URL`,
    /// `./warehouse` by default).
    Warehouse(ReplayArgs),
    /// Replay a tumbling-window sequence through `telemetry-windows`, in
    /// file order, handing each answer's `state` to the next event as
    /// Lambda does (aggregates to the metrics sink and `WAREHOUSE_URL`).
    Windows(ReplayArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Provision(args) => provision::provision(args)
            .await
            .map(|()| true)
            .map_err(|error| error.to_string()),
        Command::Run(args) => run::run(args).await,
        Command::Cost(args) => cost::cost(args).map(|()| true),
        Command::Simulate(args) => simulate::simulate(args)
            .await
            .map_err(|error| error.to_string()),
        Command::Metrics(args) => replay(Function::Metrics, args).await.map(|()| true),
        Command::Warehouse(args) => replay(Function::Warehouse, args).await.map(|()| true),
        Command::Windows(args) => replay(Function::Windows, args).await.map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("iotpipe: {error}");
            ExitCode::FAILURE
        }
    }
}
