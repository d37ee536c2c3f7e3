//! One tenant's files and batches in the bucket, over the core `ObjectStore` port: every key it
//! touches is under the tenant's prefix (`layout`), and every id it is given has been parsed
//! (`ids`) first. A missing object is `Ok(None)`, for the caller to answer 404.

use crate::layout::TenantKeys;
use crate::records::{BatchRecord, FileRecord, UploadRecord};
use batchdrop_core::store::{
    ByteStream, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, StoreError,
};
use futures::StreamExt;
use std::sync::Arc;

/// A page of a tenant's batches, newest first.
#[derive(Debug, Clone, Default)]
pub struct BatchPage {
    pub batches: Vec<BatchRecord>,
    pub has_more: bool,
}

/// The files and batches of one tenant.
#[derive(Debug, Clone)]
pub struct TenantStore {
    store: Arc<dyn ObjectStore>,
    keys: TenantKeys,
}

impl TenantStore {
    pub fn new(store: Arc<dyn ObjectStore>, tenant: &str) -> Self {
        Self {
            store,
            keys: TenantKeys::new(tenant),
        }
    }

    pub fn keys(&self) -> &TenantKeys {
        &self.keys
    }

    /// Streams an upload's content into the bucket (never held whole); its size is in the
    /// answer.
    pub async fn put_content(
        &self,
        token: &str,
        body: ByteStream,
    ) -> Result<ObjectMeta, StoreError> {
        self.store
            .put_stream(&self.keys.file_content(token), body, PutMode::Create)
            .await
    }

    pub async fn put_file(&self, token: &str, record: &FileRecord) -> Result<(), StoreError> {
        self.store
            .put_json(&self.keys.file_record(token), record, PutMode::Create)
            .await
            .map(|_| ())
    }

    pub async fn file(&self, token: &str) -> Result<Option<FileRecord>, StoreError> {
        found(self.store.get_json(&self.keys.file_record(token)).await).map(|f| f.map(|(r, _)| r))
    }

    /// Removes an upload: its record first (the file is gone for the API at once), then its
    /// content.
    pub async fn delete_file(&self, token: &str) -> Result<(), StoreError> {
        self.store.delete(&self.keys.file_record(token)).await?;
        self.store.delete(&self.keys.file_content(token)).await
    }

    /// Removes content written without its record (an upload refused after it was streamed).
    pub async fn delete_content(&self, token: &str) -> Result<(), StoreError> {
        self.store.delete(&self.keys.file_content(token)).await
    }

    pub async fn put_batch(&self, token: &str, record: &BatchRecord) -> Result<(), StoreError> {
        self.store
            .put_json(&self.keys.batch_record(token), record, PutMode::Create)
            .await
            .map(|_| ())
    }

    /// A batch record and its ETag, for [`Self::update_batch`].
    pub async fn batch(&self, token: &str) -> Result<Option<(BatchRecord, String)>, StoreError> {
        found(self.store.get_json(&self.keys.batch_record(token)).await)
    }

    /// Replaces a batch record if it is still at `etag` ([`StoreError::Precondition`] if not).
    pub async fn update_batch(
        &self,
        token: &str,
        record: &BatchRecord,
        etag: String,
    ) -> Result<(), StoreError> {
        self.store
            .put_json(
                &self.keys.batch_record(token),
                record,
                PutMode::Update(etag),
            )
            .await
            .map(|_| ())
    }

    pub async fn put_upload(&self, token: &str, record: &UploadRecord) -> Result<(), StoreError> {
        self.store
            .put_json(&self.keys.upload_record(token), record, PutMode::Create)
            .await
            .map(|_| ())
    }

    /// An upload record and its ETag, for [`Self::update_upload`].
    pub async fn upload(&self, token: &str) -> Result<Option<(UploadRecord, String)>, StoreError> {
        found(self.store.get_json(&self.keys.upload_record(token)).await)
    }

    /// Replaces an upload record if it is still at `etag` ([`StoreError::Precondition`] if
    /// not): of two completes (or a complete and a cancel) at once, one wins.
    pub async fn update_upload(
        &self,
        token: &str,
        record: &UploadRecord,
        etag: String,
    ) -> Result<(), StoreError> {
        self.store
            .put_json(
                &self.keys.upload_record(token),
                record,
                PutMode::Update(etag),
            )
            .await
            .map(|_| ())
    }

    /// Streams one part of an upload into the bucket.
    pub async fn put_part(
        &self,
        upload: &str,
        part: &str,
        body: ByteStream,
    ) -> Result<ObjectMeta, StoreError> {
        self.store
            .put_stream(&self.keys.upload_part(upload, part), body, PutMode::Create)
            .await
    }

    /// The size of a part of this upload, if it exists.
    pub async fn part_size(&self, upload: &str, part: &str) -> Result<Option<u64>, StoreError> {
        found(self.store.head(&self.keys.upload_part(upload, part)).await)
            .map(|m| m.map(|m| m.size))
    }

    /// The parts of an upload one after the other, each read as the previous one ends.
    pub fn parts_stream(&self, upload: &str, parts: Vec<String>) -> ByteStream {
        let store = self.store.clone();
        let keys: Vec<String> = parts
            .iter()
            .map(|part| self.keys.upload_part(upload, part))
            .collect();
        futures::stream::iter(keys)
            .then(move |key| {
                let store = store.clone();
                async move {
                    match store.get(&key).await {
                        Ok(got) => got.body,
                        Err(e) => futures::stream::once(async move {
                            Err(std::io::Error::other(e.to_string()))
                        })
                        .boxed(),
                    }
                }
            })
            .flatten()
            .boxed()
    }

    /// Removes every part of an upload (completed or cancelled).
    pub async fn delete_parts(&self, upload: &str) -> Result<(), StoreError> {
        for part in self.store.list(&self.keys.upload_parts(upload)).await? {
            self.store.delete(&part.key).await?;
        }
        Ok(())
    }

    /// Up to `limit` batches, newest first, after the batch with token `after` (from the
    /// newest when `None`). A record deleted between the listing and the read is skipped.
    pub async fn batches(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<BatchPage, StoreError> {
        let listed = self.store.list(&self.keys.batches()).await?;
        let tokens: Vec<&str> = listed
            .iter()
            .filter_map(|m| self.keys.batch_token_of(&m.key))
            .filter(|t| after.is_none_or(|a| *t > a))
            .collect();
        let mut page = BatchPage::default();
        for (i, token) in tokens.iter().enumerate() {
            if page.batches.len() == limit {
                page.has_more = i < tokens.len();
                break;
            }
            if let Some((record, _)) = self.batch(token).await? {
                page.batches.push(record);
            }
        }
        Ok(page)
    }

    /// Up to `limit` batches newer than the batch with token `before`, the nearest to it,
    /// newest first; `has_more` when still newer ones exist.
    pub async fn batches_before(
        &self,
        before: &str,
        limit: usize,
    ) -> Result<BatchPage, StoreError> {
        let listed = self.store.list(&self.keys.batches()).await?;
        let tokens: Vec<&str> = listed
            .iter()
            .filter_map(|m| self.keys.batch_token_of(&m.key))
            .filter(|t| *t < before)
            .collect();
        let start = tokens.len().saturating_sub(limit);
        let mut page = BatchPage {
            batches: Vec::new(),
            has_more: start > 0,
        };
        for token in &tokens[start..] {
            if let Some((record, _)) = self.batch(token).await? {
                page.batches.push(record);
            }
        }
        Ok(page)
    }
}

fn found<T>(result: Result<T, StoreError>) -> Result<Option<T>, StoreError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}
