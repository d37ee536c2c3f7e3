//! `POST /webhooks/openai/{route}`: OpenAI's batch webhooks in, over HTTP. The Standard
//! Webhooks signature with the route's secret authenticates the request (no API key: it sits
//! outside the Batch API's key check); the decision is `batchdrop_core::push`'s.
//!
//! Answers at once: 200 `{"received":true,…}` for an accepted event, or the refusal's status
//! (401 bad signature, 400 stale or malformed, 409 replayed id, 404 a route without webhooks,
//! 503 the bucket failed) with `{"error":{"message"}}`. The job of an accepted event is
//! advanced after the answer, on a thread of the blocking pool (the engine's futures are not
//! provably `Send`, see `engine_calls`); a failed advance is logged and counted in the
//! receiver's stats, and the next poll does it.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use batchdrop_core::push::{Accepted, Receiver};
use batchdrop_core::webhooks::SignedHeaders;
use bytes::Bytes;
use serde_json::json;
use tokio::runtime::Handle;

/// The path webhooks of `route` are posted to.
pub fn path_of(route: &str) -> String {
    format!("/webhooks/openai/{route}")
}

/// The webhook endpoint, to merge into a server (the Batch API's, `batchdrop local
/// --webhook-addr`'s).
pub fn routes(receiver: Receiver) -> Router {
    Router::new()
        .route("/webhooks/openai/{route}", post(receive))
        .with_state(receiver)
}

async fn receive(
    State(receiver): State<Receiver>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = SignedHeaders {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
    };
    let accepted = match receiver.accept(&route, &signed, &body).await {
        Ok(accepted) => accepted,
        Err(error) => {
            tracing::info!(route, status = error.status(), %error, "webhook refused");
            let status =
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (
                status,
                axum::Json(json!({"error": {"message": error.to_string()}})),
            )
                .into_response();
        }
    };
    let answer = match &accepted {
        Accepted::Job {
            job_id, batch_id, ..
        } => json!({"received": true, "job_id": job_id, "batch_id": batch_id}),
        Accepted::UnknownBatch { batch_id } => {
            json!({"received": true, "batch_id": batch_id, "note": "no batchdrop job has this batch"})
        }
        Accepted::Ignored { event_type } => {
            json!({"received": true, "note": format!("{event_type} events are not acted on")})
        }
    };
    if accepted.job_id().is_some() {
        let handle = Handle::current();
        // Detached: the answer does not wait; the outcome is logged and counted.
        drop(tokio::task::spawn_blocking(move || {
            handle.block_on(receiver.advance(&accepted))
        }));
    }
    (StatusCode::OK, axum::Json(answer)).into_response()
}
