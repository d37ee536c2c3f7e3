//! The OpenAI Files + Batches wire format as batchdrop serves it: the routes below `/v1`, and
//! one module per concept — [`files`] (upload, retrieve, content, delete), [`batches`]
//! (create, retrieve, list, cancel), [`batch_object`] (a job shown as OpenAI's Batch object),
//! [`error_file`] (errors.jsonl as OpenAI's error-file lines), [`errors`] (the error shape),
//! [`uploads`] (a file sent in parts, for files above what one request carries).
//!
//! The output of routes whose provider's result lines are not OpenAI's is translated
//! ([`crate::result_lines`]).

pub mod batch_object;
pub mod batches;
pub mod error_file;
pub mod errors;
pub mod files;
pub mod uploads;

use crate::ApiState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

/// The routes below `/v1` (nested at `/v1` and at `/routes/{route}/v1`).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/files",
            // An upload streams into the bucket: no limit on its size.
            post(files::upload).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/files/{file_id}",
            get(files::retrieve).delete(files::delete),
        )
        .route("/files/{file_id}/content", get(files::content))
        .route("/uploads", post(uploads::create))
        .route(
            "/uploads/{upload_id}/parts",
            // A part streams into the bucket; `uploads` stops it past its limit (413).
            post(uploads::add_part).layer(DefaultBodyLimit::disable()),
        )
        .route("/uploads/{upload_id}/complete", post(uploads::complete))
        .route("/uploads/{upload_id}/cancel", post(uploads::cancel))
        .route("/batches", post(batches::create).get(batches::list))
        .route("/batches/{batch_id}", get(batches::retrieve))
        .route("/batches/{batch_id}/cancel", post(batches::cancel))
}
