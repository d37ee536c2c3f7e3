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
    /// newest when `None`). Tokens sort newest first, so this reads one page of the listing,
    /// never the tenant's whole history. A record deleted between the listing and the read
    /// is skipped.
    pub async fn batches(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<BatchPage, StoreError> {
        let mut tokens = self.tokens_after(after, limit + 1).await?;
        let has_more = tokens.len() > limit;
        tokens.truncate(limit);
        self.page(&tokens, has_more).await
    }

    /// Up to `limit` batches newer than the batch with token `before`, the nearest to it,
    /// newest first; `has_more` when still newer ones exist. Reads the listing from the
    /// newest up to `before`.
    pub async fn batches_before(
        &self,
        before: &str,
        limit: usize,
    ) -> Result<BatchPage, StoreError> {
        let mut newer: std::collections::VecDeque<String> = Default::default();
        let mut has_more = false;
        let mut after: Option<String> = None;
        'listing: loop {
            let tokens = self.tokens_after(after.as_deref(), LIST_PAGE).await?;
            for token in &tokens {
                if token.as_str() >= before {
                    break 'listing;
                }
                if newer.len() == limit {
                    newer.pop_front();
                    has_more = true;
                }
                newer.push_back(token.clone());
            }
            match tokens.last() {
                Some(last) if tokens.len() == LIST_PAGE => after = Some(last.clone()),
                _ => break,
            }
        }
        self.page(&Vec::from(newer), has_more).await
    }

    /// Up to `max` batch tokens after `after`, in order, listed a page at a time (keys under
    /// the batches folder that are not batch records are passed over).
    async fn tokens_after(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = self.keys.batches();
        let mut from = after.map(|token| self.keys.batch_record(token));
        let mut tokens = Vec::new();
        while tokens.len() < max {
            let listed = self.store.list_after(&prefix, from.as_deref(), max).await?;
            tokens.extend(
                listed
                    .iter()
                    .filter_map(|m| self.keys.batch_token_of(&m.key))
                    .map(str::to_string),
            );
            match listed.last() {
                Some(last) if listed.len() == max => from = Some(last.key.clone()),
                _ => break,
            }
        }
        tokens.truncate(max);
        Ok(tokens)
    }

    /// The records of `tokens`, in their order.
    async fn page(&self, tokens: &[String], has_more: bool) -> Result<BatchPage, StoreError> {
        let mut page = BatchPage {
            batches: Vec::with_capacity(tokens.len()),
            has_more,
        };
        for token in tokens {
            if let Some((record, _)) = self.batch(token).await? {
                page.batches.push(record);
            }
        }
        Ok(page)
    }
}

/// Batch tokens read per listing request when paging back.
const LIST_PAGE: usize = 1000;

fn found<T>(result: Result<T, StoreError>) -> Result<Option<T>, StoreError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use batchdrop_core::store::{
        ByteStream, GetResult, MemoryStore, ObjectMeta, ObjectStore, PutMode,
    };
    use bytes::Bytes;

    /// A store whose whole-prefix listing fails: only pages may be read.
    #[derive(Debug)]
    struct PagesOnly(MemoryStore);

    #[async_trait]
    impl ObjectStore for PagesOnly {
        async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
            self.0.head(key).await
        }
        async fn get_from(&self, key: &str, offset: u64) -> Result<GetResult, StoreError> {
            self.0.get_from(key, offset).await
        }
        async fn put(
            &self,
            key: &str,
            body: Bytes,
            mode: PutMode,
        ) -> Result<ObjectMeta, StoreError> {
            self.0.put(key, body, mode).await
        }
        async fn put_stream(
            &self,
            key: &str,
            body: ByteStream,
            mode: PutMode,
        ) -> Result<ObjectMeta, StoreError> {
            self.0.put_stream(key, body, mode).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
            Err(StoreError::io_at(
                prefix,
                std::io::Error::other("the whole listing was asked for"),
            ))
        }
        async fn list_after(
            &self,
            prefix: &str,
            after: Option<&str>,
            max: usize,
        ) -> Result<Vec<ObjectMeta>, StoreError> {
            self.0.list_after(prefix, after, max).await
        }
        async fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.0.delete(key).await
        }
        fn describe(&self) -> String {
            "pages only".into()
        }
    }

    fn record(token: &str) -> BatchRecord {
        BatchRecord {
            id: format!("batch_{token}"),
            input_file_id: "file-f".into(),
            endpoint: "/v1/chat/completions".into(),
            completion_window: "24h".into(),
            metadata: None,
            created_at: 0,
            route: "sandbox".into(),
            job_id: "j".into(),
            input_key: "k".into(),
            results_prefix: "p/".into(),
            cancelling_at: None,
            webhook: None,
        }
    }

    #[tokio::test]
    async fn pages_of_batches_are_read_without_listing_the_tenants_history()
    -> Result<(), StoreError> {
        let tenant = TenantStore::new(Arc::new(PagesOnly(MemoryStore::new())), "acme");
        // Made at t = 0..30 ms: the newest sorts first.
        let mut tokens = Vec::new();
        for ms in 0..30 {
            let token = crate::ids::new_batch_token(ms)
                .map_err(|e| StoreError::io_at("token", std::io::Error::other(e.to_string())))?;
            tenant.put_batch(&token, &record(&token)).await?;
            tokens.push(token);
        }
        tokens.reverse();
        let ids = |page: &BatchPage| -> Vec<String> {
            page.batches.iter().map(|b| b.id[6..].to_string()).collect()
        };

        let first = tenant.batches(None, 10).await?;
        assert_eq!(ids(&first), tokens[..10]);
        assert!(first.has_more);
        let last = tenant.batches(Some(&tokens[19]), 10).await?;
        assert_eq!(ids(&last), tokens[20..]);
        assert!(!last.has_more);
        let before = tenant.batches_before(&tokens[15], 5).await?;
        assert_eq!(ids(&before), tokens[10..15]);
        assert!(before.has_more);
        let newest = tenant.batches_before(&tokens[3], 5).await?;
        assert_eq!(ids(&newest), tokens[..3]);
        assert!(!newest.has_more);
        Ok(())
    }
}
