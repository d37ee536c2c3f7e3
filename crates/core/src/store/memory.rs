//! An in-memory object store: a real implementation of the port, for tests and benchmarks.

use super::{ByteStream, GetResult, ObjectMeta, ObjectStore, PutMode, StoreError, validate_key};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, (Bytes, String)>>,
    version: AtomicU64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn meta(key: &str, body: &Bytes, etag: &str) -> ObjectMeta {
        ObjectMeta {
            key: key.to_string(),
            size: body.len() as u64,
            etag: etag.to_string(),
        }
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let objects = self.objects.lock().expect("memory store lock");
        match objects.get(key) {
            Some((body, etag)) => Ok(Self::meta(key, body, etag)),
            None => Err(StoreError::NotFound { key: key.into() }),
        }
    }

    async fn get_from(&self, key: &str, offset: u64) -> Result<GetResult, StoreError> {
        let (body, etag) = {
            let objects = self.objects.lock().expect("memory store lock");
            objects
                .get(key)
                .cloned()
                .ok_or_else(|| StoreError::NotFound { key: key.into() })?
        };
        let meta = Self::meta(key, &body, &etag);
        let from = (offset as usize).min(body.len());
        Ok(GetResult {
            meta,
            body: super::ext::bytes_stream(body.slice(from..)),
        })
    }

    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<ObjectMeta, StoreError> {
        validate_key(key)?;
        let mut objects = self.objects.lock().expect("memory store lock");
        match (&mode, objects.get(key)) {
            (PutMode::Create, Some(_)) => {
                return Err(StoreError::AlreadyExists { key: key.into() });
            }
            (PutMode::Update(expected), Some((_, etag))) if etag != expected => {
                return Err(StoreError::Precondition { key: key.into() });
            }
            (PutMode::Update(_), None) => {
                return Err(StoreError::Precondition { key: key.into() });
            }
            _ => {}
        }
        let etag = format!("m{}", self.version.fetch_add(1, Ordering::Relaxed) + 1);
        let meta = Self::meta(key, &body, &etag);
        objects.insert(key.to_string(), (body, etag));
        Ok(meta)
    }

    async fn put_stream(
        &self,
        key: &str,
        body: ByteStream,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        let buf: BytesMut = body
            .try_fold(BytesMut::new(), |mut acc, chunk| async move {
                acc.extend_from_slice(&chunk);
                Ok(acc)
            })
            .await
            .map_err(|e| StoreError::io(key, e))?;
        self.put(key, buf.freeze(), mode).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let objects = self.objects.lock().expect("memory store lock");
        Ok(objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (body, etag))| Self::meta(k, body, etag))
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.objects.lock().expect("memory store lock").remove(key);
        Ok(())
    }

    fn describe(&self) -> String {
        "memory://".to_string()
    }
}
