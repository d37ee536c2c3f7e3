//! Balancing a planned job's chunks against the provider's batch minimum (Bedrock: 100
//! records per job). Planning fills each chunk up to the maximum, so a group's last chunk
//! (and, when planning was checkpointed, the last chunk of each segment) may hold fewer
//! requests than the minimum. Whenever the group holds at least the minimum, its chunks below
//! it are merged, with one full chunk if they are too few together, and cut again into
//! near-equal chunks, none below the minimum (the maximum is at least twice the minimum for
//! every provider). A group smaller than the minimum stays as it is: its chunk goes as the
//! route's `below_minimum` says ([`super::on_demand`]).
//!
//! Like taking out reused ids, this only writes new objects, under new indices fixed by the
//! manifest as it was saved; the manifest names them once planning is over, and the old files
//! go afterwards. A crash in between is simply redone. The new chunks share the sources'
//! estimated tokens (when they have them) in proportion to their requests.

use super::JobError;
use super::run::{JobRun, next_chunk_index};
use crate::chunk_files::merge_chunks;
use crate::manifest::{ChunkPlan, ChunkRecord, Manifest, TokenEstimate};
use crate::route::ChunkLimits;
use std::collections::BTreeMap;

/// What [`JobRun::balance`] wrote, to be taken into the manifest.
#[derive(Default)]
pub(super) struct Balanced {
    /// The new chunks.
    written: Vec<ChunkPlan>,
    /// The chunks they replace (their files go once the manifest no longer names them).
    pub(super) replaced: Vec<u32>,
}

impl Balanced {
    pub(super) fn apply(&self, manifest: &mut Manifest) {
        if self.replaced.is_empty() {
            return;
        }
        manifest
            .chunks
            .retain(|c| !self.replaced.contains(&c.plan.index));
        manifest
            .chunks
            .extend(self.written.iter().cloned().map(ChunkRecord::staged));
    }
}

/// How many requests each of the chunks cut from `requests` requests of `bytes` bytes holds:
/// as few chunks as the limits allow, near-equal, none below the minimum.
fn cut(requests: u64, bytes: u64, limits: &ChunkLimits) -> Vec<u64> {
    let by_requests = requests.div_ceil(limits.max_requests_per_batch.max(1));
    let by_bytes = bytes.div_ceil(limits.max_bytes_per_batch.max(1));
    let most = (requests / limits.min_requests_per_batch.max(1)).max(1);
    let parts = by_requests.max(by_bytes).clamp(1, most);
    (0..parts)
        .map(|k| requests / parts + u64::from(k < requests % parts))
        .collect()
}

impl JobRun<'_> {
    /// Merges and cuts again the chunks of `planned` (the whole upload staged, reused ids
    /// taken out) that hold fewer requests than `limits` allow, where their group can.
    pub(super) async fn balance(
        &self,
        planned: &Manifest,
        limits: &ChunkLimits,
    ) -> Result<Balanced, JobError> {
        let min = limits.min_requests_per_batch;
        let mut balanced = Balanced::default();
        if min <= 1 {
            return Ok(balanced);
        }
        // Chunks that may share a batch: the same endpoint and model.
        let mut groups: BTreeMap<(&str, &str), Vec<&ChunkRecord>> = BTreeMap::new();
        for chunk in &planned.chunks {
            let group = (chunk.plan.endpoint.as_str(), chunk.plan.model.as_str());
            groups.entry(group).or_default().push(chunk);
        }
        let mut next = next_chunk_index(planned);
        for ((endpoint, model), chunks) in groups {
            let total: u64 = chunks.iter().map(|c| c.plan.requests).sum();
            let (mut sources, full): (Vec<&ChunkRecord>, Vec<&ChunkRecord>) =
                chunks.iter().partition(|c| c.plan.requests < min);
            if total < min || sources.is_empty() {
                continue;
            }
            if sources.iter().map(|c| c.plan.requests).sum::<u64>() < min
                && let Some(biggest) = full.iter().max_by_key(|c| c.plan.requests)
            {
                sources.push(biggest);
            }
            let requests: u64 = sources.iter().map(|c| c.plan.requests).sum();
            let total_requests = requests;
            let bytes: u64 = sources.iter().map(|c| c.plan.bytes).sum();
            let from: Vec<u32> = sources.iter().map(|c| c.plan.index).collect();
            // The sources' estimates, shared out in proportion to each new chunk's requests.
            let estimate = sources
                .iter()
                .try_fold(TokenEstimate::default(), |mut sum, c| {
                    sum.add(c.plan.estimate?);
                    Some(sum)
                });
            let to: Vec<(u32, u64)> = cut(requests, bytes, limits)
                .into_iter()
                .enumerate()
                .map(|(k, n)| (next + k as u32, n))
                .collect();
            next += to.len() as u32;
            let written = merge_chunks(
                self.engine.store.clone(),
                &self.keys,
                &from,
                &to,
                limits.max_bytes_per_batch,
            )
            .await?;
            balanced
                .written
                .extend(
                    written
                        .into_iter()
                        .map(|(index, requests, bytes)| ChunkPlan {
                            index,
                            endpoint: endpoint.to_string(),
                            model: model.to_string(),
                            requests,
                            bytes,
                            estimate: estimate.map(|e| e.share(requests, total_requests)),
                        }),
                );
            balanced.replaced.extend(from);
        }
        Ok(balanced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(min: u64, max: u64) -> ChunkLimits {
        ChunkLimits {
            min_requests_per_batch: min,
            max_requests_per_batch: max,
            max_bytes_per_batch: 1 << 40,
            max_line_bytes: 1 << 20,
        }
    }

    #[test]
    fn a_remainder_below_the_minimum_is_shared_out() {
        // 100,050 requests: 50,000 + 50,000 + 50 would leave 50 below the minimum.
        assert_eq!(
            cut(100_050, 1_000, &limits(100, 50_000)),
            [33_350, 33_350, 33_350]
        );
    }

    #[test]
    fn chunks_never_fall_below_the_minimum() {
        for requests in [100, 101, 199, 250, 50_001, 99_999, 100_100] {
            let sizes = cut(requests, 1, &limits(100, 50_000));
            assert_eq!(sizes.iter().sum::<u64>(), requests);
            assert!(
                sizes.iter().all(|&n| (100..=50_000).contains(&n)),
                "{requests}: {sizes:?}"
            );
        }
    }

    #[test]
    fn the_byte_limit_adds_chunks() {
        let mut l = limits(10, 1_000);
        l.max_bytes_per_batch = 100;
        assert_eq!(cut(40, 250, &l), [14, 13, 13]);
    }
}
