//! The job engine: what submit and poll do, over the store, provider and clock ports.
//!
//! - [`Engine::submit`] turns a new upload into a job ([`Engine::start`] starts one on any
//!   other object, with the id and results prefix given): it creates the manifest (conditional
//!   create: a duplicate event finds the job and does nothing new), then
//!   [`Engine::advance`]s it, which first plans the upload: validate every line, stage chunks
//!   under `_batchdrop/jobs/<id>/`. Planning stops near the invocation's deadline
//!   ([`Engine::until`]) with a checkpoint in the manifest; the next advance continues it.
//! - [`Engine::poll`] advances every job listed under `_batchdrop/active/`; finished jobs are
//!   not listed there, so they cost nothing.
//! - [`Engine::advance`] takes the job's lease (compare-and-swap on the manifest), moves each
//!   chunk one step (staged → submitted → collected), and when all are collected writes
//!   `output.jsonl`, `errors.jsonl` and, last, `summary.json`.
//!
//! Where each decision lives:
//!
//! - [`events`]: what callers are told ([`SubmitOutcome`], [`Advance`], [`PollReport`],
//!   [`JobEvent`]s for an [`Observer`]); [`error`]: [`JobError`].
//! - `run`: one advance of one job, its order of steps, and the job's lease.
//! - `planning`: reading and staging the upload, taking out reused custom_ids; `balance`:
//!   no chunk below the provider's batch minimum where the file holds that many.
//! - `step`: the steps of one chunk (submit, watch, cancel, retry); `admission`: whether the
//!   provider's batch queue has room for a chunk (`max_enqueued_tokens`).
//! - `budget`: the spending check before anything is sent, and the day's spend settled at
//!   the end.
//! - `on_demand`: a chunk below the provider's batch minimum, sent request by request.
//! - `deadline`: when a job must be done by; past its cutoff, batches give way to the lane.
//! - `on_demand`: a chunk below the provider's batch minimum, sent request by request;
//!   `pace`: how many of those requests at once, and when the next may start (adaptive
//!   concurrency, `retry-after`, requests and tokens per minute).
//! - `reuse`: a route with `reuse_results`: requests answered before are answered from the
//!   bucket, repeats within a file are sent once; the job's answers enter the route's index.
//! - `collect`: a finished batch's results, in chunk order, one per request.
//! - `output`: output.jsonl, errors.jsonl and summary.json; closing the job.
//! - `notify`: the job's webhooks out (`crate::webhooks`): queued before the job leaves the
//!   index, sent by submit, cancel and every poll.
//! - The chunk files themselves (requests + line-number sidecar) are `crate::chunk_files`'.

mod admission;
mod balance;
mod budget;
mod collect;
mod deadline;
pub mod error;
pub mod events;
mod notify;
mod on_demand;
mod output;
mod pace;
mod planning;
mod primer;
mod reuse;
mod run;
mod step;

pub use deadline::{
    LaneRate, METADATA as DEADLINE_METADATA, SIDECAR as DEADLINE_SIDECAR, lane_rate_key,
};
pub use error::JobError;
pub use events::{Advance, JobEvent, LogObserver, Observer, PollReport, SubmitOutcome};

use crate::clock::{Clock, rfc3339};
use crate::config::Config;
use crate::input::{RejectCode, Rejection};
use crate::layout::{self, InboxKey, JobKeys};
use crate::manifest::{Counts, InputRef, JobStatus, JobWebhook, Manifest, PlanCursor};
use crate::provider::{ProviderError, Providers};
use crate::store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, StoreError};
use crate::summary::summary;
use crate::webhooks::Webhooks;
use crate::writer::StreamWriter;
use futures::StreamExt;
use run::JobRun;
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

/// A job to start on an object of the bucket ([`Engine::start`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStart {
    /// The job's id: the same id always names the same job (a second start is a duplicate).
    pub job_id: String,
    /// The route it runs on.
    pub route: String,
    /// The object whose lines are the requests (its current version).
    pub input_key: String,
    /// Where output.jsonl, errors.jsonl and summary.json go (ends with `/`).
    pub results_prefix: String,
    /// A webhook target of its own, besides the route's (a Batch API key's).
    pub webhook: Option<JobWebhook>,
}

/// Whether a new job asks older jobs of the same input key to cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Supersedes {
    /// An upload under `inbox/`: the older uploads of its key are superseded.
    OlderUploads,
    /// An object read by several jobs on purpose (the Batch API's files).
    Nothing,
}

/// Submits, polls, cancels and advances jobs over the store, provider and clock ports. Cheap
/// to clone; every call works from what the store holds, so any number of engines may run.
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
    /// The synchronous lane's pace of each route, shared by the jobs advanced at once.
    paces: Arc<pace::Paces>,
    /// The routes' webhook secrets and the sending ([`Engine::with_webhooks`]).
    webhooks: Arc<Webhooks>,
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
            paces: Arc::default(),
            webhooks: Arc::default(),
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

    /// The routes' webhook signing secrets (resolved at start, [`Webhooks::from_routes`]):
    /// without them a route's webhooks are queued and their attempts fail.
    pub fn with_webhooks(mut self, webhooks: Arc<Webhooks>) -> Self {
        self.webhooks = webhooks;
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
    /// carried, if any. An upload under `inbox/` starts the job of its version (see
    /// [`Engine::start`]); an older upload of the same key still running is asked to cancel.
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
        let Some(head) = self.head_of(key).await? else {
            return Ok(SubmitOutcome::Ignored {
                reason: format!("{key:?} no longer exists"),
            });
        };
        let etag = event_etag.map(|e| e.trim_matches('"').to_string());
        if etag.as_deref().is_some_and(|e| e != head.etag) {
            return Ok(SubmitOutcome::Superseded);
        }
        let start = JobStart {
            job_id: layout::job_id(&self.bucket, key, &head.etag),
            route: inbox.route.clone(),
            input_key: key.to_string(),
            results_prefix: inbox.results_prefix(),
            webhook: None,
        };
        self.create_and_advance(start, head, Supersedes::OlderUploads)
            .await
    }

    /// Starts a job on any object of the bucket, not only an upload under `inbox/` (the Batch
    /// API's files live under `_batchdrop/`): the same manifest, planning, polling and results
    /// as a submitted upload, with the id and results prefix the caller chose. Idempotent: a
    /// second call with the same job id answers [`SubmitOutcome::Duplicate`] and changes
    /// nothing. No other job is cancelled by it. `Ignored` when the object does not exist.
    pub async fn start(&self, start: JobStart) -> Result<SubmitOutcome, JobError> {
        let Some(head) = self.head_of(&start.input_key).await? else {
            return Ok(SubmitOutcome::Ignored {
                reason: format!("{:?} does not exist", start.input_key),
            });
        };
        self.create_and_advance(start, head, Supersedes::Nothing)
            .await
    }

    async fn head_of(&self, key: &str) -> Result<Option<ObjectMeta>, JobError> {
        match self.store.head(key).await {
            Ok(head) => Ok(Some(head)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the job's manifest (conditional create: a duplicate finds the job and does
    /// nothing new), then advances it once, which plans the input.
    async fn create_and_advance(
        &self,
        start: JobStart,
        head: ObjectMeta,
        supersedes: Supersedes,
    ) -> Result<SubmitOutcome, JobError> {
        let JobStart {
            job_id,
            route: route_name,
            input_key: key,
            results_prefix,
            webhook,
        } = start;
        let keys = JobKeys::new(&job_id);
        if self.store.exists(&keys.manifest()).await? {
            // The event again: the job exists and polls carry it on (a planning that stopped
            // or crashed continues from its checkpoint).
            return Ok(SubmitOutcome::Duplicate { job_id });
        }
        let mut manifest = Manifest {
            job_id: job_id.clone(),
            route: route_name.clone(),
            provider: String::new(),
            input: InputRef {
                bucket: self.bucket.clone(),
                key: key.clone(),
                etag: head.etag.clone(),
                bytes: head.size,
            },
            results_prefix,
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
            deadline: None,
            budget: None,
            webhook,
        };

        let route = match self.config.route(&route_name) {
            None => {
                let reason = format!(
                    "route {route_name:?} is not configured; configured routes: {}",
                    self.config.route_names().join(", ")
                );
                return self
                    .fail_whole_file(manifest, RejectCode::UnknownRoute, reason)
                    .await;
            }
            Some(route) => route,
        };
        if let Err(reason) = self.providers.for_route(&route_name) {
            let reason = format!("route {route_name:?} cannot be used: {reason}");
            return self
                .fail_whole_file(manifest, RejectCode::UnknownRoute, reason)
                .await;
        }
        manifest.deadline = match self.deadline_of(&key, route).await? {
            Ok(deadline) => deadline,
            Err(why) => {
                let reason = format!("the upload's deadline cannot be read: {why}");
                return self
                    .fail_whole_file(manifest, RejectCode::InvalidDeadline, reason)
                    .await;
            }
        };
        manifest.provider = route.provider.clone();
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
        if supersedes == Supersedes::OlderUploads {
            // An older upload of the same key still running is paying for results nobody
            // will see (they never reach results/): its batches are cancelled by its next
            // advance.
            let superseded = self
                .ask_to_cancel(
                    &key,
                    &format!("superseded: {key} was uploaded again"),
                    Some(&job_id),
                )
                .await?;
            for old in &superseded {
                tracing::info!(job_id = old, by = job_id, "superseded job asked to cancel");
            }
        }
        self.advance(&job_id).await?;
        self.send_webhooks_of(&job_id).await;
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
        // Before the manifest, like the results: a retried event queues the same webhook.
        self.enqueue_job_end(&manifest).await?;
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
        self.send_webhooks_of(&manifest.job_id).await;
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
            self.send_webhooks_of(job_id).await;
        }
        Ok(asked)
    }

    /// Asks one job, by id, to cancel: the way to cancel a job whose input is not an upload
    /// under `inbox/` (a Batch API job). Then advances it once, best effort, as
    /// [`Engine::cancel`] does. `Ok(false)` when there is no such job or it has already
    /// finished or been asked.
    pub async fn cancel_job(&self, job_id: &str, reason: &str) -> Result<bool, JobError> {
        let asked = self.request_cancel(job_id, reason, |_| true).await?;
        if asked && let Err(e) = self.advance(job_id).await {
            tracing::warn!(job_id, error = %e, "cancel will be completed by the next poll");
        }
        if asked {
            self.send_webhooks_of(job_id).await;
        }
        Ok(asked)
    }

    /// Sets `cancel_requested` on job `job_id` (unfinished, not yet asked) without advancing
    /// it: the next advance, by whichever process runs the job, does the cancelling. Whether
    /// it was set. For callers that run no job themselves (`batchdrop cancel JOB`).
    pub async fn ask_to_cancel_job(&self, job_id: &str, reason: &str) -> Result<bool, JobError> {
        self.request_cancel(job_id, reason, |_| true).await
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
            if self
                .request_cancel(job_id, reason, |m| m.input.key == inbox_key)
                .await?
            {
                asked.push(job_id.to_string());
            }
        }
        Ok(asked)
    }

    /// Sets `cancel_requested` on job `job_id` if it exists, is `wanted`, unfinished and not
    /// yet asked; whether it was set.
    async fn request_cancel(
        &self,
        job_id: &str,
        reason: &str,
        wanted: impl Fn(&Manifest) -> bool,
    ) -> Result<bool, JobError> {
        let manifest_key = JobKeys::new(job_id).manifest();
        // Compare-and-swap, again if another worker wrote in between.
        for _ in 0..5 {
            let (mut manifest, etag): (Manifest, String) =
                match self.store.get_json(&manifest_key).await {
                    Ok(found) => found,
                    Err(StoreError::NotFound { .. }) => return Ok(false),
                    Err(e) => return Err(e.into()),
                };
            if !wanted(&manifest)
                || manifest.status.is_finished()
                || manifest.cancel_requested.is_some()
            {
                return Ok(false);
            }
            manifest.cancel_requested = Some(reason.to_string());
            match self
                .store
                .put_json(&manifest_key, &manifest, PutMode::Update(etag))
                .await
            {
                Ok(_) => return Ok(true),
                Err(StoreError::Precondition { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
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
        if self.sends_webhooks() {
            let sent = self.send_webhooks(None).await;
            report.webhooks_delivered = sent.delivered;
            report.webhooks_failed = sent.failed;
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
            // Closed, but still listed: the close stopped before this (its webhook may not
            // be queued yet).
            self.enqueue_job_end(&manifest).await?;
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

    /// The unfinished jobs of `route` other than `except`, as their manifests say now: what
    /// the caps on a route's work in flight count (`step`'s batches in flight, `admission`'s
    /// enqueued tokens).
    async fn other_active_jobs(
        &self,
        route: &str,
        except: &str,
    ) -> Result<Vec<Manifest>, JobError> {
        let mut jobs = Vec::new();
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
                jobs.push(manifest);
            }
        }
        Ok(jobs)
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
