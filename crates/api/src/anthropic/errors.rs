//! The Anthropic API's error shape, `{"type":"error","error":{"type","message"}}`, for the
//! same errors as the OpenAI side ([`ApiError`]) under the same HTTP status, so that the
//! official `anthropic` SDK raises its own classes (`BadRequestError`, `AuthenticationError`,
//! `PermissionDeniedError`, `NotFoundError`, `InternalServerError`).

use crate::openai::errors::ApiError;
use axum::Json;
use axum::response::{IntoResponse, Response};
use batchdrop_core::engine::JobError;
use batchdrop_core::provider::reply::error_type_of_status;
use batchdrop_core::store::StoreError;
use serde_json::json;

/// An [`ApiError`] answered in Anthropic's shape.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct AnthropicError(#[from] pub ApiError);

impl AnthropicError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        AnthropicError(ApiError::bad_request(message, None))
    }

    pub fn not_found(what: &'static str, id: &str) -> Self {
        AnthropicError(ApiError::NotFound {
            what,
            id: id.to_string(),
        })
    }
}

impl From<StoreError> for AnthropicError {
    fn from(e: StoreError) -> Self {
        AnthropicError(e.into())
    }
}

impl From<JobError> for AnthropicError {
    fn from(e: JobError) -> Self {
        AnthropicError(e.into())
    }
}

impl From<getrandom::Error> for AnthropicError {
    fn from(e: getrandom::Error) -> Self {
        AnthropicError(e.into())
    }
}

impl From<tokio::task::JoinError> for AnthropicError {
    fn from(e: tokio::task::JoinError) -> Self {
        AnthropicError(e.into())
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        if status.is_server_error() {
            tracing::error!(error = %self.0, "batch API request failed");
        }
        let body = json!({"type": "error", "error": {
            "type": error_type_of_status(status.as_u16()),
            "message": self.0.to_string(),
        }});
        (status, Json(body)).into_response()
    }
}
