//! OpenAI's Batch object, made from a batch record and its engine job's manifest: which
//! status, timestamps, request counts and files a batchdrop job shows as.
//!
//! Status: no manifest yet, or the upload still being planned → `validating`; running →
//! `in_progress`, or `finalizing` once every chunk is collected, or `cancelling` once asked to
//! cancel; finished → `completed`, `cancelled` or `failed`. batchdrop never shows `expired`:
//! a provider batch that expires has its unanswered requests sent again, and what is left
//! ends as `batch_expired` lines of a `completed` batch.
//!
//! Counts: `total` is the file's non-blank lines, `completed` the requests answered with
//! success, `failed` the failed requests plus the lines refused by validation (which are in
//! the error file). Timestamps batchdrop does not record (`finalizing_at`) are `null`;
//! `in_progress_at` is the job's creation (it plans in the create request).

use crate::ids::FileId;
use crate::records::BatchRecord;
use batchdrop_core::clock::parse_rfc3339;
use batchdrop_core::manifest::{ChunkState, JobStatus, Manifest};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// OpenAI's `completion_window`: a batch is due within a day.
const WINDOW_SECONDS: i64 = 24 * 3600;

#[derive(Debug, Clone, Serialize)]
pub struct BatchObject {
    pub id: String,
    pub object: &'static str,
    pub endpoint: String,
    pub errors: Option<Value>,
    pub input_file_id: String,
    pub completion_window: String,
    pub status: &'static str,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub created_at: i64,
    pub in_progress_at: Option<i64>,
    pub expires_at: i64,
    pub finalizing_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub expired_at: Option<i64>,
    pub cancelling_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    pub request_counts: RequestCounts,
    pub usage: Option<Value>,
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

/// The OpenAI status word of a job (`None`: no manifest yet).
pub fn status_of(manifest: Option<&Manifest>) -> &'static str {
    let Some(m) = manifest else {
        return "validating";
    };
    match m.status {
        JobStatus::Completed => "completed",
        JobStatus::Cancelled => "cancelled",
        JobStatus::Failed => "failed",
        JobStatus::Running if m.cancel_requested.is_some() => "cancelling",
        JobStatus::Running if m.planning.is_some() => "validating",
        JobStatus::Running
            if !m.chunks.is_empty()
                && m.chunks.iter().all(|c| c.state == ChunkState::Collected) =>
        {
            "finalizing"
        }
        JobStatus::Running => "in_progress",
    }
}

/// The batch object of `record`, whose job's manifest is `manifest` (if it exists yet).
pub fn batch_object(record: &BatchRecord, manifest: Option<&Manifest>, token: &str) -> BatchObject {
    let status = status_of(manifest);
    let finished_at = manifest
        .and_then(|m| m.finished_at.as_deref())
        .and_then(unix);
    let at = |when: &str| (status == when).then_some(finished_at).flatten();
    let counts = manifest.map(request_counts).unwrap_or(RequestCounts {
        total: 0,
        completed: 0,
        failed: 0,
    });
    let finished = manifest.is_some_and(|m| m.status.is_finished());
    let accepted = manifest.map_or(0, |m| m.counts.accepted);
    let rejected = manifest.map_or(0, |m| m.counts.rejected);
    BatchObject {
        id: record.id.clone(),
        object: "batch",
        endpoint: record.endpoint.clone(),
        errors: manifest.and_then(errors_of),
        input_file_id: record.input_file_id.clone(),
        completion_window: record.completion_window.clone(),
        status,
        output_file_id: (finished && accepted > 0).then(|| FileId::Output(token.to_string()).id()),
        error_file_id: (finished && rejected > 0).then(|| FileId::Errors(token.to_string()).id()),
        created_at: record.created_at,
        in_progress_at: manifest
            .filter(|m| m.planning.is_none() && m.status != JobStatus::Failed)
            .and_then(|m| unix(&m.created_at)),
        expires_at: record.created_at + WINDOW_SECONDS,
        finalizing_at: None,
        completed_at: at("completed"),
        failed_at: at("failed"),
        expired_at: None,
        cancelling_at: record.cancelling_at,
        cancelled_at: at("cancelled"),
        request_counts: counts,
        usage: manifest.map(usage_of),
        metadata: record.metadata.clone(),
    }
}

fn request_counts(m: &Manifest) -> RequestCounts {
    let (succeeded, failed) = if m.status.is_finished() {
        (m.counts.succeeded, m.counts.failed)
    } else {
        m.chunks
            .iter()
            .filter(|c| c.state == ChunkState::Collected)
            .fold((0, 0), |(s, f), c| (s + c.succeeded, f + c.failed))
    };
    RequestCounts {
        total: m.counts.lines,
        completed: succeeded,
        failed: failed + m.counts.rejected,
    }
}

/// A failed job's reason as OpenAI's `errors` list.
fn errors_of(m: &Manifest) -> Option<Value> {
    if m.status != JobStatus::Failed {
        return None;
    }
    let message = m
        .reason
        .clone()
        .unwrap_or_else(|| "the batch failed".into());
    Some(json!({"object": "list", "data": [
        {"code": "batch_failed", "message": message, "param": null, "line": null}
    ]}))
}

fn usage_of(m: &Manifest) -> Value {
    let usage = m.usage();
    json!({
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    })
}

fn unix(rfc3339: &str) -> Option<i64> {
    parse_rfc3339(rfc3339).ok().map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use batchdrop_core::manifest::{ChunkPlan, ChunkRecord, Counts, InputRef};

    fn manifest(status: JobStatus) -> Manifest {
        Manifest {
            job_id: "j1".into(),
            route: "sandbox".into(),
            provider: "openai".into(),
            input: InputRef {
                bucket: "b".into(),
                key: "k".into(),
                etag: "e".into(),
                bytes: 1,
            },
            results_prefix: "results/sandbox/api/acme/batch_x/".into(),
            status,
            reason: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            finished_at: None,
            counts: Counts {
                lines: 5,
                accepted: 4,
                rejected: 1,
                ..Counts::default()
            },
            max_attempts: 1,
            cancel_requested: None,
            planning: None,
            chunks: Vec::new(),
            lease: None,
            deadline: None,
            budget: None,
            webhook: None,
        }
    }

    fn chunk(index: u32, state: ChunkState, succeeded: u64, failed: u64) -> ChunkRecord {
        let mut c = ChunkRecord::staged(ChunkPlan {
            index,
            endpoint: "/v1/chat/completions".into(),
            model: "gpt-4o-mini".into(),
            requests: 2,
            bytes: 10,
            estimate: None,
        });
        c.state = state;
        c.succeeded = succeeded;
        c.failed = failed;
        c
    }

    fn record() -> BatchRecord {
        BatchRecord {
            id: "batch_t".into(),
            input_file_id: "file-f".into(),
            endpoint: "/v1/chat/completions".into(),
            completion_window: "24h".into(),
            metadata: None,
            created_at: 1_767_225_600,
            route: "sandbox".into(),
            job_id: "j1".into(),
            input_key: "k".into(),
            results_prefix: "p/".into(),
            cancelling_at: None,
            webhook: None,
        }
    }

    #[test]
    fn a_running_job_is_in_progress_until_every_chunk_is_collected() {
        let mut m = manifest(JobStatus::Running);
        m.chunks = vec![
            chunk(0, ChunkState::Collected, 2, 0),
            chunk(1, ChunkState::Submitted, 0, 0),
        ];
        assert_eq!(status_of(Some(&m)), "in_progress");
        let object = batch_object(&record(), Some(&m), "t");
        assert_eq!(
            object.request_counts,
            RequestCounts {
                total: 5,
                completed: 2,
                failed: 1
            }
        );
        assert_eq!(object.output_file_id, None);
        m.chunks[1].state = ChunkState::Collected;
        assert_eq!(status_of(Some(&m)), "finalizing");
        m.cancel_requested = Some("asked".into());
        assert_eq!(status_of(Some(&m)), "cancelling");
    }

    #[test]
    fn a_job_being_planned_or_not_yet_made_is_validating() {
        assert_eq!(status_of(None), "validating");
        let mut m = manifest(JobStatus::Running);
        m.planning = Some(Default::default());
        assert_eq!(status_of(Some(&m)), "validating");
    }

    #[test]
    fn a_completed_job_names_its_output_and_error_files() {
        let mut m = manifest(JobStatus::Completed);
        m.counts.succeeded = 3;
        m.counts.failed = 1;
        m.finished_at = Some("2026-01-01T00:10:00Z".into());
        let object = batch_object(&record(), Some(&m), "t");
        assert_eq!(object.status, "completed");
        assert_eq!(object.output_file_id.as_deref(), Some("file-out-t"));
        assert_eq!(object.error_file_id.as_deref(), Some("file-err-t"));
        assert_eq!(object.completed_at, Some(1_767_225_600 + 600));
        assert_eq!(object.failed_at, None);
        assert_eq!(object.request_counts.completed, 3);
        assert_eq!(object.request_counts.failed, 2);
    }

    #[test]
    fn a_failed_job_carries_its_reason_as_errors() {
        let mut m = manifest(JobStatus::Failed);
        m.reason = Some("route \"x\" is not configured".into());
        let object = batch_object(&record(), Some(&m), "t");
        assert_eq!(object.status, "failed");
        let errors = object.errors.unwrap_or_default();
        assert_eq!(
            errors["data"][0]["message"],
            "route \"x\" is not configured"
        );
    }
}
