//! `/v1/batches`: create (a batchdrop job on the caller's route), retrieve, list (newest first,
//! `after` / `limit` / `has_more`) and cancel.
//!
//! A batch is a record under the tenant's prefix and an engine job whose id is derived from
//! the tenant and the batch id, reading the uploaded file where it lies and writing its
//! results under `results/<route>/api/<tenant>/<batch id>/`. The record is written before the
//! job is started; a batch whose job does not exist yet (a crash in between) is started again
//! when it is next read ([`Engine::start`] is idempotent).

use super::batch_object::{BatchObject, batch_object};
use super::errors::ApiError;
use crate::auth::Tenant;
use crate::engine_calls::on_engine;
use crate::ids::{self, FileId};
use crate::layout;
use crate::records::BatchRecord;
use crate::tenant_store::TenantStore;
use crate::{ApiState, Caller};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use batchdrop_core::engine::{JobError, JobStart, SubmitOutcome};
use batchdrop_core::layout::JobKeys;
use batchdrop_core::manifest::{JobWebhook, Manifest};
use batchdrop_core::store::{ObjectStoreExt, StoreError};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The endpoints a batch may name (those of batchdrop's OpenAI batch lines).
pub const ENDPOINTS: [&str; 5] = [
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/responses",
    "/v1/moderations",
];
const COMPLETION_WINDOW: &str = "24h";
const MAX_METADATA_PAIRS: usize = 16;
const MAX_METADATA_KEY: usize = 64;
const MAX_METADATA_VALUE: usize = 512;
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

/// The body of `POST /v1/batches`.
#[derive(Debug, Deserialize)]
pub struct CreateBatch {
    input_file_id: String,
    endpoint: String,
    completion_window: String,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

/// The `{batch_id}` of a URL.
#[derive(Debug, Deserialize)]
pub struct BatchIdParam {
    batch_id: String,
}

/// The query of `GET /v1/batches`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// `POST /v1/batches`.
pub async fn create(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<CreateBatch>, JsonRejection>,
) -> Result<Json<BatchObject>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text(), None))?;
    let route = caller.batch_route(&state.config)?;
    check_request(&body)?;
    let tenant_name = &caller.tenant.name;
    let tenant = TenantStore::new(state.store.clone(), tenant_name);
    let file_token = match FileId::parse(&body.input_file_id) {
        Some(FileId::Upload(token)) => token,
        _ => return Err(no_input_file(&body.input_file_id)),
    };
    if tenant.file(&file_token).await?.is_none() {
        return Err(no_input_file(&body.input_file_id));
    }
    let (record, manifest, token) = new_batch(
        &state,
        &tenant,
        &caller.tenant,
        NewBatch {
            route,
            file_token,
            endpoint: body.endpoint,
            metadata: body.metadata,
        },
    )
    .await?;
    Ok(Json(object_of(&record, manifest.as_ref(), &token)))
}

/// What a new batch runs: an upload of the tenant's, on a route.
pub(crate) struct NewBatch {
    pub route: String,
    pub file_token: String,
    pub endpoint: String,
    pub metadata: Option<Map<String, Value>>,
}

/// Writes the record of a new batch and starts its job: the record, the job's manifest (if
/// it started) and the batch's token. Shared by every API that makes batches.
pub(crate) async fn new_batch(
    state: &ApiState,
    tenant: &TenantStore,
    caller: &Tenant,
    new: NewBatch,
) -> Result<(BatchRecord, Option<Manifest>, String), ApiError> {
    let tenant_name = caller.name.as_str();
    let now = state.clock.now();
    let token = ids::new_batch_token((now.unix_timestamp_nanos() / 1_000_000) as i64)?;
    let batch_id = ids::batch_id(&token);
    let record = BatchRecord {
        job_id: layout::job_id(tenant_name, &batch_id),
        results_prefix: layout::results_prefix(&new.route, tenant_name, &batch_id),
        input_key: tenant.keys().file_content(&new.file_token),
        id: batch_id.clone(),
        input_file_id: FileId::Upload(new.file_token).id(),
        endpoint: new.endpoint,
        completion_window: COMPLETION_WINDOW.to_string(),
        metadata: new.metadata,
        created_at: now.unix_timestamp(),
        route: new.route,
        cancelling_at: None,
        webhook: caller.webhook.as_ref().map(|hook| JobWebhook {
            tenant: tenant_name.to_string(),
            url: hook.url.clone(),
            batches: hook.batches,
            api_batch_id: Some(batch_id.clone()),
        }),
    };
    tenant.put_batch(&token, &record).await?;
    tracing::info!(
        tenant = tenant_name,
        batch_id = record.id,
        job_id = record.job_id,
        route = record.route,
        "batch created"
    );
    let manifest = start_job(state, &record).await?;
    Ok((record, manifest, token))
}

/// `GET /v1/batches/{batch_id}`.
pub async fn retrieve(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(param): Path<BatchIdParam>,
) -> Result<Json<BatchObject>, ApiError> {
    let tenant = TenantStore::new(state.store.clone(), &caller.tenant.name);
    let token = batch_token(&param.batch_id)?;
    let (record, manifest) = batch_and_job(&state, &tenant, token)
        .await?
        .ok_or_else(|| not_found(&param.batch_id))?;
    Ok(Json(object_of(&record, manifest.as_ref(), token)))
}

/// A batch of the tenant and its job's manifest; the job is started again if it does not
/// exist yet (a crash between the record and the start). `None`: no such batch.
pub(crate) async fn batch_and_job(
    state: &ApiState,
    tenant: &TenantStore,
    token: &str,
) -> Result<Option<(BatchRecord, Option<Manifest>)>, ApiError> {
    let Some((record, _)) = tenant.batch(token).await? else {
        return Ok(None);
    };
    let manifest = match job_manifest(state, &record.job_id).await? {
        Some(m) => Some(m),
        None => start_job(state, &record).await?,
    };
    Ok(Some((record, manifest)))
}

/// `GET /v1/batches?after=&limit=`: newest first.
pub async fn list(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text(), None))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            format!("'limit' must be between 1 and {MAX_LIMIT}."),
            Some("limit"),
        ));
    }
    let after = match &query.after {
        None => None,
        Some(id) => Some(ids::batch_token(id).ok_or_else(|| {
            ApiError::bad_request(format!("'after' is not a batch id: {id:?}"), Some("after"))
        })?),
    };
    let tenant = TenantStore::new(state.store.clone(), &caller.tenant.name);
    let page = tenant.batches(after, limit).await?;
    let mut data = Vec::with_capacity(page.batches.len());
    for record in &page.batches {
        let manifest = job_manifest(&state, &record.job_id).await?;
        let token = ids::batch_token(&record.id).unwrap_or_default();
        data.push(object_of(record, manifest.as_ref(), token));
    }
    Ok(Json(json!({
        "object": "list",
        "first_id": data.first().map(|b| b.id.clone()),
        "last_id": data.last().map(|b| b.id.clone()),
        "has_more": page.has_more,
        "data": data,
    })))
}

/// `POST /v1/batches/{batch_id}/cancel`: the job is asked to cancel (its running batches are
/// cancelled at the provider, answers already in are kept); the answer says `cancelling`
/// until the job has finished.
pub async fn cancel(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(param): Path<BatchIdParam>,
) -> Result<Json<BatchObject>, ApiError> {
    let tenant = TenantStore::new(state.store.clone(), &caller.tenant.name);
    let token = batch_token(&param.batch_id)?;
    let (record, manifest) = cancel_batch(&state, &tenant, token)
        .await?
        .ok_or_else(|| not_found(&param.batch_id))?;
    tracing::info!(
        tenant = caller.tenant.name,
        batch_id = record.id,
        "batch cancel asked"
    );
    let mut object = object_of(&record, manifest.as_ref(), token);
    if matches!(object.status, "validating" | "in_progress" | "finalizing") {
        object.status = "cancelling";
    }
    Ok(Json(object))
}

/// Asks the job of a tenant's batch to cancel (the time of the first ask is kept in the
/// record); the record and the job's manifest after the ask. `None`: no such batch.
pub(crate) async fn cancel_batch(
    state: &ApiState,
    tenant: &TenantStore,
    token: &str,
) -> Result<Option<(BatchRecord, Option<Manifest>)>, ApiError> {
    let Some((mut record, etag)) = tenant.batch(token).await? else {
        return Ok(None);
    };
    if record.cancelling_at.is_none() {
        record.cancelling_at = Some(state.clock.now().unix_timestamp());
        match tenant.update_batch(token, &record, etag).await {
            // Another cancel wrote first: its time stands.
            Ok(()) | Err(StoreError::Precondition { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let reason = format!("cancelled: the Batch API was asked to cancel {}", record.id);
    let job_id = record.job_id.clone();
    on_engine(&state.engine, move |engine| async move {
        engine.cancel_job(&job_id, &reason).await
    })
    .await??;
    let manifest = job_manifest(state, &record.job_id).await?;
    Ok(Some((record, manifest)))
}

/// The manifest of a job, if it exists.
pub(crate) async fn job_manifest(
    state: &ApiState,
    job_id: &str,
) -> Result<Option<Manifest>, StoreError> {
    match state
        .store
        .get_json::<Manifest>(&JobKeys::new(job_id).manifest())
        .await
    {
        Ok((m, _)) => Ok(Some(m)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A batch of the tenant whose job has finished, and its manifest.
pub(crate) async fn finished_job(
    state: &ApiState,
    tenant: &TenantStore,
    token: &str,
) -> Result<Option<(BatchRecord, Manifest)>, ApiError> {
    let Some((record, _)) = tenant.batch(token).await? else {
        return Ok(None);
    };
    match job_manifest(state, &record.job_id).await? {
        Some(m) if m.status.is_finished() => Ok(Some((record, m))),
        _ => Ok(None),
    }
}

/// Starts the job of a batch (or finds it started) and reads its manifest; `None` when the
/// input file is gone, so the job could not start.
async fn start_job(state: &ApiState, record: &BatchRecord) -> Result<Option<Manifest>, ApiError> {
    let start = JobStart {
        job_id: record.job_id.clone(),
        route: record.route.clone(),
        input_key: record.input_key.clone(),
        results_prefix: record.results_prefix.clone(),
        webhook: record.webhook.clone(),
    };
    let outcome = match on_engine(&state.engine, move |engine| async move {
        engine.start(start).await
    })
    .await?
    {
        Ok(outcome) => outcome,
        // A poller took the new job over while it was being planned: it exists, and moves on.
        Err(JobError::LostLease { .. }) => return Ok(job_manifest(state, &record.job_id).await?),
        Err(e) => return Err(e.into()),
    };
    if let SubmitOutcome::Ignored { .. } = outcome {
        return Ok(None);
    }
    Ok(job_manifest(state, &record.job_id).await?)
}

/// The batch object; a batch without a job whose input file is gone is `failed`.
fn object_of(record: &BatchRecord, manifest: Option<&Manifest>, token: &str) -> BatchObject {
    let mut object = batch_object(record, manifest, token);
    if manifest.is_none() {
        object.status = "failed";
        object.failed_at = Some(record.created_at);
        object.errors = Some(json!({"object": "list", "data": [{
            "code": "input_file_missing",
            "message": format!("The input file {} no longer exists.", record.input_file_id),
            "param": "input_file_id", "line": null,
        }]}));
    }
    object
}

fn check_request(body: &CreateBatch) -> Result<(), ApiError> {
    if !ENDPOINTS.contains(&body.endpoint.as_str()) {
        return Err(ApiError::bad_request(
            format!(
                "Unsupported endpoint {:?}; supported: {}.",
                body.endpoint,
                ENDPOINTS.join(", ")
            ),
            Some("endpoint"),
        ));
    }
    if body.completion_window != COMPLETION_WINDOW {
        return Err(ApiError::bad_request(
            format!("'completion_window' must be {COMPLETION_WINDOW:?}."),
            Some("completion_window"),
        ));
    }
    if let Some(metadata) = &body.metadata {
        let fits = metadata.len() <= MAX_METADATA_PAIRS
            && metadata.iter().all(|(k, v)| {
                k.chars().count() <= MAX_METADATA_KEY
                    && v.as_str()
                        .is_some_and(|s| s.chars().count() <= MAX_METADATA_VALUE)
            });
        if !fits {
            return Err(ApiError::bad_request(
                format!(
                    "'metadata' takes at most {MAX_METADATA_PAIRS} pairs of string keys (at most {MAX_METADATA_KEY} characters) and string values (at most {MAX_METADATA_VALUE})."
                ),
                Some("metadata"),
            ));
        }
    }
    Ok(())
}

fn batch_token(id: &str) -> Result<&str, ApiError> {
    ids::batch_token(id).ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound {
        what: "batch",
        id: id.to_string(),
    }
}

fn no_input_file(id: &str) -> ApiError {
    ApiError::NotFound {
        what: "input file",
        id: id.to_string(),
    }
}
