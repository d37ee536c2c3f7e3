//! Streaming writes into the object store: bytes go out in 64 KiB pieces (small enough for the
//! allocator to reuse) through a bounded channel to a `put_stream` running beside the producer,
//! so nothing is held whole.

use crate::store::{ObjectMeta, ObjectStore, PutMode, StoreError, stream_of};
use bytes::{Bytes, BytesMut};
use std::io;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const PIECE: usize = 64 * 1024;

pub struct StreamWriter {
    key: String,
    tx: Option<mpsc::Sender<io::Result<Bytes>>>,
    buf: BytesMut,
    task: JoinHandle<Result<ObjectMeta, StoreError>>,
}

impl StreamWriter {
    pub fn open(store: Arc<dyn ObjectStore>, key: String, mode: PutMode) -> Self {
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
        let task_key = key.clone();
        let task =
            tokio::spawn(async move { store.put_stream(&task_key, stream_of(rx), mode).await });
        Self {
            key,
            tx: Some(tx),
            buf: BytesMut::with_capacity(PIECE),
            task,
        }
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.send().await?;
        }
        Ok(())
    }

    async fn send(&mut self) -> Result<(), StoreError> {
        let piece = self.buf.split().freeze();
        let sent = match &self.tx {
            Some(tx) => tx.send(Ok(piece)).await.is_ok(),
            None => false,
        };
        if !sent {
            // The writing side stopped early: its error says why.
            self.tx = None;
            return Err(self.join().await.err().unwrap_or_else(|| StoreError::Io {
                key: self.key.clone(),
                source: io::Error::other("object writer stopped early"),
            }));
        }
        self.buf.reserve(PIECE);
        Ok(())
    }

    async fn join(&mut self) -> Result<ObjectMeta, StoreError> {
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(StoreError::Io {
                key: self.key.clone(),
                source: io::Error::other(e),
            }),
        }
    }

    /// Flushes and completes the object.
    pub async fn finish(mut self) -> Result<ObjectMeta, StoreError> {
        if !self.buf.is_empty() {
            self.send().await?;
        }
        self.tx = None;
        self.join().await
    }
}

impl Drop for StreamWriter {
    /// A writer dropped before [`StreamWriter::finish`] must not leave a partial object: the
    /// upload is abandoned.
    fn drop(&mut self) {
        if self.tx.take().is_some() {
            self.task.abort();
        }
    }
}
