//! AWS errors as [`ProviderError`]s, sorted by what the executor should do about them.
//!
//! The executor fails over on [`FailureKind::Capacity`], retries [`FailureKind::Throttled`]
//! with backoff and counts [`FailureKind::NotFound`] on a delete as done, so the sorting here
//! decides behaviour. The cloud's own code and message are kept verbatim for the user;
//! transport failures get a code of their own (`DispatchFailure`, `Timeout`…). Nothing here
//! ever formats a request, so no credential or signature can reach a message.

use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use flotilla_core::provider::{FailureKind, ProviderError};

/// EC2 error codes that mean "no capacity for this offer here": fail over.
pub const CAPACITY_CODES: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientCapacityOnOutpost",
    "Unsupported",
    "SpotMaxPriceTooLow",
    // Spot request status codes, as EC2 reports them on a spot launch that cannot be filled.
    "capacity-not-available",
    "capacity-oversubscribed",
    "price-too-low",
];

/// Error codes that mean "slow down": retry with backoff.
pub const THROTTLING_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "EC2ThrottledException",
];

/// What the executor should do about an error with this code.
pub fn classify(code: &str) -> FailureKind {
    if CAPACITY_CODES.contains(&code) {
        FailureKind::Capacity
    } else if THROTTLING_CODES.contains(&code) {
        FailureKind::Throttled
    } else if code.ends_with(".NotFound")
        || code.ends_with(".Unknown")
        || matches!(
            code,
            "LoadBalancerNotFound"
                | "TargetGroupNotFound"
                | "ListenerNotFound"
                | "InvalidInstanceID.Malformed"
        )
    {
        FailureKind::NotFound
    } else {
        FailureKind::Other
    }
}

/// An SDK error as a [`ProviderError`]: the service's code and message when it answered,
/// else what went wrong on the way.
pub(crate) fn from_sdk<E, R>(err: SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().map(str::to_string).unwrap_or_else(|| {
                // An answer the SDK could not read a code from: say what it was.
                "UnknownError".to_string()
            });
            let message = e
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| DisplayErrorContext(e).to_string());
            ProviderError::new(classify(&code), code, message)
        }
        SdkError::TimeoutError(_) => ProviderError::new(
            FailureKind::Other,
            "Timeout",
            DisplayErrorContext(&err).to_string(),
        ),
        SdkError::DispatchFailure(_) => ProviderError::new(
            FailureKind::Other,
            "DispatchFailure",
            DisplayErrorContext(&err).to_string(),
        ),
        SdkError::ResponseError(_) => ProviderError::new(
            FailureKind::Other,
            "ResponseError",
            DisplayErrorContext(&err).to_string(),
        ),
        _ => ProviderError::new(
            FailureKind::Other,
            "SdkError",
            DisplayErrorContext(&err).to_string(),
        ),
    }
}

/// An error of our own making (an answer missing a field, a bad request).
pub(crate) fn other(code: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(FailureKind::Other, code, message)
}

/// A retry classifier that forbids the SDK to retry capacity errors (EC2 answers
/// `InsufficientInstanceCapacity` with HTTP 500, which the SDK would otherwise retry): the
/// executor fails over to the next offer at once instead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NoRetryOnCapacity;

impl ClassifyRetry for NoRetryOnCapacity {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(response) = ctx.response() else {
            return RetryAction::NoActionIndicated;
        };
        if response.status().as_u16() < 400 {
            return RetryAction::NoActionIndicated;
        }
        let Some(body) = response.body().bytes() else {
            return RetryAction::NoActionIndicated;
        };
        let body = String::from_utf8_lossy(body);
        if CAPACITY_CODES
            .iter()
            .any(|code| body.contains(&format!("<Code>{code}</Code>")))
        {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "flotilla: no retry on capacity errors"
    }

    fn priority(&self) -> RetryClassifierPriority {
        // Last, so that its verdict overrides the HTTP-status classifier's.
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_sort_into_kinds() {
        assert_eq!(
            classify("InsufficientInstanceCapacity"),
            FailureKind::Capacity
        );
        assert_eq!(classify("Unsupported"), FailureKind::Capacity);
        assert_eq!(classify("capacity-not-available"), FailureKind::Capacity);
        assert_eq!(classify("price-too-low"), FailureKind::Capacity);
        assert_eq!(classify("RequestLimitExceeded"), FailureKind::Throttled);
        assert_eq!(classify("ThrottlingException"), FailureKind::Throttled);
        assert_eq!(
            classify("InvalidInstanceID.NotFound"),
            FailureKind::NotFound
        );
        assert_eq!(classify("InvalidVolume.NotFound"), FailureKind::NotFound);
        assert_eq!(classify("LoadBalancerNotFound"), FailureKind::NotFound);
        assert_eq!(classify("VolumeInUse"), FailureKind::Other);
        assert_eq!(classify("UnauthorizedOperation"), FailureKind::Other);
    }
}
