//! `telemetry-windows`: a Kinesis stream with Lambda's tumbling windows ->
//! per-device, per-metric aggregates over event-time windows (CloudWatch
//! statistic sets and `window_aggregates` rows). Configuration is read and
//! clients are built once per cold start; all logic lives in
//! `telemetry-core`.

use bytes::Bytes;
use lambda_runtime::{Context, Diagnostic, Error};
use serde_json::Value;
use telemetry_aws::raw_event::{deadline_ms, to_runtime_answer};
use telemetry_core::invocation::Invocation;
use telemetry_windows::WindowsApp;

// One thread: invocations arrive one at a time, and a single-threaded
// runtime keeps memory and start-up small.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app = WindowsApp::from_env().await.inspect_err(|error| {
        tracing::error!(%error, "invalid configuration");
    })?;
    let app: &'static WindowsApp = Box::leak(Box::new(app));
    // The event's bytes go to the core's parser as they arrived.
    telemetry_aws::raw_event::run(move |event, context| handle(app, event, context)).await
}

async fn handle(app: &WindowsApp, event: Bytes, context: Context) -> Result<Value, Diagnostic> {
    let now_ms = telemetry_aws::raw_event::now_ms();
    let invocation = Invocation::new(&context.request_id, now_ms).until(deadline_ms(&context));
    let outcome = app.process(&event, invocation).await;
    let counts = match &outcome {
        Ok((_, counts)) => counts.clone(),
        Err(retry) => telemetry_core::invocation::windows::WindowCounts {
            counts: retry.counts.clone(),
            ..Default::default()
        },
    };
    app.metrics.counts.publish_counts(&counts.counts, now_ms);
    app.metrics.counts.publish(
        &[
            ("AggregatesEmitted", counts.aggregates_emitted),
            ("LateAggregates", counts.late_aggregates),
            ("EmittedEarly", counts.emitted_early),
            ("AggregatesDeadLettered", counts.aggregates_dead_lettered),
            ("WindowStateBytes", counts.state_bytes),
        ],
        now_ms,
    );
    to_runtime_answer(outcome.map(|(response, _)| response))
}
