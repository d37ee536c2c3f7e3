//! AWS Bedrock batch inference as the sandbox serves it: the control plane's model
//! invocation jobs and the runtime's InvokeModel, at the real service's paths (from botocore's
//! `bedrock` and `bedrock-runtime` service models), with routes, handlers and wire types.
//!
//! Handlers translate HTTP into calls on the [`store::Store`] and back; the store, the
//! timeline, the scan of the input and the output writer decide. Every route needs an
//! `Authorization` header (any SigV4 signature or bearer token is accepted **without being
//! verified**: the sandbox is a loopback development tool); without one the answer is AWS's
//! 403 `MissingAuthenticationTokenException`. The region of job ARNs is read from the SigV4
//! credential scope (`us-east-1` without one). Errors have the restJson1 shape: the status,
//! `x-amzn-ErrorType: <Name>` and `{"message": "…"}`; every answer carries an
//! `x-amzn-RequestId`.

mod answer;
mod input;
mod objects;
mod output;
mod query;
mod s3;
mod scan;
mod store;
mod timeline;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use query::list_filter;
pub use scan::{MAX_FILE_BYTES as MAX_BEDROCK_FILE_BYTES, MAX_RECORDS as MAX_BEDROCK_RECORDS};
pub(crate) use store::Store;
use store::{StoreError, View};

use crate::AppState;
use crate::clock::rfc3339;
use crate::faults::{BatchFault, Provider};
use crate::openai::MODEL_NOT_FOUND;

/// The default minimum number of records of a job (Bedrock's quota for most models).
pub const DEFAULT_MIN_RECORDS: usize = 100;
/// The default number of jobs one model may have submitted or in progress.
pub const DEFAULT_MAX_JOBS_PER_MODEL: usize = 10;
const DEFAULT_REGION: &str = "us-east-1";

// ---- Configuration ------------------------------------------------------------------------

/// How the sandbox plays Bedrock.
#[derive(Debug, Clone)]
pub struct BedrockConfig {
    /// Where jobs read their input and write their output. `None`: every create call is
    /// refused with a `ValidationException` saying so.
    pub objects: Option<BedrockObjects>,
    /// A job with fewer records fails at validation (default [`DEFAULT_MIN_RECORDS`]).
    pub min_records: usize,
    /// A model's jobs submitted or in progress at most; one more is refused with
    /// `ServiceQuotaExceededException` (default [`DEFAULT_MAX_JOBS_PER_MODEL`]).
    pub max_jobs_per_model: usize,
}

impl Default for BedrockConfig {
    fn default() -> Self {
        BedrockConfig {
            objects: None,
            min_records: DEFAULT_MIN_RECORDS,
            max_jobs_per_model: DEFAULT_MAX_JOBS_PER_MODEL,
        }
    }
}

/// The bucket Bedrock jobs use.
#[derive(Clone)]
pub enum BedrockObjects {
    /// A directory: `s3://<any bucket>/<key>` is `<dir>/<key>`.
    Directory(PathBuf),
    /// An S3 API.
    S3(BedrockS3),
}

impl fmt::Debug for BedrockObjects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BedrockObjects::Directory(dir) => f.debug_tuple("Directory").field(dir).finish(),
            BedrockObjects::S3(s3) => f
                .debug_struct("S3")
                .field("endpoint", &s3.endpoint)
                .field("region", &s3.region)
                .field(
                    "credentials",
                    &s3.credentials.as_ref().map(|_| "<redacted>"),
                )
                .finish(),
        }
    }
}

/// An S3-compatible server (path-style addressing).
#[derive(Clone, Default)]
pub struct BedrockS3 {
    /// e.g. `http://127.0.0.1:5000`.
    pub endpoint: String,
    /// Default: the AWS environment's, else `us-east-1`.
    pub region: Option<String>,
    /// `(access key id, secret access key)`; default: the AWS environment chain, else dummy
    /// ones.
    pub credentials: Option<(String, String)>,
}

impl BedrockS3 {
    /// The server at `endpoint`, with the region and credentials of the environment.
    pub fn new(endpoint: impl Into<String>) -> Self {
        BedrockS3 {
            endpoint: endpoint.into(),
            ..BedrockS3::default()
        }
    }
}

/// The store of a sandbox configured with `config`.
pub(crate) fn new_store(config: &BedrockConfig, step: Duration) -> Store {
    let objects: Option<Arc<dyn objects::Objects>> = match &config.objects {
        None => None,
        Some(BedrockObjects::Directory(dir)) => {
            Some(Arc::new(objects::Directory::new(dir.clone())))
        }
        Some(BedrockObjects::S3(settings)) => Some(Arc::new(s3::S3::new(settings.clone()))),
    };
    Store::new(
        store::Settings {
            step,
            min_records: config.min_records,
            max_jobs_per_model: config.max_jobs_per_model,
        },
        objects,
    )
}

// ---- Errors -------------------------------------------------------------------------------

/// A Bedrock error: `x-amzn-ErrorType` and `{"message"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            kind,
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationException", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({"message": self.message}))).into_response();
        response
            .headers_mut()
            .insert("x-amzn-ErrorType", HeaderValue::from_static(self.kind));
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NoObjects => ApiError::validation(
                "The sandbox was started without a bucket for Bedrock jobs: start it with --root DIR (a directory as the bucket) or --s3-endpoint URL (an S3 API), or set SandboxConfig::bedrock.objects",
            ),
            StoreError::NotFound { id } => ApiError::new(
                404,
                "ResourceNotFoundException",
                format!("The specified model invocation job {id} does not exist."),
            ),
            StoreError::Quota { model_id, max } => ApiError::new(
                400,
                "ServiceQuotaExceededException",
                format!(
                    "You have reached the quota of {max} batch inference jobs submitted or in progress for model {model_id}. Wait for some to end, or stop some, and try again."
                ),
            ),
            StoreError::NotStoppable { arn, status } => ApiError::validation(format!(
                "The job {arn} is {} and cannot be stopped: only Submitted, Validating, Scheduled and InProgress jobs can be stopped.",
                status.as_str()
            )),
            StoreError::BadToken { token } => {
                ApiError::validation(format!("The pagination token {token} is not valid."))
            }
        }
    }
}

/// An injected API error in Bedrock's shape: 429 `ThrottlingException`, 503
/// `ServiceUnavailableException`, else 500 `InternalServerException`.
pub(crate) fn injected_error(status: u16) -> Response {
    let (status, kind, message) = match status {
        429 => (
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
        503 | 529 => (
            503,
            "ServiceUnavailableException",
            "The service is temporarily unavailable.",
        ),
        _ => (
            500,
            "InternalServerException",
            "The system encountered an unexpected error during processing. Try your request again.",
        ),
    };
    let mut response =
        ApiError::new(status, kind, format!("{message} (sandbox fault injection)")).into_response();
    tag(&mut response);
    response
}

// ---- Routes -------------------------------------------------------------------------------

/// The Bedrock routes, behind `Authorization`.
pub(crate) fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/model-invocation-job", post(create_job))
        .route("/model-invocation-job/{id}", get(get_job))
        .route("/model-invocation-job/{id}/stop", post(stop_job))
        .route("/model-invocation-jobs", get(list_jobs))
        .route("/model/{model_id}/invoke", post(invoke_model))
        .route_layer(middleware::from_fn_with_state(state, require_authorization))
}

/// Whether a URL is one of Bedrock's, to answer in its error shape.
pub(crate) fn owns(uri: &Uri) -> bool {
    let path = uri.path();
    path.starts_with("/model-invocation-job") || path.starts_with("/model/")
}

/// The answer to a Bedrock URL no route serves.
pub(crate) async fn unknown_route(method: Method, uri: Uri) -> Response {
    let mut response = ApiError::new(
        404,
        "UnknownOperationException",
        format!("No Bedrock operation at {method} {}", uri.path()),
    )
    .into_response();
    tag(&mut response);
    response
}

fn tag(response: &mut Response) {
    if let Ok(id) = HeaderValue::from_str(&uuid_like()) {
        response.headers_mut().insert("x-amzn-RequestId", id);
    }
}

/// A request id in the UUID shape AWS uses.
fn uuid_like() -> String {
    let hex = format!("{:032x}", fastrand::u128(..));
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Lets through requests with an `Authorization` header (not verified), and tags every answer
/// with an `x-amzn-RequestId`.
async fn require_authorization(request: Request, next: Next) -> Response {
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|value| !value.is_empty());
    let mut response = if authorized {
        next.run(request).await
    } else {
        ApiError::new(
            403,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )
        .into_response()
    };
    tag(&mut response);
    response
}

/// The region of a SigV4 `Authorization` header's credential scope
/// (`Credential=AKID/20231114/us-east-1/bedrock/aws4_request`).
fn region(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split("Credential=").nth(1))
        .and_then(|scope| scope.split('/').nth(2))
        .filter(|region| {
            !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        .unwrap_or(DEFAULT_REGION)
        .to_owned()
}

/// Refuses a control-plane call picked by the `throttle` fault.
fn throttled(app: &AppState) -> Result<(), ApiError> {
    if app.faults.throttle() {
        return Err(ApiError::new(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again. (sandbox fault injection)",
        ));
    }
    Ok(())
}

async fn create_job(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    throttled(&app)?;
    let request =
        input::check_create(&body).map_err(|invalid| ApiError::validation(invalid.message))?;
    if request.model_id == MODEL_NOT_FOUND {
        return Err(ApiError::validation(
            "The provided model identifier is invalid.",
        ));
    }
    let plan = app.faults.batch(Provider::Bedrock);
    if plan.outcome == Some(BatchFault::TokenLimit) {
        return Err(ApiError::new(
            400,
            "ServiceQuotaExceededException",
            "You have reached the quota of batch inference records submitted or in progress for this model. (sandbox fault injection)",
        ));
    }
    let (arn, new) = app
        .bedrock
        .create(request, &region(&headers), app.now(), plan)
        .await?;
    if new {
        app.stats
            .bedrock_jobs_created
            .fetch_add(1, Ordering::Relaxed);
    }
    Ok(Json(json!({ "jobArn": arn })))
}

async fn get_job(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    throttled(&app)?;
    let view = app.bedrock.job(&id, app.now()).await?;
    Ok(Json(wire(&view)))
}

async fn stop_job(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    throttled(&app)?;
    app.bedrock.stop(&id, app.now()).await?;
    Ok(Json(json!({})))
}

async fn list_jobs(
    State(app): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    throttled(&app)?;
    let filter = list_filter(query.as_deref().unwrap_or(""))?;
    let (views, next) = app.bedrock.list(&filter, app.now()).await?;
    let mut body = Map::new();
    body.insert(
        "invocationJobSummaries".to_owned(),
        Value::Array(views.iter().map(wire).collect()),
    );
    if let Some(next) = next {
        body.insert("nextToken".to_owned(), Value::String(next));
    }
    Ok(Json(Value::Object(body)))
}

/// GetModelInvocationJob's answer (and a ListModelInvocationJobs summary) for `view`.
fn wire(view: &View) -> Value {
    let request = &view.fixed.request;
    let mut job = Map::new();
    let mut put = |key: &str, value: Value| {
        job.insert(key.to_owned(), value);
    };
    put("jobArn", json!(view.fixed.arn));
    put("jobName", json!(request.job_name));
    put("modelId", json!(request.model_id));
    if let Some(token) = &request.client_request_token {
        put("clientRequestToken", json!(token));
    }
    put("roleArn", json!(request.role_arn));
    put("status", json!(view.status.as_str()));
    if let Some(message) = &view.message {
        put("message", json!(message));
    }
    put("submitTime", json!(rfc3339(view.submit_time)));
    put("lastModifiedTime", json!(rfc3339(view.last_modified_time)));
    if let Some(end) = view.end_time {
        put("endTime", json!(rfc3339(end)));
    }
    put("inputDataConfig", request.input_data_config.clone());
    put("outputDataConfig", request.output_data_config.clone());
    put("timeoutDurationInHours", json!(request.timeout_hours));
    put("jobExpirationTime", json!(rfc3339(view.expiration_time)));
    match &view.outcome {
        Some(manifest) => {
            put("totalRecordCount", json!(manifest.total_record_count));
            put(
                "processedRecordCount",
                json!(manifest.processed_record_count),
            );
            put("successRecordCount", json!(manifest.success_record_count));
            put("errorRecordCount", json!(manifest.error_record_count));
        }
        None => {
            if let Some(total) = view.total_records {
                put("totalRecordCount", json!(total));
            }
            if let Some(processed) = view.processed_records {
                put("processedRecordCount", json!(processed));
            }
        }
    }
    Value::Object(job)
}

async fn invoke_model(
    State(app): State<Arc<AppState>>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    app.stats
        .bedrock_invocations
        .fetch_add(1, Ordering::Relaxed);
    app.latency().await;
    if model_id == MODEL_NOT_FOUND {
        return Err(ApiError::validation(
            "The provided model identifier is invalid.",
        ));
    }
    let body: Value = serde_json::from_slice(&body).map_err(|error| {
        ApiError::validation(format!(
            "Malformed input request: {error}, please reformat your input and try again."
        ))
    })?;
    let answer = answer::answer(&model_id, &body)
        .map_err(|refusal| ApiError::validation(refusal.message))?;
    let mut response = Json(answer.output).into_response();
    for (name, count) in [
        ("x-amzn-bedrock-input-token-count", answer.input_tokens),
        ("x-amzn-bedrock-output-token-count", answer.output_tokens),
    ] {
        if let Ok(value) = HeaderValue::from_str(&count.to_string()) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_the_credential_scope() {
        let mut headers = HeaderMap::new();
        assert_eq!(region(&headers), "us-east-1");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKID/20231114/eu-west-3/bedrock/aws4_request, SignedHeaders=host, Signature=00",
            ),
        );
        assert_eq!(region(&headers), "eu-west-3");
    }
}
