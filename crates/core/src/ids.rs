//! Duplicate custom_ids over a whole upload, in bounded memory.
//!
//! While an upload is planned, each accepted request's id is remembered as a stable 128-bit
//! hash (xxh3-128: the same in every process, so the check spans continuations) with its line
//! number. The pairs collect in a buffer of [`RUN_ENTRIES`]; a full buffer is sorted and written
//! to the store as a *run* (`_batchdrop/jobs/<id>/ids/<segment>-<run>.bin`, 24 bytes a pair).
//! When the whole upload is planned, [`find_duplicates`] merges the runs (a k-way merge: one
//! pair per run in memory) and reports every line whose id an earlier line already used. Memory
//! is the buffer (2 MB) plus the duplicates found, whatever the size of the upload.

use crate::layout::JobKeys;
use crate::store::{ObjectStore, PutMode, StoreError};
use crate::writer::StreamWriter;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncReadExt};
use xxhash_rust::xxh3::xxh3_128;

/// Pairs held in memory before they are written out as a run (2 MB).
pub const RUN_ENTRIES: usize = 64 * 1024;
/// Read buffer of each run while runs are merged.
const RUN_READ_BUFFER: usize = 4 * 1024;
/// Runs merged at once; more runs are first merged into bigger ones, this many at a time.
pub const MERGE_FAN_IN: usize = 64;
const RECORD: usize = 24;
/// The segment number merged runs are written under.
const MERGED: u32 = u32::MAX;

/// The hash an id is remembered by.
pub fn id_hash(id: &str) -> u128 {
    xxh3_128(id.as_bytes())
}

/// The errors.jsonl message of a duplicate.
pub fn duplicate_message(custom_id: &str, first_line: u64) -> String {
    format!("custom_id {custom_id:?} was already used on line {first_line}")
}

/// A line whose custom_id an earlier line used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duplicate {
    pub line: u64,
    pub first_line: u64,
}

/// The ids of one planning segment, written out in sorted runs.
pub struct IdRuns {
    store: Arc<dyn ObjectStore>,
    /// Where the runs go (`…/ids/`, or another folder of the job for other 128-bit keys).
    dir: String,
    segment: u32,
    runs: u32,
    pairs: Vec<(u128, u64)>,
    capacity: usize,
}

impl IdRuns {
    /// Starts segment `segment`, removing runs a crashed earlier attempt at it (or after it)
    /// may have left.
    pub async fn start(
        store: Arc<dyn ObjectStore>,
        keys: JobKeys,
        segment: u32,
    ) -> Result<Self, StoreError> {
        Self::with_capacity(store, keys, segment, RUN_ENTRIES).await
    }

    /// Same, with a smaller buffer (tests use it to force many runs).
    pub async fn with_capacity(
        store: Arc<dyn ObjectStore>,
        keys: JobKeys,
        segment: u32,
        capacity: usize,
    ) -> Result<Self, StoreError> {
        Self::in_dir(store, keys.id_runs(), segment, capacity).await
    }

    /// Runs of any 128-bit keys with their lines under `dir` (the `reuse` module keeps the
    /// requests' content hashes so); same rules as the ids'.
    pub async fn in_dir(
        store: Arc<dyn ObjectStore>,
        dir: String,
        segment: u32,
        capacity: usize,
    ) -> Result<Self, StoreError> {
        let capacity = capacity.max(1);
        for stale in store.list(&dir).await? {
            if run_segment(&stale.key).is_none_or(|s| s >= segment) {
                store.delete(&stale.key).await?;
            }
        }
        Ok(Self {
            store,
            dir,
            segment,
            runs: 0,
            pairs: Vec::with_capacity(capacity.min(RUN_ENTRIES)),
            capacity,
        })
    }

    /// Remembers that `line` uses `id`.
    pub async fn push(&mut self, id: &str, line: u64) -> Result<(), StoreError> {
        self.push_hash(id_hash(id), line).await
    }

    /// Remembers that `line` has the key `hash`.
    pub async fn push_hash(&mut self, hash: u128, line: u64) -> Result<(), StoreError> {
        self.pairs.push((hash, line));
        if self.pairs.len() >= self.capacity {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes out what is buffered; the segment's runs are then all in the store.
    pub async fn finish(mut self) -> Result<(), StoreError> {
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        if self.pairs.is_empty() {
            return Ok(());
        }
        self.pairs.sort_unstable();
        let key = run_key(&self.dir, self.segment, self.runs);
        let mut out = StreamWriter::open(self.store.clone(), key, PutMode::Overwrite);
        let mut record = [0u8; RECORD];
        for &(hash, line) in &self.pairs {
            encode(hash, line, &mut record);
            out.write(&record).await?;
        }
        out.finish().await?;
        self.runs += 1;
        self.pairs.clear();
        Ok(())
    }
}

/// Run `run` of segment `segment` under `dir`.
fn run_key(dir: &str, segment: u32, run: u32) -> String {
    format!("{dir}{segment:05}-{run:05}.bin")
}

fn encode(hash: u128, line: u64, record: &mut [u8; RECORD]) {
    record[..16].copy_from_slice(&hash.to_be_bytes());
    record[16..].copy_from_slice(&line.to_be_bytes());
}

/// The segment a run's key belongs to (`…/ids/<segment>-<run>.bin`).
fn run_segment(key: &str) -> Option<u32> {
    let name = key.rsplit('/').next()?;
    name.split('-').next()?.parse().ok()
}

struct RunReader {
    key: String,
    reader: Box<dyn AsyncBufRead + Send + Unpin>,
}

impl RunReader {
    async fn open(store: &dyn ObjectStore, key: String) -> Result<Self, StoreError> {
        let got = store.get(&key).await?;
        let reader = Box::new(tokio::io::BufReader::with_capacity(
            RUN_READ_BUFFER,
            tokio_util::io::StreamReader::new(got.body),
        ));
        Ok(Self { key, reader })
    }

    async fn next(&mut self) -> Result<Option<(u128, u64)>, StoreError> {
        let mut record = [0u8; RECORD];
        match self.reader.read_exact(&mut record).await {
            Ok(_) => {
                let hash = u128::from_be_bytes(record[..16].try_into().expect("16 bytes"));
                let line = u64::from_be_bytes(record[16..].try_into().expect("8 bytes"));
                Ok(Some((hash, line)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(StoreError::io_at(&self.key, e)),
        }
    }
}

/// Merges runs into one sorted sequence, handing each pair to `each` in (hash, line) order.
async fn merge(
    store: &dyn ObjectStore,
    keys: Vec<String>,
    mut each: impl AsyncFnMut((u128, u64)) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut readers = Vec::with_capacity(keys.len());
    for key in keys {
        readers.push(RunReader::open(store, key).await?);
    }
    let mut heap = BinaryHeap::new();
    for (i, r) in readers.iter_mut().enumerate() {
        if let Some(pair) = r.next().await? {
            heap.push(Reverse((pair, i)));
        }
    }
    while let Some(Reverse((pair, i))) = heap.pop() {
        each(pair).await?;
        if let Some(next) = readers[i].next().await? {
            heap.push(Reverse((next, i)));
        }
    }
    Ok(())
}

/// Every line of the job whose id an earlier line used, in line order. Runs beyond
/// [`MERGE_FAN_IN`] are first merged into bigger runs (written under the job, old ones removed).
pub async fn find_duplicates(
    store: &Arc<dyn ObjectStore>,
    keys: &JobKeys,
) -> Result<Vec<Duplicate>, StoreError> {
    let mut found = Vec::new();
    let mut current: Option<(u128, u64)> = None;
    merged_pairs(store, &keys.id_runs(), async |(hash, line)| {
        match current {
            Some((h, first)) if h == hash => found.push(Duplicate {
                line,
                first_line: first,
            }),
            _ => current = Some((hash, line)),
        }
        Ok(())
    })
    .await?;
    found.sort_unstable();
    Ok(found)
}

/// Every (key, line) pair of the runs under `dir`, once each, in (key, line) order. Runs
/// beyond [`MERGE_FAN_IN`] are first merged into bigger runs (written there, old ones removed).
pub async fn merged_pairs(
    store: &Arc<dyn ObjectStore>,
    dir: &str,
    mut each: impl AsyncFnMut((u128, u64)) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut runs: Vec<String> = store.list(dir).await?.into_iter().map(|m| m.key).collect();
    // Merged runs are named as segment u32::MAX (never a planning segment; listed last),
    // numbered after any a crashed earlier merge left.
    let mut merged = runs
        .iter()
        .filter(|k| run_segment(k) == Some(MERGED))
        .count() as u32;
    while runs.len() > MERGE_FAN_IN {
        let group: Vec<String> = runs.drain(..MERGE_FAN_IN).collect();
        let key = run_key(dir, MERGED, merged);
        merged += 1;
        let mut out = StreamWriter::open(store.clone(), key.clone(), PutMode::Overwrite);
        let mut record = [0u8; RECORD];
        merge(store.as_ref(), group.clone(), async |(hash, line)| {
            encode(hash, line, &mut record);
            out.write(&record).await
        })
        .await?;
        out.finish().await?;
        for old in group {
            store.delete(&old).await?;
        }
        runs.push(key);
    }
    let mut last: Option<(u128, u64)> = None;
    merge(store.as_ref(), runs, async |pair| {
        // The same pair twice: a merge that crashed before removing its inputs.
        if last == Some(pair) {
            return Ok(());
        }
        last = Some(pair);
        each(pair).await
    })
    .await
}

/// Removes the job's runs (once the duplicates are known).
pub async fn remove_runs(store: &dyn ObjectStore, keys: &JobKeys) -> Result<(), StoreError> {
    remove_runs_in(store, &keys.id_runs()).await
}

/// Removes every run under `dir`.
pub async fn remove_runs_in(store: &dyn ObjectStore, dir: &str) -> Result<(), StoreError> {
    for run in store.list(dir).await? {
        store.delete(&run.key).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn store() -> Arc<dyn ObjectStore> {
        Arc::new(MemoryStore::new())
    }

    async fn segment(
        store: &Arc<dyn ObjectStore>,
        keys: &JobKeys,
        segment: u32,
        capacity: usize,
        ids: &[(&str, u64)],
    ) -> Result<(), StoreError> {
        let mut runs =
            IdRuns::with_capacity(store.clone(), keys.clone(), segment, capacity).await?;
        for (id, line) in ids {
            runs.push(id, *line).await?;
        }
        runs.finish().await
    }

    #[tokio::test]
    async fn a_second_use_names_the_first_line() -> Result<(), StoreError> {
        let (store, keys) = (store(), JobKeys::new("j1"));
        segment(
            &store,
            &keys,
            0,
            2,
            &[("r1", 1), ("r2", 2), ("r1", 4), ("r1", 5)],
        )
        .await?;
        assert_eq!(
            find_duplicates(&store, &keys).await?,
            [
                Duplicate {
                    line: 4,
                    first_line: 1
                },
                Duplicate {
                    line: 5,
                    first_line: 1
                }
            ]
        );
        Ok(())
    }

    #[tokio::test]
    async fn duplicates_are_found_across_segments_and_runs() -> Result<(), StoreError> {
        let (store, keys) = (store(), JobKeys::new("j1"));
        segment(&store, &keys, 0, 1, &[("a", 1), ("b", 2)]).await?;
        segment(&store, &keys, 1, 1, &[("c", 3), ("a", 9)]).await?;
        assert_eq!(store.list(&keys.id_runs()).await?.len(), 4);
        assert_eq!(
            find_duplicates(&store, &keys).await?,
            [Duplicate {
                line: 9,
                first_line: 1
            }]
        );
        Ok(())
    }

    #[tokio::test]
    async fn more_runs_than_the_fan_in_are_merged_in_rounds() -> Result<(), StoreError> {
        let (store, keys) = (store(), JobKeys::new("j1"));
        let ids: Vec<String> = (0..(MERGE_FAN_IN as u64 * 2 + 5))
            .map(|i| format!("id{i}"))
            .collect();
        let mut pairs: Vec<(&str, u64)> =
            ids.iter().zip(1..).map(|(s, n)| (s.as_str(), n)).collect();
        pairs.push(("id0", 10_000));
        segment(&store, &keys, 0, 1, &pairs).await?;
        assert_eq!(
            find_duplicates(&store, &keys).await?,
            [Duplicate {
                line: 10_000,
                first_line: 1
            }]
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_restarted_segment_drops_what_a_crashed_attempt_wrote() -> Result<(), StoreError> {
        let (store, keys) = (store(), JobKeys::new("j1"));
        segment(&store, &keys, 0, 1, &[("a", 1)]).await?;
        // A first attempt at segment 1 read further than the checkpoint its redo stops at.
        segment(&store, &keys, 1, 1, &[("b", 2), ("c", 3)]).await?;
        segment(&store, &keys, 1, 1, &[("b", 2)]).await?;
        segment(&store, &keys, 2, 1, &[("c", 3)]).await?;
        assert_eq!(find_duplicates(&store, &keys).await?, []);
        Ok(())
    }

    #[tokio::test]
    async fn a_merge_that_crashed_before_removing_its_inputs_reports_nothing_twice()
    -> Result<(), StoreError> {
        let (store, keys) = (store(), JobKeys::new("j1"));
        segment(&store, &keys, 0, 1, &[("a", 1), ("a", 2)]).await?;
        // A merged run holding the same pairs, as a crash between write and delete leaves.
        segment(&store, &keys, MERGED, 2, &[("a", 1), ("a", 2)]).await?;
        assert_eq!(
            find_duplicates(&store, &keys).await?,
            [Duplicate {
                line: 2,
                first_line: 1
            }]
        );
        Ok(())
    }

    #[test]
    fn the_hash_is_the_same_in_every_process() {
        assert_eq!(id_hash("r1"), xxh3_128(b"r1"));
        assert_ne!(id_hash("r1"), id_hash("r2"));
    }
}
