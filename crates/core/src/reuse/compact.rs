//! Keeping the route's index to a few objects: once it holds [`COMPACT_AT`] objects or more,
//! the [`MERGE_FAN_IN`] smallest are merged into one (`index::merged_dir`), entries answered
//! before the cutoff dropped, and then removed. So a lookup reads a bounded number of objects
//! (each read of them also re-reads the job's own hashes), and answers too old to reuse leave
//! the bucket.
//!
//! Safe at any moment: the merged object is made by conditional create under a name derived
//! from the objects it merges (two workers merging the same ones make one), and only then are
//! they removed. A crash in between leaves the same answers twice, which a lookup reads as
//! once (the newest answer of a line wins either way). A lookup that listed an object merged
//! away since passes over it: at worst it misses those answers and the requests are sent.

use super::index::{self, Head, MERGED_RECORD, Reader};
use crate::ids::MERGE_FAN_IN;
use crate::store::{ObjectStore, ObjectStoreExt, PutMode, StoreError};
use crate::writer::StreamWriter;
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

/// Objects in a route's index from which a merge starts.
pub const COMPACT_AT: usize = 2 * MERGE_FAN_IN;

/// What one merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compacted {
    /// The merged object.
    pub key: String,
    /// Objects merged into it (and removed).
    pub merged: usize,
    /// Entries it holds.
    pub entries: u64,
    /// Entries dropped: answered before the cutoff.
    pub expired: u64,
}

/// Merges the [`MERGE_FAN_IN`] smallest index objects of `route` into one when it has
/// [`COMPACT_AT`] or more, dropping entries answered before `not_before` (unix seconds).
/// None: nothing to do.
pub async fn compact(
    store: &Arc<dyn ObjectStore>,
    route: &str,
    not_before: i64,
) -> Result<Option<Compacted>, StoreError> {
    let mut objects = index::objects(store.as_ref(), route).await?;
    if objects.len() < COMPACT_AT {
        return Ok(None);
    }
    objects.sort_by(|a, b| (a.size, &a.key).cmp(&(b.size, &b.key)));
    let mut inputs: Vec<String> = objects
        .into_iter()
        .take(MERGE_FAN_IN)
        .map(|m| m.key)
        .collect();
    inputs.sort();
    let key = merged_key(route, &inputs);
    if store.exists(&key).await? {
        // Merged before, and the inputs not all removed then (a crash): finish the removal.
        for input in &inputs {
            store.delete(input).await?;
        }
        return Ok(None);
    }

    let mut readers = Vec::with_capacity(inputs.len());
    for input in &inputs {
        if let Some(reader) = Reader::open(store.as_ref(), input).await? {
            readers.push(reader);
        }
    }
    // The merged object's jobs: every input's, each once.
    let mut jobs: BTreeMap<Arc<str>, u32> = BTreeMap::new();
    for reader in &readers {
        for job in &reader.jobs {
            jobs.entry(job.clone()).or_insert(0);
        }
    }
    for (i, slot) in jobs.values_mut().enumerate() {
        *slot = i as u32;
    }
    let mut out = StreamWriter::open(store.clone(), key.clone(), PutMode::Create);
    out.write(&(jobs.len() as u32).to_be_bytes()).await?;
    for job in jobs.keys() {
        out.write(&(job.len() as u16).to_be_bytes()).await?;
        out.write(job.as_bytes()).await?;
    }
    let mut heap = BinaryHeap::new();
    for (k, r) in readers.iter_mut().enumerate() {
        if let Some((entry, job)) = r.next().await? {
            heap.push(Reverse(Head { entry, k, job }));
        }
    }
    let (mut entries, mut expired) = (0u64, 0u64);
    while let Some(Reverse(Head { entry, k, job })) = heap.pop() {
        if entry.answered_at >= not_before {
            let mut record = [0u8; MERGED_RECORD];
            record[..index::RECORD].copy_from_slice(&entry.encode());
            record[index::RECORD..].copy_from_slice(&jobs[&job].to_be_bytes());
            out.write(&record).await?;
            entries += 1;
        } else {
            expired += 1;
        }
        if let Some((entry, job)) = readers[k].next().await? {
            heap.push(Reverse(Head { entry, k, job }));
        }
    }
    match out.finish().await {
        // Another worker merged the same objects first: its object holds the same entries.
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e),
    }
    for input in &inputs {
        store.delete(input).await?;
    }
    Ok(Some(Compacted {
        key,
        merged: inputs.len(),
        entries,
        expired,
    }))
}

/// The merged object of `inputs` (sorted): named by their keys' digest.
fn merged_key(route: &str, inputs: &[String]) -> String {
    let mut h = Sha256::new();
    for input in inputs {
        h.update(input.as_bytes());
        h.update([0u8]);
    }
    format!(
        "{}{}.idx",
        index::merged_dir(route),
        &hex::encode(h.finalize())[..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reuse::index::{IndexEntry, Location, encode_pair, key, lookup, write};
    use crate::store::{MemoryStore, ObjectStoreExt};
    use bytes::Bytes;
    use std::collections::HashMap;

    const ROUTE: &str = "r";
    const LEADERS: &str = "w/leaders.bin";

    /// `objects` chunk objects over 40 jobs, entries of 200 contents answered at 0..1000.
    async fn index_of(objects: u32, seed: u64) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let mut rng = fastrand::Rng::with_seed(seed);
        for n in 0..objects {
            let job = format!("j{:02}", n % 40);
            let entries = (0..rng.usize(1..30))
                .map(|i| IndexEntry {
                    hash: rng.u128(0..200),
                    answered_at: rng.i64(0..1000),
                    line: u64::from(n) * 100 + i as u64,
                    chunk: n,
                    offset: i as u64 * 10,
                    len: 9,
                })
                .collect();
            write(store.as_ref(), &key(ROUTE, &job, n), entries).await?;
        }
        let mut body = Vec::new();
        for hash in (0..220u128).step_by(3) {
            body.extend_from_slice(&encode_pair(hash, hash as u64 + 1_000_000));
        }
        store
            .put(LEADERS, Bytes::from(body), PutMode::Overwrite)
            .await?;
        Ok(store)
    }

    async fn found(
        store: &Arc<dyn ObjectStore>,
        not_before: i64,
    ) -> Result<HashMap<u64, Location>, StoreError> {
        lookup(store, ROUTE, LEADERS, not_before, "j07").await
    }

    async fn count(store: &Arc<dyn ObjectStore>) -> Result<usize, StoreError> {
        Ok(index::objects(store.as_ref(), ROUTE).await?.len())
    }

    #[tokio::test]
    async fn a_lookup_finds_the_same_answers_before_and_after_merges() -> Result<(), StoreError> {
        let store = index_of(300, 7).await?;
        let before = found(&store, 0).await?;
        assert!(before.len() > 20, "{}", before.len());
        let mut merges = 0;
        while compact(&store, ROUTE, 0).await?.is_some() {
            merges += 1;
            assert_eq!(found(&store, 0).await?, before, "after {merges} merges");
        }
        // 300 objects, 63 fewer a merge, until fewer than COMPACT_AT remain.
        assert_eq!(merges, 3);
        assert_eq!(count(&store).await?, 300 - 3 * (MERGE_FAN_IN - 1));
        Ok(())
    }

    #[tokio::test]
    async fn a_merge_drops_what_is_too_old_to_reuse_and_keeps_the_rest() -> Result<(), StoreError> {
        let store = index_of(COMPACT_AT as u32, 11).await?;
        let recent = found(&store, 500).await?;
        let done = compact(&store, ROUTE, 500)
            .await?
            .ok_or("no merge")
            .map_err(|e| StoreError::io_at("test", std::io::Error::other(e)))?;
        assert!(done.expired > 0 && done.entries > 0, "{done:?}");
        assert_eq!(found(&store, 500).await?, recent);
        // What was dropped is gone: an old answer found now lies in an object not merged.
        let unmerged: Vec<u32> = index::objects(store.as_ref(), ROUTE)
            .await?
            .iter()
            .filter(|m| !m.key.contains("_merged"))
            .filter_map(|m| m.key.rsplit('/').next()?.strip_suffix(".idx")?.parse().ok())
            .collect();
        let old: Vec<Location> = found(&store, 0)
            .await?
            .into_values()
            .filter(|l| l.answered_at < 500)
            .collect();
        assert!(!old.is_empty());
        assert!(old.iter().all(|l| unmerged.contains(&l.chunk)), "{old:?}");
        Ok(())
    }

    #[tokio::test]
    async fn a_merge_interrupted_before_its_inputs_were_removed_is_finished_by_the_next()
    -> Result<(), StoreError> {
        let store = index_of(COMPACT_AT as u32, 13).await?;
        let before = found(&store, 0).await?;
        // Copies of the inputs, put back after the merge as if its removals never ran.
        let mut inputs = Vec::new();
        for meta in index::objects(store.as_ref(), ROUTE).await? {
            inputs.push((meta.key.clone(), store.get_bytes(&meta.key).await?));
        }
        let done = compact(&store, ROUTE, 0).await?;
        assert!(done.is_some());
        for (key, bytes) in &inputs {
            if !store.exists(key).await? {
                store.put(key, bytes.clone(), PutMode::Create).await?;
            }
        }
        assert_eq!(count(&store).await?, COMPACT_AT + 1);
        // The same answers, read twice, are found once.
        assert_eq!(found(&store, 0).await?, before);
        // The next merge picks the same inputs, finds their merged object, and removes them.
        assert_eq!(compact(&store, ROUTE, 0).await?, None);
        assert_eq!(count(&store).await?, COMPACT_AT - MERGE_FAN_IN + 1);
        assert_eq!(found(&store, 0).await?, before);
        Ok(())
    }

    #[tokio::test]
    async fn an_index_below_the_threshold_is_left_as_it_is() -> Result<(), StoreError> {
        let store = index_of(COMPACT_AT as u32 - 1, 17).await?;
        assert_eq!(compact(&store, ROUTE, 0).await?, None);
        assert_eq!(count(&store).await?, COMPACT_AT - 1);
        Ok(())
    }
}
