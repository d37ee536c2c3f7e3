//! What the engine tells its callers: the outcome of a submit, of an advance and of a poll,
//! and the events an [`Observer`] sees along the way.

use super::JobError;
use crate::manifest::{Counts, JobStatus};

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
    /// A webhook about the job was delivered (a 2xx answer).
    WebhookDelivered {
        job_id: String,
        webhook_id: String,
        event_type: String,
        attempt: u32,
    },
    /// An attempt to deliver a webhook about the job failed (or it could not be queued);
    /// `retry_at` (RFC 3339) when the next attempt may start, None when it was given up.
    WebhookFailed {
        job_id: String,
        webhook_id: String,
        event_type: String,
        attempt: u32,
        error: String,
        retry_at: Option<String>,
    },
}

/// Receives the engine's [`JobEvent`]s as they happen.
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
    /// Webhooks delivered by this poll.
    pub webhooks_delivered: usize,
    /// Webhook attempts of this poll that failed (each retried on its schedule, or given up).
    pub webhooks_failed: usize,
}

/// What one advance did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// Another worker holds the job's lease.
    Busy,
    Running,
    Finished(JobStatus),
}
