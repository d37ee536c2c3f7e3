//! `/v1/files`: upload (multipart `file` + `purpose=batch`, streamed into the bucket, never
//! held whole), retrieve, content and delete; and OpenAI's File object.
//!
//! Besides uploads, a finished batch's output file (its job's output.jsonl) and error file
//! (errors.jsonl re-shaped, `error_file`) are files of its tenant. Output is served as it is
//! for routes whose provider writes OpenAI-shaped result lines; the others' lines are
//! translated to OpenAI batch output lines as they stream ([`crate::result_lines`]). They
//! cannot be deleted through the API: they stay with the job's results.

use super::batches::finished_job;
use super::error_file::error_lines;
use super::errors::ApiError;
use crate::ids::{self, FileId};
use crate::records::FileRecord;
use crate::result_lines;
use crate::tenant_store::TenantStore;
use crate::{ApiState, Caller};
use axum::body::Body;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use batchdrop_core::clock::parse_rfc3339;
use batchdrop_core::manifest::Manifest;
use batchdrop_core::provider::Dialect;
use batchdrop_core::providers;
use batchdrop_core::store::{ByteStream, ObjectStoreExt, StoreError};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

/// The only purpose a file may have here.
const PURPOSE: &str = "batch";
/// Pieces of an upload in flight between the request and the bucket.
const UPLOAD_PIECES: usize = 4;

/// OpenAI's File object.
#[derive(Debug, Clone, Serialize)]
pub struct FileObject {
    pub id: String,
    pub object: &'static str,
    pub bytes: u64,
    pub created_at: i64,
    pub filename: String,
    pub purpose: String,
    pub status: &'static str,
    pub expires_at: Option<i64>,
    pub status_details: Option<String>,
}

impl FileObject {
    fn new(id: String, bytes: u64, created_at: i64, filename: &str, purpose: &str) -> Self {
        FileObject {
            id,
            object: "file",
            bytes,
            created_at,
            filename: filename.to_string(),
            purpose: purpose.to_string(),
            status: "processed",
            expires_at: None,
            status_details: None,
        }
    }
}

impl From<&FileRecord> for FileObject {
    fn from(r: &FileRecord) -> Self {
        FileObject::new(r.id.clone(), r.bytes, r.created_at, &r.filename, &r.purpose)
    }
}

/// The dialect whose result lines this API serves: OpenAI's.
fn api_dialect() -> &'static dyn Dialect {
    &providers::openai::OpenAi
}

/// The dialect of the result lines of `route`'s provider.
fn route_dialect(state: &ApiState, route: &str) -> &'static dyn Dialect {
    let provider = state
        .config
        .route(route)
        .map(|r| r.provider.as_str())
        .unwrap_or_default();
    result_lines::route_dialect(provider, api_dialect())
}

/// The output file of a batch, in OpenAI's shape, streamed.
async fn output_stream(
    state: &ApiState,
    record: &crate::records::BatchRecord,
) -> Result<futures::stream::BoxStream<'static, std::io::Result<Bytes>>, ApiError> {
    let key = format!("{}output.jsonl", record.results_prefix);
    let from = route_dialect(state, &record.route);
    if result_lines::as_is(from, api_dialect()) {
        return Ok(state.store.get(&key).await?.body);
    }
    let (_, reader) = state.store.reader(&key).await?;
    Ok(result_lines::translated(reader, from, api_dialect()))
}

/// `POST /v1/files`.
pub async fn upload(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<FileObject>, ApiError> {
    let mut multipart = multipart.map_err(|e| {
        ApiError::bad_request(
            format!("Expected a multipart/form-data body: {}", e.body_text()),
            None,
        )
    })?;
    let tenant = TenantStore::new(state.store.clone(), &caller.tenant.name);
    let token = ids::new_file_token()?;
    let mut purpose = None;
    let mut stored: Option<(String, u64)> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("purpose") => purpose = Some(field.text().await.map_err(multipart_error)?),
            Some("file") if stored.is_none() => {
                let filename = field.file_name().unwrap_or("upload.jsonl").to_string();
                let (sender, receiver) =
                    tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(UPLOAD_PIECES);
                let body: ByteStream = futures::stream::unfold(receiver, |mut r| async move {
                    r.recv().await.map(|piece| (piece, r))
                })
                .boxed();
                let put = tokio::spawn({
                    let tenant = tenant.clone();
                    let token = token.clone();
                    async move { tenant.put_content(&token, body).await }
                });
                let mut broken = None;
                loop {
                    match field.chunk().await {
                        Ok(Some(piece)) => {
                            if sender.send(Ok(piece)).await.is_err() {
                                break; // the put stopped: its error says why
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            // Fails the put: a half upload never becomes an object.
                            let _ = sender.send(Err(std::io::Error::other(e.body_text()))).await;
                            broken = Some(e);
                            break;
                        }
                    }
                }
                drop(sender);
                let written = put.await?;
                if let Some(e) = broken {
                    return Err(multipart_error(e));
                }
                stored = Some((filename, written?.size));
            }
            _ => {}
        }
    }
    let Some((filename, bytes)) = stored else {
        return Err(ApiError::bad_request(
            "Missing the multipart field 'file'.",
            Some("file"),
        ));
    };
    if purpose.as_deref() != Some(PURPOSE) {
        tenant.delete_content(&token).await?;
        return Err(ApiError::bad_request(
            format!("'purpose' must be {PURPOSE:?}: batchdrop's API takes batch input files only."),
            Some("purpose"),
        ));
    }
    let record = FileRecord {
        id: FileId::Upload(token.clone()).id(),
        bytes,
        created_at: state.clock.now().unix_timestamp(),
        filename,
        purpose: PURPOSE.to_string(),
    };
    tenant.put_file(&token, &record).await?;
    tracing::info!(
        tenant = caller.tenant.name,
        file_id = record.id,
        bytes,
        "file uploaded"
    );
    Ok(Json(FileObject::from(&record)))
}

/// `GET /v1/files/{file_id}`.
pub async fn retrieve(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(file_id): Path<FileIdParam>,
) -> Result<Json<FileObject>, ApiError> {
    let tenant = TenantStore::new(state.store.clone(), &caller.tenant.name);
    match parse(&file_id.file_id)? {
        FileId::Upload(token) => match tenant.file(&token).await? {
            Some(record) => Ok(Json(FileObject::from(&record))),
            None => Err(not_found(&file_id.file_id)),
        },
        FileId::Output(token) => {
            let (record, manifest) = finished_job(&state, &tenant, &token)
                .await?
                .filter(|(_, m)| m.counts.accepted > 0)
                .ok_or_else(|| not_found(&file_id.file_id))?;
            let key = format!("{}output.jsonl", record.results_prefix);
            let bytes = if result_lines::as_is(route_dialect(&state, &record.route), api_dialect())
            {
                state.store.head(&key).await?.size
            } else {
                // Translated lines: their size is counted as they stream.
                count_bytes(output_stream(&state, &record).await?, &key).await?
            };
            let id = FileId::Output(token).id();
            Ok(Json(output_file(id, bytes, &manifest, "output.jsonl")))
        }
        FileId::Errors(token) => {
            let (record, manifest) = finished_job(&state, &tenant, &token)
                .await?
                .filter(|(_, m)| m.counts.rejected > 0)
                .ok_or_else(|| not_found(&file_id.file_id))?;
            // Its size is that of the re-shaped lines: counted as they stream.
            let lines = error_stream(&state, &record.results_prefix, &token).await?;
            let key = format!("{}errors.jsonl", record.results_prefix);
            let bytes = count_bytes(lines, &key).await?;
            let id = FileId::Errors(token).id();
            Ok(Json(output_file(id, bytes, &manifest, "errors.jsonl")))
        }
    }
}

/// The File object of a finished job's output or error file.
fn output_file(id: String, bytes: u64, manifest: &Manifest, filename: &str) -> FileObject {
    let created_at = manifest
        .finished_at
        .as_deref()
        .and_then(|t| parse_rfc3339(t).ok())
        .map_or(0, |t| t.unix_timestamp());
    FileObject::new(id, bytes, created_at, filename, "batch_output")
}

/// `GET /v1/files/{file_id}/content`: the bytes, streamed from the bucket, or a redirect to
/// them ([`object_as_is`]).
pub async fn content(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(file_id): Path<FileIdParam>,
) -> Result<Response, ApiError> {
    let tenant = TenantStore::new(state.store.clone(), &caller.tenant.name);
    let body = match parse(&file_id.file_id)? {
        FileId::Upload(token) => {
            if tenant.file(&token).await?.is_none() {
                return Err(not_found(&file_id.file_id));
            }
            return object_as_is(&state, &tenant.keys().file_content(&token)).await;
        }
        FileId::Output(token) => {
            let (record, _) = finished_job(&state, &tenant, &token)
                .await?
                .ok_or_else(|| not_found(&file_id.file_id))?;
            if result_lines::as_is(route_dialect(&state, &record.route), api_dialect()) {
                let key = format!("{}output.jsonl", record.results_prefix);
                return object_as_is(&state, &key).await;
            }
            Body::from_stream(output_stream(&state, &record).await?)
        }
        FileId::Errors(token) => {
            let (record, _) = finished_job(&state, &tenant, &token)
                .await?
                .ok_or_else(|| not_found(&file_id.file_id))?;
            Body::from_stream(error_stream(&state, &record.results_prefix, &token).await?)
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

/// An object served as it is: `307` to a URL of the store when downloads redirect (and the
/// store has such URLs), else its bytes streamed. An absent object is the same error either
/// way, never a redirect to nothing.
async fn object_as_is(state: &ApiState, key: &str) -> Result<Response, ApiError> {
    if let Some(valid_for) = state.download_redirects {
        state.store.head(key).await?;
        if let Some(url) = state.store.download_url(key, valid_for).await? {
            return Ok(Redirect::temporary(&url).into_response());
        }
    }
    let body = Body::from_stream(state.store.get(key).await?.body);
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

/// `DELETE /v1/files/{file_id}`: an upload only.
pub async fn delete(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(file_id): Path<FileIdParam>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = TenantStore::new(state.store.clone(), &caller.tenant.name);
    match parse(&file_id.file_id)? {
        FileId::Upload(token) => {
            if tenant.file(&token).await?.is_none() {
                return Err(not_found(&file_id.file_id));
            }
            tenant.delete_file(&token).await?;
            Ok(Json(
                json!({"id": file_id.file_id, "object": "file", "deleted": true}),
            ))
        }
        FileId::Output(token) | FileId::Errors(token) => {
            // Only a file of this tenant is worth a 400; anything else is unknown.
            if tenant.batch(&token).await?.is_none() {
                return Err(not_found(&file_id.file_id));
            }
            Err(ApiError::bad_request(
                "A batch's output and error files stay with its job's results; they cannot be deleted.",
                None,
            ))
        }
    }
}

/// The `{file_id}` of a URL (under `/routes/{route}/v1` the route is there too).
#[derive(Debug, serde::Deserialize)]
pub struct FileIdParam {
    file_id: String,
}

fn parse(id: &str) -> Result<FileId, ApiError> {
    FileId::parse(id).ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound {
        what: "file",
        id: id.to_string(),
    }
}

async fn error_stream(
    state: &ApiState,
    results_prefix: &str,
    token: &str,
) -> Result<futures::stream::BoxStream<'static, std::io::Result<Bytes>>, ApiError> {
    let (_, reader) = state
        .store
        .reader(&format!("{results_prefix}errors.jsonl"))
        .await?;
    Ok(error_lines(token.to_string(), reader).boxed())
}

/// The bytes a stream gives, counted as it goes.
async fn count_bytes(
    mut stream: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
    key: &str,
) -> Result<u64, ApiError> {
    let mut bytes = 0;
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|source| StoreError::Io {
            key: key.to_string(),
            source,
        })?;
        bytes += piece.len() as u64;
    }
    Ok(bytes)
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::bad_request(
        format!("Could not read the multipart form: {}", e.body_text()),
        None,
    )
}
