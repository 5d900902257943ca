//! How a failed AWS call becomes an action error, for every driver alike:
//! throttling slows down, a fault of the service or of the network is tried
//! again, and anything else (validation, quota, permission) is fatal with
//! the service's own code and message. AWS's messages never hold a value
//! PAO sent it as secret: the drivers send none.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::action::ActionError;

/// The codes AWS services use for "slow down".
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];

/// The codes some services give a fault of their own without a 5xx status.
const SERVER_FAULTS: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "InternalServiceError",
    "ServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "Unavailable",
];

/// Sorts a failed call of `service`'s `call` for the state machine. The
/// full error goes to the log; the action error names the service, the
/// call, AWS's code and its message.
pub fn failed<E>(service: &str, call: &str, err: &SdkError<E, HttpResponse>) -> ActionError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    tracing::warn!(service, call, error = %DisplayErrorContext(err), "AWS call failed");
    let described = format!("{service} {call}");
    match err {
        SdkError::ServiceError(failure) => {
            let code = failure.err().code().unwrap_or_default();
            let status = failure.raw().status().as_u16();
            let text = match (code, failure.err().message().unwrap_or_default()) {
                ("", "") => format!("{described} failed (HTTP {status})"),
                ("", message) => format!("{described}: {message}"),
                (code, "") => format!("{described}: {code}"),
                (code, message) => format!("{described}: {code}: {message}"),
            };
            if THROTTLING.contains(&code) || status == 429 {
                ActionError::Throttled(text)
            } else if status >= 500 || SERVER_FAULTS.contains(&code) {
                ActionError::Retryable(text)
            } else {
                ActionError::Fatal(text)
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ActionError::Retryable(format!("{described}: {}", DisplayErrorContext(err)))
        }
        _ => ActionError::Fatal(format!("{described}: {}", DisplayErrorContext(err))),
    }
}

/// The service's error code, for the answers a driver expects ("already
/// exists", "not found", ...); `None` when the service did not answer.
pub fn code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    err.as_service_error().and_then(ProvideErrorMetadata::code)
}

/// Whether AWS says the thing is gone (`InvalidVpcID.NotFound`,
/// `NatGatewayNotFound`, `DBInstanceNotFound`, `ResourceNotFoundException`).
pub fn gone(code: Option<&str>) -> bool {
    code.is_some_and(|code| {
        code.ends_with("NotFound")
            || code.ends_with("NotFoundFault")
            || code == "ResourceNotFoundException"
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn answered(status: u16, code: &str, message: &str) -> SdkError<GetItemError, HttpResponse> {
        let mut meta = ErrorMetadata::builder();
        if !code.is_empty() {
            meta = meta.code(code);
        }
        if !message.is_empty() {
            meta = meta.message(message);
        }
        let raw = HttpResponse::new(status.try_into().expect("a status"), SdkBody::empty());
        SdkError::service_error(GetItemError::generic(meta.build()), raw)
    }

    #[test]
    fn throttling_by_code_or_status_slows_down() {
        let by_code = failed(
            "EC2",
            "CreateVpc",
            &answered(400, "RequestLimitExceeded", "slow"),
        );
        assert_eq!(
            by_code,
            ActionError::Throttled("EC2 CreateVpc: RequestLimitExceeded: slow".into())
        );
        let by_status = failed("EKS", "CreateCluster", &answered(429, "", ""));
        assert_eq!(
            by_status,
            ActionError::Throttled("EKS CreateCluster failed (HTTP 429)".into())
        );
    }

    #[test]
    fn a_fault_of_the_service_is_retried() {
        let by_status = failed("RDS", "CreateDBInstance", &answered(503, "", "busy"));
        assert_eq!(
            by_status,
            ActionError::Retryable("RDS CreateDBInstance: busy".into())
        );
        let by_code = failed(
            "Secrets Manager",
            "CreateSecret",
            &answered(400, "InternalServiceError", ""),
        );
        assert_eq!(
            by_code,
            ActionError::Retryable("Secrets Manager CreateSecret: InternalServiceError".into())
        );
    }

    #[test]
    fn anything_else_is_fatal_with_the_code_and_message() {
        let err = answered(400, "InvalidParameterValue", "bad CIDR 10.0.0.0/33");
        assert_eq!(
            failed("EC2", "CreateVpc", &err),
            ActionError::Fatal("EC2 CreateVpc: InvalidParameterValue: bad CIDR 10.0.0.0/33".into())
        );
        assert_eq!(code(&err), Some("InvalidParameterValue"));
    }

    #[test]
    fn a_lost_answer_is_retried() {
        let err: SdkError<GetItemError, HttpResponse> =
            SdkError::timeout_error("no answer within 5 s");
        assert!(
            matches!(failed("EKS", "DescribeCluster", &err), ActionError::Retryable(text) if text.starts_with("EKS DescribeCluster: "))
        );
        assert_eq!(code(&err), None);
    }

    #[test]
    fn not_found_codes_of_each_service_are_gone() {
        for code in [
            "InvalidVpcID.NotFound",
            "NatGatewayNotFound",
            "DBInstanceNotFound",
            "DBSubnetGroupNotFoundFault",
            "ResourceNotFoundException",
        ] {
            assert!(gone(Some(code)), "{code}");
        }
        assert!(!gone(Some("DependencyViolation")));
        assert!(!gone(None));
    }
}
