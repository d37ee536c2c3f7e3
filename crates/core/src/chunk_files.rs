//! The files of a staged chunk, and the one place their format is written and read.
//!
//! A chunk is two objects, row for row:
//!
//! - the requests ([`JobKeys::chunk`]): one request line per row, exactly as sent to the
//!   provider;
//! - the sidecar ([`JobKeys::chunk_line_numbers`]): for each request, the number of its input
//!   line, and, when the request went out under another custom_id than the user's, a tab and
//!   the user's custom_id as a JSON string: `<line>\n` or `<line>\t"<custom_id>"\n`.
//!
//! Staging writes chunks ([`ChunkWriter`]); the engine reads them back row by row
//! ([`ChunkRows`]), reads the sidecar alone ([`Sidecar`]: the merge of the results by input
//! line, restoring the user's ids, finding the chunks that hold a reused id), and copies the
//! rows it keeps into a new chunk ([`copy_chunk`]).

use crate::layout::JobKeys;
use crate::store::{ObjectStore, PutMode, StoreError, StreamLines, read_ahead};
use crate::writer::StreamWriter;
use std::collections::HashMap;
use std::sync::Arc;

/// Pieces of a chunk's requests read ahead.
const READ_AHEAD: usize = 4;

/// Writes a new chunk: its requests and their sidecar entries.
pub struct ChunkWriter {
    requests: StreamWriter,
    sidecar: StreamWriter,
    sidecar_key: String,
    /// The sidecar entry being written (reused from row to row).
    entry: Vec<u8>,
}

impl ChunkWriter {
    /// Starts chunk `index` (both objects are overwritten: a redo writes the same rows).
    pub fn open(store: &Arc<dyn ObjectStore>, keys: &JobKeys, index: u32) -> Self {
        let sidecar_key = keys.chunk_line_numbers(index);
        Self {
            requests: StreamWriter::open(store.clone(), keys.chunk(index), PutMode::Overwrite),
            sidecar: StreamWriter::open(store.clone(), sidecar_key.clone(), PutMode::Overwrite),
            sidecar_key,
            entry: Vec::with_capacity(32),
        }
    }

    /// Appends a request (`request` without its newline) of input line `line`; `user_id` is
    /// the user's custom_id when the request goes out under another one.
    pub async fn push(
        &mut self,
        request: &[u8],
        line: u64,
        user_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.requests.write(request).await?;
        self.requests.write(b"\n").await?;
        let entry = &mut self.entry;
        entry.clear();
        entry.extend_from_slice(itoa(line, &mut [0u8; 20]));
        if let Some(id) = user_id {
            entry.push(b'\t');
            serde_json::to_writer(&mut *entry, id)
                .map_err(|e| StoreError::io_at(&self.sidecar_key, e.into()))?;
        }
        entry.push(b'\n');
        self.sidecar.write(entry).await
    }

    /// Appends a row read from another chunk, as it is.
    async fn push_row(&mut self, row: &Row<'_>) -> Result<(), StoreError> {
        self.requests.write(row.request).await?;
        self.sidecar.write(row.entry.0).await
    }

    /// Completes both objects.
    pub async fn finish(self) -> Result<(), StoreError> {
        self.requests.finish().await?;
        self.sidecar.finish().await?;
        Ok(())
    }
}

/// Writes the sidecar of a chunk that is never sent (its answers come from elsewhere: the
/// `reuse` module): its rows' input line numbers, and no requests.
pub struct LineNumbers {
    sidecar: StreamWriter,
}

impl LineNumbers {
    pub fn open(store: &Arc<dyn ObjectStore>, keys: &JobKeys, index: u32) -> Self {
        let key = keys.chunk_line_numbers(index);
        Self {
            sidecar: StreamWriter::open(store.clone(), key, PutMode::Overwrite),
        }
    }

    pub async fn push(&mut self, line: u64) -> Result<(), StoreError> {
        self.sidecar.write(itoa(line, &mut [0u8; 20])).await?;
        self.sidecar.write(b"\n").await
    }

    pub async fn finish(self) -> Result<(), StoreError> {
        self.sidecar.finish().await?;
        Ok(())
    }
}

/// Deletes both objects of chunk `index`.
pub async fn delete(store: &dyn ObjectStore, keys: &JobKeys, index: u32) -> Result<(), StoreError> {
    store.delete(&keys.chunk(index)).await?;
    store.delete(&keys.chunk_line_numbers(index)).await?;
    Ok(())
}

/// One sidecar entry (`<line>` or `<line>\t<user's custom_id as JSON>`), newline included.
#[derive(Clone, Copy)]
pub struct Entry<'a>(&'a [u8]);

impl Entry<'_> {
    /// The input line number (`u64::MAX` if the entry is unreadable: it sorts last).
    pub fn line(&self) -> u64 {
        let number = self.0.split(|b| *b == b'\t').next().unwrap_or_default();
        std::str::from_utf8(number.trim_ascii())
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX)
    }

    /// The user's custom_id when the request went out under another one.
    pub fn user_id(&self) -> Option<String> {
        let tab = self.0.iter().position(|b| *b == b'\t')?;
        serde_json::from_slice(self.0[tab + 1..].trim_ascii()).ok()
    }
}

/// A chunk's sidecar read entry by entry, in chunk order.
pub struct Sidecar {
    lines: StreamLines,
    key: String,
}

impl Sidecar {
    pub async fn open(
        store: &dyn ObjectStore,
        keys: &JobKeys,
        index: u32,
    ) -> Result<Self, StoreError> {
        let key = keys.chunk_line_numbers(index);
        let body = store.get(&key).await?.body;
        Ok(Self {
            lines: StreamLines::new(body),
            key,
        })
    }

    /// The next entry; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Entry<'_>>, StoreError> {
        let line = self
            .lines
            .next_line()
            .await
            .map_err(|e| StoreError::io_at(&self.key, e))?;
        Ok(line.map(Entry))
    }

    /// The user's custom_id of each request (by position in the chunk) that went out under
    /// another one.
    pub async fn user_ids(mut self) -> Result<HashMap<usize, String>, StoreError> {
        let mut ids = HashMap::new();
        let mut pos = 0usize;
        while let Some(entry) = self.next().await? {
            if let Some(id) = entry.user_id() {
                ids.insert(pos, id);
            }
            pos += 1;
        }
        Ok(ids)
    }
}

/// A staged chunk read row by row: each request with its sidecar entry.
pub struct ChunkRows {
    requests: StreamLines,
    sidecar: Sidecar,
    requests_key: String,
}

/// One row of a staged chunk.
pub struct Row<'a> {
    /// The request line, newline included.
    pub request: &'a [u8],
    entry: Entry<'a>,
}

impl ChunkRows {
    pub async fn open(
        store: &dyn ObjectStore,
        keys: &JobKeys,
        index: u32,
    ) -> Result<Self, StoreError> {
        let requests = store.get(&keys.chunk(index)).await?.body;
        Ok(Self {
            requests: StreamLines::new(read_ahead(requests, READ_AHEAD)),
            sidecar: Sidecar::open(store, keys, index).await?,
            requests_key: keys.chunk(index),
        })
    }

    /// The next row; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Row<'_>>, StoreError> {
        let request = self
            .requests
            .next_line()
            .await
            .map_err(|e| StoreError::io_at(&self.requests_key, e))?;
        let entry = self.sidecar.next().await?;
        Ok(match (request, entry) {
            (Some(request), Some(entry)) => Some(Row { request, entry }),
            _ => None,
        })
    }
}

impl Row<'_> {
    /// The row as owned bytes: its line number, request and sidecar entry (newlines included).
    fn owned(&self) -> OwnedRow {
        (self.line(), self.request.to_vec(), self.entry.0.to_vec())
    }

    /// The input line number of the row.
    pub fn line(&self) -> u64 {
        self.entry.line()
    }

    /// The user's custom_id when the request went out under another one.
    pub fn user_id(&self) -> Option<String> {
        self.entry.user_id()
    }
}

/// Copies the rows of chunk `from` that `keep` wants (given each row's position and the row)
/// into a new chunk `to` (request lines and their sidecar entries). Returns its requests and
/// bytes.
pub async fn copy_chunk(
    store: Arc<dyn ObjectStore>,
    keys: &JobKeys,
    from: u32,
    to: u32,
    mut keep: impl FnMut(usize, &Row) -> bool,
) -> Result<(u64, u64), StoreError> {
    let mut rows = ChunkRows::open(store.as_ref(), keys, from).await?;
    let mut out = ChunkWriter::open(&store, keys, to);
    let (mut requests, mut bytes) = (0u64, 0u64);
    let mut pos = 0usize;
    while let Some(row) = rows.next().await? {
        if keep(pos, &row) {
            out.push_row(&row).await?;
            requests += 1;
            bytes += row.request.len() as u64;
        }
        pos += 1;
    }
    out.finish().await?;
    Ok((requests, bytes))
}

/// Merges the rows of chunks `from` (each in input-line order) into new chunks, in input-line
/// order: `to[k].0` gets the next `to[k].1` rows, or fewer when they would pass `max_bytes`
/// (the rest go to the next). Rows left when `to` runs out go to the last. Returns the
/// (index, requests, bytes) of each chunk written.
pub async fn merge_chunks(
    store: Arc<dyn ObjectStore>,
    keys: &JobKeys,
    from: &[u32],
    to: &[(u32, u64)],
    max_bytes: u64,
) -> Result<Vec<(u32, u64, u64)>, StoreError> {
    let mut sources = Vec::with_capacity(from.len());
    for &index in from {
        sources.push(ChunkRows::open(store.as_ref(), keys, index).await?);
    }
    // The head row of each source, owned: (line, request, sidecar entry).
    let mut heads: Vec<Option<OwnedRow>> = Vec::with_capacity(sources.len());
    for source in &mut sources {
        heads.push(source.next().await?.map(|r| r.owned()));
    }
    let mut written = Vec::with_capacity(to.len());
    let mut targets = to.iter();
    let Some(&(mut index, mut room)) = targets.next() else {
        return Ok(written);
    };
    let mut out = ChunkWriter::open(&store, keys, index);
    let (mut requests, mut bytes) = (0u64, 0u64);
    loop {
        let next = heads
            .iter()
            .enumerate()
            .filter_map(|(k, h)| h.as_ref().map(|(line, _, _)| (*line, k)))
            .min();
        let Some((_, k)) = next else { break };
        let Some((_, request, entry)) = heads[k].take() else {
            break;
        };
        let full = requests >= room || bytes + request.len() as u64 > max_bytes;
        if full
            && requests > 0
            && let Some(&(next_index, next_room)) = targets.next()
        {
            out.finish().await?;
            written.push((index, requests, bytes));
            (index, room, requests, bytes) = (next_index, next_room, 0, 0);
            out = ChunkWriter::open(&store, keys, index);
        }
        out.requests.write(&request).await?;
        out.sidecar.write(&entry).await?;
        requests += 1;
        bytes += request.len() as u64;
        heads[k] = sources[k].next().await?.map(|r| r.owned());
    }
    out.finish().await?;
    written.push((index, requests, bytes));
    Ok(written)
}

/// A row read out of its chunk: its line number, request and sidecar entry.
type OwnedRow = (u64, Vec<u8>, Vec<u8>);

/// `n` in decimal, without allocating.
fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn itoa_writes_decimal() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            assert_eq!(itoa(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    #[test]
    fn entries_give_their_line_and_user_id() {
        let plain = Entry(b"42\n");
        assert_eq!((plain.line(), plain.user_id()), (42, None));
        let renamed = Entry(b"7\t\"a\\tb\"\n");
        assert_eq!(
            (renamed.line(), renamed.user_id()),
            (7, Some("a\tb".into()))
        );
        assert_eq!(Entry(b"x\n").line(), u64::MAX);
    }
}
