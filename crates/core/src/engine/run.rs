//! One advance of one job ([`JobRun`]): the order of its steps, and the job's lease.
//!
//! Looking at batches needs no lease; the first write or side effect takes it
//! ([`JobRun::acquire`]: compare-and-swap on the manifest), every save renews it, and the end
//! of the advance gives it back ([`JobRun::release`]). A change that must not be seen half
//! done goes through [`JobRun::update`]: worked out on a copy, saved, then taken.

use super::{Advance, Engine, JobError, LEASE};
use crate::layout::JobKeys;
use crate::manifest::{ChunkState, JobStatus, Lease, Manifest};
use crate::provider::Provider;
use crate::store::{ObjectStoreExt, PutMode, StoreError};
use crate::summary::summary;

/// One advance of one job (lease rules: see the module doc). An advance with nothing to do
/// writes nothing.
pub(super) struct JobRun<'e> {
    pub(super) engine: &'e Engine,
    pub(super) keys: JobKeys,
    /// The manifest's ETag as this advance last read or wrote it.
    pub(super) etag: String,
    /// Whether this advance holds the lease.
    pub(super) leased: bool,
}

impl JobRun<'_> {
    /// Moves the job as far as it can go now: planning, the spending check, the deadline,
    /// each chunk one step, the end.
    pub(super) async fn run(
        &mut self,
        manifest: &mut Manifest,
        provider: &dyn Provider,
    ) -> Result<Advance, JobError> {
        if manifest.planning.is_some() && !self.plan(manifest).await? {
            return Ok(match manifest.status {
                JobStatus::Running => Advance::Running,
                done => Advance::Finished(done),
            });
        }
        self.check_budget(manifest, provider).await?;
        self.check_deadline(manifest).await?;
        // Follow-up chunks staged on the way are taken in the same pass.
        let mut i = 0;
        while i < manifest.chunks.len() {
            if self.engine.near_deadline() {
                return Ok(Advance::Running);
            }
            self.step_chunk(manifest, i, provider).await?;
            i += 1;
        }
        if manifest
            .chunks
            .iter()
            .all(|c| c.state == ChunkState::Collected)
        {
            self.finish(manifest).await?;
            return Ok(Advance::Finished(manifest.status));
        }
        Ok(Advance::Running)
    }

    /// Renews the lease when half of it is gone (a long planning holds the job throughout).
    pub(super) async fn keep_lease(&mut self, manifest: &mut Manifest) -> Result<(), JobError> {
        let now = self.engine.clock.now().unix_timestamp();
        let half = (LEASE.as_secs() / 2) as i64;
        if manifest.lease.as_ref().is_none_or(|l| l.until - now < half) {
            self.save(manifest).await?;
        }
        Ok(())
    }

    /// Takes the lease before a side effect, if this advance does not hold it yet.
    pub(super) async fn acquire(&mut self, manifest: &mut Manifest) -> Result<(), JobError> {
        if self.leased {
            return Ok(());
        }
        self.save(manifest).await
    }

    /// Gives the lease back (a finished job's last save already dropped it).
    pub(super) async fn release(&mut self, manifest: &mut Manifest) -> Result<(), JobError> {
        if !self.leased || manifest.lease.is_none() {
            return Ok(());
        }
        manifest.lease = None;
        self.write(manifest).await?;
        self.leased = false;
        Ok(())
    }

    /// Writes the manifest back holding (and renewing) the lease; fails if anyone else wrote it
    /// meanwhile.
    pub(super) async fn save(&mut self, manifest: &mut Manifest) -> Result<(), JobError> {
        let engine = self.engine;
        manifest.lease = if manifest.status.is_finished() {
            None
        } else {
            Some(Lease {
                owner: engine.owner.clone(),
                until: engine.clock.now().unix_timestamp() + LEASE.as_secs() as i64,
            })
        };
        self.write(manifest).await?;
        self.leased = true;
        Ok(())
    }

    /// Writes the manifest back as it is (compare-and-swap on the ETag last seen).
    async fn write(&mut self, manifest: &Manifest) -> Result<(), JobError> {
        let engine = self.engine;
        match engine
            .store
            .put_json(
                &self.keys.manifest(),
                manifest,
                PutMode::Update(self.etag.clone()),
            )
            .await
        {
            Ok(meta) => {
                self.etag = meta.etag;
                Ok(())
            }
            Err(StoreError::Precondition { .. }) => Err(JobError::LostLease {
                job_id: manifest.job_id.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Changes `manifest` on a copy and saves the copy; `manifest` takes the change only once
    /// it is saved. With `summary_at`, the copy's summary.json is written there first (a
    /// finished job has its summary before its manifest says it is finished). Any failure
    /// leaves `manifest` as last saved, and the next advance does the change again.
    pub(super) async fn update(
        &mut self,
        manifest: &mut Manifest,
        change: impl FnOnce(&mut Manifest),
        summary_at: Option<&str>,
    ) -> Result<(), JobError> {
        let mut changed = manifest.clone();
        change(&mut changed);
        if let Some(key) = summary_at {
            let engine = self.engine;
            let summary = summary(&changed, &engine.config);
            engine
                .store
                .put_json(key, &summary, PutMode::Overwrite)
                .await?;
        }
        self.save(&mut changed).await?;
        *manifest = changed;
        Ok(())
    }
}

/// The index the next new chunk of a job gets.
pub(super) fn next_chunk_index(manifest: &Manifest) -> u32 {
    manifest
        .chunks
        .iter()
        .map(|c| c.plan.index + 1)
        .max()
        .unwrap_or(0)
}
