//! `POST /v1/prompt-batches`: a batch from an array of prompts, batchdrop's own endpoint.
//!
//! Body: `{"route"?, "prompts": ["…" | {"prompt", "custom_id"?, "system"?, …overrides}],
//! "metadata"?}`. Each element becomes a prompt line of the batch's input file (a string `s`
//! is `{"prompt": s}`; an element without `custom_id` gets `line-<n>`), written as it streams;
//! the route's defaults fill the rest, as for prompt lines dropped in `inbox/`. The route is
//! the body's `route`, else the URL's (`/routes/<route>/v1/…`), else the key's default.
//!
//! The answer names one batch by both its ids: `id` (`batch_…`, for `GET /v1/batches/{id}`
//! and its output file) and `message_batch_id` (`msgbatch_…`, for
//! `GET /v1/messages/batches/{id}` and its `results`). There is no retrieve of its own. Errors
//! are in OpenAI's shape.

use crate::ids::{self, FileId};
use crate::inline_input;
use crate::openai::batches::{NewBatch, new_batch};
use crate::openai::errors::ApiError;
use crate::tenant_store::TenantStore;
use crate::{ApiState, Caller};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde_json::{Map, Value, json};

/// The endpoint a prompt batch's record shows.
const ENDPOINT: &str = "/v1/prompt-batches";

/// The route below `/v1` (nested at `/v1` and at `/routes/{route}/v1`).
pub fn routes() -> Router<ApiState> {
    Router::new().route(
        "/prompt-batches",
        post(create).layer(DefaultBodyLimit::disable()),
    )
}

/// The prompt line of one element of `prompts`: a string is the prompt; anything else is
/// passed on for validation to judge.
fn prompt_line(element: Vec<u8>) -> Vec<u8> {
    if element.first() == Some(&b'"') {
        let mut line = b"{\"prompt\":".to_vec();
        line.extend(element);
        line.push(b'}');
        line
    } else {
        element
    }
}

/// `POST /v1/prompt-batches`.
pub async fn create(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    // The route is checked before anything is written, and again once the body has named one.
    let url_route = caller.batch_route(&state.config)?;
    let tenant_name = &caller.tenant.name;
    let tenant = TenantStore::new(state.store.clone(), tenant_name);
    let now = state.clock.now().unix_timestamp();
    let written = inline_input::write(
        &tenant,
        body,
        "prompts",
        "prompt-batch.jsonl",
        now,
        prompt_line,
    )
    .await?;
    let mut others = written.others;
    let route = match others.remove("route") {
        None => Ok(url_route),
        Some(Value::String(route)) => Caller {
            tenant: caller.tenant.clone(),
            route: Some(route),
        }
        .batch_route(&state.config),
        Some(other) => Err(ApiError::bad_request(
            format!("'route' must be a route name, found {other}"),
            Some("route"),
        )),
    };
    let metadata = match others.remove("metadata") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => check_metadata(m).map(Some),
        Some(other) => Err(ApiError::bad_request(
            format!("'metadata' must be an object, found {other}"),
            Some("metadata"),
        )),
    };
    let unknown = others.keys().next().map(|k| {
        ApiError::bad_request(
            format!("Unknown field {k:?}: a prompt batch takes route, prompts and metadata."),
            None,
        )
    });
    let checked = match (route, metadata, unknown) {
        (Ok(route), Ok(metadata), None) => Ok((route, metadata)),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Some(e)) => Err(e),
    };
    let (route, metadata) = match checked {
        Ok(checked) => checked,
        Err(e) => {
            tenant.delete_file(&written.file_token).await?;
            return Err(e);
        }
    };
    let input_file_id = FileId::Upload(written.file_token.clone()).id();
    let (record, _, token) = new_batch(
        &state,
        &tenant,
        &caller.tenant,
        NewBatch {
            route,
            file_token: written.file_token,
            endpoint: ENDPOINT.to_string(),
            metadata,
        },
    )
    .await?;
    Ok(Json(json!({
        "object": "prompt_batch",
        "id": record.id,
        "message_batch_id": ids::message_batch_id(&token),
        "input_file_id": input_file_id,
        "route": record.route,
        "prompts": written.lines,
        "created_at": record.created_at,
        "metadata": record.metadata,
    })))
}

/// OpenAI's limits on metadata: at most 16 string pairs.
fn check_metadata(m: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let fits = m.len() <= 16
        && m.iter().all(|(k, v)| {
            k.chars().count() <= 64 && v.as_str().is_some_and(|s| s.chars().count() <= 512)
        });
    if fits {
        Ok(m)
    } else {
        Err(ApiError::bad_request(
            "'metadata' takes at most 16 pairs of string keys (at most 64 characters) and string values (at most 512).",
            Some("metadata"),
        ))
    }
}
