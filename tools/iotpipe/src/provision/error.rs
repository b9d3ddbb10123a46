//! Provisioning errors: which device, which AWS IoT call, what AWS said,
//! and what the user can do about it.

use std::path::PathBuf;

use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};
use telemetry_aws::retry::error_chain;

use crate::device_files::DeviceFilesError;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{subject}: {call} failed: {message}{hint}")]
    Call {
        subject: String,
        call: &'static str,
        message: String,
        hint: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "no AWS region: set AWS_REGION (for example us-east-1) or a region in your AWS profile"
    )]
    NoRegion,
    #[error("{path}: {reason}")]
    Template { path: PathBuf, reason: String },
    #[error("{0}")]
    Options(String),
    #[error(
        "{device}: AWS IoT has its certificate {certificate} but {directory} has no keys for it; restore that directory, or run `iotpipe provision --fleet {fleet} --delete --names {device}` and provision it again"
    )]
    KeysMissing {
        device: String,
        fleet: String,
        certificate: String,
        directory: PathBuf,
    },
    #[error("{failed} of {total} devices were not provisioned (see above); run the same command again to finish: it creates only what is missing")]
    Incomplete { failed: usize, total: usize },
    #[error(transparent)]
    Files(#[from] DeviceFilesError),
}

impl ProvisionError {
    /// An AWS IoT call that failed for `subject` (a device, the fleet's
    /// group, the policy).
    pub fn call<E>(subject: &str, call: &'static str, error: SdkError<E>) -> ProvisionError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let message = error_chain(&error).trim_end_matches('.').to_owned();
        let hint = hint(&error, call, &message);
        ProvisionError::Call {
            subject: subject.to_owned(),
            call,
            message,
            hint: if hint.is_empty() {
                String::new()
            } else {
                format!(". {hint}")
            },
            source: Box::new(error),
        }
    }
}

/// What to do, from the error's code or, for errors before the request
/// left, its text.
fn hint<E: ProvideErrorMetadata>(error: &SdkError<E>, call: &str, message: &str) -> String {
    let code = error.code().unwrap_or_default();
    match code {
        "LimitExceededException" => {
            return "An AWS IoT quota was hit: provision fewer devices, delete unused ones (`iotpipe provision --delete`), or ask for more in Service Quotas".into()
        }
        "ThrottlingException" => {
            return "AWS IoT throttled the calls even after retries: run the same command again; it continues where it stopped".into()
        }
        "UnrecognizedClientException" | "InvalidClientTokenId" | "ExpiredTokenException" | "ExpiredToken" => {
            return "The credentials were refused: check them, or refresh the session (aws sso login)".into()
        }
        "ResourceAlreadyExistsException" => {
            return "It exists with other settings (a name taken by something else?): pick other names or delete it first".into()
        }
        _ => {}
    }
    if code.starts_with("AccessDenied") || code == "UnauthorizedException" {
        return format!("The credentials may not call iot:{call}: allow it in IAM");
    }
    let lower = message.to_ascii_lowercase();
    if lower.contains("credentials") {
        return "No AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for moto: any values, with AWS_ENDPOINT_URL)".into();
    }
    if matches!(
        error,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)
    ) {
        return "Could not reach AWS IoT: check the network, or AWS_ENDPOINT_URL if you set it"
            .into();
    }
    String::new()
}

/// Whether AWS answered "no such thing/group/policy".
pub fn is_not_found<E: ProvideErrorMetadata>(error: &SdkError<E>) -> bool {
    error.code() == Some("ResourceNotFoundException")
}
