//! `/v1/uploads`: OpenAI's Uploads API, for files bigger than one request should carry (the
//! SDK's `uploads.upload_file_chunked`, and the only way past the 6 MB request cap of a Lambda
//! function URL). `POST /v1/uploads` announces a file (size, name, purpose), each
//! `POST /v1/uploads/{id}/parts` streams one part (at most [`MAX_PART_BYTES`]) into the
//! bucket, and `POST /v1/uploads/{id}/complete` joins the parts in the order given into an
//! ordinary uploaded file (`file-…`, usable by `POST /v1/batches`), checking that they add up to
//! the announced size and, when given, their MD5. `POST /v1/uploads/{id}/cancel` drops it.
//!
//! An upload expires an hour after it is made (or `expires_after` seconds, up to 30 days):
//! parts and completion are refused after that. Completing twice with the same parts answers
//! the same file; a complete racing another complete or a cancel loses to it (the record is
//! replaced only at the ETag it was read at). Parts are removed once the file is made.

use super::errors::ApiError;
use super::files::FileObject;
use crate::ids::{self, FileId};
use crate::records::{FileRecord, UploadRecord, UploadState};
use crate::tenant_store::TenantStore;
use crate::{ApiState, Caller};
use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use batchdrop_core::store::{ByteStream, StoreError};
use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// The most one part may hold (OpenAI's limit).
pub const MAX_PART_BYTES: u64 = 64 * 1024 * 1024;
/// How long an upload may take unless its creation says.
const DEFAULT_EXPIRY_SECONDS: i64 = 3600;
const MIN_EXPIRY_SECONDS: i64 = 3600;
const MAX_EXPIRY_SECONDS: i64 = 30 * 24 * 3600;
/// Pieces of a part in flight between the request and the bucket.
const PART_PIECES: usize = 4;
const PURPOSE: &str = "batch";

/// The body of `POST /v1/uploads`.
#[derive(Debug, Deserialize)]
pub struct CreateUpload {
    bytes: u64,
    filename: String,
    mime_type: String,
    purpose: String,
    #[serde(default)]
    expires_after: Option<ExpiresAfter>,
}

#[derive(Debug, Deserialize)]
pub struct ExpiresAfter {
    anchor: String,
    seconds: i64,
}

/// The body of `POST /v1/uploads/{id}/complete`.
#[derive(Debug, Deserialize)]
pub struct CompleteUpload {
    part_ids: Vec<String>,
    #[serde(default)]
    md5: Option<String>,
}

/// The `{upload_id}` of a URL.
#[derive(Debug, Deserialize)]
pub struct UploadIdParam {
    upload_id: String,
}

/// OpenAI's Upload object.
#[derive(Debug, Serialize)]
pub struct UploadObject {
    id: String,
    object: &'static str,
    bytes: u64,
    created_at: i64,
    expires_at: i64,
    filename: String,
    purpose: String,
    status: &'static str,
    file: Option<FileObject>,
}

/// OpenAI's Upload Part object.
#[derive(Debug, Serialize)]
pub struct PartObject {
    id: String,
    object: &'static str,
    created_at: i64,
    upload_id: String,
}

fn upload_object(record: &UploadRecord, file: Option<FileObject>, now: i64) -> UploadObject {
    let status = match record.state {
        UploadState::Pending if now >= record.expires_at => "expired",
        UploadState::Pending => "pending",
        UploadState::Completed => "completed",
        UploadState::Cancelled => "cancelled",
    };
    UploadObject {
        id: record.id.clone(),
        object: "upload",
        bytes: record.bytes,
        created_at: record.created_at,
        expires_at: record.expires_at,
        filename: record.filename.clone(),
        purpose: record.purpose.clone(),
        status,
        file,
    }
}

/// `POST /v1/uploads`.
pub async fn create(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<CreateUpload>, JsonRejection>,
) -> Result<Json<UploadObject>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text(), None))?;
    if body.purpose != PURPOSE {
        return Err(ApiError::bad_request(
            format!("'purpose' must be {PURPOSE:?}: batchdrop's API takes batch input files only."),
            Some("purpose"),
        ));
    }
    if body.filename.is_empty() || body.filename.len() > 512 {
        return Err(ApiError::bad_request(
            "'filename' must be 1 to 512 characters.",
            Some("filename"),
        ));
    }
    let lifetime = match body.expires_after {
        None => DEFAULT_EXPIRY_SECONDS,
        Some(e) if e.anchor == "created_at" => e.seconds,
        Some(_) => {
            return Err(ApiError::bad_request(
                "'expires_after.anchor' must be \"created_at\".",
                Some("expires_after"),
            ));
        }
    };
    if !(MIN_EXPIRY_SECONDS..=MAX_EXPIRY_SECONDS).contains(&lifetime) {
        return Err(ApiError::bad_request(
            format!(
                "'expires_after.seconds' must be between {MIN_EXPIRY_SECONDS} and {MAX_EXPIRY_SECONDS}."
            ),
            Some("expires_after"),
        ));
    }
    let tenant = TenantStore::new(state.store.clone(), &caller.tenant.name);
    let token = ids::new_file_token()?;
    let now = state.clock.now().unix_timestamp();
    let record = UploadRecord {
        id: ids::upload_id(&token),
        bytes: body.bytes,
        created_at: now,
        expires_at: now + lifetime,
        filename: body.filename,
        mime_type: body.mime_type,
        purpose: body.purpose,
        state: UploadState::Pending,
        part_ids: Vec::new(),
        file_id: None,
    };
    tenant.put_upload(&token, &record).await?;
    Ok(Json(upload_object(&record, None, now)))
}

/// `POST /v1/uploads/{upload_id}/parts`: the multipart field `data`, streamed into the bucket.
pub async fn add_part(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(upload): Path<UploadIdParam>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<PartObject>, ApiError> {
    let tenant = TenantStore::new(state.store.clone(), &caller.tenant.name);
    let token = parse(&upload.upload_id)?;
    let (record, _) = pending(&state, &tenant, &upload.upload_id, token).await?;
    let mut multipart = multipart.map_err(|e| {
        ApiError::bad_request(
            format!("Expected a multipart/form-data body: {}", e.body_text()),
            None,
        )
    })?;
    let part = ids::new_file_token()?;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        if field.name() != Some("data") {
            continue;
        }
        let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(PART_PIECES);
        let body: ByteStream = futures::stream::unfold(receiver, |mut r| async move {
            r.recv().await.map(|piece| (piece, r))
        })
        .boxed();
        let put = tokio::spawn({
            let tenant = tenant.clone();
            let (token, part) = (token.to_string(), part.clone());
            async move { tenant.put_part(&token, &part, body).await }
        });
        let mut refused = None;
        let mut size = 0u64;
        loop {
            let outcome: Result<(), ApiError> = match field.chunk().await {
                Ok(Some(piece)) => {
                    size += piece.len() as u64;
                    if size > MAX_PART_BYTES {
                        Err(ApiError::TooLarge {
                            what: "An upload part",
                            limit: MAX_PART_BYTES,
                        })
                    } else {
                        if sender.send(Ok(piece)).await.is_err() {
                            break; // the put stopped: its error says why
                        }
                        continue;
                    }
                }
                Ok(None) => break,
                Err(e) => Err(multipart_error(e)),
            };
            // Fails the put: a part cut short never becomes an object.
            let _ = sender
                .send(Err(std::io::Error::other("the part was refused")))
                .await;
            refused = outcome.err();
            break;
        }
        drop(sender);
        let written = put.await?;
        if let Some(e) = refused {
            return Err(e);
        }
        written?;
        tracing::info!(
            tenant = caller.tenant.name,
            upload_id = record.id,
            bytes = size,
            "upload part stored"
        );
        return Ok(Json(PartObject {
            id: ids::part_id(&part),
            object: "upload.part",
            created_at: state.clock.now().unix_timestamp(),
            upload_id: record.id,
        }));
    }
    Err(ApiError::bad_request(
        "Missing the multipart field 'data'.",
        Some("data"),
    ))
}

/// `POST /v1/uploads/{upload_id}/complete`.
pub async fn complete(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(upload): Path<UploadIdParam>,
    body: Result<Json<CompleteUpload>, JsonRejection>,
) -> Result<Json<UploadObject>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text(), None))?;
    let tenant = TenantStore::new(state.store.clone(), &caller.tenant.name);
    let token = parse(&upload.upload_id)?;
    let now = state.clock.now().unix_timestamp();
    let (record, etag) = tenant
        .upload(token)
        .await?
        .ok_or_else(|| not_found(&upload.upload_id))?;
    if record.state == UploadState::Completed && record.part_ids == body.part_ids {
        // Asked again (an answer lost on the way): the same file; parts left are removed.
        tenant.delete_parts(token).await?;
        let file = completed_file(&tenant, &record).await?;
        return Ok(Json(upload_object(&record, file, now)));
    }
    let (mut record, etag) = pending_record(record, etag, now)?;
    let mut parts = Vec::with_capacity(body.part_ids.len());
    let mut total = 0u64;
    for id in &body.part_ids {
        let part = ids::part_token(id).ok_or_else(|| unknown_part(id, &record.id))?;
        let size = tenant
            .part_size(token, part)
            .await?
            .ok_or_else(|| unknown_part(id, &record.id))?;
        total += size;
        parts.push(part.to_string());
    }
    if body.part_ids.is_empty() || total != record.bytes {
        return Err(ApiError::bad_request(
            format!(
                "The parts given hold {total} bytes; upload {} was created for {} bytes.",
                record.id, record.bytes
            ),
            Some("part_ids"),
        ));
    }
    // The parts, joined in order into the file's content; hashed as they pass when an MD5
    // is to be checked.
    let file_token = ids::new_file_token()?;
    let hasher = Arc::new(Mutex::new(Md5::new()));
    let joined = tenant.parts_stream(token, parts);
    let joined: ByteStream = if body.md5.is_some() {
        let hasher = hasher.clone();
        joined
            .inspect(move |piece| {
                if let (Ok(piece), Ok(mut h)) = (piece, hasher.lock()) {
                    h.update(piece);
                }
            })
            .boxed()
    } else {
        joined
    };
    let written = tenant.put_content(&file_token, joined).await?;
    if let Some(expected) = &body.md5 {
        let actual = hasher
            .lock()
            .map(|h| hex::encode(h.clone().finalize()))
            .unwrap_or_default();
        if !actual.eq_ignore_ascii_case(expected.trim()) {
            tenant.delete_content(&file_token).await?;
            return Err(ApiError::bad_request(
                format!(
                    "The parts' MD5 is {actual}, not the {:?} given: the upload stays pending.",
                    expected.chars().take(64).collect::<String>()
                ),
                Some("md5"),
            ));
        }
    }
    let file = FileRecord {
        id: FileId::Upload(file_token.clone()).id(),
        bytes: written.size,
        created_at: now,
        filename: record.filename.clone(),
        purpose: record.purpose.clone(),
    };
    tenant.put_file(&file_token, &file).await?;
    record.state = UploadState::Completed;
    record.part_ids = body.part_ids;
    record.file_id = Some(file.id.clone());
    if let Err(e) = tenant.update_upload(token, &record, etag).await {
        // Another complete or a cancel got there first: this file is not the upload's.
        tenant.delete_file(&file_token).await?;
        return Err(match e {
            StoreError::Precondition { .. } => ApiError::bad_request(
                format!("Upload {} was completed or cancelled meanwhile.", record.id),
                None,
            ),
            e => e.into(),
        });
    }
    tenant.delete_parts(token).await?;
    tracing::info!(
        tenant = caller.tenant.name,
        upload_id = record.id,
        file_id = file.id,
        bytes = file.bytes,
        "upload completed"
    );
    Ok(Json(upload_object(
        &record,
        Some(FileObject::from(&file)),
        now,
    )))
}

/// `POST /v1/uploads/{upload_id}/cancel`.
pub async fn cancel(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(upload): Path<UploadIdParam>,
) -> Result<Json<UploadObject>, ApiError> {
    let tenant = TenantStore::new(state.store.clone(), &caller.tenant.name);
    let token = parse(&upload.upload_id)?;
    let now = state.clock.now().unix_timestamp();
    let (record, etag) = tenant
        .upload(token)
        .await?
        .ok_or_else(|| not_found(&upload.upload_id))?;
    if record.state == UploadState::Cancelled {
        return Ok(Json(upload_object(&record, None, now)));
    }
    if record.state == UploadState::Completed {
        return Err(ApiError::bad_request(
            format!(
                "Upload {} is completed; delete its file instead.",
                record.id
            ),
            None,
        ));
    }
    let mut record = record;
    record.state = UploadState::Cancelled;
    tenant
        .update_upload(token, &record, etag)
        .await
        .map_err(|e| match e {
            StoreError::Precondition { .. } => ApiError::bad_request(
                format!("Upload {} was completed meanwhile.", record.id),
                None,
            ),
            e => e.into(),
        })?;
    tenant.delete_parts(token).await?;
    Ok(Json(upload_object(&record, None, now)))
}

/// The upload of `token` if it still takes parts.
async fn pending(
    state: &ApiState,
    tenant: &TenantStore,
    id: &str,
    token: &str,
) -> Result<(UploadRecord, String), ApiError> {
    let (record, etag) = tenant.upload(token).await?.ok_or_else(|| not_found(id))?;
    pending_record(record, etag, state.clock.now().unix_timestamp())
}

fn pending_record(
    record: UploadRecord,
    etag: String,
    now: i64,
) -> Result<(UploadRecord, String), ApiError> {
    let refusal = match record.state {
        UploadState::Pending if now < record.expires_at => return Ok((record, etag)),
        UploadState::Pending => "has expired",
        UploadState::Completed => "is already completed",
        UploadState::Cancelled => "was cancelled",
    };
    Err(ApiError::bad_request(
        format!("Upload {} {refusal}.", record.id),
        None,
    ))
}

/// The File object of a completed upload (none if the file was deleted since).
async fn completed_file(
    tenant: &TenantStore,
    record: &UploadRecord,
) -> Result<Option<FileObject>, ApiError> {
    let Some(FileId::Upload(token)) = record.file_id.as_deref().and_then(FileId::parse) else {
        return Ok(None);
    };
    Ok(tenant.file(&token).await?.as_ref().map(FileObject::from))
}

fn parse(id: &str) -> Result<&str, ApiError> {
    ids::upload_token(id).ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound {
        what: "upload",
        id: id.to_string(),
    }
}

fn unknown_part(id: &str, upload: &str) -> ApiError {
    ApiError::bad_request(
        format!(
            "No part {:?} in upload {upload}.",
            id.chars().take(64).collect::<String>()
        ),
        Some("part_ids"),
    )
}

fn multipart_error(e: MultipartError) -> ApiError {
    ApiError::bad_request(
        format!("Could not read the multipart form: {}", e.body_text()),
        None,
    )
}
