//! The synchronous endpoints (`POST /v1/chat/completions`, `/v1/embeddings`,
//! `/v1/completions`, `/v1/responses`, `/v1/moderations`): at once, the answer a batch gives
//! the same request. What self-hosted OpenAI-compatible servers (vLLM, Ollama, a LiteLLM proxy)
//! serve, and what batchdrop's synchronous lane calls. The same request body always gets the
//! same answer; a request the endpoint refuses gets the status and error object a batch's
//! error file would hold. Answers are held for the `latency_ms` fault, if one is set.

use super::answer::{self, Body};
use super::{ApiError, Endpoint};
use crate::AppState;
use crate::clock::unix_seconds;
use crate::respond::{self, Stream};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Answers one request to the endpoint its path names.
pub(crate) async fn request(State(state): State<Arc<AppState>>, uri: Uri, body: Bytes) -> Response {
    let Some(endpoint) = Endpoint::parse(uri.path()) else {
        return ApiError::not_found(format!("Invalid URL (POST {})", uri.path()), None)
            .into_response();
    };
    state.stats.sync_requests.fetch_add(1, Ordering::Relaxed);
    state.latency().await;
    let parsed: Body = match serde_json::from_slice(&body) {
        Ok(parsed) => parsed,
        Err(e) => {
            return ApiError::bad_request(
                format!("We could not parse the JSON body of your request: {e}"),
                None,
                None,
            )
            .into_response();
        }
    };
    let mut ids = Stream::new(&respond::digest(&[
        b"sync",
        endpoint.path().as_bytes(),
        &body,
    ]));
    let created = unix_seconds(state.clock.now());
    match answer::answer(endpoint, &parsed, &mut ids, created) {
        Ok(answer) => Json(answer.body).into_response(),
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            (status, Json(e.body())).into_response()
        }
    }
}
