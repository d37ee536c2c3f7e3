//! `/v1/messages/batches`: create (the inline `requests` written streamed as the batch's input
//! file, then a batchdrop job on the caller's route, as `POST /v1/batches` does), retrieve,
//! list (newest first, `before_id` / `after_id` / `limit`, `has_more`, `first_id`, `last_id`),
//! cancel, and `results` (JSONL, in Anthropic's shape whatever the route's provider).
//!
//! A message batch is a batch of the tenant like any other: `msgbatch_<token>` here is
//! `batch_<token>` on the OpenAI side, and each API serves every batch in its own shape.

use super::errors::AnthropicError;
use super::message_batch::{MessageBatch, ended, message_batch};
use super::results::results;
use crate::ids;
use crate::inline_input;
use crate::openai::batches::{NewBatch, batch_and_job, cancel_batch, new_batch};
use crate::records::BatchRecord;
use crate::result_lines;
use crate::tenant_store::TenantStore;
use crate::{ApiState, Caller};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use batchdrop_core::manifest::Manifest;
use batchdrop_core::provider::Dialect;
use batchdrop_core::providers;
use batchdrop_core::store::{ObjectStoreExt, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncBufRead;

/// The one endpoint a message batch's requests go to.
const MESSAGES: &str = "/v1/messages";
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;

/// The `{batch_id}` of a URL.
#[derive(Debug, Deserialize)]
pub struct BatchIdParam {
    batch_id: String,
}

/// The query of `GET /v1/messages/batches`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    before_id: Option<String>,
    after_id: Option<String>,
    limit: Option<usize>,
}

/// The dialect whose result lines this API serves: Anthropic's.
pub(crate) fn api_dialect() -> &'static dyn Dialect {
    &providers::anthropic::Anthropic
}

/// `POST /v1/messages/batches`.
pub async fn create(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<MessageBatch>, AnthropicError> {
    let route = caller.batch_route(&state.config)?;
    let tenant_name = &caller.tenant.name;
    let tenant = TenantStore::new(state.store.clone(), tenant_name);
    let now = state.clock.now().unix_timestamp();
    let written = inline_input::write(
        &tenant,
        body,
        "requests",
        "message-batch-requests.jsonl",
        now,
        |element| element,
    )
    .await?;
    let (record, manifest, token) = new_batch(
        &state,
        &tenant,
        &caller.tenant,
        NewBatch {
            route,
            file_token: written.file_token,
            endpoint: MESSAGES.to_string(),
            metadata: None,
        },
    )
    .await?;
    Ok(Json(object(
        &headers,
        &caller,
        &record,
        manifest.as_ref(),
        &token,
    )))
}

/// `GET /v1/messages/batches/{batch_id}`.
pub async fn retrieve(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(param): Path<BatchIdParam>,
) -> Result<Json<MessageBatch>, AnthropicError> {
    let tenant = TenantStore::new(state.store.clone(), &caller.tenant.name);
    let token = token_of(&param.batch_id)?;
    let (record, manifest) = batch_and_job(&state, &tenant, token)
        .await?
        .ok_or_else(|| not_found(&param.batch_id))?;
    Ok(Json(object(
        &headers,
        &caller,
        &record,
        manifest.as_ref(),
        token,
    )))
}

/// `GET /v1/messages/batches?before_id=&after_id=&limit=`: newest first.
pub async fn list(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, AnthropicError> {
    let Query(query) = query.map_err(|e| AnthropicError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AnthropicError::bad_request(format!(
            "limit: must be between 1 and {MAX_LIMIT}."
        )));
    }
    let id_token = |name: &str, id: &Option<String>| -> Result<Option<String>, AnthropicError> {
        match id {
            None => Ok(None),
            Some(id) => ids::message_batch_token(id)
                .map(|t| Some(t.to_string()))
                .ok_or_else(|| {
                    AnthropicError::bad_request(format!("{name}: not a message batch id: {id:?}"))
                }),
        }
    };
    let before = id_token("before_id", &query.before_id)?;
    let after = id_token("after_id", &query.after_id)?;
    if before.is_some() && after.is_some() {
        return Err(AnthropicError::bad_request(
            "Give at most one of before_id and after_id.",
        ));
    }
    let tenant = TenantStore::new(state.store.clone(), &caller.tenant.name);
    let page = match &before {
        Some(before) => tenant.batches_before(before, limit).await?,
        None => tenant.batches(after.as_deref(), limit).await?,
    };
    let mut data = Vec::with_capacity(page.batches.len());
    for record in &page.batches {
        let manifest = crate::openai::batches::job_manifest(&state, &record.job_id).await?;
        let token = ids::batch_token(&record.id).unwrap_or_default();
        data.push(object(&headers, &caller, record, manifest.as_ref(), token));
    }
    Ok(Json(json!({
        "data": data,
        "has_more": page.has_more,
        "first_id": data.first().map(|b| b.id.clone()),
        "last_id": data.last().map(|b| b.id.clone()),
    })))
}

/// `POST /v1/messages/batches/{batch_id}/cancel`: the job is asked to cancel; `canceling`
/// until it has ended.
pub async fn cancel(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(param): Path<BatchIdParam>,
) -> Result<Json<MessageBatch>, AnthropicError> {
    let tenant = TenantStore::new(state.store.clone(), &caller.tenant.name);
    let token = token_of(&param.batch_id)?;
    let (record, manifest) = cancel_batch(&state, &tenant, token)
        .await?
        .ok_or_else(|| not_found(&param.batch_id))?;
    tracing::info!(
        tenant = caller.tenant.name,
        batch_id = record.id,
        "message batch cancel asked"
    );
    Ok(Json(object(
        &headers,
        &caller,
        &record,
        manifest.as_ref(),
        token,
    )))
}

/// `GET /v1/messages/batches/{batch_id}/results`: JSONL, once the batch has ended.
pub async fn results_of(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(param): Path<BatchIdParam>,
) -> Result<Response, AnthropicError> {
    let tenant = TenantStore::new(state.store.clone(), &caller.tenant.name);
    let token = token_of(&param.batch_id)?;
    let (record, manifest) = batch_and_job(&state, &tenant, token)
        .await?
        .ok_or_else(|| not_found(&param.batch_id))?;
    if !ended(manifest.as_ref()) {
        return Err(AnthropicError::bad_request(format!(
            "Message batch {} has not ended yet: its results are not available.",
            param.batch_id
        )));
    }
    let stream = results_stream(&state, &record).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/x-jsonl")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The results of an ended batch, in Anthropic's shape.
pub(crate) async fn results_stream(
    state: &ApiState,
    record: &BatchRecord,
) -> Result<futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>, AnthropicError> {
    let provider = state
        .config
        .route(&record.route)
        .map(|r| r.provider.as_str())
        .unwrap_or_default();
    let from = result_lines::route_dialect(provider, api_dialect());
    let output = reader(state, &format!("{}output.jsonl", record.results_prefix)).await?;
    let errors = reader(state, &format!("{}errors.jsonl", record.results_prefix)).await?;
    Ok(results(output, errors, from, api_dialect()))
}

async fn reader(
    state: &ApiState,
    key: &str,
) -> Result<Option<Box<dyn AsyncBufRead + Send + Unpin>>, StoreError> {
    match state.store.reader(key).await {
        Ok((_, reader)) => Ok(Some(reader)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The message batch object of a batch of the caller's.
fn object(
    headers: &HeaderMap,
    caller: &Caller,
    record: &BatchRecord,
    manifest: Option<&Manifest>,
    token: &str,
) -> MessageBatch {
    let id = ids::message_batch_id(token);
    let url = format!(
        "{}/v1/messages/batches/{id}/results",
        base_url(headers, caller)
    );
    message_batch(id, record, manifest, url)
}

/// The URL the caller reached this API at (`http(s)://host[/routes/<route>]`), for
/// `results_url`: the SDKs fetch it as it is.
fn base_url(headers: &HeaderMap, caller: &Caller) -> String {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let scheme = text("x-forwarded-proto").unwrap_or_else(|| "http".into());
    let host = text("x-forwarded-host")
        .or_else(|| text(header::HOST.as_str()))
        .unwrap_or_else(|| "localhost".into());
    let route = caller
        .route
        .as_deref()
        .map(|r| {
            format!(
                "/routes/{}",
                percent_encoding::utf8_percent_encode(r, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .unwrap_or_default();
    format!("{scheme}://{host}{route}")
}

fn token_of(id: &str) -> Result<&str, AnthropicError> {
    ids::message_batch_token(id).ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> AnthropicError {
    AnthropicError::not_found("message batch", id)
}
