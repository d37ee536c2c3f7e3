//! Conveniences over [`ObjectStore`], built only from its required methods.

use super::{ByteStream, ObjectMeta, ObjectStore, PutMode, StoreError};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
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

/// Reads `body` ahead of its consumer: a task pulls up to `depth` pieces in advance, so that
/// reading (a file, the network) overlaps with the work done on what was read.
pub fn read_ahead(mut body: ByteStream, depth: usize) -> ByteStream {
    let (tx, rx) = tokio::sync::mpsc::channel(depth.max(1));
    tokio::spawn(async move {
        while let Some(piece) = body.next().await {
            let failed = piece.is_err();
            if tx.send(piece).await.is_err() || failed {
                break;
            }
        }
    });
    stream_of(rx)
}

/// The pieces sent into a channel, as a byte stream (it ends when every sender is gone).
pub fn stream_of(rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>) -> ByteStream {
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    }))
}

/// The lines of a byte stream, handed out as slices of the pieces the stream yields: a line is
/// copied only when it spans two pieces.
pub struct StreamLines {
    body: ByteStream,
    piece: Bytes,
    at: usize,
    carry: Vec<u8>,
    done: bool,
}

impl StreamLines {
    pub fn new(body: ByteStream) -> Self {
        Self {
            body,
            piece: Bytes::new(),
            at: 0,
            carry: Vec::new(),
            done: false,
        }
    }

    /// The next line with its `\n` (the last line may lack one); `None` at the end.
    pub async fn next_line(&mut self) -> std::io::Result<Option<&[u8]>> {
        self.carry.clear();
        loop {
            let rest = &self.piece[self.at..];
            if let Some(i) = memchr::memchr(b'\n', rest) {
                let start = self.at;
                self.at += i + 1;
                if self.carry.is_empty() {
                    return Ok(Some(&self.piece[start..self.at]));
                }
                self.carry.extend_from_slice(&self.piece[start..self.at]);
                return Ok(Some(&self.carry));
            }
            self.carry.extend_from_slice(rest);
            self.at = self.piece.len();
            if self.done {
                return Ok((!self.carry.is_empty()).then_some(&self.carry[..]));
            }
            match self.body.next().await {
                Some(piece) => {
                    self.piece = piece?;
                    self.at = 0;
                }
                None => self.done = true,
            }
        }
    }
}

/// A stream over one in-memory buffer.
pub fn bytes_stream(bytes: Bytes) -> ByteStream {
    Box::pin(futures::stream::once(async move { Ok(bytes) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of_pieces(pieces: &[&str]) -> Vec<String> {
        let owned: Vec<std::io::Result<Bytes>> = pieces
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p.as_bytes())))
            .collect();
        let mut lines = StreamLines::new(Box::pin(futures::stream::iter(owned)));
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            out.push(String::from_utf8(line.to_vec()).unwrap());
        }
        out
    }

    #[tokio::test]
    async fn lines_across_pieces_come_out_whole() {
        assert_eq!(
            lines_of_pieces(&["a\nb", "c", "", "d\ne\n", "\nf"]).await,
            ["a\n", "bcd\n", "e\n", "\n", "f"]
        );
    }

    #[tokio::test]
    async fn no_bytes_no_lines() {
        assert!(lines_of_pieces(&[]).await.is_empty());
        assert!(lines_of_pieces(&["", ""]).await.is_empty());
    }

    #[tokio::test]
    async fn read_ahead_keeps_every_piece_in_order() {
        let pieces: Vec<std::io::Result<Bytes>> = (0..100)
            .map(|i| Ok(Bytes::from(format!("{i}\n"))))
            .collect();
        let mut lines = StreamLines::new(read_ahead(Box::pin(futures::stream::iter(pieces)), 3));
        let mut n = 0;
        while let Some(line) = lines.next_line().await.unwrap() {
            assert_eq!(line, format!("{n}\n").as_bytes());
            n += 1;
        }
        assert_eq!(n, 100);
    }
}
