//! `device-commands`: device telemetry from any trigger -> decisions of the
//! `[[command]]` rules -> commands back to the devices, on their command
//! topic or in their shadow. Configuration is read and the client built
//! once per cold start; all logic lives in `telemetry-core`.

use bytes::Bytes;
use lambda_runtime::{Context, Diagnostic, Error};
use serde_json::Value;
use telemetry_aws::app::CountsPublisher;
use telemetry_aws::iotdata::IotCommands;
use telemetry_aws::raw_event::{counts_of, deadline_ms, to_runtime_answer};
use telemetry_aws::s3::dead_letter_sink;
use telemetry_core::config::CommandsConfig;
use telemetry_core::invocation::commands::{CommandTally, CommandsStep};
use telemetry_core::invocation::Invocation;
use telemetry_core::sink::DeadLetterSink;

struct App {
    step: CommandsStep<'static>,
    dead_letters: Box<dyn DeadLetterSink>,
    counts: CountsPublisher,
}

// One thread: invocations arrive one at a time.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = CommandsConfig::from_env().inspect_err(|error| {
        tracing::error!(%error, "invalid configuration");
    })?;
    let sdk = telemetry_aws::load_sdk_config().await;
    let config: &'static CommandsConfig = Box::leak(Box::new(config));
    let sink: &'static IotCommands =
        Box::leak(Box::new(IotCommands::new(&sdk, &config.memory_shadow)));
    let app: &'static App = Box::leak(Box::new(App {
        step: CommandsStep {
            settings: &config.settings,
            sink,
            tally: CommandTally::default(),
        },
        dead_letters: dead_letter_sink(&config.dead_letters, Some(&sdk)),
        counts: CountsPublisher::new(&config.namespace, "device-commands"),
    }));
    telemetry_aws::raw_event::run(move |event, context| handle(app, event, context)).await
}

async fn handle(app: &App, event: Bytes, context: Context) -> Result<Value, Diagnostic> {
    let now_ms = telemetry_aws::raw_event::now_ms();
    let invocation = Invocation::new(&context.request_id, now_ms).until(deadline_ms(&context));
    let outcome = app
        .step
        .settings
        .process_commands_in(&app.step, &event, invocation, app.dead_letters.as_ref())
        .await;
    let counts = counts_of(&outcome);
    let (sent, suppressed, failed) = app.step.tally.take();
    let metrics = [
        ("Messages", counts.messages),
        ("MessagesDeadLettered", counts.dead_lettered),
        ("MessagesRetried", counts.retried),
        ("CommandsSent", sent),
        ("CommandsSuppressed", suppressed),
        ("CommandFailures", failed),
    ];
    app.counts.publish(&metrics, now_ms);
    to_runtime_answer(outcome.map(|(response, _)| response))
}
