//! A chunk below the provider's batch minimum (a small file, a retry remainder): not a batch.
//! As the route says ([`BelowMinimum`]), its requests go one by one through the provider's
//! synchronous API ([`Provider::invoke`]) at the on-demand price, or fail with `below_minimum`.
//!
//! The answers are written, in chunk order, as one result file in the job's own state
//! (`output/<chunk>/on-demand.jsonl`) and collected like a batch's ([`super::collect`]): the
//! same matching, retry and output rules. A request that got no answer (throttled past the
//! client's own retries, a transport failure) is left out of the file, so it counts as a
//! missing result and goes again in a follow-up chunk while attempts remain.
//!
//! Crash safety: the chunk is marked `Submitting` and `on_demand` before the first request; a
//! crash before the result file is saved sends the chunk's requests again (at most the
//! provider's minimum less one, never a whole batch).

use super::JobError;
use super::collect::Ending;
use super::run::JobRun;
use crate::chunk_files::ChunkRows;
use crate::manifest::{ChunkState, Manifest};
use crate::provider::{BatchError, BatchInfo, BatchState, Provider, RequestCounts, ResultFile};
use crate::route::BelowMinimum;
use crate::store::PutMode;
use crate::writer::StreamWriter;
use futures::StreamExt;

/// Requests of one chunk sent at once on demand.
pub const ON_DEMAND_CONCURRENCY: usize = 4;

impl JobRun<'_> {
    /// Whether staged chunk `i` holds fewer requests than its route's batch minimum.
    pub(super) fn below_minimum(&self, manifest: &Manifest, i: usize) -> Option<BelowMinimum> {
        let route = self.engine.config.route(&manifest.route)?;
        let chunk = &manifest.chunks[i];
        (chunk.on_demand || chunk.plan.requests < route.limits.min_requests_per_batch)
            .then_some(route.below_minimum)
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
        // Intent first: a crash from here on sends the chunk on demand again.
        let chunk = &mut manifest.chunks[i];
        chunk.state = ChunkState::Submitting;
        chunk.on_demand = true;
        chunk.submit_started_at = Some(self.engine.clock.now().unix_timestamp());
        self.save(manifest).await?;

        let index = manifest.chunks[i].plan.index;
        let model = manifest.chunks[i].plan.model.clone();
        let store = self.engine.store.clone();
        let results = format!("{}on-demand.jsonl", self.keys.provider_output(index));
        let mut requests = Vec::new();
        let mut rows = ChunkRows::open(store.as_ref(), &self.keys, index).await?;
        while let Some(row) = rows.next().await? {
            requests.push(row.request.trim_ascii_end().to_vec());
        }
        let total = requests.len() as u64;
        let mut answers = futures::stream::iter(requests)
            .map(|request| {
                let model = &model;
                async move { provider.invoke(model, &request).await }
            })
            .buffered(ON_DEMAND_CONCURRENCY);
        let mut out = StreamWriter::open(store.clone(), results.clone(), PutMode::Overwrite);
        let mut unanswered = 0u64;
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
        let info = BatchInfo {
            id: format!("on-demand-{index}"),
            status: "on_demand".into(),
            state: BatchState::Completed,
            result_files: vec![ResultFile::Bucket(results)],
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
