//! The sandbox's Anthropic state: message batches.
//!
//! What describes a batch lives in memory; its requests, results and bookkeeping live on disk
//! ([`Disk`], `input::WorkFiles`). A batch's requests are validated and answered once, when it
//! is created (`input::process`, on a blocking thread, at most as many at once as there are
//! cores); what a client sees of them is computed from the clock when asked (`timeline`). A
//! deleted batch is gone, files and all, but its id stays valid as a listing cursor.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;

use super::RequestCounts;
use super::cache::{Access, PromptCache};
use super::input::{self, Failure, Invalid, Processed, Results, WorkFiles};
use super::timeline::{Snapshot, Status, Timeline};
use crate::disk::{self, Disk};
use crate::faults::BatchPlan;
use crate::openai::new_id;

/// Message batches, behind one lock that is never held across an `.await`.
pub(crate) struct Store {
    step: Duration,
    disk: Arc<Disk>,
    /// One permit per batch being processed: as many as there are cores.
    processing: Arc<Semaphore>,
    inner: Mutex<Inner>,
    /// The prompt cache batches and `/v1/messages` read and write.
    cache: Arc<PromptCache>,
}

#[derive(Default)]
struct Inner {
    batches: HashMap<String, Record>,
    /// The id of every batch ever created, deleted ones too, oldest first.
    order: Vec<String>,
}

struct Record {
    id: String,
    timeline: Timeline,
    work: Arc<Processed>,
}

/// A batch as a client sees it at one instant.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub id: String,
    pub status: Status,
    pub counts: RequestCounts,
    pub created_at: SystemTime,
    pub expires_at: SystemTime,
    pub ended_at: Option<SystemTime>,
    pub cancel_initiated_at: Option<SystemTime>,
}

/// One page of a listing, newest first.
#[derive(Debug)]
pub(crate) struct Page {
    pub data: Vec<View>,
    pub has_more: bool,
}

/// Where a listing starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cursor<'a> {
    /// The newest batches.
    Start,
    /// The batches just older than this one.
    After(&'a str),
    /// The batches just newer than this one.
    Before(&'a str),
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StoreError {
    /// The create call is refused as a whole.
    Invalid(Invalid),
    /// Processing the batch failed inside the sandbox.
    Crashed {
        reason: String,
    },
    NotFound {
        id: String,
    },
    /// Cancel of a batch that has already ended.
    AlreadyEnded {
        id: String,
    },
    /// Delete of a batch that has not ended yet.
    NotDeletable {
        id: String,
        status: Status,
    },
    /// Results of a batch that has not ended yet.
    NoResultsYet {
        id: String,
        status: Status,
    },
    UnknownCursor {
        param: &'static str,
        id: String,
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
            cache: Arc::default(),
        }
    }

    /// The prompt cache.
    pub(crate) fn cache(&self) -> &PromptCache {
        &self.cache
    }

    /// Where to write the body of a create call before [`Store::create`].
    pub(crate) fn upload_path(&self) -> PathBuf {
        self.disk.path(&new_id("upload-", 24))
    }

    /// Validates and answers the requests of a create call's body, in the file at `body`
    /// (removed after), and stores the batch, created at `now`, with the injected faults of
    /// `plan`. The batch is returned as created: `in_progress`.
    pub(crate) async fn create(
        &self,
        body: &Path,
        now: SystemTime,
        plan: BatchPlan,
    ) -> Result<View, StoreError> {
        let id = new_id("msgbatch_", 24);
        let (work_id, body_path) = (id.clone(), body.to_path_buf());
        let requests = plan.requests.clone();
        let files = WorkFiles::of(&self.disk, &id);
        let permit = self.processing.clone().acquire_owned().await;
        let cache = self.cache.clone();
        let processed = tokio::task::spawn_blocking(move || {
            let access = Access {
                cache: &cache,
                at: now,
                batch: Some(&work_id),
            };
            let processed = input::process(&body_path, &work_id, &requests, files, access);
            disk::remove(&body_path);
            processed
        })
        .await;
        drop(permit);
        let work = processed
            .map_err(|error| {
                tracing::error!(%error, "processing a sandbox message batch crashed");
                StoreError::Crashed {
                    reason: error.to_string(),
                }
            })?
            .map_err(|failure| match failure {
                Failure::Invalid(invalid) => StoreError::Invalid(invalid),
                Failure::Disk(error) => StoreError::disk("process a message batch")(error),
            })?;
        tracing::debug!(batch = %id, requests = work.total(), "sandbox message batch created");
        let record = Record {
            id: id.clone(),
            timeline: Timeline {
                created: now,
                step: self.step,
                cancel_initiated: None,
                expire_keep: plan.expiry(),
                extra_steps: plan.extra_steps,
            },
            work: Arc::new(work),
        };
        let view = record.view(&record.timeline.as_created())?;
        let mut inner = self.lock();
        inner.batches.insert(id.clone(), record);
        inner.order.push(id);
        Ok(view)
    }

    pub(crate) fn batch(&self, id: &str, now: SystemTime) -> Result<View, StoreError> {
        let inner = self.lock();
        let record = inner.get(id)?;
        record.view(&record.snapshot(now))
    }

    /// Starts cancelling a batch in progress; a batch already canceling is returned as it is.
    pub(crate) fn cancel(&self, id: &str, now: SystemTime) -> Result<View, StoreError> {
        let mut inner = self.lock();
        let record = inner
            .batches
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound { id: id.to_owned() })?;
        match record.snapshot(now).status {
            Status::InProgress => record.timeline.cancel_initiated = Some(now),
            Status::Canceling => {}
            Status::Ended => return Err(StoreError::AlreadyEnded { id: id.to_owned() }),
        }
        record.view(&record.snapshot(now))
    }

    /// Deletes a batch that has ended.
    pub(crate) fn delete(&self, id: &str, now: SystemTime) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let status = inner.get(id)?.snapshot(now).status;
        if status != Status::Ended {
            return Err(StoreError::NotDeletable {
                id: id.to_owned(),
                status,
            });
        }
        if let Some(record) = inner.batches.remove(id) {
            record.work.files.remove();
        }
        Ok(())
    }

    /// The results file of a batch that has ended: one line per request, in processing order.
    pub(crate) fn results(&self, id: &str, now: SystemTime) -> Result<Results, StoreError> {
        let (work, snapshot) = {
            let inner = self.lock();
            let record = inner.get(id)?;
            (record.work.clone(), record.snapshot(now))
        };
        if snapshot.status != Status::Ended {
            return Err(StoreError::NoResultsYet {
                id: id.to_owned(),
                status: snapshot.status,
            });
        }
        work.results(snapshot.processed, snapshot.unprocessed)
            .map_err(StoreError::disk("read a message batch's results"))
    }

    /// Up to `limit` batches from `cursor`, newest first.
    pub(crate) fn list(
        &self,
        cursor: Cursor<'_>,
        limit: usize,
        now: SystemTime,
    ) -> Result<Page, StoreError> {
        let inner = self.lock();
        let newest_first: Vec<&String> = inner.order.iter().rev().collect();
        let position = |param: &'static str, id: &str| {
            newest_first
                .iter()
                .position(|other| other.as_str() == id)
                .ok_or_else(|| StoreError::UnknownCursor {
                    param,
                    id: id.to_owned(),
                })
        };
        let live = |ids: &[&String]| -> Vec<String> {
            ids.iter()
                .filter(|id| inner.batches.contains_key(id.as_str()))
                .map(|id| (*id).clone())
                .collect()
        };
        let (ids, has_more) = match cursor {
            Cursor::Before(before) => {
                let newer = live(&newest_first[..position("before_id", before)?]);
                let start = newer.len().saturating_sub(limit);
                (newer[start..].to_vec(), start > 0)
            }
            Cursor::Start | Cursor::After(_) => {
                let start = match cursor {
                    Cursor::After(after) => position("after_id", after)? + 1,
                    _ => 0,
                };
                let mut older = live(&newest_first[start..]);
                let has_more = older.len() > limit;
                older.truncate(limit);
                (older, has_more)
            }
        };
        let data = ids
            .iter()
            .filter_map(|id| inner.batches.get(id))
            .map(|record| record.view(&record.snapshot(now)))
            .collect::<Result<_, _>>()?;
        Ok(Page { data, has_more })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn get(&self, id: &str) -> Result<&Record, StoreError> {
        self.batches
            .get(id)
            .ok_or_else(|| StoreError::NotFound { id: id.to_owned() })
    }
}

impl Record {
    fn snapshot(&self, now: SystemTime) -> Snapshot {
        self.timeline.at(now, self.work.total())
    }

    fn view(&self, snapshot: &Snapshot) -> Result<View, StoreError> {
        let total = self.work.total() as u64;
        let counts = if snapshot.status == Status::Ended {
            let outcome = self
                .work
                .outcome(snapshot.processed, snapshot.unprocessed)
                .map_err(StoreError::disk("read a message batch's counts"))?;
            RequestCounts {
                processing: 0,
                succeeded: outcome.succeeded,
                errored: outcome.errored,
                canceled: outcome.canceled,
                expired: outcome.expired,
            }
        } else {
            // As the real API: nothing but `processing` is counted until the batch ends.
            RequestCounts {
                processing: total,
                ..RequestCounts::default()
            }
        };
        Ok(View {
            id: self.id.clone(),
            status: snapshot.status,
            counts,
            created_at: self.timeline.created,
            expires_at: self.timeline.expires_at(),
            ended_at: snapshot.ended_at,
            cancel_initiated_at: self.timeline.cancel_initiated,
        })
    }
}
