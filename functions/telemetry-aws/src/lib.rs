//! AWS SDK backends for the telemetry-core sinks. Clients are built once per
//! cold start from the standard AWS environment (`AWS_REGION`,
//! `AWS_ENDPOINT_URL`, credentials chain).

#[cfg(all(feature = "cloudwatch", feature = "s3"))]
pub mod app;
#[cfg(feature = "cloudwatch")]
pub mod cloudwatch;
#[cfg(feature = "firehose")]
pub mod firehose;
#[cfg(feature = "s3")]
pub mod s3;

use aws_config::{BehaviorVersion, SdkConfig};

/// The shared SDK configuration, loaded once.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}
