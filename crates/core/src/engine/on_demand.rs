//! A chunk below the provider's batch minimum (a small file, a retry remainder): not a batch.
//! As the route says ([`BelowMinimum`]), its requests go one by one through the provider's
//! synchronous API ([`Provider::invoke`]) at the on-demand price, or fail with `below_minimum`.
//!
//! The answers are saved as they come, in pieces of [`ON_DEMAND_PIECE`] requests in chunk
//! order (`output/<chunk>/on-demand/part-<first position>-<count>.jsonl` in the job's state),
//! and collected like a batch's results ([`super::collect`]): the same matching, retry and
//! output rules. A request that got no answer (throttled past the client's own retries, a
//! transport failure) is left out of its piece, so it counts as a missing result and goes
//! again in a follow-up chunk while attempts remain.
//!
//! Crash and deadline safety: the chunk is marked `Submitting` and `on_demand` before the
//! first request. Near the invocation's deadline no new piece starts; the next advance goes
//! on from the first piece not saved, and so does a run after a crash: only the requests of
//! the piece in flight are asked again, and no answer is recorded twice. A job cancelled
//! meanwhile keeps the saved answers; its other requests are never sent (`batch_cancelled`).

use super::JobError;
use super::collect::Ending;
use super::run::JobRun;
use crate::chunk_files::ChunkRows;
use crate::manifest::{ChunkState, Manifest};
use crate::provider::{BatchError, BatchInfo, BatchState, Provider, RequestCounts, ResultFile};
use crate::providers;
use crate::route::BelowMinimum;
use crate::store::PutMode;
use crate::writer::StreamWriter;
use futures::StreamExt;
use std::collections::BTreeSet;

/// Requests of one chunk sent at once on demand, unless the route says (`max_concurrency`).
pub const ON_DEMAND_CONCURRENCY: usize = 4;
/// Requests answered between two saves of their answers (or four per slot, if more): at
/// most what a crash asks again.
pub const ON_DEMAND_PIECE: usize = 16;

/// The name of the piece holding the answers of `count` requests from position `start` on.
fn piece_name(start: u64, count: u64) -> String {
    format!("part-{start:08}-{count:06}.jsonl")
}

/// The (start, count) of a saved piece, from its key.
fn piece_of(prefix: &str, key: &str) -> Option<(u64, u64)> {
    let (start, count) = key
        .strip_prefix(prefix)?
        .strip_prefix("part-")?
        .strip_suffix(".jsonl")?
        .split_once('-')?;
    Some((start.parse().ok()?, count.parse().ok()?))
}

impl JobRun<'_> {
    /// Whether chunk `i` goes request by request: it holds fewer requests than its route's
    /// batch minimum, or the provider has no batch API (then always on demand).
    pub(super) fn below_minimum(&self, manifest: &Manifest, i: usize) -> Option<BelowMinimum> {
        let route = self.engine.config.route(&manifest.route)?;
        if providers::get(&route.provider).is_ok_and(|e| !e.batches) {
            return Some(BelowMinimum::OnDemand);
        }
        let chunk = &manifest.chunks[i];
        // Already on its way, or past the job's deadline cutoff before it was sent.
        if chunk.on_demand
            || (chunk.state == ChunkState::Staged && super::deadline::is_cut(manifest))
        {
            return Some(BelowMinimum::OnDemand);
        }
        (chunk.plan.requests < route.limits.min_requests_per_batch).then_some(route.below_minimum)
    }

    /// Sends chunk `i` on demand, or fails it, as `policy` says; then collects it.
    pub(super) async fn below_minimum_step(
        &mut self,
        manifest: &mut Manifest,
        i: usize,
        provider: &dyn Provider,
        policy: BelowMinimum,
    ) -> Result<(), JobError> {
        if policy == BelowMinimum::Fail {
            let minimum = self
                .engine
                .config
                .route(&manifest.route)
                .map_or(0, |r| r.limits.min_requests_per_batch);
            let message = format!(
                "the chunk holds {} requests, fewer than the provider's minimum of {minimum} per batch, and the route says below_minimum = \"fail\"",
                manifest.chunks[i].plan.requests
            );
            let ending = Ending::NeverSent {
                state: BatchState::Failed,
                status: "below_minimum",
                error: Some(BatchError {
                    code: "below_minimum".into(),
                    message,
                    line: None,
                }),
            };
            return self.collect(manifest, i, provider, ending).await;
        }
        // Intent first: from here on the chunk goes on demand, also after a crash.
        if manifest.chunks[i].state != ChunkState::Submitting || !manifest.chunks[i].on_demand {
            let chunk = &mut manifest.chunks[i];
            chunk.state = ChunkState::Submitting;
            chunk.on_demand = true;
            chunk.submit_started_at = Some(self.engine.clock.now().unix_timestamp());
            self.save(manifest).await?;
        }
        let index = manifest.chunks[i].plan.index;
        let model = manifest.chunks[i].plan.model.clone();
        let store = self.engine.store.clone();
        let prefix = format!("{}on-demand/", self.keys.provider_output(index));
        // The pieces an earlier run saved: their requests are answered.
        let saved: BTreeSet<(u64, u64)> = store
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|m| piece_of(&prefix, &m.key))
            .collect();
        let concurrency = self
            .engine
            .config
            .route(&manifest.route)
            .and_then(|r| r.max_concurrency)
            .map_or(ON_DEMAND_CONCURRENCY, |n| n as usize);
        // A piece keeps every slot busy: at least four requests per slot.
        let piece = ON_DEMAND_PIECE.max(4 * concurrency) as u64;
        let mut rows = ChunkRows::open(store.as_ref(), &self.keys, index).await?;
        let (mut position, mut total, mut unanswered) = (0u64, 0u64, 0u64);
        let mut cancelled = false;
        loop {
            let mut window = Vec::with_capacity(piece as usize);
            while (window.len() as u64) < piece {
                let Some(row) = rows.next().await? else { break };
                window.push(row.request.trim_ascii_end().to_vec());
            }
            if window.is_empty() {
                break;
            }
            let start = position;
            position += window.len() as u64;
            total += window.len() as u64;
            if saved.contains(&(start, window.len() as u64)) {
                continue;
            }
            if manifest.cancel_requested.is_some() {
                // What is saved is kept; the rest is never sent.
                cancelled = true;
                break;
            }
            if self.engine.near_deadline() {
                // The next advance goes on from the first piece not saved.
                return Ok(());
            }
            self.keep_lease(manifest).await?;
            let mut answers = futures::stream::iter(window)
                .map(|request| {
                    let model = &model;
                    async move { provider.invoke(model, &request).await }
                })
                .buffered(concurrency);
            let mut out = StreamWriter::open(
                store.clone(),
                format!("{prefix}{}", piece_name(start, position - start)),
                PutMode::Overwrite,
            );
            while let Some(answer) = answers.next().await {
                match answer {
                    Ok(line) => {
                        out.write(line.trim_ascii_end()).await?;
                        out.write(b"\n").await?;
                    }
                    Err(e) => {
                        unanswered += 1;
                        tracing::warn!(job_id = %manifest.job_id, chunk = index, error = %e, "a request sent on demand got no answer");
                    }
                }
            }
            out.finish().await?;
        }
        // Every piece saved, in order (a piece cut otherwise by an earlier run may overlap
        // another: collect keeps the first answer of a request and ignores the second).
        let pieces = store
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|m| piece_of(&prefix, &m.key).map(|at| (at, m.key)))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_values()
            .map(ResultFile::Bucket)
            .collect();
        let (state, status) = if cancelled {
            (BatchState::Cancelled, "cancelled")
        } else {
            (BatchState::Completed, "on_demand")
        };
        let info = BatchInfo {
            id: format!("on-demand-{index}"),
            status: status.into(),
            state,
            result_files: pieces,
            errors: Vec::new(),
            counts: RequestCounts {
                total,
                completed: total - unanswered,
                failed: unanswered,
            },
        };
        manifest.chunks[i].batch_id = Some(info.id.clone());
        self.collect(manifest, i, provider, Ending::Batch(&info))
            .await
    }
}
