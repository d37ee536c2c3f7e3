//! Conveniences over [`ObjectStore`], built only from its required methods.

use super::{ByteStream, ObjectMeta, ObjectStore, PutMode, StoreError};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncBufRead, BufReader};
use tokio_util::io::StreamReader;

/// Read buffer used when streaming objects line by line.
pub const READ_BUFFER: usize = 1 << 20;

#[async_trait]
pub trait ObjectStoreExt: ObjectStore {
    /// Reads a whole (small) object into memory.
    async fn get_bytes(&self, key: &str) -> Result<Bytes, StoreError> {
        let got = self.get(key).await?;
        let mut buf = BytesMut::with_capacity(got.meta.size as usize);
        let mut body = got.body;
        while let Some(chunk) = body.try_next().await.map_err(|e| StoreError::io(key, e))? {
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// Reads and parses a JSON object, with its ETag for a later [`PutMode::Update`].
    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<(T, String), StoreError> {
        let got = self.get(key).await?;
        let etag = got.meta.etag.clone();
        let mut buf = Vec::with_capacity(got.meta.size as usize);
        let mut body = got.body;
        while let Some(chunk) = body.try_next().await.map_err(|e| StoreError::io(key, e))? {
            buf.extend_from_slice(&chunk);
        }
        let value = serde_json::from_slice(&buf).map_err(|e| StoreError::Backend {
            key: key.to_string(),
            message: format!("not the JSON document expected: {e}"),
            retryable: false,
            source: Some(Box::new(e)),
        })?;
        Ok((value, etag))
    }

    /// Serialises `value` as pretty JSON and writes it with `mode`.
    async fn put_json<T: Serialize + Sync>(
        &self,
        key: &str,
        value: &T,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        let mut body = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Backend {
            key: key.to_string(),
            message: format!("cannot serialise: {e}"),
            retryable: false,
            source: Some(Box::new(e)),
        })?;
        body.push(b'\n');
        self.put(key, Bytes::from(body), mode).await
    }

    /// Whether an object exists.
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Opens an object as a buffered reader, for line-by-line reading.
    async fn reader(
        &self,
        key: &str,
    ) -> Result<(ObjectMeta, Box<dyn AsyncBufRead + Send + Unpin>), StoreError> {
        let got = self.get(key).await?;
        Ok((got.meta, lines_of(got.body)))
    }
}

impl<T: ObjectStore + ?Sized> ObjectStoreExt for T {}

/// Wraps a byte stream in a large-buffered reader (use `read_until(b'\n')` for lines).
pub fn lines_of(body: ByteStream) -> Box<dyn AsyncBufRead + Send + Unpin> {
    Box::new(BufReader::with_capacity(
        READ_BUFFER,
        StreamReader::new(body),
    ))
}

/// A stream over one in-memory buffer.
pub fn bytes_stream(bytes: Bytes) -> ByteStream {
    Box::pin(futures::stream::once(async move { Ok(bytes) }))
}
