//! `PutMetricData` backend: the core plans the requests, this sends them.

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::SdkConfig;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_sdk_cloudwatch::Client;
use aws_smithy_types::DateTime;
use telemetry_core::cloudwatch::{plan_requests, Datum, MetricRequest};
use telemetry_core::reading::Reading;
use telemetry_core::sink::{Delivery, MetricsSink};

/// Sends readings with as few `PutMetricData` calls as the API allows;
/// throttling and server errors are retried by the SDK's standard retry
/// strategy with backoff, up to `max_attempts` per call.
#[derive(Clone, Debug)]
pub struct CloudWatchSink {
    client: Client,
    namespace: String,
}

impl CloudWatchSink {
    pub fn new(sdk: &SdkConfig, namespace: impl Into<String>, max_attempts: u32) -> Self {
        let config = aws_sdk_cloudwatch::config::Builder::from(sdk)
            .retry_config(RetryConfig::standard().with_max_attempts(max_attempts))
            .build();
        CloudWatchSink {
            client: Client::from_conf(config),
            namespace: namespace.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn put(&self, request: &MetricRequest) -> Result<(), String> {
        let datums = request.datums.iter().map(to_sdk_datum).collect();
        self.client
            .put_metric_data()
            .namespace(&self.namespace)
            .set_metric_data(Some(datums))
            .send()
            .await
            .map(|_| ())
            .map_err(|error| {
                format!(
                    "PutMetricData ({} datums) failed: {}",
                    request.datums.len(),
                    aws_sdk_cloudwatch::error::DisplayErrorContext(&error)
                )
            })
    }
}

fn to_sdk_datum(datum: &Datum) -> MetricDatum {
    let dimensions = datum
        .dimensions
        .iter()
        .map(|(name, value)| {
            Dimension::builder()
                .name(name.as_str())
                .value(value.as_str())
                .build()
        })
        .collect();
    MetricDatum::builder()
        .metric_name(datum.metric.as_str())
        .set_dimensions(Some(dimensions))
        .unit(StandardUnit::from(datum.unit.as_str()))
        .timestamp(DateTime::from_millis(datum.timestamp_ms))
        .set_values(Some(datum.values.clone()))
        .set_counts(Some(datum.counts.clone()))
        .storage_resolution(if datum.high_resolution { 1 } else { 60 })
        .build()
}

#[async_trait]
impl MetricsSink for CloudWatchSink {
    async fn send(&self, readings: &[Reading]) -> Delivery {
        let mut delivery = Delivery::default();
        for request in plan_requests(readings) {
            delivery.api_calls += 1;
            if let Err(error) = self.put(&request).await {
                tracing::error!(%error, messages = request.messages.len(), "metrics not delivered");
                delivery.failed_messages.extend(&request.messages);
                delivery.error = Some(error);
            }
        }
        delivery.failed_messages.sort_unstable();
        delivery.failed_messages.dedup();
        delivery
    }
}
