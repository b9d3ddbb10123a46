//! `PutMetricData` backend: the core plans the requests, this sends them.

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::SdkConfig;
use aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataError;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};
use aws_sdk_cloudwatch::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::DateTime;
use telemetry_core::outcome::{Delivery, FailureKind};
use telemetry_core::reading::Reading;
use telemetry_core::sink::cloudwatch::{
    plan_requests, plan_statistic_requests, Datum, MetricRequest,
};
use telemetry_core::sink::MetricsSink;
use telemetry_core::window::Aggregate;

use crate::retry::{error_chain, failure_kind};

/// A `PutMetricData` call failed after the SDK's own retries.
#[derive(Debug, thiserror::Error)]
#[error("PutMetricData ({datums} datums) failed")]
pub struct PutMetricDataFailed {
    pub datums: usize,
    #[source]
    pub source: SdkError<PutMetricDataError, HttpResponse>,
}

impl PutMetricDataFailed {
    /// Throttling and 5xx may pass; a rejected request (400, AccessDenied)
    /// fails the same way again, so its readings are dead-lettered.
    pub fn kind(&self) -> FailureKind {
        failure_kind(&self.source)
    }
}

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

    async fn put(&self, request: &MetricRequest) -> Result<(), PutMetricDataFailed> {
        let datums = request.datums.iter().map(to_sdk_datum).collect();
        self.client
            .put_metric_data()
            .namespace(&self.namespace)
            .set_metric_data(Some(datums))
            .send()
            .await
            .map(|_| ())
            .map_err(|source| PutMetricDataFailed {
                datums: request.datums.len(),
                source,
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
    let builder = MetricDatum::builder()
        .metric_name(datum.metric.as_str())
        .set_dimensions(Some(dimensions))
        .unit(StandardUnit::from(datum.unit.as_str()))
        .timestamp(DateTime::from_millis(datum.timestamp_ms))
        .storage_resolution(if datum.high_resolution { 1 } else { 60 });
    match datum.statistics {
        Some(set) => builder
            .statistic_values(
                StatisticSet::builder()
                    .sample_count(set.sample_count)
                    .sum(set.sum)
                    .minimum(set.minimum)
                    .maximum(set.maximum)
                    .build(),
            )
            .build(),
        None => builder
            .set_values(Some(datum.values.clone()))
            .set_counts(Some(datum.counts.clone()))
            .build(),
    }
}

#[async_trait]
impl MetricsSink for CloudWatchSink {
    async fn send(&self, readings: &[Reading]) -> Delivery {
        self.send_requests(plan_requests(readings)).await
    }

    async fn send_aggregates(&self, aggregates: &[Aggregate]) -> Delivery {
        self.send_requests(plan_statistic_requests(aggregates))
            .await
    }
}

impl CloudWatchSink {
    async fn send_requests(&self, requests: Vec<MetricRequest>) -> Delivery {
        let mut delivery = Delivery::default();
        for request in requests {
            delivery.api_calls += 1;
            if let Err(error) = self.put(&request).await {
                let kind = error.kind();
                let error_text = error_chain(&error);
                tracing::error!(error = %error_text, ?kind, messages = request.messages.len(), "metrics not delivered");
                delivery.fail(&request.messages, error_text, kind);
            }
        }
        delivery.settle();
        delivery
    }
}
