//! AWS SDK backends for the telemetry-core sinks. Clients are built once per
//! cold start from the standard AWS environment (`AWS_REGION`,
//! `AWS_ENDPOINT_URL`, credentials chain).

#[cfg(all(feature = "cloudwatch", feature = "s3"))]
pub mod app;
#[cfg(feature = "cloudwatch")]
pub mod cloudwatch;
#[cfg(feature = "firehose")]
pub mod firehose;
#[cfg(feature = "iotdata")]
pub mod iotdata;
pub mod raw_event;
pub mod retry;
#[cfg(feature = "s3")]
pub mod s3;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

/// The HTTPS client every SDK client uses: rustls with ring.
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The shared SDK configuration, loaded once.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}
