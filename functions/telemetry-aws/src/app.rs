//! Builds the sinks a function's configuration asks for, once per cold start.

use std::io::Write;

use telemetry_core::config::{DeadLetterTarget, MetricsConfig, MetricsSinkKind};

pub use crate::s3::dead_letter_sink;
use telemetry_core::outcome::Counts;
use telemetry_core::reading::validate::validate_namespace;
use telemetry_core::sink::emf::{encode_counts, encode_pipeline_counts, EmfSink};
use telemetry_core::sink::{DeadLetterSink, MetricsSink};

/// Everything `telemetry-metrics` needs per invocation.
pub struct MetricsApp {
    pub config: MetricsConfig,
    pub metrics: Box<dyn MetricsSink>,
    pub dead_letters: Box<dyn DeadLetterSink>,
    pub counts: CountsPublisher,
}

/// Writes a function's own counts as one EMF line per invocation on stdout,
/// in `<namespace>/Pipeline` (checked once, at cold start).
pub struct CountsPublisher {
    /// `None` when `<namespace>/Pipeline` is not a valid namespace.
    namespace: Option<String>,
    /// The `function` dimension.
    function: &'static str,
}

impl CountsPublisher {
    pub fn new(namespace: &str, function: &'static str) -> Self {
        let pipeline = format!("{namespace}/Pipeline");
        let namespace = match validate_namespace(&pipeline) {
            Ok(()) => Some(pipeline),
            Err(why) => {
                tracing::warn!(%why, "the function's own counts are not published");
                None
            }
        };
        CountsPublisher {
            namespace,
            function,
        }
    }

    /// The common counts of an invocation.
    pub fn publish_counts(&self, counts: &Counts, now_ms: i64) {
        self.write(|namespace, out| {
            encode_pipeline_counts(namespace, self.function, counts, now_ms, out)
        });
    }

    /// Named counts of an invocation.
    pub fn publish(&self, metrics: &[(&str, usize)], now_ms: i64) {
        self.write(|namespace, out| encode_counts(namespace, self.function, metrics, now_ms, out));
    }

    fn write(&self, encode: impl FnOnce(&str, &mut Vec<u8>)) {
        let Some(namespace) = &self.namespace else {
            return;
        };
        let mut line = Vec::with_capacity(512);
        encode(namespace, &mut line);
        if let Err(error) = std::io::stdout().lock().write_all(&line) {
            tracing::warn!(%error, function = self.function, "cannot write the function's counts");
        }
    }
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
        let counts = CountsPublisher::new(&config.namespace, METRICS_FUNCTION);
        MetricsApp {
            config,
            metrics,
            dead_letters,
            counts,
        }
    }
}
