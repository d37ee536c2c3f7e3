//! The job engine: what submit and poll do, over the store, provider and clock ports.
//!
//! - [`Engine::submit`] turns a new upload into a job: it creates the manifest (conditional
//!   create: a duplicate event finds the job and does nothing new), then
//!   [`Engine::advance`]s it, which first plans the upload: validate every line, stage chunks
//!   under `_batchdrop/jobs/<id>/`. Planning stops near the invocation's deadline
//!   ([`Engine::until`]) with a checkpoint in the manifest; the next advance continues it.
//! - [`Engine::poll`] advances every job listed under `_batchdrop/active/`; finished jobs are
//!   not listed there, so they cost nothing.
//! - [`Engine::advance`] takes the job's lease (compare-and-swap on the manifest), moves each
//!   chunk one step (staged → submitted → collected), and when all are collected writes
//!   `output.jsonl`, `errors.jsonl` and, last, `summary.json`.

use crate::clock::{Clock, rfc3339};
use crate::config::{Config, Wire};
use crate::ids;
use crate::input::{RejectCode, Rejection};
use crate::layout::{self, InboxKey, JobKeys};
use crate::manifest::{
    ChunkPlan, ChunkRecord, ChunkState, Counts, InputRef, JobStatus, Lease, Manifest, PlanCursor, Usage,
};
use crate::summary::summary;
use crate::provider::{
    BatchError, BatchInfo, BatchLookup, BatchState, ChunkUpload, Provider, ProviderError,
    Providers, RequestCounts, StoredBody, Submitted,
};
use crate::staging::Stager;
use crate::store::{
    ObjectStore, ObjectStoreExt, PutMode, StoreError, StreamLines, lines_of, read_ahead,
};
use crate::wire;
use crate::writer::StreamWriter;
use futures::{StreamExt, TryStreamExt};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::io::AsyncBufReadExt;

/// How long a lease on a job lasts without being renewed.
pub const LEASE: Duration = Duration::from_secs(300);
/// Time kept in hand before an invocation's deadline: enough to seal the open chunks and save a
/// checkpoint (at most a quarter of the invocation).
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(30);
/// Chunks copied at once when reused ids are taken out.
const COPY_CONCURRENCY: usize = 4;
/// Pieces of the upload read ahead of planning.
const READ_AHEAD: usize = 4;
/// Lines planned between two looks at the deadline and the lease.
pub const PLAN_CHECK_LINES: u64 = 1024;
/// Jobs advanced at once by one poll.
pub const POLL_CONCURRENCY: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("job {job_id}: manifest changed under us (another worker took over)")]
    LostLease { job_id: String },
}

impl JobError {
    pub fn is_retryable(&self) -> bool {
        match self {
            JobError::Store(e) => e.is_retryable(),
            JobError::Provider(e) => e.is_retryable(),
            JobError::LostLease { .. } => true,
        }
    }
}

/// What happened to an object that reached submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// Not an upload batchdrop handles (outside `inbox/`, not `.jsonl`, …).
    Ignored {
        reason: String,
    },
    /// This version of the object already has a job.
    Duplicate {
        job_id: String,
    },
    /// The object changed since the event was sent; the newer version has its own event.
    Superseded,
    Started {
        job_id: String,
    },
}

/// Something worth telling a person watching (local mode prints these; Lambda logs them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// Planning of an upload begins (`from_line` 0) or continues after a checkpoint.
    Planning {
        job_id: String,
        key: String,
        from_line: u64,
    },
    /// Planning stopped near the invocation's deadline; the next advance continues it.
    PlanningPaused {
        job_id: String,
        lines: u64,
        offset: u64,
        bytes: u64,
    },
    /// The whole upload is planned: what it counted and how many chunks it staged.
    Started {
        job_id: String,
        key: String,
        counts: Counts,
        chunks: usize,
    },
    BatchSubmitted {
        job_id: String,
        chunk: u32,
        batch_id: String,
        requests: u64,
    },
    BatchProgress {
        job_id: String,
        chunk: u32,
        batch_id: String,
        status: String,
        completed: u64,
        failed: u64,
        total: u64,
    },
    BatchCollected {
        job_id: String,
        chunk: u32,
        batch_id: String,
        status: String,
        succeeded: u64,
        failed: u64,
    },
    Finished {
        job_id: String,
        status: JobStatus,
        results_prefix: String,
        counts: Counts,
        reason: Option<String>,
    },
}

pub trait Observer: Send + Sync {
    fn event(&self, event: &JobEvent);
}

/// Logs events with `tracing`.
#[derive(Debug, Default)]
pub struct LogObserver;

impl Observer for LogObserver {
    fn event(&self, event: &JobEvent) {
        tracing::info!(?event, "batchdrop");
    }
}

/// What one poll did.
#[derive(Debug, Default)]
pub struct PollReport {
    pub active: usize,
    pub finished: Vec<String>,
    pub busy: usize,
    pub failures: Vec<(String, JobError)>,
}

/// What one advance did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// Another worker holds the job's lease.
    Busy,
    Running,
    Finished(JobStatus),
}

#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    config: Arc<Config>,
    providers: Arc<dyn Providers>,
    clock: Arc<dyn Clock>,
    observer: Arc<dyn Observer>,
    owner: String,
    /// When this invocation stops starting work (see [`Engine::until`]).
    stop_at: Option<OffsetDateTime>,
}

impl Engine {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        bucket: impl Into<String>,
        config: Arc<Config>,
        providers: Arc<dyn Providers>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            bucket: bucket.into(),
            config,
            providers,
            clock,
            observer: Arc::new(LogObserver),
            owner: format!("worker-{:016x}", fastrand::u64(..)),
            stop_at: None,
        }
    }

    /// The same engine for one invocation that must end by `deadline` (a Lambda's): planning
    /// checkpoints and stops, and no new batch is sent, once less than [`DEADLINE_MARGIN`] (or
    /// a quarter of the time left now, if that is less) remains. The next poll continues.
    pub fn until(&self, deadline: OffsetDateTime) -> Engine {
        let left = (deadline - self.clock.now()).max(time::Duration::ZERO);
        let most = time::Duration::seconds(DEADLINE_MARGIN.as_secs() as i64);
        let margin: time::Duration = (left / 4_i32).min(most);
        Engine {
            stop_at: Some(deadline - margin),
            ..self.clone()
        }
    }

    /// Whether this invocation should stop starting work.
    fn near_deadline(&self) -> bool {
        self.stop_at.is_some_and(|at| self.clock.now() >= at)
    }

    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// The lease owner name; a process that restarts under the same name gets its leases back.
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Handles one created object (key already decoded). `event_etag` is the ETag the event
    /// carried, if any.
    pub async fn submit(
        &self,
        key: &str,
        event_etag: Option<&str>,
    ) -> Result<SubmitOutcome, JobError> {
        let Some(inbox) = InboxKey::parse(key) else {
            return Ok(SubmitOutcome::Ignored {
                reason: format!("{key:?} is not inbox/<route>/<path>.jsonl"),
            });
        };
        let head = match self.store.head(key).await {
            Ok(head) => head,
            Err(StoreError::NotFound { .. }) => {
                return Ok(SubmitOutcome::Ignored {
                    reason: format!("{key:?} no longer exists"),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let etag = event_etag.map(|e| e.trim_matches('"').to_string());
        if etag.as_deref().is_some_and(|e| e != head.etag) {
            return Ok(SubmitOutcome::Superseded);
        }
        let job_id = layout::job_id(&self.bucket, key, &head.etag);
        let keys = JobKeys::new(&job_id);
        if self.store.exists(&keys.manifest()).await? {
            // The event again: the job exists and polls carry it on (a planning that stopped
            // or crashed continues from its checkpoint).
            return Ok(SubmitOutcome::Duplicate { job_id });
        }
        let mut manifest = Manifest {
            job_id: job_id.clone(),
            route: inbox.route.clone(),
            provider: String::new(),
            input: InputRef {
                bucket: self.bucket.clone(),
                key: key.to_string(),
                etag: head.etag.clone(),
                bytes: head.size,
            },
            results_prefix: inbox.results_prefix(),
            status: JobStatus::Running,
            reason: None,
            created_at: rfc3339(self.clock.now()),
            finished_at: None,
            counts: Counts::default(),
            max_attempts: 1,
            cancel_requested: None,
            planning: None,
            chunks: Vec::new(),
            lease: None,
        };

        let route = self.config.route(&inbox.route);
        let unusable = match route {
            None => Some((
                RejectCode::UnknownRoute,
                format!(
                    "route {:?} is not configured; configured routes: {}",
                    inbox.route,
                    self.config.route_names().join(", ")
                ),
            )),
            Some(_) => self.providers.for_route(&inbox.route).err().map(|reason| {
                (
                    RejectCode::UnknownRoute,
                    format!("route {:?} cannot be used: {reason}", inbox.route),
                )
            }),
        };
        if let Some((code, reason)) = unusable {
            return self.fail_whole_file(manifest, code, reason).await;
        }
        let route = route.expect("checked above");
        manifest.provider = route.wire.name().to_string();
        manifest.max_attempts = route.retries.max_attempts;
        manifest.planning = Some(PlanCursor::default());
        // The index entry first: a manifest is never unreachable from poll.
        self.store
            .put(
                &layout::active_key(&job_id),
                bytes::Bytes::new(),
                PutMode::Overwrite,
            )
            .await?;
        match self
            .store
            .put_json(&keys.manifest(), &manifest, PutMode::Create)
            .await
        {
            Ok(_) => {}
            Err(StoreError::AlreadyExists { .. }) => {
                return Ok(SubmitOutcome::Duplicate { job_id });
            }
            Err(e) => return Err(e.into()),
        }
        // An older upload of the same key still running is paying for results nobody will
        // see (they never reach results/): its batches are cancelled by its next advance.
        let superseded = self
            .ask_to_cancel(
                key,
                &format!("superseded: {key} was uploaded again"),
                Some(&job_id),
            )
            .await?;
        for old in &superseded {
            tracing::info!(job_id = old, by = job_id, "superseded job asked to cancel");
        }
        self.advance(&job_id).await?;
        Ok(SubmitOutcome::Started { job_id })
    }

    /// A file that cannot be run at all: every non-blank line is rejected with `reason`, and the
    /// job is written out as failed at once.
    async fn fail_whole_file(
        &self,
        mut manifest: Manifest,
        code: RejectCode,
        reason: String,
    ) -> Result<SubmitOutcome, JobError> {
        let keys = JobKeys::new(&manifest.job_id);
        let (_, mut reader) = self.store.reader(&manifest.input.key).await?;
        let mut errors = StreamWriter::open(
            self.store.clone(),
            format!("{}errors.jsonl", manifest.results_prefix),
            PutMode::Overwrite,
        );
        let mut line = Vec::new();
        let mut line_no = 0;
        loop {
            line.clear();
            if reader
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| StoreError::Io {
                    key: manifest.input.key.clone(),
                    source: e,
                })?
                == 0
            {
                break;
            }
            line_no += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            manifest.counts.lines += 1;
            manifest.counts.rejected += 1;
            let rejection = Rejection {
                line: line_no,
                custom_id: custom_id_of(&line),
                code,
                message: reason.clone(),
            };
            errors.write(&rejection.to_json_line()).await?;
        }
        manifest.status = JobStatus::Failed;
        manifest.reason = Some(reason);
        manifest.finished_at = Some(rfc3339(self.clock.now()));
        // Results first, the manifest last: a crash before the manifest exists leaves nothing
        // that makes a retried event a `Duplicate`, so the retry writes the results again.
        self.store
            .put(
                &format!("{}output.jsonl", manifest.results_prefix),
                bytes::Bytes::new(),
                PutMode::Overwrite,
            )
            .await?;
        errors.finish().await?;
        self.store
            .put_json(
                &format!("{}summary.json", manifest.results_prefix),
                &summary(&manifest, &self.config),
                PutMode::Overwrite,
            )
            .await?;
        match self
            .store
            .put_json(&keys.manifest(), &manifest, PutMode::Create)
            .await
        {
            Ok(_) => {}
            Err(StoreError::AlreadyExists { .. }) => {
                return Ok(SubmitOutcome::Duplicate {
                    job_id: manifest.job_id,
                });
            }
            Err(e) => return Err(e.into()),
        }
        self.finished_event(&manifest);
        Ok(SubmitOutcome::Started {
            job_id: manifest.job_id,
        })
    }

    /// Asks every unfinished job of an upload to cancel. `key` is the `cancel/<route>/<path>.jsonl`
    /// object that asked, or the upload's own `inbox/…` key. The next advance cancels the
    /// job's batches at the provider, keeps what they finished, and finishes the job as
    /// `cancelled` with every unfinished request marked so in output.jsonl. Returns the ids of
    /// the jobs asked (none when nothing unfinished matches: a cancel after the end is a no-op).
    pub async fn cancel(&self, key: &str) -> Result<Vec<String>, JobError> {
        let inbox_key = match InboxKey::parse_cancel(key) {
            Some(k) => k.key(),
            None => key.to_string(),
        };
        let reason = format!("cancelled: {key} asked for it");
        let asked = self.ask_to_cancel(&inbox_key, &reason, None).await?;
        for job_id in &asked {
            // Best effort now; the next poll finishes what this could not.
            if let Err(e) = self.advance(job_id).await {
                tracing::warn!(job_id, error = %e, "cancel will be completed by the next poll");
            }
        }
        Ok(asked)
    }

    /// Sets `cancel_requested` on every unfinished job of the upload `inbox_key` but `except`;
    /// returns their ids. The next advance of each does the cancelling.
    async fn ask_to_cancel(
        &self,
        inbox_key: &str,
        reason: &str,
        except: Option<&str>,
    ) -> Result<Vec<String>, JobError> {
        let mut asked = Vec::new();
        for entry in self.store.list(layout::ACTIVE).await? {
            let Some(job_id) = entry.key.strip_prefix(layout::ACTIVE) else {
                continue;
            };
            if Some(job_id) == except {
                continue;
            }
            let manifest_key = JobKeys::new(job_id).manifest();
            // Compare-and-swap, again if another worker wrote in between.
            for _ in 0..5 {
                let (mut manifest, etag): (Manifest, String) =
                    match self.store.get_json(&manifest_key).await {
                        Ok(found) => found,
                        Err(StoreError::NotFound { .. }) => break,
                        Err(e) => return Err(e.into()),
                    };
                if manifest.input.key != inbox_key
                    || manifest.status.is_finished()
                    || manifest.cancel_requested.is_some()
                {
                    break;
                }
                manifest.cancel_requested = Some(reason.to_string());
                match self
                    .store
                    .put_json(&manifest_key, &manifest, PutMode::Update(etag))
                    .await
                {
                    Ok(_) => {
                        asked.push(job_id.to_string());
                        break;
                    }
                    Err(StoreError::Precondition { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(asked)
    }

    /// Advances every active job, a few at a time.
    pub async fn poll(&self) -> Result<PollReport, JobError> {
        let active = self.store.list(layout::ACTIVE).await?;
        let mut report = PollReport {
            active: active.len(),
            ..PollReport::default()
        };
        let ids: Vec<String> = active
            .into_iter()
            .filter_map(|m| m.key.strip_prefix(layout::ACTIVE).map(str::to_string))
            .collect();
        let mut results = futures::stream::iter(ids)
            .map(|id| async move {
                let r = self.advance(&id).await;
                (id, r)
            })
            .buffer_unordered(POLL_CONCURRENCY);
        while let Some((id, result)) = results.next().await {
            match result {
                Ok(Advance::Finished(_)) => report.finished.push(id),
                Ok(Advance::Busy) => report.busy += 1,
                Ok(Advance::Running) => {}
                Err(e) => report.failures.push((id, e)),
            }
        }
        Ok(report)
    }

    /// Moves one job as far as it can go now.
    pub async fn advance(&self, job_id: &str) -> Result<Advance, JobError> {
        let keys = JobKeys::new(job_id);
        let (mut manifest, etag): (Manifest, String) =
            match self.store.get_json(&keys.manifest()).await {
                Ok(found) => found,
                // Index entry written, manifest not (yet): submit is still planning, or crashed
                // before creating it (a retried event plans again).
                Err(StoreError::NotFound { .. }) => return Ok(Advance::Running),
                Err(e) => return Err(e.into()),
            };
        if manifest.status.is_finished() {
            self.store.delete(&layout::active_key(job_id)).await?;
            return Ok(Advance::Finished(manifest.status));
        }
        let now = self.clock.now().unix_timestamp();
        if let Some(lease) = &manifest.lease
            && lease.owner != self.owner
            && lease.until > now
        {
            return Ok(Advance::Busy);
        }
        let provider = match self.providers.for_route(&manifest.route) {
            Ok(p) => p,
            Err(reason) => {
                return Err(ProviderError::Unavailable { reason }.into());
            }
        };
        let mut job = JobRun {
            engine: self,
            keys,
            etag,
            leased: false,
        };
        let outcome = job.run(&mut manifest, provider.as_ref()).await;
        match outcome {
            // Someone else took the job between our read and our first write.
            Err(JobError::LostLease { .. }) if !job.leased => Ok(Advance::Busy),
            Err(e) => {
                // Leave the job for the next poll without making it wait for the lease.
                let _ = job.release(&mut manifest).await;
                Err(e)
            }
            Ok(advance) => {
                job.release(&mut manifest).await?;
                Ok(advance)
            }
        }
    }

    /// Batches of `route` in flight in active jobs other than `except`.
    async fn in_flight(&self, route: &str, except: &str) -> Result<usize, JobError> {
        let mut total = 0;
        for entry in self.store.list(layout::ACTIVE).await? {
            let Some(job_id) = entry.key.strip_prefix(layout::ACTIVE) else {
                continue;
            };
            if job_id == except {
                continue;
            }
            let manifest: Manifest =
                match self.store.get_json(&JobKeys::new(job_id).manifest()).await {
                    Ok((m, _)) => m,
                    Err(StoreError::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                };
            if manifest.route == route && !manifest.status.is_finished() {
                total += manifest
                    .chunks
                    .iter()
                    .filter(|c| matches!(c.state, ChunkState::Submitted | ChunkState::Submitting))
                    .count();
            }
        }
        Ok(total)
    }

    fn finished_event(&self, manifest: &Manifest) {
        self.observer.event(&JobEvent::Finished {
            job_id: manifest.job_id.clone(),
            status: manifest.status,
            results_prefix: manifest.results_prefix.clone(),
            counts: manifest.counts.clone(),
            reason: manifest.reason.clone(),
        });
    }
}

/// One advance of one job. Looking at batches needs no lease; the first write or side effect
/// takes it (compare-and-swap on the manifest), and the end of the advance gives it back. An
/// advance with nothing to do writes nothing.
struct JobRun<'e> {
    engine: &'e Engine,
    keys: JobKeys,
    etag: String,
    leased: bool,
}

impl JobRun<'_> {
    async fn run(
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

    /// Plans the upload from the manifest's checkpoint on: reads it, validates and stages its
    /// lines, until the end or the deadline. Returns whether the whole upload is planned.
    async fn plan(&mut self, manifest: &mut Manifest) -> Result<bool, JobError> {
        let engine = self.engine;
        let Some(cursor) = manifest.planning.clone() else {
            return Ok(true);
        };
        let Some(route) = engine.config.route(&manifest.route) else {
            return Err(ProviderError::Unavailable {
                reason: format!("route {:?} is no longer configured", manifest.route),
            }
            .into());
        };
        self.acquire(manifest).await?;
        if cursor.offset < manifest.input.bytes || cursor.segment == 0 {
            let key = manifest.input.key.clone();
            let got = match engine.store.get_from(&key, cursor.offset).await {
                Ok(got) if got.meta.etag == manifest.input.etag => got,
                Ok(_) | Err(StoreError::NotFound { .. }) => {
                    self.superseded_while_planning(manifest).await?;
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            };
            engine.observer.event(&JobEvent::Planning {
                job_id: manifest.job_id.clone(),
                key: key.clone(),
                from_line: cursor.line,
            });
            let mut stager = Stager::start(
                engine.store.clone(),
                self.keys.clone(),
                route,
                cursor.segment,
                next_chunk_index(manifest),
            )
            .await?;
            let mut lines = StreamLines::new(read_ahead(got.body, READ_AHEAD));
            let (mut offset, mut line_no) = (cursor.offset, cursor.line);
            let mut paused = false;
            loop {
                let Some(line) = lines
                    .next_line()
                    .await
                    .map_err(|e| StoreError::io_at(&key, e))?
                else {
                    break;
                };
                offset += line.len() as u64;
                line_no += 1;
                stager.line(line_no, line).await?;
                if line_no % PLAN_CHECK_LINES == 0 {
                    if engine.near_deadline() {
                        paused = true;
                        break;
                    }
                    self.keep_lease(manifest).await?;
                }
            }
            let staged = stager.finish().await?;
            manifest.counts.add_planned(&staged.counts);
            manifest
                .chunks
                .extend(staged.chunks.into_iter().map(ChunkRecord::staged));
            manifest.planning = Some(PlanCursor {
                offset,
                line: line_no,
                segment: cursor.segment + 1,
            });
            self.save(manifest).await?;
            if paused {
                engine.observer.event(&JobEvent::PlanningPaused {
                    job_id: manifest.job_id.clone(),
                    lines: line_no,
                    offset,
                    bytes: manifest.input.bytes,
                });
                return Ok(false);
            }
        }
        // The whole upload is staged: drop the duplicates, then planning is over. Worked out on
        // a copy: if anything fails, `manifest` stays what was last saved, and this is redone.
        let mut planned = manifest.clone();
        let replaced = self.drop_duplicates(&mut planned).await?;
        planned.planning = None;
        self.save(&mut planned).await?;
        *manifest = planned;
        for index in replaced {
            engine.store.delete(&self.keys.chunk(index)).await?;
            engine.store.delete(&self.keys.chunk_line_numbers(index)).await?;
        }
        ids::remove_runs(engine.store.as_ref(), &self.keys).await?;
        engine.observer.event(&JobEvent::Started {
            job_id: manifest.job_id.clone(),
            key: manifest.input.key.clone(),
            counts: manifest.counts.clone(),
            chunks: manifest.chunks.len(),
        });
        Ok(true)
    }

    /// Rejects every line whose custom_id an earlier line used: each chunk holding one is
    /// copied without it under a new index (the old files stay intact until the manifest no
    /// longer names them, so a crash here is simply redone). Returns the replaced indices.
    async fn drop_duplicates(&mut self, manifest: &mut Manifest) -> Result<Vec<u32>, JobError> {
        let store = self.engine.store.clone();
        let duplicates = ids::find_duplicates(&store, &self.keys).await?;
        if duplicates.is_empty() {
            return Ok(Vec::new());
        }
        let first_use: HashMap<u64, u64> =
            duplicates.iter().map(|d| (d.line, d.first_line)).collect();
        // The line numbers alone say which chunks hold a reuse; each gets its new index now, so
        // that a redo after a crash writes the same keys.
        let mut copies = Vec::new();
        let mut next = next_chunk_index(manifest);
        for (i, chunk) in manifest.chunks.iter().enumerate() {
            let from = chunk.plan.index;
            let (_, mut numbers) = store.reader(&self.keys.chunk_line_numbers(from)).await?;
            let mut number = Vec::new();
            loop {
                number.clear();
                let read = numbers
                    .read_until(b'\n', &mut number)
                    .await
                    .map_err(|e| StoreError::io_at(&self.keys.chunk_line_numbers(from), e))?;
                if read == 0 {
                    break;
                }
                if first_use.contains_key(&line_of_entry(&number)) {
                    copies.push((i, from, next));
                    next += 1;
                    break;
                }
            }
        }
        let keys = &self.keys;
        let first_use = &first_use;
        let copied: Vec<_> = futures::stream::iter(copies)
            .map(|(i, from, to)| {
                let store = store.clone();
                async move {
                    let mut dropped = Vec::new();
                    let (requests, bytes) = copy_chunk(store, keys, from, to, |_, row| {
                        let Some(first) = first_use.get(&row.line()) else {
                            return true;
                        };
                        let custom_id = row.user_id().or_else(|| custom_id_of(row.request));
                        dropped.push(Rejection {
                            line: row.line(),
                            message: ids::duplicate_message(
                                custom_id.as_deref().unwrap_or_default(),
                                *first,
                            ),
                            custom_id,
                            code: RejectCode::DuplicateCustomId,
                        });
                        false
                    })
                    .await?;
                    Ok::<_, StoreError>((i, from, to, requests, bytes, dropped))
                }
            })
            .buffer_unordered(COPY_CONCURRENCY)
            .try_collect()
            .await?;
        let mut rejections = Vec::with_capacity(duplicates.len());
        let mut replaced = Vec::new();
        for (i, from, to, requests, bytes, dropped) in copied {
            let plan = &mut manifest.chunks[i].plan;
            (plan.index, plan.requests, plan.bytes) = (to, requests, bytes);
            replaced.push(from);
            rejections.extend(dropped);
        }
        manifest.chunks.retain(|c| c.plan.requests > 0);
        rejections.sort_by_key(|r| r.line);
        let mut out = StreamWriter::open(
            store.clone(),
            self.keys.rejected_duplicates(),
            PutMode::Overwrite,
        );
        for r in &rejections {
            out.write(&r.to_json_line()).await?;
        }
        out.finish().await?;
        manifest.counts.accepted -= rejections.len() as u64;
        manifest.counts.rejected += rejections.len() as u64;
        Ok(replaced)
    }

    /// The upload changed (or went away) while it was being planned: the newer version is a
    /// job of its own, this one ends as cancelled without sending anything.
    async fn superseded_while_planning(&mut self, manifest: &mut Manifest) -> Result<(), JobError> {
        // On a copy, as in `finish`: a failed write leaves `manifest` as last saved.
        let mut done = manifest.clone();
        done.status = JobStatus::Cancelled;
        done.reason = Some(format!(
            "superseded: {} changed while it was being planned; nothing was sent",
            done.input.key
        ));
        done.planning = None;
        done.chunks.clear();
        let summary_key = self.keys.summary();
        self.close(manifest, done, &summary_key).await
    }

    /// Renews the lease when half of it is gone (a long planning holds the job throughout).
    async fn keep_lease(&mut self, manifest: &mut Manifest) -> Result<(), JobError> {
        let now = self.engine.clock.now().unix_timestamp();
        let half = (LEASE.as_secs() / 2) as i64;
        if manifest.lease.as_ref().is_none_or(|l| l.until - now < half) {
            self.save(manifest).await?;
        }
        Ok(())
    }

    /// Takes the lease before a side effect, if this advance does not hold it yet.
    async fn acquire(&mut self, manifest: &mut Manifest) -> Result<(), JobError> {
        if self.leased {
            return Ok(());
        }
        self.save(manifest).await
    }

    /// Gives the lease back (a finished job's last save already dropped it).
    async fn release(&mut self, manifest: &mut Manifest) -> Result<(), JobError> {
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
    async fn save(&mut self, manifest: &mut Manifest) -> Result<(), JobError> {
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

    async fn step_chunk(
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
                let info = cancelled_unsent();
                self.collect(manifest, i, provider, &info).await
            }
            ChunkState::Staged if !self.may_submit(manifest, i).await? => Ok(()),
            ChunkState::Staged | ChunkState::Submitting => {
                let index = chunk.plan.index;
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
                        let info = cancelled_unsent();
                        return self.collect(manifest, i, provider, &info).await;
                    }
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
                let upload = ChunkUpload {
                    job_id: &job_id,
                    chunk: index,
                    endpoint: &chunk.plan.endpoint,
                    body: &body,
                    bytes: chunk.plan.bytes,
                    requests: chunk.plan.requests,
                };
                match provider.submit(upload).await {
                    Ok(submitted) => self.submitted(manifest, i, submitted).await,
                    Err(e) if e.is_retryable() => Err(e.into()),
                    Err(e) => {
                        // The provider refused the batch for good: its requests fail, the job goes on.
                        let refused = BatchInfo {
                            id: String::new(),
                            status: "rejected".into(),
                            state: BatchState::Failed,
                            output_file: None,
                            error_file: None,
                            errors: vec![BatchError {
                                code: "batch_rejected".into(),
                                message: e.to_string(),
                                line: None,
                            }],
                            counts: RequestCounts::default(),
                        };
                        self.collect(manifest, i, provider, &refused).await
                    }
                }
            }
            ChunkState::Submitted => {
                let batch_id = chunk.batch_id.clone().unwrap_or_default();
                if manifest.cancel_requested.is_some() && !chunk.cancel_sent {
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
                    self.save(manifest).await?;
                }
                let info = provider.batch(&batch_id).await?;
                if info.state.is_terminal() {
                    return self.collect(manifest, i, provider, &info).await;
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
    /// other batches to drain, nor beyond the route's cap on batches in flight.
    async fn may_submit(&self, manifest: &Manifest, i: usize) -> Result<bool, JobError> {
        let in_flight_here = manifest
            .chunks
            .iter()
            .filter(|c| matches!(c.state, ChunkState::Submitted | ChunkState::Submitting))
            .count();
        if manifest.chunks[i].after_drain && in_flight_here > 0 {
            return Ok(false);
        }
        let cap = self
            .engine
            .config
            .route(&manifest.route)
            .and_then(|r| r.retries.max_batches_in_flight);
        let Some(cap) = cap else {
            return Ok(true);
        };
        let elsewhere = self
            .engine
            .in_flight(&manifest.route, &manifest.job_id)
            .await?;
        Ok(in_flight_here + elsewhere < cap as usize)
    }

    /// Records a created batch.
    async fn submitted(
        &mut self,
        manifest: &mut Manifest,
        i: usize,
        submitted: Submitted,
    ) -> Result<(), JobError> {
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

    /// Puts a finished batch's results in chunk order, one per request, and tallies them.
    async fn collect(
        &mut self,
        manifest: &mut Manifest,
        i: usize,
        provider: &dyn Provider,
        info: &BatchInfo,
    ) -> Result<(), JobError> {
        self.acquire(manifest).await?;
        let engine = self.engine;
        let index = manifest.chunks[i].plan.index;
        let wire = wire_of(manifest);
        // The user's custom_id where the request went out under another one.
        let mut restore: HashMap<usize, String> = HashMap::new();
        let (_, mut sidecar) = engine.store.reader(&self.keys.chunk_line_numbers(index)).await?;
        let mut entry = Vec::new();
        let mut pos = 0usize;
        loop {
            entry.clear();
            if sidecar
                .read_until(b'\n', &mut entry)
                .await
                .map_err(|e| StoreError::io_at(&self.keys.chunk_line_numbers(index), e))?
                == 0
            {
                break;
            }
            if let Some(tab) = entry.iter().position(|b| *b == b'\t')
                && let Ok(id) = serde_json::from_slice::<String>(entry[tab + 1..].trim_ascii())
            {
                restore.insert(pos, id);
            }
            pos += 1;
        }
        // custom_id (as sent) → position in the chunk.
        let mut positions: HashMap<String, usize> = HashMap::new();
        let mut ids: Vec<String> = Vec::new();
        let (_, mut reader) = engine.store.reader(&self.keys.chunk(index)).await?;
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| StoreError::io_at(&self.keys.chunk(index), e))?
                == 0
            {
                break;
            }
            let id = custom_id_of(&line).unwrap_or_default();
            positions.insert(id.clone(), ids.len());
            ids.push(id);
        }
        let mut slots: Vec<Option<(Vec<u8>, wire::ResultFacts)>> = vec![None; ids.len()];
        let mut unexpected = 0u64;
        for file in [&info.output_file, &info.error_file].into_iter().flatten() {
            if file.is_empty() {
                continue;
            }
            let mut reader = lines_of(provider.download(file).await?);
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line).await.map_err(|e| {
                    ProviderError::Transport {
                        operation: "download results",
                        message: e.to_string(),
                    }
                })? == 0
                {
                    break;
                }
                let trimmed = line.trim_ascii();
                if trimmed.is_empty() {
                    continue;
                }
                let facts = match wire::result_facts(wire, trimmed) {
                    Ok(f) => f,
                    Err(_) => {
                        unexpected += 1;
                        continue;
                    }
                };
                match positions.get(&facts.custom_id) {
                    Some(&pos) if slots[pos].is_none() => {
                        slots[pos] = Some((trimmed.to_vec(), facts));
                    }
                    _ => unexpected += 1,
                }
            }
        }
        if unexpected > 0 {
            tracing::warn!(
                job_id = %manifest.job_id,
                chunk = index,
                unexpected,
                "provider result lines that match no request of the batch were left out"
            );
        }
        let (code, why) = match info.state {
            BatchState::Expired => (
                "batch_expired",
                "the batch expired before this request ran".to_string(),
            ),
            BatchState::Cancelled => (
                "batch_cancelled",
                "the batch was cancelled before this request ran".to_string(),
            ),
            BatchState::Failed => (
                "batch_failed",
                match info.errors.iter().find(|e| e.line.is_none()) {
                    Some(e) => format!("the batch failed: {}: {}", e.code, e.message),
                    None => "the batch failed validation".to_string(),
                },
            ),
            BatchState::Completed | BatchState::Pending => (
                "missing_result",
                "the provider returned no result for this request".to_string(),
            ),
        };
        let line_errors: HashMap<u64, &BatchError> = info
            .errors
            .iter()
            .filter_map(|e| e.line.map(|l| (l, e)))
            .collect();
        // The provider refused the work for capacity: everything goes again once in-flight
        // work has drained.
        let capacity = info.state == BatchState::Failed
            && info.errors.iter().any(|e| e.code == "token_limit_exceeded");
        let missing_retryable = capacity || matches!(code, "batch_expired" | "missing_result");
        let (attempt, max_attempts) = (manifest.chunks[i].attempt, manifest.max_attempts);
        let may_retry = attempt < max_attempts && manifest.cancel_requested.is_none();
        let mut retry: Vec<usize> = Vec::new();
        let mut tally = (0u64, 0u64, Usage::default());
        // The same usage by the model each result names, to price batches that mix models.
        let mut by_model: std::collections::BTreeMap<String, Usage> = Default::default();
        let mut out = StreamWriter::open(
            engine.store.clone(),
            self.keys.chunk_results(index),
            PutMode::Overwrite,
        );
        for (pos, slot) in slots.into_iter().enumerate() {
            // Every request keeps a line here, also one sent again: if the retry never comes
            // back, this attempt's line is the answer.
            let retryable = match slot {
                Some((bytes, facts)) => {
                    tally.2.input_tokens += facts.input_tokens;
                    tally.2.output_tokens += facts.output_tokens;
                    if facts.input_tokens + facts.output_tokens > 0 {
                        let m = by_model.entry(facts.model.clone().unwrap_or_default());
                        let m = m.or_default();
                        m.input_tokens += facts.input_tokens;
                        m.output_tokens += facts.output_tokens;
                    }
                    match restore.get(&pos) {
                        Some(user_id) => out.write(&wire::with_custom_id(&bytes, user_id)).await?,
                        None => out.write(&bytes).await?,
                    }
                    if facts.succeeded {
                        tally.0 += 1;
                        false
                    } else {
                        facts.retryable
                    }
                }
                None => {
                    let message = match line_errors.get(&(pos as u64 + 1)) {
                        Some(e) => format!("{why}: {}: {}", e.code, e.message),
                        None => why.clone(),
                    };
                    let id = restore.get(&pos).unwrap_or(&ids[pos]);
                    out.write(&wire::missing_result(wire, id, code, &message))
                        .await?;
                    missing_retryable && !line_errors.contains_key(&(pos as u64 + 1))
                }
            };
            out.write(b"\n").await?;
            if retryable && may_retry {
                retry.push(pos);
            }
        }
        out.finish().await?;
        let failed = ids.len() as u64 - tally.0 - retry.len() as u64;
        if !retry.is_empty() {
            self.stage_retry(manifest, i, &retry, capacity).await?;
        }
        let chunk = &mut manifest.chunks[i];
        chunk.state = ChunkState::Collected;
        chunk.provider_status = Some(info.status.clone());
        chunk.succeeded = tally.0;
        chunk.failed = failed;
        chunk.retried = retry.len() as u64;
        chunk.usage = tally.2;
        chunk.usage_by_model = by_model;
        let batch_id = chunk.batch_id.clone().unwrap_or_default();
        self.save(manifest).await?;
        engine.observer.event(&JobEvent::BatchCollected {
            job_id: manifest.job_id.clone(),
            chunk: index,
            batch_id,
            status: info.status.clone(),
            succeeded: tally.0,
            failed,
        });
        Ok(())
    }

    /// Stages a follow-up chunk with the requests of chunk `i` at `positions` (ascending),
    /// exactly as they were sent, with their input line numbers.
    async fn stage_retry(
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
        });
        record.attempt = parent.attempt + 1;
        record.retry_of = Some(parent.plan.index);
        record.after_drain = after_drain;
        manifest.chunks.push(record);
        manifest.counts.retried += positions.len() as u64;
        Ok(())
    }

    /// Writes output.jsonl (input order), errors.jsonl, then summary.json; closes the job.
    async fn finish(&mut self, manifest: &mut Manifest) -> Result<(), JobError> {
        self.acquire(manifest).await?;
        let engine = self.engine;
        // Worked out on a copy: if a write fails, `manifest` stays what was last saved.
        let mut done = manifest.clone();
        done.counts.succeeded = done.chunks.iter().map(|c| c.succeeded).sum();
        done.counts.failed = done.chunks.iter().map(|c| c.failed).sum();
        done.status = JobStatus::Completed;
        if let Some(why) = &done.cancel_requested {
            done.status = JobStatus::Cancelled;
            done.reason = Some(why.clone());
        }
        // A newer upload of the same key owns results/: this job must not overwrite it.
        let superseded = match engine.store.head(&done.input.key).await {
            Ok(now) => now.etag != done.input.etag,
            Err(StoreError::NotFound { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        let summary_key = if superseded {
            done.status = JobStatus::Cancelled;
            done.reason = Some(format!(
                "superseded: {} was uploaded again; results stay with the newer upload",
                done.input.key
            ));
            self.keys.summary()
        } else {
            self.write_output(&done).await?;
            self.write_errors(&done).await?;
            format!("{}summary.json", done.results_prefix)
        };
        self.close(manifest, done, &summary_key).await
    }

    /// Ends a job: `done` (its finished state, worked out on a copy of `manifest`) gets its
    /// summary at `summary_key`, is saved, and replaces `manifest`; the job leaves the index.
    async fn close(
        &mut self,
        manifest: &mut Manifest,
        mut done: Manifest,
        summary_key: &str,
    ) -> Result<(), JobError> {
        let engine = self.engine;
        done.finished_at = Some(rfc3339(engine.clock.now()));
        engine
            .store
            .put_json(
                summary_key,
                &summary(&done, &engine.config),
                PutMode::Overwrite,
            )
            .await?;
        self.save(&mut done).await?;
        *manifest = done;
        engine
            .store
            .delete(&layout::active_key(&manifest.job_id))
            .await?;
        engine.finished_event(manifest);
        Ok(())
    }

    /// Merges the parts of the rejected lines (one per planning segment, and the duplicates)
    /// into errors.jsonl, in line order: a k-way merge, one line per part in memory.
    async fn write_errors(&self, manifest: &Manifest) -> Result<(), JobError> {
        let store = &self.engine.store;
        let keys: Vec<String> = store
            .list(&self.keys.rejected_parts())
            .await?
            .into_iter()
            .map(|m| m.key)
            .collect();
        let mut parts = Vec::with_capacity(keys.len());
        for key in keys {
            let (_, reader) = store.reader(&key).await?;
            parts.push((key, reader));
        }
        let mut current: Vec<Vec<u8>> = vec![Vec::new(); parts.len()];
        let mut heap = BinaryHeap::new();
        for (p, (key, reader)) in parts.iter_mut().enumerate() {
            if let Some(n) = next_rejection(key, reader, &mut current[p]).await? {
                heap.push(Reverse((n, p)));
            }
        }
        let mut out = StreamWriter::open(
            store.clone(),
            format!("{}errors.jsonl", manifest.results_prefix),
            PutMode::Overwrite,
        );
        while let Some(Reverse((_, p))) = heap.pop() {
            out.write(&current[p]).await?;
            let (key, reader) = &mut parts[p];
            if let Some(n) = next_rejection(key, reader, &mut current[p]).await? {
                heap.push(Reverse((n, p)));
            }
        }
        out.finish().await?;
        Ok(())
    }

    /// Merges the chunks' ordered results by input line number (a k-way merge: memory holds
    /// one line per chunk, not the job).
    async fn write_output(&self, manifest: &Manifest) -> Result<(), JobError> {
        let store = &self.engine.store;
        let mut sources = Vec::new();
        let attempts: Vec<u32> = manifest.chunks.iter().map(|c| c.attempt).collect();
        for c in &manifest.chunks {
            let (_, lines) = store.reader(&self.keys.chunk_line_numbers(c.plan.index)).await?;
            let (_, results) = store.reader(&self.keys.chunk_results(c.plan.index)).await?;
            sources.push(MergeSource {
                lines,
                results,
                key: self.keys.chunk_results(c.plan.index),
                number: Vec::new(),
            });
        }
        // Ordered by input line, then latest attempt first: a request sent again keeps only
        // its last attempt's line.
        let mut heap = BinaryHeap::new();
        let mut current: Vec<Vec<u8>> = vec![Vec::new(); sources.len()];
        for (s, source) in sources.iter_mut().enumerate() {
            if let Some(n) = source.next(&mut current[s]).await? {
                heap.push(Reverse((n, Reverse(attempts[s]), s)));
            }
        }
        let mut out = StreamWriter::open(
            store.clone(),
            format!("{}output.jsonl", manifest.results_prefix),
            PutMode::Overwrite,
        );
        let mut last_line = None;
        while let Some(Reverse((n, _, s))) = heap.pop() {
            if last_line != Some(n) {
                out.write(&current[s]).await?;
                last_line = Some(n);
            }
            if let Some(n) = sources[s].next(&mut current[s]).await? {
                heap.push(Reverse((n, Reverse(attempts[s]), s)));
            }
        }
        out.finish().await?;
        Ok(())
    }
}

struct MergeSource {
    lines: Box<dyn tokio::io::AsyncBufRead + Send + Unpin>,
    results: Box<dyn tokio::io::AsyncBufRead + Send + Unpin>,
    key: String,
    number: Vec<u8>,
}

impl MergeSource {
    /// Reads the next (input line number, result line) pair into `line`.
    async fn next(&mut self, line: &mut Vec<u8>) -> Result<Option<u64>, StoreError> {
        self.number.clear();
        if self
            .lines
            .read_until(b'\n', &mut self.number)
            .await
            .map_err(|e| StoreError::io_at(&self.key, e))?
            == 0
        {
            return Ok(None);
        }
        line.clear();
        self.results
            .read_until(b'\n', line)
            .await
            .map_err(|e| StoreError::io_at(&self.key, e))?;
        if line.last() != Some(&b'\n') {
            return Err(StoreError::Io {
                key: self.key.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "fewer results than requests in a collected chunk",
                ),
            });
        }
        let n = line_of_entry(&self.number);
        Ok(Some(n))
    }
}

/// Reads the next line of a part of the rejected lines into `line`; returns its input line.
async fn next_rejection(
    key: &str,
    reader: &mut (dyn tokio::io::AsyncBufRead + Send + Unpin),
    line: &mut Vec<u8>,
) -> Result<Option<u64>, StoreError> {
    #[derive(serde::Deserialize)]
    struct At {
        line: u64,
    }
    line.clear();
    if reader
        .read_until(b'\n', line)
        .await
        .map_err(|e| StoreError::io_at(key, e))?
        == 0
    {
        return Ok(None);
    }
    let at: At = serde_json::from_slice(line).map_err(|e| StoreError::Backend {
        key: key.to_string(),
        message: format!("not a rejected line: {e}"),
        retryable: false,
        source: Some(Box::new(e)),
    })?;
    Ok(Some(at.line))
}

/// The index the next new chunk of a job gets.
fn next_chunk_index(manifest: &Manifest) -> u32 {
    manifest
        .chunks
        .iter()
        .map(|c| c.plan.index + 1)
        .max()
        .unwrap_or(0)
}

/// A staged chunk read row by row: each request with its line-number sidecar entry.
struct ChunkRows {
    requests: StreamLines,
    numbers: StreamLines,
    requests_key: String,
    numbers_key: String,
}

/// One row of a staged chunk.
struct Row<'a> {
    /// The request line, newline included.
    request: &'a [u8],
    /// The sidecar entry (`<line>` or `<line>\t<user's custom_id as JSON>`), newline included.
    number: &'a [u8],
}

impl ChunkRows {
    async fn open(store: &dyn ObjectStore, keys: &JobKeys, index: u32) -> Result<Self, StoreError> {
        let requests = store.get(&keys.chunk(index)).await?.body;
        let numbers = store.get(&keys.chunk_line_numbers(index)).await?.body;
        Ok(Self {
            requests: StreamLines::new(read_ahead(requests, READ_AHEAD)),
            numbers: StreamLines::new(numbers),
            requests_key: keys.chunk(index),
            numbers_key: keys.chunk_line_numbers(index),
        })
    }

    /// The next row; `None` at the end.
    async fn next(&mut self) -> Result<Option<Row<'_>>, StoreError> {
        let (requests_key, numbers_key) = (&self.requests_key, &self.numbers_key);
        let request = self
            .requests
            .next_line()
            .await
            .map_err(|e| StoreError::io_at(requests_key, e))?;
        let number = self
            .numbers
            .next_line()
            .await
            .map_err(|e| StoreError::io_at(numbers_key, e))?;
        Ok(match (request, number) {
            (Some(request), Some(number)) => Some(Row { request, number }),
            _ => None,
        })
    }
}

impl Row<'_> {
    /// The input line number of the row.
    fn line(&self) -> u64 {
        line_of_entry(self.number)
    }

    /// The user's custom_id when the request went out under another one.
    fn user_id(&self) -> Option<String> {
        let tab = self.number.iter().position(|b| *b == b'\t')?;
        serde_json::from_slice(self.number[tab + 1..].trim_ascii()).ok()
    }
}

/// The input line number of a sidecar entry (`<line>` or `<line>\t<custom_id>`).
fn line_of_entry(entry: &[u8]) -> u64 {
    let number = entry.split(|b| *b == b'\t').next().unwrap_or_default();
    std::str::from_utf8(number.trim_ascii())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Copies the rows of chunk `from` that `keep` wants (given each row's position and the row)
/// into a new chunk `to` (request lines and their sidecar entries). Returns its requests and
/// bytes.
async fn copy_chunk(
    store: Arc<dyn ObjectStore>,
    keys: &JobKeys,
    from: u32,
    to: u32,
    mut keep: impl FnMut(usize, &Row) -> bool,
) -> Result<(u64, u64), StoreError> {
    let mut rows = ChunkRows::open(store.as_ref(), keys, from).await?;
    let mut chunk_out = StreamWriter::open(store.clone(), keys.chunk(to), PutMode::Overwrite);
    let mut lines_out = StreamWriter::open(store, keys.chunk_line_numbers(to), PutMode::Overwrite);
    let (mut requests, mut bytes) = (0u64, 0u64);
    let mut pos = 0usize;
    while let Some(row) = rows.next().await? {
        if keep(pos, &row) {
            chunk_out.write(row.request).await?;
            lines_out.write(row.number).await?;
            requests += 1;
            bytes += row.request.len() as u64;
        }
        pos += 1;
    }
    chunk_out.finish().await?;
    lines_out.finish().await?;
    Ok((requests, bytes))
}

/// The `custom_id` of a JSON line, if it has a string one.
fn custom_id_of(line: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        custom_id: Option<String>,
    }
    serde_json::from_slice::<Id>(line.trim_ascii())
        .ok()
        .and_then(|i| i.custom_id)
}

/// The wire format of a job's provider.
fn wire_of(manifest: &Manifest) -> Wire {
    match manifest.provider.as_str() {
        "anthropic" => Wire::Anthropic,
        _ => Wire::Openai,
    }
}

/// The outcome of a chunk cancelled before it reached the provider.
fn cancelled_unsent() -> BatchInfo {
    BatchInfo {
        id: String::new(),
        status: "cancelled".into(),
        state: BatchState::Cancelled,
        output_file: None,
        error_file: None,
        errors: Vec::new(),
        counts: RequestCounts::default(),
    }
}
