//! The one AWS SDK configuration of a process. Every client is built from it,
//! once, at init. The SDK sets no timeouts of its own, so we do: a Lambda that
//! hangs on a dead endpoint costs money and hides the real failure.
//!
//! Nothing here knows whether it talks to AWS or to the local emulator: the
//! standard `AWS_ENDPOINT_URL` decides.

use std::time::Duration;

use aws_config::{timeout::TimeoutConfig, BehaviorVersion, SdkConfig};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);

/// Loads the shared SDK configuration (region, credentials, endpoint) from the
/// environment, with PAO's timeouts.
pub async fn sdk_config() -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await
}

pub mod dynamodb;
pub mod requests_table;
pub mod s3;
pub mod sdk;
pub mod secrets;
pub mod sfn;
pub mod shared_table;
pub mod submission_limit;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::catalog::index::StoreError;
use crate::health::ProbeFailure;

/// A failed call as the stores report it: the full error goes to the log,
/// the caller gets the service and operation only.
pub(crate) fn unavailable<E>(
    service: &str,
    operation: &str,
    err: &SdkError<E, HttpResponse>,
) -> StoreError
where
    E: std::error::Error + 'static,
{
    tracing::warn!(service, operation, error = %DisplayErrorContext(err), "AWS call failed");
    StoreError::Unavailable(format!("{service} {operation} failed"))
}

/// A conditional DynamoDB write's outcome: `true` when written, `false`
/// when its condition refused it, an error for anything else.
pub(crate) fn conditional_write<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
    operation: &str,
) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(err) if is_condition_failure(&err) => Ok(false),
        Err(err) => Err(unavailable("DynamoDB", operation, &err)),
    }
}

/// Whether a DynamoDB write was refused by its condition expression.
pub(crate) fn is_condition_failure<E: ProvideErrorMetadata>(
    err: &SdkError<E, HttpResponse>,
) -> bool {
    err.as_service_error().and_then(ProvideErrorMetadata::code)
        == Some("ConditionalCheckFailedException")
}

/// Sorts an SDK error into the few kinds an operator acts on. The full error
/// goes to the log, never to the caller.
pub(crate) fn probe_failure<E>(dependency: &str, err: &SdkError<E, HttpResponse>) -> ProbeFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    tracing::warn!(dependency, error = %DisplayErrorContext(err), "dependency check failed");
    match err {
        SdkError::TimeoutError(_) => ProbeFailure::Timeout,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => ProbeFailure::Timeout,
        SdkError::DispatchFailure(_) => ProbeFailure::Unreachable,
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match (service.err().code(), status) {
                (_, 404)
                | (
                    Some("ResourceNotFoundException" | "NoSuchBucket" | "StateMachineDoesNotExist"),
                    _,
                ) => ProbeFailure::NotFound,
                (_, 401 | 403)
                | (Some("AccessDeniedException" | "UnrecognizedClientException"), _) => {
                    ProbeFailure::AccessDenied
                }
                _ => ProbeFailure::Unexpected,
            }
        }
        _ => ProbeFailure::Unexpected,
    }
}
