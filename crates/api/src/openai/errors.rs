//! The errors the Batch API answers, and their OpenAI shape:
//! `{"error": {"message", "type", "param", "code"}}` with the status the official SDKs map to
//! their exception classes (400 `BadRequestError`, 401 `AuthenticationError`, 403
//! `PermissionDeniedError`, 404 `NotFoundError`, 500 `InternalServerError`).
//!
//! Messages name ids, routes and bucket keys, never an API key or a line of a file.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use batchdrop_core::engine::JobError;
use batchdrop_core::store::StoreError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Incorrect API key provided. Give it as `Authorization: Bearer <key>` or `x-api-key`.")]
    Unauthorized,
    #[error("This API key may not use route {route:?}; its routes: {allowed}.")]
    ForbiddenRoute { route: String, allowed: String },
    #[error("No such {what}: {id:?}")]
    NotFound { what: &'static str, id: String },
    #[error("Unknown request URL: {method} {path}.")]
    UnknownUrl { method: String, path: String },
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<&'static str>,
        code: Option<&'static str>,
    },
    #[error("{what} may hold at most {limit} bytes.")]
    TooLarge { what: &'static str, limit: u64 },
    #[error("The bucket could not be used: {0}")]
    Store(#[from] StoreError),
    #[error("The batch job could not be started or moved: {0}")]
    Job(#[from] JobError),
    #[error("No random bytes from the operating system: {0}")]
    Random(#[from] getrandom::Error),
    #[error("The upload was interrupted: {0}")]
    Interrupted(#[from] tokio::task::JoinError),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            param,
            code: None,
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::ForbiddenRoute { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } | ApiError::UnknownUrl { .. } => StatusCode::NOT_FOUND,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Store(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Job(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_)
            | ApiError::Job(_)
            | ApiError::Random(_)
            | ApiError::Interrupted(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "invalid_request_error",
            ApiError::ForbiddenRoute { .. } => "permission_error",
            ApiError::NotFound { .. }
            | ApiError::UnknownUrl { .. }
            | ApiError::BadRequest { .. }
            | ApiError::TooLarge { .. } => "invalid_request_error",
            ApiError::Store(_)
            | ApiError::Job(_)
            | ApiError::Random(_)
            | ApiError::Interrupted(_) => "server_error",
        }
    }

    fn code(&self) -> Option<&'static str> {
        match self {
            ApiError::Unauthorized => Some("invalid_api_key"),
            ApiError::ForbiddenRoute { .. } => Some("route_not_allowed"),
            ApiError::NotFound { .. } => Some("not_found"),
            ApiError::UnknownUrl { .. } => Some("unknown_url"),
            ApiError::BadRequest { code, .. } => *code,
            ApiError::TooLarge { .. } => Some("too_large"),
            ApiError::Store(_)
            | ApiError::Job(_)
            | ApiError::Random(_)
            | ApiError::Interrupted(_) => None,
        }
    }

    fn param(&self) -> Option<&'static str> {
        match self {
            ApiError::BadRequest { param, .. } => *param,
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "batch API request failed");
        }
        let body = json!({"error": {
            "message": self.to_string(),
            "type": self.kind(),
            "param": self.param(),
            "code": self.code(),
        }});
        (status, Json(body)).into_response()
    }
}
