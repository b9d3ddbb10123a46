//! `telemetry-warehouse`: events from any trigger -> warehouse rows.
//! Configuration is read and the writer built once per cold start; all
//! logic lives in `telemetry-core` and this crate's library.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use telemetry_core::envelope::IncomingEvent;
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
    let writer = build_writer(&config.target, config.firehose_max_attempts).await;
    let app: &'static App = Box::leak(Box::new(App { config, writer }));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<IncomingEvent>| {
        handle(app, event)
    }))
    .await
}

async fn handle(app: &App, event: LambdaEvent<IncomingEvent>) -> Result<Value, Error> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default();
    let (response, _counts) = app
        .config
        .warehouse
        .process_incoming(
            event.payload,
            &event.context.request_id,
            now_ms,
            app.writer.as_ref(),
        )
        .await?;
    Ok(response.to_json())
}
