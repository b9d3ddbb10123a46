//! Whether an AWS API error is worth retrying: the one place that reads
//! an SDK error's kind, HTTP status and error code.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
pub use telemetry_core::outcome::error_chain;
use telemetry_core::outcome::FailureKind;

/// Error codes AWS services use for "slow down and try again", whatever
/// HTTP status they come with.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "LimitExceededException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalError",
];

/// Transient: no answer (timeouts, connection failures), an answer that
/// could not be read, throttling, or a 5xx. Permanent: a request the client
/// could not build, and any other service error (validation, access
/// denied, a missing resource), which would fail the same way again.
pub fn failure_kind<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> FailureKind {
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            FailureKind::Transient
        }
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            let code = context.err().code().unwrap_or_default();
            if status == 429 || status >= 500 || THROTTLING_CODES.contains(&code) {
                FailureKind::Transient
            } else {
                FailureKind::Permanent
            }
        }
        _ => FailureKind::Permanent,
    }
}
