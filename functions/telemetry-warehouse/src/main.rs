//! `telemetry-warehouse`: events from any trigger -> warehouse rows.
//! Configuration is read and the writer built once per cold start; all
//! logic lives in `telemetry-core` and this crate's library.

use bytes::Bytes;
use lambda_runtime::{Context, Diagnostic, Error};
use serde_json::Value;
use telemetry_aws::raw_event::{deadline_ms, to_runtime_answer};
use telemetry_core::invocation::Invocation;
use telemetry_core::warehouse::TableWriter;
use telemetry_warehouse::{build_writer, WarehouseConfig};

struct App {
    config: WarehouseConfig,
    writer: Box<dyn TableWriter>,
}

// One thread: invocations arrive one at a time, and a single-threaded
// runtime keeps memory and start-up small.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = WarehouseConfig::from_env().inspect_err(|error| {
        tracing::error!(%error, "invalid configuration");
    })?;
    let writer = build_writer(&config.target, config.firehose_max_attempts)
        .await
        .inspect_err(|error| tracing::error!(%error, "invalid configuration"))?;
    let app: &'static App = Box::leak(Box::new(App { config, writer }));
    // The event's bytes go to the core's parser as they arrived.
    telemetry_aws::raw_event::run(move |event, context| handle(app, event, context)).await
}

async fn handle(app: &App, event: Bytes, context: Context) -> Result<Value, Diagnostic> {
    let now_ms = telemetry_aws::raw_event::now_ms();
    let invocation = Invocation::new(&context.request_id, now_ms).until(deadline_ms(&context));
    let outcome = app
        .config
        .settings
        .process_warehouse_in(&event, invocation, app.writer.as_ref())
        .await;
    to_runtime_answer(outcome.map(|(response, _)| response))
}
