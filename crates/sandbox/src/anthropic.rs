//! Anthropic Message Batches, and the Messages API (`POST /v1/messages`, in `sync`), as the
//! sandbox serves them: routes, handlers and wire types.
//!
//! Handlers translate HTTP into calls on the [`store::Store`] and back; the store, the
//! timeline and the input pipeline decide. Every route needs a key, in `x-api-key` or as
//! `Authorization: Bearer` (the configured key if there is one, else any non-empty key; 401
//! `authentication_error` otherwise), and an `anthropic-version` header (400 without).
//! Errors have Anthropic's shape `{"type":"error","error":{"type","message"}}` with status
//! 400 (`invalid_request_error`), 401, 404 (`not_found_error`), 413 (`request_too_large`) or
//! 500 (`api_error`); every answer carries a `request-id` header.
//!
//! Limits, as the real API's: a create body of at most [`MAX_MESSAGE_BATCH_BYTES`] (read as
//! it streams in, refused with 413 as soon as it is over) holding at most
//! [`MAX_MESSAGE_REQUESTS`] requests; listings of 1 to 1000 batches (20 by default).

mod answer;
mod cache;
mod input;
mod store;
mod sync;
mod timeline;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::AsyncWriteExt;

pub use input::MAX_MESSAGE_REQUESTS;
use input::Results;
pub(crate) use store::Store;
use store::{Cursor, StoreError, View};
use timeline::Status;

use crate::AppState;
use crate::clock::rfc3339;
use crate::disk;
use crate::faults::{self, BatchFault, Provider};
use crate::openai::{new_id, same_secret};

/// The largest create body, in bytes.
pub const MAX_MESSAGE_BATCH_BYTES: usize = 256_000_000;

const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 1000;

// ---- Wire types -------------------------------------------------------------------------

/// The MessageBatch object.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MessageBatch {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub processing_status: Status,
    pub request_counts: RequestCounts,
    pub ended_at: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    pub cancel_initiated_at: Option<String>,
    pub archived_at: Option<String>,
    pub results_url: Option<String>,
}

/// A batch's requests by state. While the batch has not ended, all are `processing`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct RequestCounts {
    pub processing: u64,
    pub succeeded: u64,
    pub errored: u64,
    pub canceled: u64,
    pub expired: u64,
}

/// A page of a listing.
#[derive(Debug, Serialize)]
struct BatchList {
    data: Vec<MessageBatch>,
    has_more: bool,
    first_id: Option<String>,
    last_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct DeletedBatch {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// An Anthropic error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    /// Sent as `retry-after` and `retry-after-ms` (injected 429s and 529s).
    retry_after: Option<Duration>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: String) -> Self {
        ApiError {
            status,
            kind,
            message,
            retry_after: None,
        }
    }

    fn invalid(message: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    fn not_found(message: String) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", message)
    }

    fn authentication(message: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            message.to_owned(),
        )
    }

    fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!(
                "Request exceeds the maximum allowed number of bytes: a message batch may have at most {MAX_MESSAGE_BATCH_BYTES} bytes."
            ),
        )
    }

    /// An error injected with `status`, in the error type Anthropic uses for it.
    fn injected(status: u16, message: &str, retry_after: Option<Duration>) -> Self {
        ApiError {
            retry_after,
            ..Self::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                faults::anthropic_error_type(status),
                format!("{message} (sandbox fault injection)"),
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"type": "error", "error": {"type": self.kind, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        for (name, value) in self
            .retry_after
            .map(faults::retry_after_headers)
            .into_iter()
            .flatten()
        {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// An injected API error: `status` (429, 500 or 529) in Anthropic's shape, with a
/// `request-id`, and `retry-after` / `retry-after-ms` when `retry_after` is given.
pub(crate) fn injected_error(status: u16, retry_after: Option<Duration>) -> Response {
    let message = match status {
        429 => "Number of requests has exceeded your rate limit. Please try again later.",
        529 => "Overloaded",
        _ => "Internal server error",
    };
    let mut response = ApiError::injected(status, message, retry_after).into_response();
    if let Ok(id) = HeaderValue::from_str(&new_id("req_", 24)) {
        response.headers_mut().insert("request-id", id);
    }
    response
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Invalid(invalid) => ApiError::invalid(invalid.message),
            StoreError::Crashed { reason } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                format!("The sandbox failed while processing this batch: {reason}"),
            ),
            StoreError::NotFound { id } => {
                ApiError::not_found(format!("No Message Batch with id '{id}'."))
            }
            StoreError::AlreadyEnded { id } => ApiError::invalid(format!(
                "Message Batch {id} has already ended and cannot be canceled."
            )),
            StoreError::NotDeletable { id, status } => ApiError::invalid(format!(
                "Message Batch {id} cannot be deleted while it is {}: only ended batches can be deleted; cancel it first.",
                status.as_str()
            )),
            StoreError::NoResultsYet { id, status } => ApiError::invalid(format!(
                "Message Batch {id} is still {}: its results are available once it has ended.",
                status.as_str()
            )),
            StoreError::UnknownCursor { param, id } => {
                ApiError::invalid(format!("{param}: no Message Batch with id '{id}'."))
            }
            StoreError::Disk { what, message } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                format!("The sandbox could not {what} in its files directory: {message}"),
            ),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::invalid(rejection.body_text())
    }
}

// ---- Routes -----------------------------------------------------------------------------

/// The Anthropic routes, `/v1/messages` and under `/v1/messages/batches`, behind `x-api-key`
/// authentication.
pub(crate) fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/messages", post(sync::message))
        .route("/v1/messages/batches", post(create_batch).get(list_batches))
        .route(
            "/v1/messages/batches/{id}",
            get(get_batch).delete(delete_batch),
        )
        .route("/v1/messages/batches/{id}/cancel", post(cancel_batch))
        .route("/v1/messages/batches/{id}/results", get(batch_results))
        .route_layer(middleware::from_fn_with_state(state, require_key))
}

/// Whether a URL no route serves is one of Anthropic's, to answer in its error shape.
pub(crate) fn owns(uri: &Uri) -> bool {
    uri.path().starts_with("/v1/messages")
}

/// The answer to an Anthropic URL no route serves.
pub(crate) async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("Not found: {method} {}", uri.path()))
}

/// Lets through requests with a key (the configured key if there is one, else any non-empty
/// key) and an `anthropic-version`, and tags every answer with a `request-id`. The key is
/// taken from `x-api-key`, else from `Authorization: Bearer`, which is how the official
/// Python SDK (2.x) sends an `api_key`.
async fn require_key(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let bearer = || {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(token)
    };
    let key = headers
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
        .or_else(bearer)
        .map(str::trim)
        .filter(|key| !key.is_empty());
    let has_version = headers
        .get("anthropic-version")
        .is_some_and(|value| !value.is_empty());
    let mut response = match (key, app.config.api_key.as_deref()) {
        (None, _) => ApiError::authentication("x-api-key header is required").into_response(),
        (Some(key), Some(expected)) if !same_secret(key, expected) => {
            ApiError::authentication("invalid x-api-key").into_response()
        }
        _ if !has_version => {
            ApiError::invalid("anthropic-version: header is required".to_owned()).into_response()
        }
        _ => next.run(request).await,
    };
    if let Ok(id) = HeaderValue::from_str(&new_id("req_", 24)) {
        response.headers_mut().insert("request-id", id);
    }
    response
}

async fn create_batch(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Result<Json<MessageBatch>, ApiError> {
    let path = app.anthropic.upload_path();
    let created = create_from(&app, &headers, body, &path).await;
    disk::remove(&path);
    Ok(Json(wire(created?, &origin(&app, &headers, &uri))))
}

/// Creates a batch from a create call's body, streamed to `path` first.
async fn create_from(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
    path: &std::path::Path,
) -> Result<View, ApiError> {
    read_body(headers, body, path).await?;
    let plan = app.faults.batch(Provider::Anthropic);
    match plan.outcome {
        Some(BatchFault::Validation) => {
            return Err(ApiError::injected(
                400,
                "requests: this batch failed validation",
                None,
            ));
        }
        // Anthropic refuses work over the queue limit at create, with a 429.
        Some(BatchFault::TokenLimit) => {
            return Err(ApiError::injected(
                429,
                "This batch would put more requests in your batch queue than your rate limit allows. Please try again once some batches have ended.",
                Some(app.faults.faults().retry_after),
            ));
        }
        _ => {}
    }
    let view = app.anthropic.create(path, app.now(), plan).await?;
    app.stats
        .message_batches_created
        .fetch_add(1, Ordering::Relaxed);
    Ok(view)
}

/// Streams a create body to the file at `path`, refusing it as soon as it is over the limit.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    path: &std::path::Path,
) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_MESSAGE_BATCH_BYTES as u64) {
        return Err(ApiError::too_large());
    }
    let disk_error = |error: std::io::Error| {
        tracing::error!(%error, "sandbox files directory: cannot store a message batch body");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            format!("The sandbox could not store the request body in its files directory: {error}"),
        )
    };
    let file = tokio::fs::File::create(path).await.map_err(disk_error)?;
    let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut bytes = 0usize;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::invalid(format!("Could not read the request body: {error}"))
        })?;
        bytes += chunk.len();
        if bytes > MAX_MESSAGE_BATCH_BYTES {
            return Err(ApiError::too_large());
        }
        file.write_all(&chunk).await.map_err(disk_error)?;
    }
    file.flush().await.map_err(disk_error)?;
    Ok(())
}

async fn get_batch(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<MessageBatch>, ApiError> {
    let view = app.anthropic.batch(&id, app.now())?;
    Ok(Json(wire(view, &origin(&app, &headers, &uri))))
}

async fn cancel_batch(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<MessageBatch>, ApiError> {
    let view = app.anthropic.cancel(&id, app.now())?;
    Ok(Json(wire(view, &origin(&app, &headers, &uri))))
}

async fn delete_batch(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<DeletedBatch>, ApiError> {
    app.anthropic.delete(&id, app.now())?;
    Ok(Json(DeletedBatch {
        id,
        kind: "message_batch_deleted",
    }))
}

async fn batch_results(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let results = app.anthropic.results(&id, app.now())?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/binary"),
        )],
        results_body(results),
    )
        .into_response())
}

/// The results of a batch as a streamed body: the answered requests' lines from their file,
/// then the lines of the requests not processed, made on a blocking thread as they are sent.
fn results_body(results: Results) -> Body {
    use tokio::io::AsyncReadExt;
    const CHUNK: usize = 64 * 1024;
    let Results { file, bytes, .. } = &results;
    let answered = match file.try_clone() {
        Ok(file) => tokio::fs::File::from_std(file).take(*bytes),
        Err(error) => {
            let failed = futures::stream::once(async move { Err::<bytes::Bytes, _>(error) });
            return Body::from_stream(failed);
        }
    };
    let answered = tokio_util::io::ReaderStream::with_capacity(answered, CHUNK);
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    if results.tail.is_some() {
        tokio::task::spawn_blocking(move || {
            let chunks = match results.tail_chunks(CHUNK) {
                Ok(chunks) => chunks,
                Err(error) => {
                    let _ = sender.blocking_send(Err(error));
                    return;
                }
            };
            for chunk in chunks {
                if sender.blocking_send(chunk).is_err() {
                    break;
                }
            }
        });
    }
    let tail = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    Body::from_stream(answered.chain(tail))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<String>,
    after_id: Option<String>,
    before_id: Option<String>,
}

async fn list_batches(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<BatchList>, ApiError> {
    let Query(query) = query?;
    let limit = match &query.limit {
        None => DEFAULT_PAGE,
        Some(limit) => match limit.parse::<usize>() {
            Ok(limit) if (1..=MAX_PAGE).contains(&limit) => limit,
            _ => {
                return Err(ApiError::invalid(format!(
                    "limit: Input should be an integer from 1 to {MAX_PAGE}, not '{limit}'"
                )));
            }
        },
    };
    let cursor = match (query.after_id.as_deref(), query.before_id.as_deref()) {
        (None, None) => Cursor::Start,
        (Some(after), None) => Cursor::After(after),
        (None, Some(before)) => Cursor::Before(before),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "Only one of after_id and before_id may be given.".to_owned(),
            ));
        }
    };
    let page = app.anthropic.list(cursor, limit, app.now())?;
    let origin = origin(&app, &headers, &uri);
    let data: Vec<MessageBatch> = page
        .data
        .into_iter()
        .map(|view| wire(view, &origin))
        .collect();
    Ok(Json(BatchList {
        first_id: data.first().map(|batch| batch.id.clone()),
        last_id: data.last().map(|batch| batch.id.clone()),
        has_more: page.has_more,
        data,
    }))
}

/// `http://<host>` as the client reached the sandbox (its `Host` header), else the address
/// the sandbox listens on; empty (relative URLs) if neither is known.
fn origin(app: &AppState, headers: &HeaderMap, uri: &Uri) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<Authority>().ok())
        .or_else(|| uri.authority().cloned());
    match (host, app.addr) {
        (Some(host), _) => format!("http://{host}"),
        (None, Some(addr)) => format!("http://{addr}"),
        (None, None) => String::new(),
    }
}

/// The MessageBatch object of `view`; `origin` is where its results can be fetched.
fn wire(view: View, origin: &str) -> MessageBatch {
    let results_url = (view.status == Status::Ended)
        .then(|| format!("{origin}/v1/messages/batches/{}/results", view.id));
    MessageBatch {
        id: view.id,
        kind: "message_batch",
        processing_status: view.status,
        request_counts: view.counts,
        ended_at: view.ended_at.map(rfc3339),
        created_at: rfc3339(view.created_at),
        expires_at: rfc3339(view.expires_at),
        cancel_initiated_at: view.cancel_initiated_at.map(rfc3339),
        archived_at: None,
        results_url,
    }
}
