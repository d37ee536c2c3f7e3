//! The route's index of answered requests: `_batchdrop/reuse/<route>/<job>/<chunk>.idx`,
//! one object per chunk a finished job sent, written once with a conditional create (a job
//! that finishes again after a crash finds it there), never changed.
//!
//! An object is a sorted run of fixed records, [`RECORD`] bytes each, big-endian: content
//! hash (16), answered at (unix seconds, 8), the input line the request was on (8), the chunk
//! whose results hold the answer (4), the answer's byte offset in them (8) and its length
//! without newline (4). Only successful answers are entered.
//!
//! A merged object (`_batchdrop/reuse/<route>/_merged/<id>.idx`, made by `super::compact` out
//! of many) holds the answers of several jobs: a header naming them (a u32 count, then per job
//! a u16 length and its id) and records of [`MERGED_RECORD`] bytes, each a record as above
//! followed by the index of its job in the header (u32), sorted by content hash.
//!
//! [`lookup`] merges the job's distinct contents (a run of (hash, line) pairs sorted by hash)
//! with the index objects, [`MERGE_FAN_IN`] objects at a time, and keeps the newest answer of
//! each content answered since `not_before`. An object removed since it was listed (merged
//! away) is passed over.

use crate::ids::MERGE_FAN_IN;
use crate::layout::{JobKeys, STATE};
use crate::store::{ObjectStore, PutMode, StoreError};
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncReadExt};

/// Bytes of one index record.
pub const RECORD: usize = 48;
/// Bytes of one record of a merged object: a record and its job's index in the header.
pub const MERGED_RECORD: usize = RECORD + 4;
/// Bytes of one (hash, line) pair of a job's contents.
pub const PAIR: usize = 24;
/// Read buffer of each object while they are merged.
const READ_BUFFER: usize = 8 * 1024;

/// The folder of a route's index.
pub fn dir(route: &str) -> String {
    format!("{STATE}reuse/{route}/")
}

/// The index object of chunk `chunk` of job `job`.
pub fn key(route: &str, job: &str, chunk: u32) -> String {
    format!("{}{job}/{chunk:05}.idx", dir(route))
}

/// The folder of the route's merged objects (job ids never start with `_`).
pub fn merged_dir(route: &str) -> String {
    format!("{}_merged/", dir(route))
}

/// One answered request, as the index holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub hash: u128,
    pub answered_at: i64,
    pub line: u64,
    pub chunk: u32,
    pub offset: u64,
    pub len: u32,
}

impl IndexEntry {
    pub(crate) fn encode(&self) -> [u8; RECORD] {
        let mut r = [0u8; RECORD];
        r[..16].copy_from_slice(&self.hash.to_be_bytes());
        r[16..24].copy_from_slice(&self.answered_at.to_be_bytes());
        r[24..32].copy_from_slice(&self.line.to_be_bytes());
        r[32..36].copy_from_slice(&self.chunk.to_be_bytes());
        r[36..44].copy_from_slice(&self.offset.to_be_bytes());
        r[44..48].copy_from_slice(&self.len.to_be_bytes());
        r
    }

    pub(crate) fn decode(r: &[u8]) -> Self {
        let u64_at = |i: usize| u64::from_be_bytes(r[i..i + 8].try_into().unwrap_or_default());
        let u32_at = |i: usize| u32::from_be_bytes(r[i..i + 4].try_into().unwrap_or_default());
        Self {
            hash: u128::from_be_bytes(r[..16].try_into().unwrap_or_default()),
            answered_at: u64_at(16) as i64,
            line: u64_at(24),
            chunk: u32_at(32),
            offset: u64_at(36),
            len: u32_at(44),
        }
    }
}

/// Where a stored answer lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The job that sent the request.
    pub job: String,
    /// Its input line in that job.
    pub line: u64,
    pub chunk: u32,
    pub offset: u64,
    pub len: u32,
    pub answered_at: i64,
}

impl Location {
    /// The object holding the answer (the chunk's results, one line per request).
    pub fn results_key(&self) -> String {
        JobKeys::new(&self.job).chunk_results(self.chunk)
    }
}

/// Writes the index object of one chunk (`entries` in any order). A second write of the same
/// chunk leaves the first in place.
pub async fn write(
    store: &dyn ObjectStore,
    key: &str,
    mut entries: Vec<IndexEntry>,
) -> Result<(), StoreError> {
    entries.sort_unstable_by_key(|e| (e.hash, e.line));
    let mut body = Vec::with_capacity(entries.len() * RECORD);
    for e in &entries {
        body.extend_from_slice(&e.encode());
    }
    match store.put(key, Bytes::from(body), PutMode::Create).await {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The record of a (hash, line) pair.
pub fn encode_pair(hash: u128, line: u64) -> [u8; PAIR] {
    let mut r = [0u8; PAIR];
    r[..16].copy_from_slice(&hash.to_be_bytes());
    r[16..].copy_from_slice(&line.to_be_bytes());
    r
}

fn decode_pair(r: &[u8; PAIR]) -> (u128, u64) {
    (
        u128::from_be_bytes(r[..16].try_into().unwrap_or_default()),
        u64::from_be_bytes(r[16..].try_into().unwrap_or_default()),
    )
}

/// An object of fixed-size records, read one at a time.
struct Records<const N: usize> {
    key: String,
    reader: Box<dyn AsyncBufRead + Send + Unpin>,
}

impl<const N: usize> Records<N> {
    async fn open(store: &dyn ObjectStore, key: String) -> Result<Self, StoreError> {
        let got = store.get(&key).await?;
        Ok(Self::over(key, got.body))
    }

    fn over(key: String, body: crate::store::ByteStream) -> Self {
        let reader = Box::new(tokio::io::BufReader::with_capacity(
            READ_BUFFER,
            tokio_util::io::StreamReader::new(body),
        ));
        Self { key, reader }
    }

    async fn next(&mut self) -> Result<Option<[u8; N]>, StoreError> {
        let mut record = [0u8; N];
        match self.reader.read_exact(&mut record).await {
            Ok(_) => Ok(Some(record)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(StoreError::io_at(&self.key, e)),
        }
    }
}

/// The job an index object of a chunk belongs to (`…/reuse/<route>/<job>/<chunk>.idx`).
fn job_of(key: &str) -> Option<&str> {
    let mut parts = key.rsplit('/');
    parts.next()?;
    parts.next()
}

/// Whether `key` is a merged object.
fn is_merged(key: &str) -> bool {
    key.rsplit('/').nth(1) == Some("_merged")
}

/// The index objects of `route`: chunk objects and merged ones, with their sizes.
pub(crate) async fn objects(
    store: &dyn ObjectStore,
    route: &str,
) -> Result<Vec<crate::store::ObjectMeta>, StoreError> {
    Ok(store
        .list(&dir(route))
        .await?
        .into_iter()
        .filter(|m| m.key.ends_with(".idx") && job_of(&m.key).is_some())
        .collect())
}

/// The entries of one index object, in hash order, each with its job.
pub(crate) struct Reader {
    /// The jobs its entries belong to (one for a chunk's object).
    pub jobs: Vec<Arc<str>>,
    records: Source,
}

/// The records of a chunk's object, or of a merged one (each naming its job).
enum Source {
    Chunk(Records<RECORD>),
    Merged(Records<MERGED_RECORD>),
}

impl Reader {
    /// Opens the object at `key`; None when it is gone (merged away since it was listed).
    pub async fn open(store: &dyn ObjectStore, key: &str) -> Result<Option<Reader>, StoreError> {
        let got = match store.get(key).await {
            Ok(got) => got,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if !is_merged(key) {
            let job: Arc<str> = job_of(key).unwrap_or_default().into();
            return Ok(Some(Reader {
                jobs: vec![job],
                records: Source::Chunk(Records::over(key.to_string(), got.body)),
            }));
        }
        let mut records = Records::<MERGED_RECORD>::over(key.to_string(), got.body);
        let bad = |what: &str| {
            StoreError::io_at(
                key,
                std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string()),
            )
        };
        let count = records
            .reader
            .read_u32()
            .await
            .map_err(|_| bad("a merged index object without its header"))?;
        let mut jobs = Vec::with_capacity(count.min(1 << 16) as usize);
        for _ in 0..count {
            let len = records
                .reader
                .read_u16()
                .await
                .map_err(|_| bad("a merged index object's header is cut short"))?;
            let mut name = vec![0u8; usize::from(len)];
            records
                .reader
                .read_exact(&mut name)
                .await
                .map_err(|_| bad("a merged index object's header is cut short"))?;
            let name = String::from_utf8(name).map_err(|_| bad("a job id is not UTF-8"))?;
            jobs.push(Arc::from(name));
        }
        Ok(Some(Reader {
            jobs,
            records: Source::Merged(records),
        }))
    }

    /// The next entry and its job.
    pub async fn next(&mut self) -> Result<Option<(IndexEntry, Arc<str>)>, StoreError> {
        let records = match &mut self.records {
            Source::Chunk(records) => {
                let job = self.jobs[0].clone();
                return Ok(records.next().await?.map(|r| (IndexEntry::decode(&r), job)));
            }
            Source::Merged(records) => records,
        };
        let Some(r) = records.next().await? else {
            return Ok(None);
        };
        let at = u32::from_be_bytes(r[RECORD..].try_into().unwrap_or_default()) as usize;
        let job = self.jobs.get(at).cloned().ok_or_else(|| {
            StoreError::io_at(
                &records.key,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a record names job {at} of {}", self.jobs.len()),
                ),
            )
        })?;
        Ok(Some((IndexEntry::decode(&r[..RECORD]), job)))
    }
}

/// For each line of `leaders` (distinct contents: (hash, line) pairs sorted by hash) whose
/// content the route's index holds an answer to, answered at or after `not_before` (unix
/// seconds): the newest such answer (of as new ones, the last by job and line). `except` (the
/// job looking) is never its own source.
pub async fn lookup(
    store: &Arc<dyn ObjectStore>,
    route: &str,
    leaders: &str,
    not_before: i64,
    except: &str,
) -> Result<HashMap<u64, Location>, StoreError> {
    let objects: Vec<String> = objects(store.as_ref(), route)
        .await?
        .into_iter()
        .map(|m| m.key)
        .filter(|k| is_merged(k) || job_of(k).is_some_and(|j| j != except))
        .collect();
    let mut found: HashMap<u64, Location> = HashMap::new();
    for group in objects.chunks(MERGE_FAN_IN) {
        let mut readers = Vec::with_capacity(group.len());
        for key in group {
            if let Some(reader) = Reader::open(store.as_ref(), key).await? {
                readers.push(reader);
            }
        }
        let mut heap = BinaryHeap::new();
        for (k, r) in readers.iter_mut().enumerate() {
            if let Some((entry, job)) = r.next().await? {
                heap.push(Reverse(Head { entry, k, job }));
            }
        }
        let mut wanted = Records::<PAIR>::open(store.as_ref(), leaders.to_string()).await?;
        let mut leader = wanted.next().await?.map(|r| decode_pair(&r));
        while let (Some((want, line)), Some(Reverse(head))) = (leader, heap.pop()) {
            if want < head.entry.hash {
                // This content is not in these objects: look for the next one.
                leader = wanted.next().await?.map(|r| decode_pair(&r));
                heap.push(Reverse(head));
                continue;
            }
            let Head { entry, k, job } = head;
            if want == entry.hash && &*job != except {
                // The newest; of answers as new, the same one whatever the objects' order.
                let newer = found.get(&line).is_none_or(|l| {
                    (l.answered_at, l.job.as_str(), l.line) < (entry.answered_at, &*job, entry.line)
                });
                if entry.answered_at >= not_before && newer {
                    found.insert(
                        line,
                        Location {
                            job: job.to_string(),
                            line: entry.line,
                            chunk: entry.chunk,
                            offset: entry.offset,
                            len: entry.len,
                            answered_at: entry.answered_at,
                        },
                    );
                }
            }
            if let Some((entry, job)) = readers[k].next().await? {
                heap.push(Reverse(Head { entry, k, job }));
            }
        }
    }
    Ok(found)
}

/// The next entry of reader `k` in a merge, ordered by hash (then reader).
pub(crate) struct Head {
    pub entry: IndexEntry,
    pub k: usize,
    pub job: Arc<str>,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.entry.hash, self.k).cmp(&(other.entry.hash, other.k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, ObjectStoreExt};

    fn entry(hash: u128, answered_at: i64, line: u64) -> IndexEntry {
        IndexEntry {
            hash,
            answered_at,
            line,
            chunk: 2,
            offset: line * 100,
            len: 99,
        }
    }

    async fn leaders(
        store: &Arc<dyn ObjectStore>,
        pairs: &[(u128, u64)],
    ) -> Result<(), StoreError> {
        let mut body = Vec::new();
        for &(h, l) in pairs {
            body.extend_from_slice(&encode_pair(h, l));
        }
        store
            .put("w/leaders.bin", Bytes::from(body), PutMode::Overwrite)
            .await?;
        Ok(())
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let e = entry(u128::MAX - 3, 1_767_225_600, 42);
        assert_eq!(IndexEntry::decode(&e.encode()), e);
    }

    #[tokio::test]
    async fn the_newest_answer_since_the_cutoff_is_found_in_any_object() -> Result<(), StoreError> {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        write(
            store.as_ref(),
            &key("r", "j1", 0),
            vec![entry(5, 100, 1), entry(9, 100, 2)],
        )
        .await?;
        write(
            store.as_ref(),
            &key("r", "j2", 0),
            vec![entry(5, 300, 7), entry(7, 50, 3)],
        )
        .await?;
        leaders(&store, &[(5, 10), (7, 11), (8, 12), (9, 13)]).await?;
        let found = lookup(&store, "r", "w/leaders.bin", 80, "j9").await?;
        // 5: both jobs answered it, j2 last; 7: too old; 8: never answered; 9: j1.
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[&10].job.as_str(), found[&10].line), ("j2", 7));
        assert_eq!((found[&13].job.as_str(), found[&13].line), ("j1", 2));
        assert_eq!(
            found[&13].results_key(),
            "_batchdrop/jobs/j1/results/00002.jsonl"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_second_write_of_a_chunk_keeps_the_first() -> Result<(), StoreError> {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let k = key("r", "j1", 0);
        write(store.as_ref(), &k, vec![entry(1, 1, 1)]).await?;
        write(store.as_ref(), &k, vec![entry(2, 2, 2), entry(3, 3, 3)]).await?;
        assert_eq!(store.get_bytes(&k).await?.len(), RECORD);
        Ok(())
    }

    #[tokio::test]
    async fn a_job_is_never_its_own_source() -> Result<(), StoreError> {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        write(store.as_ref(), &key("r", "j1", 0), vec![entry(5, 100, 1)]).await?;
        leaders(&store, &[(5, 10)]).await?;
        assert!(
            lookup(&store, "r", "w/leaders.bin", 0, "j1")
                .await?
                .is_empty()
        );
        Ok(())
    }
}
