//! The sandbox's Bedrock memory: model invocation jobs, their idempotency tokens, and the
//! per-model quota.
//!
//! A job's input is read once, in the background from its create call on (`scan`); its
//! output is written once, by the first request that sees it ended (`output`), and that
//! request (and any other meanwhile) waits for it: a client that sees a job ended can read
//! its output at once. Everything else is computed from the clock when asked (`timeline`).
//! Jobs live in memory only; their output lives in the objects store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::input::NewJob;
use super::objects::Objects;
use super::output::{self, Manifest};
use super::scan::{self, Scanned};
use super::timeline::{Phase, Run, Status, Timeline};
use crate::faults::{BatchFault, BatchPlan};

/// The account every job ARN names.
pub(crate) const ACCOUNT: &str = "123456789012";

/// A piece of work started once and awaited by any number of requests.
type Task<T> = Shared<BoxFuture<'static, T>>;

/// Spawns `work` so that it runs to its end even if every waiter gives up.
fn spawn<T: Clone + Send + Sync + 'static>(
    work: impl Future<Output = T> + Send + 'static,
    crashed: impl FnOnce(String) -> T + Send + 'static,
) -> Task<T> {
    let handle = tokio::spawn(work);
    async move {
        handle
            .await
            .unwrap_or_else(|error| crashed(error.to_string()))
    }
    .boxed()
    .shared()
}

/// What the store was configured with.
pub(crate) struct Settings {
    pub step: Duration,
    pub min_records: usize,
    pub max_jobs_per_model: usize,
}

/// Jobs, behind one lock that is never held across an `.await`.
pub(crate) struct Store {
    settings: Settings,
    objects: Option<Arc<dyn Objects>>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    jobs: HashMap<String, Job>,
    /// Job ids, oldest first.
    order: Vec<String>,
    /// `clientRequestToken` → job id.
    tokens: HashMap<String, String>,
}

#[derive(Clone)]
struct Job {
    fixed: Arc<Fixed>,
    timeline: Timeline,
    output: Option<Task<Result<Manifest, String>>>,
}

/// What does not change once a job is created.
pub(crate) struct Fixed {
    pub id: String,
    pub arn: String,
    pub request: NewJob,
    plan: BatchPlan,
    scan: Task<Result<Scanned, String>>,
}

/// A job as a client sees it at one instant.
#[derive(Clone)]
pub(crate) struct View {
    pub fixed: Arc<Fixed>,
    pub status: Status,
    pub message: Option<String>,
    pub submit_time: SystemTime,
    pub last_modified_time: SystemTime,
    pub end_time: Option<SystemTime>,
    pub expiration_time: SystemTime,
    pub total_records: Option<u64>,
    pub processed_records: Option<u64>,
    /// Known once the job has ended and its output is written.
    pub outcome: Option<Manifest>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StoreError {
    /// The sandbox has nowhere to read inputs from.
    NoObjects,
    NotFound {
        id: String,
    },
    /// The model already has the most jobs submitted or in progress.
    Quota {
        model_id: String,
        max: usize,
    },
    /// Stop of a job that has ended.
    NotStoppable {
        arn: String,
        status: Status,
    },
    BadToken {
        token: String,
    },
}

/// What a listing asks for.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    pub status: Option<Status>,
    pub name_contains: Option<String>,
    pub submitted_after: Option<SystemTime>,
    pub submitted_before: Option<SystemTime>,
    pub ascending: bool,
    pub max_results: usize,
    pub next_token: Option<String>,
}

impl Store {
    pub(crate) fn new(settings: Settings, objects: Option<Arc<dyn Objects>>) -> Self {
        Store {
            settings,
            objects,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Creates a job submitted at `now` with the faults of `plan`, or returns the job made
    /// by an earlier call with the same `clientRequestToken` (whatever its other members).
    /// Returns the job's ARN and whether it is new.
    pub(crate) async fn create(
        &self,
        request: NewJob,
        region: &str,
        now: SystemTime,
        plan: BatchPlan,
    ) -> Result<(String, bool), StoreError> {
        let objects = self.objects.clone().ok_or(StoreError::NoObjects)?;
        if let Some(arn) = self.by_token(request.client_request_token.as_deref()) {
            return Ok((arn, false));
        }
        let same_model: Vec<Job> = self
            .lock()
            .jobs
            .values()
            .filter(|job| job.fixed.request.model_id == request.model_id)
            .cloned()
            .collect();
        let mut in_flight = 0;
        for job in &same_model {
            if busy(job, now).await {
                in_flight += 1;
            }
        }
        if in_flight >= self.settings.max_jobs_per_model {
            return Err(StoreError::Quota {
                model_id: request.model_id,
                max: self.settings.max_jobs_per_model,
            });
        }

        let id = job_id();
        let arn = format!("arn:aws:bedrock:{region}:{ACCOUNT}:model-invocation-job/{id}");
        let scan = {
            let (input, arn, min) = (
                request.input.clone(),
                arn.clone(),
                self.settings.min_records,
            );
            let validation_fault = plan.outcome == Some(BatchFault::Validation);
            spawn(
                async move {
                    let scanned = scan::scan(objects.as_ref(), &input, &arn, min).await?;
                    if validation_fault {
                        return Err(format!(
                            "The input of batch job {arn} failed validation (sandbox fault injection)"
                        ));
                    }
                    Ok(scanned)
                },
                |error| Err(format!("Reading the input crashed: {error}")),
            )
        };
        let timeline = Timeline {
            submitted: now,
            step: self.settings.step,
            timeout: Duration::from_secs(request.timeout_hours * 3600),
            stop_initiated: None,
            expire_keep: plan.expiry(),
            extra_steps: plan.extra_steps,
        };
        let token = request.client_request_token.clone();
        let job = Job {
            fixed: Arc::new(Fixed {
                id: id.clone(),
                arn: arn.clone(),
                request,
                plan,
                scan,
            }),
            timeline,
            output: None,
        };
        let mut inner = self.lock();
        if let Some(token) = token {
            if let Some(earlier) = inner.tokens.get(&token) {
                // A concurrent call with the same token won the race.
                let arn = inner.jobs.get(earlier).map(|job| job.fixed.arn.clone());
                return arn
                    .map(|arn| (arn, false))
                    .ok_or(StoreError::BadToken { token });
            }
            inner.tokens.insert(token, id.clone());
        }
        inner.jobs.insert(id.clone(), job);
        inner.order.push(id);
        Ok((arn, true))
    }

    fn by_token(&self, token: Option<&str>) -> Option<String> {
        let inner = self.lock();
        let id = inner.tokens.get(token?)?;
        inner.jobs.get(id).map(|job| job.fixed.arn.clone())
    }

    /// The job named by `identifier` (its id or ARN) at `now`.
    pub(crate) async fn job(&self, identifier: &str, now: SystemTime) -> Result<View, StoreError> {
        let job = self.get(identifier)?;
        Ok(self.observe(job, now).await)
    }

    /// Starts stopping a job that has not ended; a job already stopping is left as it is.
    pub(crate) async fn stop(&self, identifier: &str, now: SystemTime) -> Result<(), StoreError> {
        let job = self.get(identifier)?;
        let view = self.observe(job, now).await;
        if view.status.has_ended() {
            return Err(StoreError::NotStoppable {
                arn: view.fixed.arn.clone(),
                status: view.status,
            });
        }
        let mut inner = self.lock();
        if let Some(job) = inner.jobs.get_mut(&view.fixed.id)
            && job.timeline.stop_initiated.is_none()
        {
            job.timeline.stop_initiated = Some(now);
        }
        Ok(())
    }

    /// The jobs `filter` asks for, and the token of the next page.
    pub(crate) async fn list(
        &self,
        filter: &Filter,
        now: SystemTime,
    ) -> Result<(Vec<View>, Option<String>), StoreError> {
        let jobs: Vec<Job> = {
            let inner = self.lock();
            inner
                .order
                .iter()
                .filter_map(|id| inner.jobs.get(id).cloned())
                .collect()
        };
        let mut views = Vec::with_capacity(jobs.len());
        for job in jobs {
            let fixed = &job.fixed;
            let submitted = job.timeline.submitted;
            if filter
                .name_contains
                .as_deref()
                .is_some_and(|part| !fixed.request.job_name.contains(part))
                || filter
                    .submitted_after
                    .is_some_and(|after| submitted <= after)
                || filter
                    .submitted_before
                    .is_some_and(|before| submitted >= before)
            {
                continue;
            }
            let view = self.observe(job, now).await;
            if filter.status.is_none_or(|status| status == view.status) {
                views.push(view);
            }
        }
        // Oldest first as created; a stable sort keeps creation order among equal times.
        views.sort_by_key(|view| view.submit_time);
        if !filter.ascending {
            views.reverse();
        }
        let start = match &filter.next_token {
            None => 0,
            Some(token) => views
                .iter()
                .position(|view| &view.fixed.id == token)
                .ok_or_else(|| StoreError::BadToken {
                    token: token.clone(),
                })?,
        };
        let end = (start + filter.max_results).min(views.len());
        let next = views.get(end).map(|view| view.fixed.id.clone());
        Ok((views[start..end].to_vec(), next))
    }

    fn get(&self, identifier: &str) -> Result<Job, StoreError> {
        let id = identifier.rsplit('/').next().unwrap_or(identifier);
        self.lock()
            .jobs
            .get(id)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                id: identifier.to_owned(),
            })
    }

    /// The job at `now`; writes its output first if it has ended.
    async fn observe(&self, job: Job, now: SystemTime) -> View {
        let timeline = job.timeline;
        let step = timeline.step;
        let mut view = View {
            fixed: job.fixed.clone(),
            status: Status::Submitted,
            message: None,
            submit_time: timeline.submitted,
            last_modified_time: timeline.submitted,
            end_time: None,
            expiration_time: timeline.expires_at(),
            total_records: None,
            processed_records: None,
            outcome: None,
        };
        match timeline.at(now, 0).0 {
            Phase::Submitted => return view,
            Phase::Validating => {
                view.status = Status::Validating;
                view.last_modified_time = timeline.submitted + step;
                return view;
            }
            Phase::StoppedEarly { stopping, at } => {
                if stopping {
                    view.status = Status::Stopping;
                    view.last_modified_time = timeline.stop_initiated.unwrap_or(at);
                } else {
                    view.status = Status::Stopped;
                    view.last_modified_time = at;
                    view.end_time = Some(at);
                }
                return view;
            }
            Phase::Validated(_) => {}
        }
        let scanned = match job.fixed.scan.clone().await {
            Ok(scanned) => scanned,
            Err(message) => {
                let at = timeline.validated_at();
                view.status = Status::Failed;
                view.message = Some(message);
                view.last_modified_time = at;
                view.end_time = Some(at);
                return view;
            }
        };
        let records = scanned.records();
        view.total_records = Some(records as u64);
        let (phase, processed) = timeline.at(now, records);
        view.processed_records = Some(processed as u64);
        let run = match phase {
            Phase::Validated(run) => run,
            // Not reached: the phase without records was already past validation.
            _ => Run::Scheduled,
        };
        match run {
            Run::Scheduled => {
                view.status = Status::Scheduled;
                view.last_modified_time = timeline.validated_at();
            }
            Run::InProgress => {
                view.status = Status::InProgress;
                view.last_modified_time = timeline.submitted + step * 3;
            }
            Run::Stopping => {
                view.status = Status::Stopping;
                view.last_modified_time = timeline.stop_initiated.unwrap_or(now);
            }
            Run::Ended { status, at } => {
                view.last_modified_time = at;
                view.end_time = Some(at);
                let task = self.output_task(&job.fixed, scanned, processed);
                match task.await {
                    Ok(manifest) => {
                        view.status = if status == Status::Completed && manifest.service_errors > 0
                        {
                            Status::PartiallyCompleted
                        } else {
                            status
                        };
                        view.outcome = Some(manifest);
                    }
                    Err(message) => {
                        view.status = Status::Failed;
                        view.message = Some(format!("Writing the job's output failed: {message}"));
                    }
                }
            }
        }
        view
    }

    /// The job's output writing, started by the first caller.
    fn output_task(
        &self,
        fixed: &Arc<Fixed>,
        scanned: Scanned,
        processed: usize,
    ) -> Task<Result<Manifest, String>> {
        let mut inner = self.lock();
        let Some(job) = inner.jobs.get_mut(&fixed.id) else {
            return async { Err("the job is gone".to_owned()) }.boxed().shared();
        };
        if let Some(task) = &job.output {
            return task.clone();
        }
        let Some(objects) = self.objects.clone() else {
            return async { Err("the sandbox has no objects store".to_owned()) }
                .boxed()
                .shared();
        };
        let fixed = fixed.clone();
        let task = spawn(
            async move {
                let job = output::Job {
                    id: &fixed.id,
                    model_id: &fixed.request.model_id,
                    output: &fixed.request.output,
                    input: &scanned,
                    processed,
                    faults: &fixed.plan.requests,
                };
                let manifest = output::write(objects.as_ref(), &job).await;
                match &manifest {
                    Ok(manifest) => tracing::debug!(
                        job = %fixed.id,
                        processed = manifest.processed_record_count,
                        "sandbox Bedrock job output written"
                    ),
                    Err(error) => {
                        tracing::warn!(job = %fixed.id, %error, "sandbox Bedrock job output failed")
                    }
                }
                manifest
            },
            Err,
        );
        job.output = Some(task.clone());
        task
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a job counts against its model's quota at `now`: submitted, validating, scheduled,
/// in progress or stopping (past validation, once its input has been read).
async fn busy(job: &Job, now: SystemTime) -> bool {
    match job.timeline.at(now, 0).0 {
        Phase::Submitted | Phase::Validating => true,
        Phase::StoppedEarly { stopping, .. } => stopping,
        Phase::Validated(_) => match job.fixed.scan.clone().await {
            Err(_) => false,
            Ok(scanned) => !matches!(
                job.timeline.at(now, scanned.records()).0,
                Phase::Validated(Run::Ended { .. })
            ),
        },
    }
}

/// A new job id: 12 lowercase letters and digits.
fn job_id() -> String {
    std::iter::repeat_with(|| {
        let n = fastrand::u8(0..36);
        char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 })
    })
    .take(12)
    .collect()
}
