//! Anthropic's Message Batches wire format as batchdrop serves it, beside the OpenAI one and
//! over the same batches: the routes below `/v1/messages/batches`, and one module per concept —
//! [`message_batches`] (create, retrieve, list, cancel, results), [`message_batch`] (a job
//! shown as the Message Batch object), [`results`] (the results stream), [`errors`] (the
//! error shape). Keys come as `x-api-key` (the `anthropic` SDK's header) or as a bearer token.

pub mod errors;
pub mod message_batch;
pub mod message_batches;
pub mod results;

use crate::ApiState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

/// The routes below `/v1` (nested at `/v1` and at `/routes/{route}/v1`).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/messages/batches",
            // The requests stream into the bucket: no limit on their size.
            post(message_batches::create)
                .layer(DefaultBodyLimit::disable())
                .get(message_batches::list),
        )
        .route(
            "/messages/batches/{batch_id}",
            get(message_batches::retrieve),
        )
        .route(
            "/messages/batches/{batch_id}/cancel",
            post(message_batches::cancel),
        )
        .route(
            "/messages/batches/{batch_id}/results",
            get(message_batches::results_of),
        )
}

/// Whether a request path is one of this API's, to answer its errors (a missing key…) in
/// Anthropic's shape.
pub fn is_anthropic_path(path: &str) -> bool {
    path.contains("/v1/messages")
}
