//! Dead letters as JSON Lines objects in S3:
//! `<prefix>/YYYY/MM/DD/HH/<request id>.jsonl`, one object per invocation.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use telemetry_core::config::DeadLetterTarget;
use telemetry_core::sink::dead_letter::{to_json_lines, DeadLetter, LocalDeadLetters};
use telemetry_core::sink::{DeadLetterError, DeadLetterSink};
use telemetry_core::warehouse::StoreError;

use crate::retry::{error_chain, failure_kind};

#[derive(Clone, Debug)]
pub struct S3DeadLetters {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3DeadLetters {
    pub fn new(sdk: &SdkConfig, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        S3DeadLetters {
            client: Client::new(sdk),
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    /// The object key for a batch: partitioned by the hour it was rejected.
    pub fn key_for(&self, letters: &[DeadLetter]) -> String {
        let first = &letters[0];
        // rejected_at is RFC 3339: YYYY-MM-DDTHH:...
        let stamp = &first.rejected_at;
        let part = |range: std::ops::Range<usize>| stamp.get(range).unwrap_or("00");
        let request = if first.request_id.is_empty() {
            "local"
        } else {
            first.request_id.as_str()
        };
        let file = format!(
            "{}/{}/{}/{}/{}-{}.jsonl",
            part(0..4),
            part(5..7),
            part(8..10),
            part(11..13),
            sanitize(request),
            std::process::id()
        );
        if self.prefix.is_empty() {
            file
        } else {
            format!("{}/{file}", self.prefix)
        }
    }
}

/// Keeps a request id safe as one key segment.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[async_trait]
impl DeadLetterSink for S3DeadLetters {
    async fn write(&self, letters: &[DeadLetter]) -> Result<String, DeadLetterError> {
        if letters.is_empty() {
            return Ok(String::new());
        }
        let key = self.key_for(letters);
        let location = format!("s3://{}/{key}", self.bucket);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/x-ndjson")
            .body(ByteStream::from(to_json_lines(letters)))
            .send()
            .await
            .map_err(|error| DeadLetterError {
                destination: location.clone(),
                reason: aws_sdk_s3::error::DisplayErrorContext(&error).to_string(),
            })?;
        Ok(location)
    }
}

/// Warehouse objects (Parquet files) under an S3 prefix.
#[derive(Clone, Debug)]
pub struct S3Objects {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3Objects {
    pub fn new(sdk: &SdkConfig, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        S3Objects {
            client: Client::new(sdk),
            bucket: bucket.into(),
            prefix: prefix.into().trim_matches('/').to_owned(),
        }
    }
}

#[async_trait]
impl telemetry_core::warehouse::ObjectStore for S3Objects {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<String, StoreError> {
        let key = if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|error| StoreError {
                reason: format!("PutObject {key}: {}", error_chain(&error)),
                kind: failure_kind(&error),
            })?;
        Ok(format!("s3://{}/{key}", self.bucket))
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

/// The dead-letter sink for a target.
pub fn dead_letter_sink(
    target: &DeadLetterTarget,
    sdk: Option<&aws_config::SdkConfig>,
) -> Box<dyn DeadLetterSink> {
    match (target, sdk) {
        (DeadLetterTarget::S3 { bucket, prefix }, Some(sdk)) => {
            Box::new(S3DeadLetters::new(sdk, bucket, prefix))
        }
        (DeadLetterTarget::Local(directory), _) => {
            if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
                tracing::warn!(
                    directory = %directory.display(),
                    "dead letters go to the sandbox's local disk and are lost with it; set DEAD_LETTER_URL=s3://bucket/prefix"
                );
            }
            Box::new(LocalDeadLetters {
                directory: directory.clone(),
            })
        }
        (DeadLetterTarget::S3 { .. }, None) => {
            unreachable!("the SDK config is loaded for S3 targets")
        }
    }
}
