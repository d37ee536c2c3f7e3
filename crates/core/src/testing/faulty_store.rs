//! [`FaultyStore`]: a store that fails chosen writes, to play a crash at any point.

use crate::store::{ByteStream, GetResult, ObjectMeta, ObjectStore, PutMode, StoreError};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::{Arc, Mutex};

/// A store over another one that fails the next writes to chosen keys with a retryable
/// backend error, as if the process had died there. Reads, lists and deletes pass through.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    /// (key, writes still to let through first, writes still to fail)
    faults: Mutex<Vec<(String, u32, u32)>>,
    /// Writes let through so far (any key).
    writes: std::sync::atomic::AtomicU64,
    /// After this many writes, every write fails: the process "died".
    dies_after: Mutex<Option<u64>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            faults: Mutex::new(Vec::new()),
            writes: std::sync::atomic::AtomicU64::new(0),
            dies_after: Mutex::new(None),
        }
    }

    /// Lets `n` writes (any key) through, then fails every write after them, as if the process
    /// had died there.
    pub fn die_after_writes(&self, n: u64) {
        *self.dies_after.lock().expect("faulty store lock") = Some(n);
    }

    /// Writes that went through so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Fails the next `times` writes (put or put_stream) to `key`.
    pub fn fail_writes(&self, key: impl Into<String>, times: u32) {
        self.fail_writes_after(key, 0, times);
    }

    /// Lets `skip` writes to `key` through, then fails the `times` after them.
    pub fn fail_writes_after(&self, key: impl Into<String>, skip: u32, times: u32) {
        self.faults
            .lock()
            .expect("faulty store lock")
            .push((key.into(), skip, times));
    }

    fn check(&self, key: &str) -> Result<(), StoreError> {
        if let Some(limit) = *self.dies_after.lock().expect("faulty store lock")
            && self.writes() >= limit
        {
            return Err(StoreError::Backend {
                key: key.to_string(),
                message: "the process died before this write".into(),
                retryable: true,
                source: None,
            });
        }
        let result = self.check_key(key);
        if result.is_ok() {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        result
    }

    fn check_key(&self, key: &str) -> Result<(), StoreError> {
        let mut faults = self.faults.lock().expect("faulty store lock");
        let Some((_, skip, times)) = faults.iter_mut().find(|(k, _, n)| k == key && *n > 0) else {
            return Ok(());
        };
        if *skip > 0 {
            *skip -= 1;
            return Ok(());
        }
        *times -= 1;
        Err(StoreError::Backend {
            key: key.to_string(),
            message: "scripted write failure".into(),
            retryable: true,
            source: None,
        })
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        self.inner.head(key).await
    }
    async fn user_metadata(
        &self,
        key: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        self.inner.user_metadata(key).await
    }
    async fn get_from(&self, key: &str, offset: u64) -> Result<GetResult, StoreError> {
        self.inner.get_from(key, offset).await
    }
    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<ObjectMeta, StoreError> {
        self.check(key)?;
        self.inner.put(key, body, mode).await
    }
    async fn put_stream(
        &self,
        key: &str,
        body: ByteStream,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        self.check(key)?;
        self.inner.put_stream(key, body, mode).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    fn describe(&self) -> String {
        format!("faulty+{}", self.inner.describe())
    }
}
