//! The sandbox's OpenAI state: files and batches.
//!
//! What describes files and batches lives in memory; the contents of files live on disk
//! ([`Disk`]), named by file id, and so does a batch's work (`input::WorkFiles`). A batch's
//! input is processed once, on a blocking thread started when it is created
//! (`input::process`, at most as many at once as there are cores); everything else is computed
//! from the clock when asked (`timeline`). When a batch ends, its output and error files are
//! made once, from its work files, as File objects dated when it ended: output lines for
//! requests that succeeded; error lines for requests that failed and, in a cancelled or
//! expired batch, for the requests never processed (`batch_cancelled` / `batch_expired`). A
//! file that would be empty is not written, and its id stays null on the batch.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use super::input::{self, Processed, Work, WorkFiles};
use super::queue::{self, Admission, Enqueued};
use super::timeline::{Snapshot, Status, Timeline, Validation};
use super::{
    BatchObject, BatchUsage, Endpoint, ErrorList, FileObject, List, RequestCounts, new_id,
};
use crate::clock::unix_seconds;
use crate::disk::{self, Disk};
use crate::faults::{BatchFault, BatchPlan};

/// How long files live unless told otherwise: 30 days (batch input, output and error files).
const FILE_LIFETIME: Duration = Duration::from_secs(30 * 24 * 60 * 60);

type WorkFuture = Shared<BoxFuture<'static, Arc<Work>>>;

/// Files and batches, behind one lock that is never held across an `.await`.
pub(crate) struct Store {
    step: Duration,
    disk: Arc<Disk>,
    /// One permit per batch being processed: as many as there are cores.
    processing: Arc<Semaphore>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    files: Files,
    batches: HashMap<String, BatchRecord>,
    /// Batch ids, oldest first.
    batch_order: Vec<String>,
    /// Batches that have ended and whose end nobody has taken yet ([`Store::take_ended`]: the
    /// webhook pusher), in the order their ends were noticed.
    ended: Vec<Ended>,
}

/// A batch that has ended: what its webhook says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ended {
    pub id: String,
    /// `completed`, `failed`, `expired` or `cancelled`.
    pub status: &'static str,
    pub ended_at: i64,
}

#[derive(Default)]
struct Files {
    by_id: HashMap<String, FileRecord>,
    /// File ids, oldest first.
    order: Vec<String>,
}

/// A file; its content is the file named by its id on disk.
struct FileRecord {
    object: FileObject,
}

struct BatchRecord {
    id: String,
    endpoint: Endpoint,
    input_file_id: String,
    metadata: Option<Map<String, Value>>,
    output_expires_after: Option<Duration>,
    timeline: Timeline,
    work: WorkFuture,
    /// What the batch holds in its model's queue while it runs, when the sandbox has an
    /// enqueued-token limit (None: no limit, or the batch was refused by it).
    enqueued: Option<Enqueued>,
    /// Set once the batch has ended and its result files (if any) are written.
    results: Option<ResultFiles>,
}

#[derive(Debug, Default, Clone)]
struct ResultFiles {
    output_file_id: Option<String>,
    error_file_id: Option<String>,
}

/// A file to store, whose content has been written to [`Store::upload_path`].
#[derive(Debug)]
pub(crate) struct NewFile {
    pub filename: String,
    pub purpose: String,
    pub bytes: u64,
    /// Lifetime from its creation; `None`: 30 days for `batch` files, forever for the rest.
    pub expires_after: Option<Duration>,
}

/// A batch to create; its fields are already checked against the wire rules.
#[derive(Debug)]
pub(crate) struct NewBatch {
    pub input_file_id: String,
    pub endpoint: Endpoint,
    pub metadata: Option<Map<String, Value>>,
    pub output_expires_after: Option<Duration>,
    /// The enqueued-token limit to admit it against, with what it would enqueue.
    pub admission: Option<Admission>,
}

/// A created batch, and whether the enqueued-token limit refused it.
#[derive(Debug)]
pub(crate) struct Created {
    pub object: BatchObject,
    pub over_limit: bool,
}

/// Sort order of a file listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    NewestFirst,
    OldestFirst,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StoreError {
    FileNotFound {
        id: String,
    },
    /// The input file of a batch to create does not exist.
    InputFileNotFound {
        id: String,
    },
    BatchNotFound {
        id: String,
    },
    NotBatchInput {
        id: String,
        purpose: String,
    },
    NotCancellable {
        id: String,
        status: Status,
    },
    UnknownCursor {
        after: String,
    },
    /// The files directory failed.
    Disk {
        what: &'static str,
        message: String,
    },
}

impl StoreError {
    fn disk(what: &'static str) -> impl FnOnce(io::Error) -> StoreError {
        move |error| {
            tracing::error!(%error, "sandbox files directory: cannot {what}");
            StoreError::Disk {
                what,
                message: error.to_string(),
            }
        }
    }
}

impl Store {
    pub(crate) fn new(step: Duration, disk: Arc<Disk>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Store {
            step,
            disk,
            processing: Arc::new(Semaphore::new(cores)),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A fresh file id and where to write the content of the file to add with it.
    pub(crate) fn upload_path(&self) -> (String, PathBuf) {
        let id = new_id("file-", 22);
        let path = self.disk.path(&id);
        (id, path)
    }

    /// Adds the file `id`, whose content is at the [`Store::upload_path`] of `id`.
    pub(crate) fn add_file(&self, id: String, file: NewFile, now: SystemTime) -> FileObject {
        let created_at = unix_seconds(now);
        let lifetime = file
            .expires_after
            .or((file.purpose == "batch").then_some(FILE_LIFETIME));
        self.lock().files.insert(
            id,
            file.filename,
            file.purpose,
            file.bytes,
            created_at,
            lifetime,
        )
    }

    pub(crate) fn file(&self, id: &str) -> Result<FileObject, StoreError> {
        self.lock()
            .files
            .by_id
            .get(id)
            .map(|file| file.object.clone())
            .ok_or_else(|| StoreError::FileNotFound { id: id.to_owned() })
    }

    /// The content of a file, opened, and its size.
    pub(crate) fn file_content(&self, id: &str) -> Result<(File, u64), StoreError> {
        let inner = self.lock();
        let file = inner
            .files
            .by_id
            .get(id)
            .ok_or_else(|| StoreError::FileNotFound { id: id.to_owned() })?;
        let content =
            File::open(self.disk.path(id)).map_err(StoreError::disk("open a file's content"))?;
        Ok((content, file.object.bytes))
    }

    /// Deletes a file and its content. Batches that use it keep working: a batch holds its
    /// input open from its creation until it is processed.
    pub(crate) fn delete_file(&self, id: &str) -> Result<(), StoreError> {
        let files = &mut self.lock().files;
        files
            .by_id
            .remove(id)
            .ok_or_else(|| StoreError::FileNotFound { id: id.to_owned() })?;
        files.order.retain(|other| other != id);
        disk::remove(&self.disk.path(id));
        Ok(())
    }

    pub(crate) fn list_files(
        &self,
        purpose: Option<&str>,
        order: Order,
        after: Option<&str>,
        limit: usize,
    ) -> Result<List<FileObject>, StoreError> {
        let inner = self.lock();
        let files = &inner.files;
        let matching = |id: &&String| {
            purpose.is_none_or(|purpose| {
                files
                    .by_id
                    .get(*id)
                    .is_some_and(|file| file.object.purpose == purpose)
            })
        };
        let ids: Vec<&String> = match order {
            Order::OldestFirst => files.order.iter().filter(matching).collect(),
            Order::NewestFirst => files.order.iter().rev().filter(matching).collect(),
        };
        page(&ids, after, limit, |id| {
            files.by_id.get(id).map(|file| file.object.clone())
        })
    }

    /// Counts what the batch input file `id` would enqueue as a batch to `endpoint` (None when
    /// there is no such file: creating the batch says so).
    pub(crate) async fn enqueued(
        &self,
        id: &str,
        endpoint: Endpoint,
    ) -> Result<Option<Enqueued>, StoreError> {
        if !self.lock().files.by_id.contains_key(id) {
            return Ok(None);
        }
        let path = self.disk.path(id);
        tokio::task::spawn_blocking(move || queue::count(&path, endpoint))
            .await
            .map_err(|error| StoreError::Disk {
                what: "count a batch's input tokens",
                message: error.to_string(),
            })?
            .map(Some)
            .map_err(StoreError::disk("count a batch's input tokens"))
    }

    /// Creates a batch and starts processing its input in the background. The batch is
    /// returned as created: `validating`. A batch that would pass its admission's limit beside
    /// the batches of its model in flight is created to fail with `token_limit_exceeded`;
    /// otherwise `plan` decides its injected faults, once the batch is known to be created.
    pub(crate) fn create_batch(
        &self,
        batch: NewBatch,
        now: SystemTime,
        plan: impl FnOnce() -> BatchPlan,
    ) -> Result<Created, StoreError> {
        let mut inner = self.lock();
        let input = inner.files.by_id.get(&batch.input_file_id).ok_or_else(|| {
            StoreError::InputFileNotFound {
                id: batch.input_file_id.clone(),
            }
        })?;
        if input.object.purpose != "batch" {
            return Err(StoreError::NotBatchInput {
                id: batch.input_file_id,
                purpose: input.object.purpose.clone(),
            });
        }
        let content = File::open(self.disk.path(&batch.input_file_id))
            .map_err(StoreError::disk("open a batch's input file"))?;
        let id = new_id("batch_", 32);
        let refusal = batch.admission.as_ref().and_then(|admission| {
            let queued = inner.queued(admission.batch.model.as_deref(), now);
            (!queue::fits(queued, admission.batch.tokens, admission.limit))
                .then(|| queue::refusal(admission.batch.model.as_deref(), admission.limit))
        });
        let over_limit = refusal.is_some();
        let plan = match refusal {
            Some(_) => BatchPlan::none(),
            None => plan(),
        };
        let timeline = Timeline {
            created: now,
            step: self.step,
            cancelled_at: None,
            expire_keep: plan.expiry(),
            extra_finalizing: plan.extra_steps,
        };
        let started = unix_seconds(timeline.validated_at());
        let (work_id, endpoint) = (id.clone(), batch.endpoint);
        let work = match refusal {
            Some(error) => futures::future::ready(Arc::new(Work::Invalid(vec![error]))).boxed(),
            None => match plan.outcome {
                // Injected failures replace validation: the input is not even read.
                Some(BatchFault::Validation) => {
                    futures::future::ready(Arc::new(Work::injected_validation_failure())).boxed()
                }
                Some(BatchFault::TokenLimit) => {
                    futures::future::ready(Arc::new(Work::token_limit_exceeded())).boxed()
                }
                _ => {
                    let requests = plan.requests;
                    let files = WorkFiles::of(&self.disk, &id);
                    let processing = self.processing.clone();
                    let job = tokio::spawn(async move {
                        let _permit = processing.acquire_owned().await;
                        tokio::task::spawn_blocking(move || {
                            input::process(&content, endpoint, &work_id, started, &requests, files)
                        })
                        .await
                    });
                    async move {
                        Arc::new(job.await.and_then(|processed| processed).unwrap_or_else(
                            |error| {
                                tracing::error!(%error, "processing a sandbox batch crashed");
                                Work::crashed(&error.to_string())
                            },
                        ))
                    }
                    .boxed()
                }
            },
        }
        .shared();
        tracing::debug!(batch = %id, endpoint = endpoint.path(), "sandbox batch created");

        let record = BatchRecord {
            id: id.clone(),
            endpoint,
            input_file_id: batch.input_file_id,
            metadata: batch.metadata,
            output_expires_after: batch.output_expires_after,
            timeline,
            work,
            enqueued: batch
                .admission
                .filter(|_| !over_limit)
                .map(|admission| admission.batch),
            results: None,
        };
        let object = record.object(&timeline.at(now, Validation::Pending))?;
        inner.batches.insert(id.clone(), record);
        inner.batch_order.push(id);
        Ok(Created { object, over_limit })
    }

    /// Brings every batch up to `now`: waits for the input processing that the batches'
    /// states need by now, and writes the result files of the batches that have ended.
    /// Call before reading batches or files.
    pub(crate) async fn settle(&self, now: SystemTime) -> Result<(), StoreError> {
        let pending: Vec<WorkFuture> = {
            let inner = self.lock();
            inner
                .batches
                .values()
                .filter(|batch| {
                    batch.results.is_none()
                        && batch.timeline.needs_validation(now)
                        && batch.work.peek().is_none()
                })
                .map(|batch| batch.work.clone())
                .collect()
        };
        futures::future::join_all(pending).await;

        let mut guard = self.lock();
        let inner = &mut *guard;
        for id in &inner.batch_order {
            let Some(batch) = inner.batches.get_mut(id) else {
                continue;
            };
            if batch.results.is_some() {
                continue;
            }
            let snapshot = batch.snapshot(now);
            if !snapshot.status.is_final() {
                continue;
            }
            let results = batch.write_results(&snapshot, &mut inner.files, &self.disk)?;
            batch.results = Some(results);
            inner.ended.push(Ended {
                id: id.clone(),
                status: snapshot.status.as_str(),
                ended_at: snapshot.ended_at().map(unix_seconds).unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// The batches that have ended since the last call (found by [`Store::settle`]), oldest
    /// end first.
    pub(crate) fn take_ended(&self) -> Vec<Ended> {
        std::mem::take(&mut self.lock().ended)
    }

    pub(crate) fn batch(&self, id: &str, now: SystemTime) -> Result<BatchObject, StoreError> {
        let inner = self.lock();
        let batch = inner
            .batches
            .get(id)
            .ok_or_else(|| StoreError::BatchNotFound { id: id.to_owned() })?;
        batch.object(&batch.snapshot(now))
    }

    /// Cancels a batch that is validating, in progress or finalizing; a batch already
    /// cancelling is returned as it is.
    pub(crate) fn cancel_batch(
        &self,
        id: &str,
        now: SystemTime,
    ) -> Result<BatchObject, StoreError> {
        let mut inner = self.lock();
        let batch = inner
            .batches
            .get_mut(id)
            .ok_or_else(|| StoreError::BatchNotFound { id: id.to_owned() })?;
        match batch.snapshot(now).status {
            Status::Validating | Status::InProgress | Status::Finalizing => {
                batch.timeline.cancelled_at = Some(now);
            }
            Status::Cancelling => {}
            status => {
                return Err(StoreError::NotCancellable {
                    id: id.to_owned(),
                    status,
                });
            }
        }
        batch.object(&batch.snapshot(now))
    }

    /// Batches, newest first.
    pub(crate) fn list_batches(
        &self,
        after: Option<&str>,
        limit: usize,
        now: SystemTime,
    ) -> Result<List<BatchObject>, StoreError> {
        let inner = self.lock();
        let ids: Vec<&String> = inner.batch_order.iter().rev().collect();
        let mut failure = None;
        let list = page(&ids, after, limit, |id| {
            let batch = inner.batches.get(id)?;
            batch
                .object(&batch.snapshot(now))
                .map_err(|error| failure = Some(error))
                .ok()
        })?;
        match failure {
            Some(error) => Err(error),
            None => Ok(list),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// The tokens enqueued for `model` at `now`: those of its batches that are validating, in
    /// progress or finalizing.
    fn queued(&self, model: Option<&str>, now: SystemTime) -> u64 {
        self.batches
            .values()
            .filter_map(|batch| {
                let enqueued = batch.enqueued.as_ref()?;
                let queued = enqueued.model.as_deref() == model
                    && matches!(
                        batch.snapshot(now).status,
                        Status::Validating | Status::InProgress | Status::Finalizing
                    );
                queued.then_some(enqueued.tokens)
            })
            .sum()
    }
}

impl Files {
    /// Stores a new file `id`, of `bytes` bytes; `lifetime` sets its `expires_at`.
    fn insert(
        &mut self,
        id: String,
        filename: String,
        purpose: String,
        bytes: u64,
        created_at: i64,
        lifetime: Option<Duration>,
    ) -> FileObject {
        let object = FileObject {
            id: id.clone(),
            object: "file",
            bytes,
            created_at,
            expires_at: lifetime.map(|lifetime| {
                created_at.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX))
            }),
            filename,
            purpose,
            status: "processed",
            status_details: None,
        };
        let record = FileRecord {
            object: object.clone(),
        };
        self.by_id.insert(id.clone(), record);
        self.order.push(id);
        object
    }
}

impl BatchRecord {
    /// The processed requests, once the input has been processed and found valid.
    fn processed(&self) -> Option<&Processed> {
        match self.work.peek().map(|work| &**work) {
            Some(Work::Processed(processed)) => Some(processed),
            _ => None,
        }
    }

    fn snapshot(&self, now: SystemTime) -> Snapshot {
        let validation = match self.work.peek().map(|work| &**work) {
            None => Validation::Pending,
            Some(Work::Invalid(_)) => Validation::Failed,
            Some(Work::Processed(processed)) => Validation::Passed {
                requests: processed.total(),
            },
        };
        self.timeline.at(now, validation)
    }

    fn object(&self, snapshot: &Snapshot) -> Result<BatchObject, StoreError> {
        let seconds = |time: Option<SystemTime>| time.map(unix_seconds);
        let processed = self.processed().filter(|_| snapshot.total > 0);
        let progress = processed
            .map(|processed| processed.progress(snapshot.processed))
            .transpose()
            .map_err(StoreError::disk("read a batch's progress"))?;
        let errors = match self.work.peek().map(|work| &**work) {
            Some(Work::Invalid(errors)) if snapshot.status == Status::Failed => Some(ErrorList {
                object: "list",
                data: errors.clone(),
            }),
            _ => None,
        };
        let usage = progress
            .filter(|_| {
                matches!(
                    snapshot.status,
                    Status::Completed | Status::Cancelled | Status::Expired
                )
            })
            .map(|progress| BatchUsage::new(progress.input_tokens, progress.output_tokens));
        let results = self.results.clone().unwrap_or_default();
        Ok(BatchObject {
            id: self.id.clone(),
            object: "batch",
            endpoint: self.endpoint.path(),
            model: processed.and_then(|processed| processed.model.clone()),
            errors,
            input_file_id: self.input_file_id.clone(),
            completion_window: "24h",
            status: snapshot.status,
            output_file_id: results.output_file_id,
            error_file_id: results.error_file_id,
            created_at: unix_seconds(self.timeline.created),
            in_progress_at: seconds(snapshot.in_progress_at),
            expires_at: unix_seconds(self.timeline.expires_at()),
            finalizing_at: seconds(snapshot.finalizing_at),
            completed_at: seconds(snapshot.completed_at),
            failed_at: seconds(snapshot.failed_at),
            expired_at: seconds(snapshot.expired_at),
            cancelling_at: seconds(snapshot.cancelling_at),
            cancelled_at: seconds(snapshot.cancelled_at),
            request_counts: RequestCounts {
                total: snapshot.total as u64,
                completed: progress.map_or(0, |progress| progress.completed),
                failed: progress.map_or(0, |progress| progress.failed)
                    + snapshot.unprocessed() as u64,
            },
            usage,
            metadata: self.metadata.clone(),
        })
    }

    /// Makes the output and error files of a batch that has ended from its work files.
    fn write_results(
        &self,
        snapshot: &Snapshot,
        files: &mut Files,
        disk: &Disk,
    ) -> Result<ResultFiles, StoreError> {
        let Some(processed) = self.processed().filter(|_| snapshot.total > 0) else {
            return Ok(ResultFiles::default());
        };
        let work = &processed.files;
        let progress = processed
            .progress(snapshot.processed)
            .map_err(StoreError::disk("read a batch's progress"))?;
        let mut error_bytes = progress.error_bytes;
        if snapshot.unprocessed() > 0 {
            let (code, message) = if snapshot.status == Status::Expired {
                (
                    "batch_expired",
                    "This request could not be executed before the completion window expired.",
                )
            } else {
                (
                    "batch_cancelled",
                    "This request could not be executed before the batch was cancelled.",
                )
            };
            error_bytes = self
                .append_stopped(work, &progress, code, message)
                .map_err(StoreError::disk("write a batch's error file"))?;
        }

        let ended_at = unix_seconds(snapshot.ended_at().unwrap_or(self.timeline.created));
        let lifetime = Some(self.output_expires_after.unwrap_or(FILE_LIFETIME));
        let mut write = |suffix: &str, from: &PathBuf, bytes: u64| -> io::Result<Option<String>> {
            if bytes == 0 {
                disk::remove(from);
                return Ok(None);
            }
            let id = new_id("file-", 22);
            let to = disk.path(&id);
            std::fs::rename(from, &to)?;
            OpenOptions::new().write(true).open(&to)?.set_len(bytes)?;
            let name = format!("{}_{suffix}.jsonl", self.id);
            let object = files.insert(
                id,
                name,
                "batch_output".to_owned(),
                bytes,
                ended_at,
                lifetime,
            );
            Ok(Some(object.id))
        };
        let output_file_id = write("output", &work.output, progress.output_bytes)
            .map_err(StoreError::disk("write a batch's output file"))?;
        let error_file_id = write("error", &work.errors, error_bytes)
            .map_err(StoreError::disk("write a batch's error file"))?;
        Ok(ResultFiles {
            output_file_id,
            error_file_id,
        })
    }

    /// Cuts the work's error lines after the requests processed (`progress`) and appends a
    /// stopped line for each of the others; returns the bytes of error lines.
    fn append_stopped(
        &self,
        work: &WorkFiles,
        progress: &input::Progress,
        code: &str,
        message: &str,
    ) -> io::Result<u64> {
        let mut errors = OpenOptions::new().write(true).open(&work.errors)?;
        errors.set_len(progress.error_bytes)?;
        errors.seek(SeekFrom::End(0))?;
        let mut errors = BufWriter::with_capacity(256 * 1024, errors);
        let mut bytes = progress.error_bytes;
        let mut line = String::new();
        for custom_id in crate::ledger::read_ids(&work.ids, progress.ids_bytes)? {
            line.clear();
            input::stopped_line(&mut line, &self.id, &custom_id?, code, message);
            errors.write_all(line.as_bytes())?;
            bytes += line.len() as u64;
        }
        errors
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        Ok(bytes)
    }
}

/// One page of `ids` (already in list order): the `limit` ids after `after`.
fn page<T>(
    ids: &[&String],
    after: Option<&str>,
    limit: usize,
    mut build: impl FnMut(&str) -> Option<T>,
) -> Result<List<T>, StoreError>
where
    T: HasId,
{
    let start = match after {
        None => 0,
        Some(after) => {
            ids.iter()
                .position(|id| id.as_str() == after)
                .ok_or_else(|| StoreError::UnknownCursor {
                    after: after.to_owned(),
                })?
                + 1
        }
    };
    let end = ids.len().min(start.saturating_add(limit));
    let data: Vec<T> = ids[start..end].iter().filter_map(|id| build(id)).collect();
    Ok(List {
        object: "list",
        first_id: data.first().map(|item| item.id().to_owned()),
        last_id: data.last().map(|item| item.id().to_owned()),
        has_more: end < ids.len(),
        data,
    })
}

/// Objects that can be listed: they have an id to page by.
pub(crate) trait HasId {
    fn id(&self) -> &str;
}

impl HasId for FileObject {
    fn id(&self) -> &str {
        &self.id
    }
}

impl HasId for BatchObject {
    fn id(&self) -> &str {
        &self.id
    }
}
