//! Graph's error envelope, produced in exactly one place.
//!
//! Handlers return [`ApiError`]; its `IntoResponse` leaves the body empty and
//! rides the error in a response extension. The outermost middleware
//! ([`super::envelope`]) renders every error — ours, and any 4xx/5xx produced
//! by the HTTP machinery — as
//! `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`
//! with the request's ids, so no error ever leaves without the envelope.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answer: status, Graph error code and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds to put in `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 `BadRequest`: the request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 400 `InvalidArgument`: a value in the request is not acceptable.
    pub fn invalid_argument(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidArgument", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    pub fn too_many_requests(retry_after: u64, message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message)
        }
    }

    /// A failure on our side; the detail is logged, not sent.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "The server failed to process the request.",
        )
    }

    pub fn unavailable(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "service unavailable");
        ApiError::unavailable_unlogged()
    }

    /// [`ApiError::unavailable`] without its log line, for a caller that
    /// logs the condition itself (`/readyz`: once per change, not per poll).
    pub fn unavailable_unlogged() -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The service is temporarily unavailable.",
            )
        }
    }

    /// The error a bare status gets when nothing more specific was said
    /// (unknown routes, body limits, methods not allowed...).
    pub fn for_status(status: StatusCode) -> ApiError {
        let (code, message) = match status {
            StatusCode::NOT_FOUND => ("NotFound", "The requested resource does not exist."),
            StatusCode::METHOD_NOT_ALLOWED => (
                "MethodNotAllowed",
                "The HTTP method is not allowed on this resource.",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "RequestEntityTooLarge",
                "The request body is larger than 1 MiB.",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "UnsupportedMediaType",
                "The request body must be JSON (Content-Type: application/json).",
            ),
            StatusCode::REQUEST_TIMEOUT => {
                ("RequestTimeout", "The request took too long to arrive.")
            }
            s if s.is_client_error() => ("BadRequest", "The request is not valid."),
            _ => (
                "InternalServerError",
                "The server failed to process the request.",
            ),
        };
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

impl From<presenced_store::StoreError> for ApiError {
    fn from(error: presenced_store::StoreError) -> ApiError {
        ApiError::unavailable(error)
    }
}
