//! The Messages API (`POST /v1/messages`): at once, the Message a batch's `succeeded` result
//! holds for the same `params` (the same text and usage, from [`answer`]), or the error a
//! batch gives them: 400 `invalid_request_error` for a body a batch's validation refuses or a
//! request it answers `errored`, 404 `not_found_error` for the model
//! [`MODEL_NOT_FOUND`](crate::MODEL_NOT_FOUND).
//! What batchdrop's synchronous lane calls for an Anthropic route. The same body always gets
//! the same answer.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::Value;
use serde_json::value::RawValue;

use super::ApiError;
use super::answer;
use super::cache::Access;
use super::input::check_params;
use crate::AppState;
use crate::respond::{self, Stream};

/// Answers one Messages API request.
pub(crate) async fn message(
    State(app): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    app.stats.message_requests.fetch_add(1, Ordering::Relaxed);
    app.latency().await;
    let raw: &RawValue = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("There was an error parsing the body: {e}")))?;
    let params = check_params(raw).map_err(|(field, problem)| {
        ApiError::invalid(match field.strip_prefix('.') {
            Some(field) => format!("{field}: {problem}"),
            None => problem.to_owned(),
        })
    })?;
    let mut ids = Stream::new(&respond::digest(&[b"sync-message", &body]));
    let cache = Access {
        cache: app.anthropic.cache(),
        at: app.now(),
        batch: None,
    };
    match answer::answer(&params, &mut ids, Some(cache)) {
        Ok(answer) => {
            let mut message = answer.message;
            message["usage"]["service_tier"] = Value::from("standard");
            Ok(Json(message))
        }
        Err(error) => {
            let status = match error.kind {
                "not_found_error" => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_REQUEST,
            };
            Err(ApiError::new(status, error.kind, error.message))
        }
    }
}
