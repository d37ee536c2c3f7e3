//! The object store port: the handful of operations batchdrop needs from a bucket.
//!
//! Implementations: [`LocalStore`] (a directory, the embedded default), [`MemoryStore`] (for
//! tests and benches) and the S3 store in `batchdrop-s3`. All of them pass the same conformance
//! suite (`conformance`, behind the `testing` feature).
//!
//! Contract shared by every implementation:
//! - keys are `/`-separated UTF-8 paths without empty, `.` or `..` segments;
//! - a reader never sees half an object: a put is visible whole or not at all;
//! - [`PutMode::Create`] fails with [`StoreError::AlreadyExists`] when the key exists, and
//!   [`PutMode::Update`] fails with [`StoreError::Precondition`] unless the current ETag matches;
//!   both are atomic against concurrent writers;
//! - every successful write gives the object a new ETag.

mod error;
mod ext;
mod local;
mod memory;

#[cfg(feature = "testing")]
pub mod conformance;

pub use error::StoreError;
pub use ext::{ObjectStoreExt, StreamLines, lines_of, read_ahead, stream_of};
pub use local::LocalStore;
pub use memory::MemoryStore;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::io;

/// A stream of object bytes. Errors in the middle of a stream are I/O errors.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// What a store knows about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Opaque version tag; changes on every write. Quotes, if any, are stripped.
    pub etag: String,
}

/// How a put treats an object that may already exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there.
    Overwrite,
    /// Create only if absent (`If-None-Match: *`).
    Create,
    /// Replace only if the current ETag is this one (`If-Match`).
    Update(String),
}

/// An object opened for reading: its metadata and its bytes.
pub struct GetResult {
    pub meta: ObjectMeta,
    pub body: ByteStream,
}

impl std::fmt::Debug for GetResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetResult")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

/// The object store port.
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Metadata of one object; [`StoreError::NotFound`] if absent.
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError>;

    /// The user metadata of one object (S3's `x-amz-meta-*` headers), names in lower case
    /// without the prefix; [`StoreError::NotFound`] if absent. Stores that keep none answer
    /// an empty map.
    async fn user_metadata(
        &self,
        key: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        self.head(key).await.map(|_| Default::default())
    }

    /// Opens an object for streaming; [`StoreError::NotFound`] if absent.
    async fn get(&self, key: &str) -> Result<GetResult, StoreError> {
        self.get_from(key, 0).await
    }

    /// Opens an object for streaming from byte `offset` on (0, or less than its size): how an
    /// upload's planning continues where an earlier invocation stopped. `meta` describes the
    /// whole object.
    async fn get_from(&self, key: &str, offset: u64) -> Result<GetResult, StoreError>;

    /// Writes a small object in one request.
    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<ObjectMeta, StoreError>;

    /// Writes an object of any size from a stream, without holding it in memory
    /// (S3: multipart upload above the part size). Same modes and atomicity as [`Self::put`].
    async fn put_stream(
        &self,
        key: &str,
        body: ByteStream,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError>;

    /// Every object whose key starts with `prefix`, in key order (all pages).
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;

    /// At most `max` objects whose key starts with `prefix` and sorts after `after` (from the
    /// first, without), in key order: one page of a listing, read without the rest (S3: from
    /// `start-after`, up to `max` keys).
    async fn list_after(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        Ok(self
            .list(prefix)
            .await?
            .into_iter()
            .filter(|m| after.is_none_or(|a| m.key.as_str() > a))
            .take(max)
            .collect())
    }

    /// Removes an object; removing an absent object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// A URL from which anyone holding it may GET the object `key` for `valid_for` (S3: a
    /// presigned URL), so that a server can redirect a download rather than relay it; `None`
    /// when the store has no such URLs (local directory, memory: they stream). The object's
    /// existence is not checked.
    async fn download_url(
        &self,
        key: &str,
        valid_for: std::time::Duration,
    ) -> Result<Option<String>, StoreError> {
        let _ = (key, valid_for);
        Ok(None)
    }

    /// A name for logs and summaries (`s3://bucket`, `file:///root`).
    fn describe(&self) -> String;
}

/// Checks a key against the contract above.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let bad = |reason: &str| {
        Err(StoreError::InvalidKey {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    };
    if key.is_empty() {
        return bad("empty key");
    }
    if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("empty, '.' or '..' path segment");
    }
    if key.contains('\0') {
        return bad("NUL byte");
    }
    Ok(())
}
