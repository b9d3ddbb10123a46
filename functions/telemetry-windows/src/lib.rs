//! `telemetry-windows`' configuration and sinks, built once per cold start
//! and shared with `iotpipe windows` (the local replay): the metrics
//! function's sinks and dead letters, the warehouse function's table
//! writer, and the window settings.

use telemetry_aws::app::{CountsPublisher, MetricsApp};
use telemetry_core::config::{MetricsConfig, SettingError, WindowsConfig};
use telemetry_core::invocation::windows::{WindowCounts, WindowOutputs};
use telemetry_core::invocation::Invocation;
use telemetry_core::outcome::{Response, RetryLater};
use telemetry_core::warehouse::TableWriter;
use telemetry_core::window::Outputs;
use telemetry_warehouse::{build_writer, WarehouseConfig};

/// Every environment variable `telemetry-windows` reads: the metrics
/// function's, the warehouse function's and its own.
pub const WINDOWS_FUNCTION_ENV_VARS: &[&str] = &[
    "PIPELINE_CONFIG",
    "PIPELINE_CONFIG_TOML",
    "METRICS_NAMESPACE",
    "METRICS_SINK",
    "METRICS_HIGH_RESOLUTION",
    "CLOUDWATCH_MAX_ATTEMPTS",
    "DEAD_LETTER_URL",
    "PUBSUB_VERIFICATION_TOKEN",
    "AWS_LAMBDA_FUNCTION_NAME",
    "WAREHOUSE_URL",
    "FIREHOSE_MAX_ATTEMPTS",
    "WAREHOUSE_EARLIEST",
    "WAREHOUSE_MAX_AHEAD_SECONDS",
    "WINDOW_SECONDS",
    "ALLOWED_LATENESS_SECONDS",
    "WINDOW_STATE_BUDGET_BYTES",
    "WINDOW_OUTPUTS",
];

/// The `function` dimension of the pipeline counts.
pub const WINDOWS_FUNCTION: &str = "telemetry-windows";

/// Everything `telemetry-windows` needs per invocation.
pub struct WindowsApp {
    pub metrics: MetricsApp,
    pub windows: WindowsConfig,
    /// The warehouse's writer, when `WINDOW_OUTPUTS` has `warehouse`.
    pub table: Option<Box<dyn TableWriter>>,
}

impl WindowsApp {
    /// Reads the environment and builds the outputs it asks for.
    pub async fn from_env() -> Result<Self, SettingError> {
        let lookup = |name: &str| std::env::var(name).ok();
        let windows = WindowsConfig::from_lookup(lookup)?;
        let metrics_config = MetricsConfig::from_lookup(lookup)?;
        let table = if windows.outputs.has(Outputs::TABLE) {
            let warehouse = WarehouseConfig::from_lookup(lookup)?;
            tracing::info!(target = %warehouse.target, "window aggregates go to the warehouse");
            Some(build_writer(&warehouse.target, warehouse.firehose_max_attempts).await?)
        } else {
            None
        };
        let mut metrics = MetricsApp::build(metrics_config).await;
        metrics.counts = CountsPublisher::new(&metrics.config.namespace, WINDOWS_FUNCTION);
        Ok(WindowsApp {
            metrics,
            windows,
            table,
        })
    }

    /// One invocation, with this app's settings, outputs and dead letters.
    pub async fn process(
        &self,
        event: &[u8],
        invocation: Invocation<'_>,
    ) -> Result<(Response, WindowCounts), RetryLater> {
        self.metrics
            .config
            .settings
            .process_windows(
                self.windows.window,
                event,
                invocation,
                self.outputs(),
                self.metrics.dead_letters.as_ref(),
            )
            .await
    }

    pub fn outputs(&self) -> WindowOutputs<'_> {
        WindowOutputs {
            metrics: self
                .windows
                .outputs
                .has(Outputs::METRICS)
                .then_some(self.metrics.metrics.as_ref()),
            table: self.table.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_metrics_warehouse_and_window_variables_and_no_others() {
        let mut expected: Vec<&str> = telemetry_core::config::METRICS_ENV_VARS
            .iter()
            .chain(telemetry_warehouse::WAREHOUSE_ENV_VARS)
            .chain(telemetry_core::config::WINDOW_ENV_VARS)
            .copied()
            .collect();
        expected.sort_unstable();
        expected.dedup();
        let mut listed = WINDOWS_FUNCTION_ENV_VARS.to_vec();
        listed.sort_unstable();
        assert_eq!(listed, expected);
    }
}
