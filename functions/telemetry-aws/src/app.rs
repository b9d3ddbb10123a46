//! Builds the sinks a function's configuration asks for, once per cold start.

use std::io::Write;

use telemetry_core::config::{DeadLetterTarget, MetricsConfig, MetricsSinkKind};

pub use crate::s3::dead_letter_sink;
use telemetry_core::outcome::Counts;
use telemetry_core::reading::validate::validate_namespace;
use telemetry_core::sink::emf::encode_pipeline_counts;
use telemetry_core::sink::emf::EmfSink;
use telemetry_core::sink::{DeadLetterSink, MetricsSink};

/// Everything `telemetry-metrics` needs per invocation.
pub struct MetricsApp {
    pub config: MetricsConfig,
    pub metrics: Box<dyn MetricsSink>,
    pub dead_letters: Box<dyn DeadLetterSink>,
    /// `<namespace>/Pipeline`, where the function's own counts go.
    pub pipeline_namespace: Option<String>,
}

/// The `function` dimension of the pipeline counts.
pub const METRICS_FUNCTION: &str = "telemetry-metrics";

impl MetricsApp {
    /// Builds the sinks; loads the AWS SDK configuration only if a sink needs it.
    pub async fn build(config: MetricsConfig) -> Self {
        let needs_aws = config.sink == MetricsSinkKind::CloudWatch
            || matches!(config.dead_letters, DeadLetterTarget::S3 { .. });
        let sdk = if needs_aws {
            Some(crate::load_sdk_config().await)
        } else {
            None
        };
        let metrics: Box<dyn MetricsSink> = match (config.sink, &sdk) {
            (MetricsSinkKind::CloudWatch, Some(sdk)) => Box::new(
                crate::cloudwatch::CloudWatchSink::new(sdk, &config.namespace, config.max_attempts),
            ),
            _ => Box::new(EmfSink::stdout(&config.namespace)),
        };
        let dead_letters = dead_letter_sink(&config.dead_letters, sdk.as_ref());
        let pipeline_namespace = format!("{}/Pipeline", config.namespace);
        let pipeline_namespace = match validate_namespace(&pipeline_namespace) {
            Ok(()) => Some(pipeline_namespace),
            Err(why) => {
                tracing::warn!(%why, "pipeline counts are not published");
                None
            }
        };
        MetricsApp {
            config,
            metrics,
            dead_letters,
            pipeline_namespace,
        }
    }

    /// Publishes an invocation's counts as one EMF line on stdout.
    pub fn publish_counts(&self, counts: &Counts, now_ms: i64) {
        let Some(namespace) = &self.pipeline_namespace else {
            return;
        };
        let mut line = Vec::with_capacity(512);
        encode_pipeline_counts(namespace, METRICS_FUNCTION, counts, now_ms, &mut line);
        if let Err(error) = std::io::stdout().lock().write_all(&line) {
            tracing::warn!(%error, "cannot write pipeline counts");
        }
    }
}
