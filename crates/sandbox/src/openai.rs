//! OpenAI Files + Batches as the sandbox serves them: routes, handlers and wire types.
//!
//! Handlers translate HTTP into calls on the [`store::Store`] and back; the store, the
//! timeline and the input pipeline decide. Every route needs `Authorization: Bearer <key>`.
//! Errors have OpenAI's shape `{"error": {"message", "type", "param", "code"}}` with status
//! 400 (bad request), 401 (no or wrong key) or 404 (unknown id or URL).
//!
//! Limits, as the real API's: a file of at most [`MAX_FILE_BYTES`], a batch input file of at
//! most [`MAX_BATCH_FILE_BYTES`] named `*.jsonl`, at most [`MAX_REQUESTS`] requests per batch,
//! `completion_window` `24h`, metadata of at most 16 pairs with keys of at most 64 and values
//! of at most 512 characters. Endpoints served: `/v1/chat/completions`, `/v1/embeddings`,
//! `/v1/completions`, `/v1/responses`, `/v1/moderations`.

mod answer;
mod input;
mod queue;
mod store;
mod sync;
mod timeline;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Multipart, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;

pub use answer::MODEL_NOT_FOUND;
pub use input::{MAX_REPORTED_ERRORS, MAX_REQUESTS};
pub(crate) use store::{Ended, Store};
use store::{NewBatch, NewFile, Order, StoreError};
use timeline::Status;

use crate::AppState;
use crate::disk;
use crate::faults::{self, Provider};

/// The largest file the Files API takes, in bytes.
pub const MAX_FILE_BYTES: usize = 512_000_000;
/// The largest batch input file, in bytes.
pub const MAX_BATCH_FILE_BYTES: usize = 200_000_000;

const PURPOSES: [&str; 6] = [
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
];
const MAX_METADATA_PAIRS: usize = 16;
const MAX_METADATA_KEY_CHARS: usize = 64;
const MAX_METADATA_VALUE_CHARS: usize = 512;
/// Bounds of an `expires_after.seconds` (files) or `output_expires_after.seconds` (batches).
const EXPIRY_SECONDS: std::ops::RangeInclusive<u64> = 3600..=2_592_000;
const DEFAULT_BATCH_PAGE: usize = 20;
const MAX_BATCH_PAGE: usize = 100;
const MAX_FILE_PAGE: usize = 10_000;

/// The endpoint of a batch: every request of the batch goes to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    ChatCompletions,
    Embeddings,
    Completions,
    Responses,
    Moderations,
}

impl Endpoint {
    const ALL: [Endpoint; 5] = [
        Endpoint::ChatCompletions,
        Endpoint::Embeddings,
        Endpoint::Completions,
        Endpoint::Responses,
        Endpoint::Moderations,
    ];

    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Responses => "/v1/responses",
            Endpoint::Moderations => "/v1/moderations",
        }
    }

    fn parse(path: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|endpoint| endpoint.path() == path)
    }
}

// ---- Wire types -------------------------------------------------------------------------

/// The File object.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FileObject {
    pub id: String,
    pub object: &'static str,
    pub bytes: u64,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub filename: String,
    pub purpose: String,
    pub status: &'static str,
    pub status_details: Option<String>,
}

/// The Batch object.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BatchObject {
    pub id: String,
    pub object: &'static str,
    pub endpoint: &'static str,
    pub model: Option<String>,
    pub errors: Option<ErrorList>,
    pub input_file_id: String,
    pub completion_window: &'static str,
    pub status: Status,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub created_at: i64,
    pub in_progress_at: Option<i64>,
    pub expires_at: i64,
    pub finalizing_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub expired_at: Option<i64>,
    pub cancelling_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    pub request_counts: RequestCounts,
    pub usage: Option<BatchUsage>,
    pub metadata: Option<Map<String, Value>>,
}

/// A batch's validation errors.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ErrorList {
    pub object: &'static str,
    pub data: Vec<BatchError>,
}

/// One validation error of a batch; `line` is the 1-based line of the input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BatchError {
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub line: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct BatchUsage {
    input_tokens: u64,
    input_tokens_details: InputTokensDetails,
    output_tokens: u64,
    output_tokens_details: OutputTokensDetails,
    total_tokens: u64,
}

#[derive(Debug, Clone, Serialize)]
struct InputTokensDetails {
    cached_tokens: u64,
}

#[derive(Debug, Clone, Serialize)]
struct OutputTokensDetails {
    reasoning_tokens: u64,
}

impl BatchUsage {
    pub(crate) fn new(input_tokens: u64, output_tokens: u64) -> Self {
        BatchUsage {
            input_tokens,
            input_tokens_details: InputTokensDetails { cached_tokens: 0 },
            output_tokens,
            output_tokens_details: OutputTokensDetails {
                reasoning_tokens: 0,
            },
            total_tokens: input_tokens + output_tokens,
        }
    }
}

/// A page of a listing.
#[derive(Debug, Serialize)]
pub(crate) struct List<T> {
    pub object: &'static str,
    pub data: Vec<T>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

#[derive(Debug, Serialize)]
struct DeletedFile {
    id: String,
    object: &'static str,
    deleted: bool,
}

/// An OpenAI error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    param: Option<String>,
    code: Option<&'static str>,
}

impl ApiError {
    fn bad_request(message: String, param: Option<&str>, code: Option<&'static str>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message,
            param: param.map(str::to_owned),
            code,
        }
    }

    fn not_found(message: String, param: Option<&str>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message,
            param: param.map(str::to_owned),
            code: None,
        }
    }

    fn unauthorized(message: &str, code: Option<&'static str>) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: message.to_owned(),
            param: None,
            code,
        }
    }

    /// A 500: the sandbox itself failed.
    fn server(message: String) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message,
            param: None,
            code: None,
        }
    }

    /// A 500 for a files directory that failed.
    fn disk(what: &str, error: &std::io::Error) -> Self {
        tracing::error!(%error, "sandbox files directory: cannot {what}");
        Self::server(format!(
            "The sandbox could not {what} in its files directory: {error}"
        ))
    }

    fn missing(param: &str) -> Self {
        Self::bad_request(
            format!("Missing required parameter: '{param}'."),
            Some(param),
            Some("missing_required_parameter"),
        )
    }

    fn invalid_value(param: &str, message: String) -> Self {
        Self::bad_request(message, Some(param), Some("invalid_value"))
    }

    fn multipart(error: MultipartError) -> Self {
        let status = error.status();
        ApiError {
            status: if status.is_client_error() {
                status
            } else {
                StatusCode::BAD_REQUEST
            },
            message: format!("Could not read the multipart form: {}", error.body_text()),
            param: None,
            code: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = if self.status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        let body = json!({"error": {
            "message": self.message,
            "type": kind,
            "param": self.param,
            "code": self.code,
        }});
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::FileNotFound { id } => {
                ApiError::not_found(format!("No such File object: {id}"), Some("id"))
            }
            StoreError::InputFileNotFound { id } => {
                ApiError::not_found(format!("No such File object: {id}"), Some("input_file_id"))
            }
            StoreError::BatchNotFound { id } => {
                ApiError::not_found(format!("No batch found with id '{id}'."), Some("id"))
            }
            StoreError::NotBatchInput { id, purpose } => ApiError::bad_request(
                format!(
                    "The input file {id} has purpose '{purpose}'; a batch needs a file uploaded with purpose 'batch'."
                ),
                Some("input_file_id"),
                Some("invalid_value"),
            ),
            StoreError::NotCancellable { id, status } => ApiError::bad_request(
                format!(
                    "Cannot cancel batch {id}: its status is '{}'.",
                    status.as_str()
                ),
                None,
                None,
            ),
            StoreError::UnknownCursor { after } => ApiError::bad_request(
                format!("No object with id '{after}' to list after."),
                Some("after"),
                Some("invalid_value"),
            ),
            StoreError::Disk { what, message } => ApiError::server(format!(
                "The sandbox could not {what} in its files directory: {message}"
            )),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(rejection.body_text(), None, None)
    }
}

impl From<MultipartRejection> for ApiError {
    fn from(rejection: MultipartRejection) -> Self {
        ApiError::bad_request(
            format!(
                "Expected a multipart/form-data body: {}",
                rejection.body_text()
            ),
            None,
            None,
        )
    }
}

// ---- Routes -----------------------------------------------------------------------------

/// The OpenAI routes, under `/v1`, behind bearer authentication.
pub(crate) fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/files", post(upload_file).get(list_files))
        .route("/v1/files/{id}", get(get_file).delete(delete_file))
        .route("/v1/files/{id}/content", get(file_content))
        .route("/v1/batches", post(create_batch).get(list_batches))
        .route("/v1/batches/{id}", get(get_batch))
        .route("/v1/batches/{id}/cancel", post(cancel_batch))
        .route("/v1/chat/completions", post(sync::request))
        .route("/v1/embeddings", post(sync::request))
        .route("/v1/completions", post(sync::request))
        .route("/v1/responses", post(sync::request))
        .route("/v1/moderations", post(sync::request))
        .route_layer(middleware::from_fn_with_state(state, require_bearer))
}

/// The answer to a URL no route serves.
pub(crate) async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("Invalid URL ({method} {})", uri.path()), None)
}

/// An injected API error: `status` with OpenAI's error body for it, and `retry-after` /
/// `retry-after-ms` headers when `retry_after` is given.
pub(crate) fn injected_error(status: u16, retry_after: Option<Duration>) -> Response {
    let (kind, code, message) = faults::openai_error(status);
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(body)).into_response();
    for (name, value) in retry_after
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

/// A fresh random id: `prefix` and `len` characters of `[0-9A-Za-z]`.
pub(crate) fn new_id(prefix: &str, len: usize) -> String {
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(len));
    id
}

/// Lets through requests with `Authorization: Bearer <token>`: the configured key if there is
/// one, else any non-empty token.
async fn require_bearer(
    State(app): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty());
    match (token, app.config.api_key.as_deref()) {
        (None, _) => ApiError::unauthorized(
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            None,
        )
        .into_response(),
        (Some(token), Some(key)) if !same_secret(token, key) => ApiError::unauthorized(
            "Incorrect API key provided. The sandbox takes only the key it was started with.",
            Some("invalid_api_key"),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

/// Compares two secrets in time that depends only on their lengths.
pub(crate) fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

async fn upload_file(
    State(app): State<Arc<AppState>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<FileObject>, ApiError> {
    let (id, path) = app.openai.upload_path();
    let file = match read_upload(multipart?, &path).await {
        Ok(file) => file,
        Err(error) => {
            disk::remove(&path);
            return Err(error);
        }
    };
    let object = app.openai.add_file(id, file, app.now());
    app.stats.files_uploaded.fetch_add(1, Ordering::Relaxed);
    Ok(Json(object))
}

/// Reads the `purpose`, `file` and optional `expires_after[anchor]` / `expires_after[seconds]`
/// fields of an upload, streaming the file to `path` and stopping as soon as it is over its
/// limit.
async fn read_upload(
    mut multipart: Multipart,
    path: &std::path::Path,
) -> Result<NewFile, ApiError> {
    let mut purpose: Option<String> = None;
    let mut file: Option<(String, u64)> = None;
    let (mut anchor, mut seconds) = (None, None);
    while let Some(mut field) = multipart.next_field().await.map_err(ApiError::multipart)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "purpose" => purpose = Some(field.text().await.map_err(ApiError::multipart)?),
            "expires_after[anchor]" => {
                anchor = Some(field.text().await.map_err(ApiError::multipart)?);
            }
            "expires_after[seconds]" => {
                seconds = Some(field.text().await.map_err(ApiError::multipart)?);
            }
            "file" => {
                let filename = field.file_name().unwrap_or_default().to_owned();
                // The purpose usually comes first; if not, the batch limit is checked below.
                let limit = match purpose.as_deref() {
                    Some("batch") => MAX_BATCH_FILE_BYTES,
                    _ => MAX_FILE_BYTES,
                } as u64;
                let content = tokio::fs::File::create(path)
                    .await
                    .map_err(|error| ApiError::disk("store an uploaded file", &error))?;
                let mut content = tokio::io::BufWriter::with_capacity(1 << 20, content);
                let mut bytes = 0u64;
                while let Some(chunk) = field.chunk().await.map_err(ApiError::multipart)? {
                    bytes += chunk.len() as u64;
                    if bytes > limit {
                        return Err(too_large(limit as usize));
                    }
                    content
                        .write_all(&chunk)
                        .await
                        .map_err(|error| ApiError::disk("store an uploaded file", &error))?;
                }
                content
                    .flush()
                    .await
                    .map_err(|error| ApiError::disk("store an uploaded file", &error))?;
                file = Some((filename, bytes));
            }
            _ => {}
        }
    }

    let purpose = purpose.ok_or_else(|| ApiError::missing("purpose"))?;
    if !PURPOSES.contains(&purpose.as_str()) {
        return Err(ApiError::invalid_value(
            "purpose",
            format!(
                "Invalid value for 'purpose': '{purpose}'. Expected one of {}.",
                PURPOSES.join(", ")
            ),
        ));
    }
    let (filename, bytes) = file.ok_or_else(|| ApiError::missing("file"))?;
    if purpose == "batch" {
        if !filename.ends_with(".jsonl") {
            return Err(ApiError::bad_request(
                format!("Invalid file format for Batch API: '{filename}'. Must be a .jsonl file."),
                Some("file"),
                Some("invalid_file_format"),
            ));
        }
        if bytes > MAX_BATCH_FILE_BYTES as u64 {
            return Err(too_large(MAX_BATCH_FILE_BYTES));
        }
    }
    let expires_after = match (anchor, seconds) {
        (None, None) => None,
        (anchor, seconds) => Some(expiry(
            "expires_after",
            anchor.as_deref(),
            seconds.as_deref().map(str::parse::<u64>),
        )?),
    };
    Ok(NewFile {
        filename,
        purpose,
        bytes,
        expires_after,
    })
}

fn too_large(limit: usize) -> ApiError {
    ApiError::bad_request(
        format!("The file is too large: files for this purpose may have at most {limit} bytes."),
        Some("file"),
        Some("file_too_large"),
    )
}

/// An `{anchor: "created_at", seconds}` expiry policy, as a lifetime.
fn expiry(
    param: &str,
    anchor: Option<&str>,
    seconds: Option<Result<u64, std::num::ParseIntError>>,
) -> Result<Duration, ApiError> {
    if anchor != Some("created_at") {
        return Err(ApiError::invalid_value(
            &format!("{param}.anchor"),
            format!("Invalid value for '{param}.anchor': expected 'created_at'."),
        ));
    }
    match seconds {
        Some(Ok(seconds)) if EXPIRY_SECONDS.contains(&seconds) => Ok(Duration::from_secs(seconds)),
        _ => Err(ApiError::invalid_value(
            &format!("{param}.seconds"),
            format!(
                "Invalid value for '{param}.seconds': expected an integer from {} to {}.",
                EXPIRY_SECONDS.start(),
                EXPIRY_SECONDS.end()
            ),
        )),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<String>,
    order: Option<String>,
    purpose: Option<String>,
}

impl ListQuery {
    fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        let Some(limit) = &self.limit else {
            return Ok(default);
        };
        match limit.parse::<usize>() {
            Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
            _ => Err(ApiError::invalid_value(
                "limit",
                format!(
                    "Invalid value for 'limit': '{limit}'. Expected an integer from 1 to {max}."
                ),
            )),
        }
    }
}

async fn list_files(
    State(app): State<Arc<AppState>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<List<FileObject>>, ApiError> {
    let Query(query) = query?;
    let limit = query.limit(MAX_FILE_PAGE, MAX_FILE_PAGE)?;
    let order = match query.order.as_deref() {
        None | Some("desc") => Order::NewestFirst,
        Some("asc") => Order::OldestFirst,
        Some(other) => {
            return Err(ApiError::invalid_value(
                "order",
                format!("Invalid value for 'order': '{other}'. Expected 'asc' or 'desc'."),
            ));
        }
    };
    app.openai.settle(app.now()).await?;
    let page = app.openai.list_files(
        query.purpose.as_deref(),
        order,
        query.after.as_deref(),
        limit,
    )?;
    Ok(Json(page))
}

async fn get_file(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<FileObject>, ApiError> {
    app.openai.settle(app.now()).await?;
    Ok(Json(app.openai.file(&id)?))
}

async fn file_content(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    app.openai.settle(app.now()).await?;
    let (content, bytes) = app.openai.file_content(&id)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(bytes)),
        ],
        disk::body(content, bytes),
    )
        .into_response())
}

async fn delete_file(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<DeletedFile>, ApiError> {
    app.openai.settle(app.now()).await?;
    app.openai.delete_file(&id)?;
    Ok(Json(DeletedFile {
        id,
        object: "file",
        deleted: true,
    }))
}

#[derive(Debug, Deserialize)]
struct CreateBatchRequest {
    input_file_id: Option<String>,
    endpoint: Option<String>,
    completion_window: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    output_expires_after: Option<ExpiresAfter>,
}

#[derive(Debug, Deserialize)]
struct ExpiresAfter {
    anchor: Option<String>,
    seconds: Option<u64>,
}

async fn create_batch(
    State(app): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<BatchObject>, ApiError> {
    let request: CreateBatchRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(
            format!("We could not parse the JSON body of your request: {error}."),
            None,
            None,
        )
    })?;
    let input_file_id = request
        .input_file_id
        .ok_or_else(|| ApiError::missing("input_file_id"))?;
    let endpoint = request
        .endpoint
        .ok_or_else(|| ApiError::missing("endpoint"))?;
    let endpoint = Endpoint::parse(&endpoint).ok_or_else(|| {
        let supported: Vec<&str> = Endpoint::ALL.iter().map(|e| e.path()).collect();
        ApiError::invalid_value(
            "endpoint",
            format!(
                "Invalid value for 'endpoint': '{endpoint}'. The sandbox supports {}.",
                supported.join(", ")
            ),
        )
    })?;
    let window = request
        .completion_window
        .ok_or_else(|| ApiError::missing("completion_window"))?;
    if window != "24h" {
        return Err(ApiError::invalid_value(
            "completion_window",
            format!(
                "Invalid value for 'completion_window': '{window}'. Supported values are: '24h'."
            ),
        ));
    }
    if let Some(metadata) = &request.metadata {
        check_metadata(metadata)?;
    }
    let output_expires_after = request
        .output_expires_after
        .map(|policy| {
            expiry(
                "output_expires_after",
                policy.anchor.as_deref(),
                policy.seconds.map(Ok),
            )
        })
        .transpose()?;

    let admission = match app.faults.faults().enqueued_token_limit {
        Some(limit) => {
            // The batches in flight are those the clock shows so once their inputs are known.
            app.openai.settle(app.now()).await?;
            app.openai
                .enqueued(&input_file_id, endpoint)
                .await?
                .map(|batch| queue::Admission { limit, batch })
        }
        None => None,
    };
    let created = app.openai.create_batch(
        NewBatch {
            input_file_id,
            endpoint,
            metadata: request.metadata,
            output_expires_after,
            admission,
        },
        app.now(),
        || app.faults.batch(Provider::OpenAi),
    )?;
    if created.over_limit {
        app.faults.over_enqueued_limit();
    }
    app.stats.batches_created.fetch_add(1, Ordering::Relaxed);
    Ok(Json(created.object))
}

fn check_metadata(metadata: &Map<String, Value>) -> Result<(), ApiError> {
    if metadata.len() > MAX_METADATA_PAIRS {
        return Err(ApiError::bad_request(
            format!(
                "Invalid 'metadata': too many properties. Expected at most {MAX_METADATA_PAIRS} properties, got {}.",
                metadata.len()
            ),
            Some("metadata"),
            Some("object_above_max_properties"),
        ));
    }
    for (key, value) in metadata {
        if key.chars().count() > MAX_METADATA_KEY_CHARS {
            return Err(ApiError::bad_request(
                format!(
                    "Invalid 'metadata': the key '{key}' is longer than {MAX_METADATA_KEY_CHARS} characters."
                ),
                Some("metadata"),
                Some("string_above_max_length"),
            ));
        }
        let Some(value) = value.as_str() else {
            return Err(ApiError::bad_request(
                format!("Invalid type for 'metadata.{key}': expected a string."),
                Some("metadata"),
                Some("invalid_type"),
            ));
        };
        if value.chars().count() > MAX_METADATA_VALUE_CHARS {
            return Err(ApiError::bad_request(
                format!(
                    "Invalid 'metadata.{key}': longer than {MAX_METADATA_VALUE_CHARS} characters."
                ),
                Some("metadata"),
                Some("string_above_max_length"),
            ));
        }
    }
    Ok(())
}

async fn get_batch(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<BatchObject>, ApiError> {
    let now = app.now();
    app.openai.settle(now).await?;
    Ok(Json(app.openai.batch(&id, now)?))
}

async fn cancel_batch(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<BatchObject>, ApiError> {
    let now = app.now();
    app.openai.settle(now).await?;
    Ok(Json(app.openai.cancel_batch(&id, now)?))
}

async fn list_batches(
    State(app): State<Arc<AppState>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<List<BatchObject>>, ApiError> {
    let Query(query) = query?;
    let limit = query.limit(DEFAULT_BATCH_PAGE, MAX_BATCH_PAGE)?;
    let now = app.now();
    app.openai.settle(now).await?;
    Ok(Json(app.openai.list_batches(
        query.after.as_deref(),
        limit,
        now,
    )?))
}
