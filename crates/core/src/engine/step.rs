//! The steps of one chunk: staged → submitting → submitted → collected. A staged chunk goes
//! out when the route's cap on batches in flight and the provider's queue allow
//! ([`JobRun::may_submit`]); an
//! interrupted submit looks for its batch before sending again; a submitted batch is watched
//! (and cancelled when the job is) until it ends and is collected ([`super::collect`]); the
//! requests worth another attempt go into a follow-up chunk ([`JobRun::stage_retry`]). A chunk
//! below the provider's batch minimum goes another way ([`super::on_demand`]).

use super::JobError;
use super::collect::Ending;
use super::events::JobEvent;
use super::run::{JobRun, next_chunk_index};
use crate::chunk_files::copy_chunk;
use crate::manifest::{ChunkPlan, ChunkRecord, ChunkState, Manifest};
use crate::provider::{
    BatchLookup, ChunkUpload, Location, Provider, StoredBody, Submitted, submit_token,
};
use crate::route::BelowMinimum;

impl JobRun<'_> {
    /// Moves chunk `i` one step, if it can move now.
    pub(super) async fn step_chunk(
        &mut self,
        manifest: &mut Manifest,
        i: usize,
        provider: &dyn Provider,
    ) -> Result<(), JobError> {
        let engine = self.engine;
        let job_id = manifest.job_id.clone();
        let chunk = &manifest.chunks[i];
        match chunk.state {
            ChunkState::Collected => Ok(()),
            ChunkState::Staged if manifest.cancel_requested.is_some() => {
                // Never sent: nothing to cancel at the provider.
                self.collect(manifest, i, provider, Ending::cancelled_unsent())
                    .await
            }
            ChunkState::Staged | ChunkState::Submitting
                if self.below_minimum(manifest, i).is_some() =>
            {
                let policy = self.below_minimum(manifest, i).unwrap_or_default();
                self.below_minimum_step(manifest, i, provider, policy).await
            }
            ChunkState::Staged if !self.may_submit(manifest, i).await? => Ok(()),
            ChunkState::Staged | ChunkState::Submitting => {
                let index = chunk.plan.index;
                let token = submit_token(&job_id, index);
                if chunk.state == ChunkState::Submitting {
                    // A submit began and its outcome was not saved: the batch may exist.
                    let exclude: Vec<String> = manifest
                        .chunks
                        .iter()
                        .filter_map(|c| c.batch_id.clone())
                        .collect();
                    let found = provider
                        .find_batch(BatchLookup {
                            job_id: &job_id,
                            chunk: index,
                            token: &token,
                            since: chunk.submit_started_at.unwrap_or(0),
                            requests: chunk.plan.requests,
                            exclude: &exclude,
                        })
                        .await?;
                    if let Some(submitted) = found {
                        tracing::info!(job_id, chunk = index, batch_id = %submitted.batch_id, "found the batch of an interrupted submit");
                        return self.submitted(manifest, i, submitted).await;
                    }
                    if manifest.cancel_requested.is_some() {
                        return self
                            .collect(manifest, i, provider, Ending::cancelled_unsent())
                            .await;
                    }
                    if super::deadline::is_cut(manifest) {
                        // No batch was made, and the job is past its cutoff: the lane.
                        return self
                            .below_minimum_step(manifest, i, provider, BelowMinimum::OnDemand)
                            .await;
                    }
                }
                if chunk.state == ChunkState::Staged {
                    self.prime(manifest, i, provider).await?;
                }
                // Intent first: from here on, a crash leaves `Submitting` behind.
                let chunk = &mut manifest.chunks[i];
                chunk.state = ChunkState::Submitting;
                chunk.submit_started_at = Some(engine.clock.now().unix_timestamp());
                self.save(manifest).await?;
                let chunk = &manifest.chunks[i];
                let body = StoredBody {
                    store: engine.store.clone(),
                    key: self.keys.chunk(index),
                };
                let output = self.keys.provider_output(index);
                let upload = ChunkUpload {
                    job_id: &job_id,
                    chunk: index,
                    endpoint: &chunk.plan.endpoint,
                    model: &chunk.plan.model,
                    body: &body,
                    location: Location {
                        bucket: &engine.bucket,
                        key: &body.key,
                    },
                    output: Location {
                        bucket: &engine.bucket,
                        key: &output,
                    },
                    token: &token,
                    bytes: chunk.plan.bytes,
                    requests: chunk.plan.requests,
                };
                match provider.submit(upload).await {
                    Ok(submitted) => self.submitted(manifest, i, submitted).await,
                    Err(e) if e.is_retryable() => Err(e.into()),
                    Err(e) => {
                        // The provider refused the batch for good: its requests fail, the job goes on.
                        self.collect(manifest, i, provider, Ending::refused(&e))
                            .await
                    }
                }
            }
            ChunkState::Submitted => {
                let batch_id = chunk.batch_id.clone().unwrap_or_default();
                // Cancelled by the user, or given up at the deadline cutoff (its unanswered
                // requests then go through the synchronous lane).
                let cut = super::deadline::is_cut(manifest) && !chunk.on_demand;
                if (manifest.cancel_requested.is_some() || cut) && !chunk.cancel_sent {
                    self.acquire(manifest).await?;
                    match provider.cancel(&batch_id).await {
                        Ok(_) => {}
                        Err(e) if e.is_retryable() => return Err(e.into()),
                        // Typically: the batch ended meanwhile. It is collected as it is.
                        Err(e) => {
                            tracing::info!(job_id, batch_id, error = %e, "batch not cancelled")
                        }
                    }
                    manifest.chunks[i].cancel_sent = true;
                    manifest.chunks[i].deadline_cut = cut && manifest.cancel_requested.is_none();
                    self.save(manifest).await?;
                }
                let info = provider.batch(&batch_id).await?;
                if info.state.is_terminal() {
                    return self
                        .collect(manifest, i, provider, Ending::Batch(&info))
                        .await;
                }
                let chunk = &mut manifest.chunks[i];
                if chunk.provider_status.as_deref() != Some(info.status.as_str()) {
                    chunk.provider_status = Some(info.status.clone());
                    let index = chunk.plan.index;
                    self.save(manifest).await?;
                    engine.observer.event(&JobEvent::BatchProgress {
                        job_id,
                        chunk: index,
                        batch_id,
                        status: info.status,
                        completed: info.counts.completed,
                        failed: info.counts.failed,
                        total: info.counts.total,
                    });
                }
                Ok(())
            }
        }
    }

    /// Whether a staged chunk may go out now: not while a capacity refusal waits for the job's
    /// other batches to drain, nor while the provider's queue for its model is full
    /// (`max_enqueued_tokens`, [`super::admission`]), nor beyond the route's cap on batches in
    /// flight.
    async fn may_submit(&self, manifest: &Manifest, i: usize) -> Result<bool, JobError> {
        let in_flight_here = batches_in_flight(manifest);
        if manifest.chunks[i].after_drain && in_flight_here > 0 {
            return Ok(false);
        }
        let Some(route) = self.engine.config.route(&manifest.route) else {
            return Ok(true);
        };
        let cap = route.max_batches_in_flight;
        if cap.is_none() && route.spend.max_enqueued_tokens.is_none() {
            return Ok(true);
        }
        // The route's other unfinished jobs, read once for both caps.
        let others = self
            .engine
            .other_active_jobs(&manifest.route, &manifest.job_id)
            .await?;
        if let Some(queued) = super::admission::queue_full(manifest, i, route, &others) {
            tracing::debug!(
                job_id = manifest.job_id,
                chunk = manifest.chunks[i].plan.index,
                in_flight = queued.in_flight,
                tokens = queued.chunk,
                limit = queued.limit,
                "chunk waits for the provider's queue"
            );
            return Ok(false);
        }
        let Some(cap) = cap else {
            return Ok(true);
        };
        let elsewhere: usize = others.iter().map(batches_in_flight).sum();
        Ok(in_flight_here + elsewhere < cap as usize)
    }

    /// Records a created batch.
    async fn submitted(
        &mut self,
        manifest: &mut Manifest,
        i: usize,
        submitted: Submitted,
    ) -> Result<(), JobError> {
        // The batch → job index first: an event naming the batch finds the job as soon as
        // the manifest says the batch exists.
        let owner = crate::batch_index::BatchOwner {
            job_id: manifest.job_id.clone(),
            route: manifest.route.clone(),
            chunk: manifest.chunks[i].plan.index,
        };
        crate::batch_index::record(
            self.engine.store.as_ref(),
            &manifest.provider,
            &submitted.batch_id,
            &owner,
        )
        .await?;
        let chunk = &mut manifest.chunks[i];
        chunk.state = ChunkState::Submitted;
        chunk.batch_id = Some(submitted.batch_id.clone());
        chunk.input_file_id = submitted.input_file_id;
        chunk.provider_status = Some("submitted".into());
        let (index, requests) = (chunk.plan.index, chunk.plan.requests);
        self.save(manifest).await?;
        self.engine.observer.event(&JobEvent::BatchSubmitted {
            job_id: manifest.job_id.clone(),
            chunk: index,
            batch_id: submitted.batch_id,
            requests,
        });
        Ok(())
    }

    /// Stages a follow-up chunk with the requests of chunk `i` at `positions` (ascending),
    /// exactly as they were sent, with their input line numbers.
    pub(super) async fn stage_retry(
        &mut self,
        manifest: &mut Manifest,
        i: usize,
        positions: &[usize],
        after_drain: bool,
    ) -> Result<(), JobError> {
        let store = self.engine.store.clone();
        let parent = manifest.chunks[i].clone();
        let index = next_chunk_index(manifest);
        let (_, bytes) = copy_chunk(store, &self.keys, parent.plan.index, index, |p, _| {
            positions.binary_search(&p).is_ok()
        })
        .await?;
        let mut record = ChunkRecord::staged(ChunkPlan {
            index,
            endpoint: parent.plan.endpoint.clone(),
            model: parent.plan.model.clone(),
            requests: positions.len() as u64,
            bytes,
            estimate: parent
                .plan
                .estimate
                .map(|e| e.share(positions.len() as u64, parent.plan.requests)),
        });
        record.attempt = parent.attempt + 1;
        record.retry_of = Some(parent.plan.index);
        record.after_drain = after_drain;
        manifest.chunks.push(record);
        manifest.counts.retried += positions.len() as u64;
        Ok(())
    }
}

/// Chunks of `manifest` being submitted or at the provider.
fn batches_in_flight(manifest: &Manifest) -> usize {
    manifest
        .chunks
        .iter()
        .filter(|c| matches!(c.state, ChunkState::Submitted | ChunkState::Submitting))
        .count()
}
