//! The S3 implementation of batchdrop's object store port ([`ObjectStore`]).
//!
//! [`S3Store`] keeps every promise of the port on one bucket:
//! - reads stream: [`ObjectStore::get`] hands out the response body chunk by chunk;
//! - writes are whole or absent: small objects are one `PutObject`; [`ObjectStore::put_stream`]
//!   buffers at most one part and switches to a multipart upload when the body outgrows it, so
//!   the object appears only at `CompleteMultipartUpload`;
//! - conditional writes are S3's own: [`PutMode::Create`] sends `If-None-Match: *` and
//!   [`PutMode::Update`] sends `If-Match: "etag"`, on `PutObject` and on
//!   `CompleteMultipartUpload`, so they are atomic against every other writer of the bucket;
//! - a multipart upload that fails (or whose future is dropped) is aborted, so no parts are left
//!   behind to be billed;
//! - ETags are returned without their quotes.
//!
//! Errors map as described in the `error` module: 404 → `NotFound`, 412 → `AlreadyExists` /
//! `Precondition`, throttling, 5xx, 409 `ConditionalRequestConflict` and transport failures →
//! retryable `Backend`. The SDK's own retries (standard mode, 3 attempts) run first.

mod error;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use batchdrop_core::store::{
    ByteStream, GetResult, ObjectMeta, ObjectStore, PutMode, StoreError, validate_key,
};
use bytes::{Bytes, BytesMut};
use error::Request;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::io;

/// Smallest part S3 accepts in a multipart upload (all parts but the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Largest part S3 accepts.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// Default part size, and the size above which [`ObjectStore::put_stream`] goes multipart.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Most parts one multipart upload may have: objects are limited to this many part sizes.
pub const MAX_PARTS: i32 = 10_000;
/// Default (and S3's maximum) number of keys per `ListObjectsV2` page.
pub const DEFAULT_LIST_PAGE_SIZE: i32 = 1000;

/// An object store on one S3 bucket (or any S3-compatible server).
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    part_size: usize,
    list_page_size: i32,
}

impl std::fmt::Debug for S3Store {
    // The client's configuration stays out: it holds the credentials provider.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("part_size", &self.part_size)
            .field("list_page_size", &self.list_page_size)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// A store on `bucket` through an already configured client.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            part_size: DEFAULT_PART_SIZE,
            list_page_size: DEFAULT_LIST_PAGE_SIZE,
        }
    }

    /// A store on `bucket` with the SDK's default configuration chain (environment, profile,
    /// container or instance role). When an endpoint is configured (`AWS_ENDPOINT_URL`,
    /// `AWS_ENDPOINT_URL_S3`, or a profile's `endpoint_url`), requests use path-style addressing,
    /// which local S3-compatible servers need.
    pub async fn from_env(bucket: impl Into<String>) -> Self {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let custom_endpoint = shared.endpoint_url().is_some()
            || std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        let mut config = aws_sdk_s3::config::Builder::from(&shared);
        if custom_endpoint {
            config = config.force_path_style(true);
        }
        Self::new(Client::from_conf(config.build()), bucket)
    }

    /// Sets the multipart part size (and the `put_stream` threshold), clamped to S3's limits
    /// [`MIN_PART_SIZE`]..=[`MAX_PART_SIZE`]. Objects written by `put_stream` are limited to
    /// [`MAX_PARTS`] parts of this size (78 GiB at the 8 MiB default).
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.clamp(MIN_PART_SIZE, MAX_PART_SIZE);
        self
    }

    /// Sets how many keys one `ListObjectsV2` request asks for, clamped to 1..=1000.
    pub fn with_list_page_size(mut self, keys: i32) -> Self {
        self.list_page_size = keys.clamp(1, DEFAULT_LIST_PAGE_SIZE);
        self
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn part_size(&self) -> usize {
        self.part_size
    }

    pub fn list_page_size(&self) -> i32 {
        self.list_page_size
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn request<'a>(&'a self, operation: &'static str, key: &'a str) -> Request<'a> {
        Request {
            operation,
            bucket: &self.bucket,
            key,
            names_object: true,
            mode: None,
        }
    }

    async fn put_object(
        &self,
        key: &str,
        body: Bytes,
        mode: &PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        let request = Request {
            mode: Some(mode),
            ..self.request("PutObject", key)
        };
        let size = body.len() as u64;
        let (if_none_match, if_match) = conditions(mode);
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(size as i64)
            .body(SdkByteStream::from(body))
            .set_if_none_match(if_none_match)
            .set_if_match(if_match)
            .send()
            .await
            .map_err(|e| request.error(e))?;
        match out.e_tag() {
            Some(etag) => Ok(ObjectMeta {
                key: key.to_string(),
                size,
                etag: unquote(etag),
            }),
            None => self.head(key).await,
        }
    }

    /// Uploads `first` and the rest of `body` as a multipart upload; `first` holds at least
    /// one part.
    async fn put_multipart(
        &self,
        key: &str,
        first: BytesMut,
        body: ByteStream,
        mode: &PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.request("CreateMultipartUpload", key).error(e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| {
                self.request("CreateMultipartUpload", key)
                    .invalid_response("no UploadId")
            })?
            .to_string();
        tracing::debug!(bucket = %self.bucket, key, upload_id, "multipart upload started");
        let mut upload = Upload {
            store: self,
            key,
            upload_id,
            parts: Vec::new(),
            size: 0,
            finished: false,
        };
        match upload.run(first, body, mode).await {
            Ok(meta) => Ok(meta),
            Err(err) => Err(upload.abort(err).await),
        }
    }
}

/// The `If-None-Match` and `If-Match` headers of a write.
fn conditions(mode: &PutMode) -> (Option<String>, Option<String>) {
    match mode {
        PutMode::Overwrite => (None, None),
        PutMode::Create => (Some("*".to_string()), None),
        PutMode::Update(etag) => (None, Some(format!("\"{}\"", etag.trim_matches('"')))),
    }
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

/// Turns the SDK's body into the port's stream, chunk by chunk.
fn body_stream(body: SdkByteStream) -> ByteStream {
    Box::pin(futures::stream::try_unfold(body, |mut body| async move {
        match body.try_next().await {
            Ok(Some(chunk)) => Ok(Some((chunk, body))),
            Ok(None) => Ok(None),
            Err(e) => Err(io::Error::other(e)),
        }
    }))
}

/// One multipart upload in progress. Dropped before it finished (the caller's future was
/// cancelled), it aborts the upload in the background.
struct Upload<'a> {
    store: &'a S3Store,
    key: &'a str,
    upload_id: String,
    parts: Vec<CompletedPart>,
    size: u64,
    finished: bool,
}

impl Upload<'_> {
    async fn run(
        &mut self,
        mut buf: BytesMut,
        mut body: ByteStream,
        mode: &PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        let part_size = self.store.part_size;
        loop {
            while buf.len() >= part_size {
                let part = buf.split_to(part_size).freeze();
                self.upload_part(part).await?;
            }
            match body.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(source)) => {
                    return Err(StoreError::Io {
                        key: self.key.to_string(),
                        source,
                    });
                }
                None => break,
            }
        }
        if !buf.is_empty() {
            self.upload_part(buf.freeze()).await?;
        }
        self.complete(mode).await
    }

    async fn upload_part(&mut self, part: Bytes) -> Result<(), StoreError> {
        let request = Request {
            names_object: false,
            ..self.store.request("UploadPart", self.key)
        };
        let number = self.parts.len() as i32 + 1;
        if number > MAX_PARTS {
            return Err(request.invalid_response(&format!(
                "object larger than {MAX_PARTS} parts of {} bytes: raise the part size",
                self.store.part_size
            )));
        }
        let len = part.len() as u64;
        let out = self
            .store
            .client
            .upload_part()
            .bucket(&self.store.bucket)
            .key(self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .content_length(len as i64)
            .body(SdkByteStream::from(part))
            .send()
            .await
            .map_err(|e| request.error(e))?;
        let etag = out
            .e_tag()
            .ok_or_else(|| request.invalid_response("no ETag for a part"))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(etag)
                .build(),
        );
        self.size += len;
        Ok(())
    }

    async fn complete(&mut self, mode: &PutMode) -> Result<ObjectMeta, StoreError> {
        let request = Request {
            names_object: matches!(mode, PutMode::Update(_)),
            mode: Some(mode),
            ..self.store.request("CompleteMultipartUpload", self.key)
        };
        let (if_none_match, if_match) = conditions(mode);
        let out = self
            .store
            .client
            .complete_multipart_upload()
            .bucket(&self.store.bucket)
            .key(self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            )
            .set_if_none_match(if_none_match)
            .set_if_match(if_match)
            .send()
            .await
            .map_err(|e| request.error(e))?;
        self.finished = true;
        tracing::debug!(bucket = %self.store.bucket, key = self.key, size = self.size, "multipart upload completed");
        match out.e_tag() {
            Some(etag) => Ok(ObjectMeta {
                key: self.key.to_string(),
                size: self.size,
                etag: unquote(etag),
            }),
            None => self.store.head(self.key).await,
        }
    }

    /// Aborts the upload after `err`; a failed abort is added to the error's message.
    async fn abort(&mut self, err: StoreError) -> StoreError {
        self.finished = true;
        let aborted = self
            .store
            .client
            .abort_multipart_upload()
            .bucket(&self.store.bucket)
            .key(self.key)
            .upload_id(&self.upload_id)
            .send()
            .await;
        let Err(abort_err) = aborted else {
            return err;
        };
        let abort_err = Request {
            names_object: false,
            ..self.store.request("AbortMultipartUpload", self.key)
        }
        .error(abort_err);
        tracing::warn!(
            bucket = %self.store.bucket,
            key = self.key,
            upload_id = %self.upload_id,
            error = %abort_err,
            "multipart upload left behind"
        );
        match err {
            StoreError::Backend {
                key,
                message,
                retryable,
                source,
            } => StoreError::Backend {
                key,
                message: format!(
                    "{message} (and the upload {} was not aborted: {abort_err})",
                    self.upload_id
                ),
                retryable,
                source,
            },
            // AlreadyExists, Precondition, Io: the caller's answer stays the same; the leftover
            // parts are reported in the log above and removed by a lifecycle rule.
            other => other,
        }
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(bucket = %self.store.bucket, key = self.key, upload_id = %self.upload_id,
                "multipart upload dropped outside a runtime: left behind");
            return;
        };
        let abort = self
            .store
            .client
            .abort_multipart_upload()
            .bucket(&self.store.bucket)
            .key(self.key)
            .upload_id(&self.upload_id);
        runtime.spawn(async move {
            if let Err(e) = abort.send().await {
                tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(&e),
                    "aborting a cancelled multipart upload failed");
            }
        });
    }
}

impl S3Store {
    /// One `HeadObject` of `key`: its answer, and the request (for errors about it).
    async fn head_object<'a>(
        &'a self,
        key: &'a str,
    ) -> Result<(HeadObjectOutput, Request<'a>), StoreError> {
        validate_key(key)?;
        let request = self.request("HeadObject", key);
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| request.error(e))?;
        Ok((out, request))
    }

    /// At most `max` objects under `prefix` after the key `after`, in key order, read a page
    /// (at most the store's page size) at a time.
    async fn list_pages(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        let request = Request {
            names_object: false,
            ..self.request("ListObjectsV2", prefix)
        };
        let mut out: Vec<ObjectMeta> = Vec::new();
        let mut token: Option<String> = None;
        while out.len() < max {
            let want = (max - out.len()).min(self.list_page_size as usize) as i32;
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .max_keys(want)
                .set_start_after(after.map(str::to_string))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| request.error(e))?;
            for object in page.contents() {
                let Some(key) = object.key() else {
                    return Err(request.invalid_response("an object without a key"));
                };
                out.push(ObjectMeta {
                    key: key.to_string(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    etag: unquote(object.e_tag().unwrap_or_default()),
                });
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        // S3 lists in UTF-8 binary order already; some compatible servers do not.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.truncate(max);
        Ok(out)
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let (out, request) = self.head_object(key).await?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: unquote(
                out.e_tag()
                    .ok_or_else(|| request.invalid_response("no ETag"))?,
            ),
        })
    }

    async fn user_metadata(&self, key: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let (out, _) = self.head_object(key).await?;
        Ok(out
            .metadata()
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
            .collect())
    }

    async fn get_from(&self, key: &str, offset: u64) -> Result<GetResult, StoreError> {
        validate_key(key)?;
        let request = self.request("GetObject", key);
        let mut get = self.client.get_object().bucket(&self.bucket).key(key);
        if offset > 0 {
            get = get.range(format!("bytes={offset}-"));
        }
        let out = get.send().await.map_err(|e| request.error(e))?;
        let length = out.content_length().unwrap_or(0).max(0) as u64;
        // A ranged reply's Content-Range ("bytes 10-99/100") gives the whole size.
        let size = match out.content_range() {
            Some(range) => range
                .rsplit('/')
                .next()
                .and_then(|total| total.parse().ok())
                .ok_or_else(|| request.invalid_response("unreadable Content-Range"))?,
            None => length,
        };
        let meta = ObjectMeta {
            key: key.to_string(),
            size,
            etag: unquote(
                out.e_tag()
                    .ok_or_else(|| request.invalid_response("no ETag"))?,
            ),
        };
        Ok(GetResult {
            meta,
            body: body_stream(out.body),
        })
    }

    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<ObjectMeta, StoreError> {
        validate_key(key)?;
        self.put_object(key, body, &mode).await
    }

    async fn put_stream(
        &self,
        key: &str,
        mut body: ByteStream,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        validate_key(key)?;
        let mut buf = BytesMut::new();
        while buf.len() < self.part_size {
            match body.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(source)) => {
                    return Err(StoreError::Io {
                        key: key.to_string(),
                        source,
                    });
                }
                None => return self.put_object(key, buf.freeze(), &mode).await,
            }
        }
        self.put_multipart(key, buf, body, &mode).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.list_pages(prefix, None, usize::MAX).await
    }

    async fn list_after(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        self.list_pages(prefix, after, max).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.request("DeleteObject", key).error(e))
        {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A presigned `GetObject` URL (SigV4 query string) valid for `valid_for` (at most 7 days,
    /// S3's limit), signed with the client's credentials: a download stays possible only while
    /// both the URL and those credentials are valid (a Lambda role's session outlives a
    /// 15-minute URL).
    async fn download_url(
        &self,
        key: &str,
        valid_for: std::time::Duration,
    ) -> Result<Option<String>, StoreError> {
        validate_key(key)?;
        let request = self.request("GetObject (presign)", key);
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(valid_for)
            .map_err(|e| request.invalid_argument(&e.to_string()))?;
        let presigned = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| request.error(e))?;
        Ok(Some(presigned.uri().to_string()))
    }

    fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_sends_the_etag_quoted_once() {
        let (none, quoted) = conditions(&PutMode::Update("abc".into()));
        assert_eq!((none, quoted.as_deref()), (None, Some("\"abc\"")));
        let (_, requoted) = conditions(&PutMode::Update("\"abc\"".into()));
        assert_eq!(requoted.as_deref(), Some("\"abc\""));
    }

    #[test]
    fn create_sends_if_none_match_star() {
        assert_eq!(conditions(&PutMode::Create), (Some("*".into()), None));
    }
}
