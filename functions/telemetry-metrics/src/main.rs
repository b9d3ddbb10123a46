//! `telemetry-metrics`: device telemetry from any trigger -> CloudWatch
//! metrics. Configuration is read and clients are built once per cold start;
//! all logic lives in `telemetry-core`.

use bytes::Bytes;
use lambda_runtime::{Context, Diagnostic, Error};
use serde_json::Value;
use telemetry_aws::app::MetricsApp;
use telemetry_aws::raw_event::{counts_of, deadline_ms, to_runtime_answer};
use telemetry_core::config::MetricsConfig;
use telemetry_core::invocation::Invocation;

// One thread: invocations arrive one at a time, and a single-threaded
// runtime keeps memory and start-up small.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = MetricsConfig::from_env().inspect_err(|error| {
        tracing::error!(%error, "invalid configuration");
    })?;
    let app: &'static MetricsApp = Box::leak(Box::new(MetricsApp::build(config).await));
    // The event's bytes go to the core's parser as they arrived.
    telemetry_aws::raw_event::run(move |event, context| handle(app, event, context)).await
}

async fn handle(app: &MetricsApp, event: Bytes, context: Context) -> Result<Value, Diagnostic> {
    let now_ms = telemetry_aws::raw_event::now_ms();
    let invocation = Invocation::new(&context.request_id, now_ms).until(deadline_ms(&context));
    let outcome = app
        .config
        .settings
        .process_metrics_in(
            &event,
            invocation,
            app.metrics.as_ref(),
            app.dead_letters.as_ref(),
        )
        .await;
    app.counts.publish_counts(counts_of(&outcome), now_ms);
    to_runtime_answer(outcome.map(|(response, _)| response))
}
