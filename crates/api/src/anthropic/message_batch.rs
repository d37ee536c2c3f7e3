//! Anthropic's Message Batch object, made from a batch record and its engine job's manifest.
//!
//! `processing_status`: `in_progress` while the job runs, `canceling` once asked to cancel,
//! `ended` once it has finished (whichever way). `request_counts`: `succeeded` the requests
//! answered with success, `errored` the failed requests plus the lines refused by validation,
//! `processing` the rest; `canceled` and `expired` stay 0 (a request its batch never ran is
//! counted in `errored`, its result line says `canceled` or `expired`). Times are RFC 3339;
//! `expires_at` is created + 24 h; `results_url` is set once ended.

use crate::records::BatchRecord;
use batchdrop_core::clock::rfc3339;
use batchdrop_core::manifest::{ChunkState, JobStatus, Manifest};
use serde::Serialize;
use time::OffsetDateTime;

/// A batch is due within a day.
const WINDOW_SECONDS: i64 = 24 * 3600;

#[derive(Debug, Clone, Serialize)]
pub struct MessageBatch {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub processing_status: &'static str,
    pub request_counts: RequestCounts,
    pub created_at: String,
    pub ended_at: Option<String>,
    pub expires_at: String,
    pub cancel_initiated_at: Option<String>,
    pub archived_at: Option<String>,
    pub results_url: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    pub processing: u64,
    pub succeeded: u64,
    pub errored: u64,
    pub canceled: u64,
    pub expired: u64,
}

/// Whether the batch has ended: its job finished, or it never started (its input is gone).
pub fn ended(manifest: Option<&Manifest>) -> bool {
    manifest.is_none_or(|m| m.status.is_finished())
}

/// The message batch `id` of `record`, whose job's manifest is `manifest`; `results_url`
/// is where its results are served (shown once it has ended).
pub fn message_batch(
    id: String,
    record: &BatchRecord,
    manifest: Option<&Manifest>,
    results_url: String,
) -> MessageBatch {
    let ended = ended(manifest);
    let status = if ended {
        "ended"
    } else if record.cancelling_at.is_some()
        || manifest.is_some_and(|m| m.cancel_requested.is_some())
    {
        "canceling"
    } else {
        "in_progress"
    };
    MessageBatch {
        id,
        kind: "message_batch",
        processing_status: status,
        request_counts: manifest.map(counts).unwrap_or_default(),
        created_at: at(record.created_at),
        ended_at: if ended {
            Some(
                manifest
                    .and_then(|m| m.finished_at.clone())
                    .unwrap_or_else(|| at(record.created_at)),
            )
        } else {
            None
        },
        expires_at: at(record.created_at + WINDOW_SECONDS),
        cancel_initiated_at: record.cancelling_at.map(at),
        archived_at: None,
        results_url: ended.then_some(results_url),
    }
}

fn counts(m: &Manifest) -> RequestCounts {
    let (succeeded, failed) = if m.status.is_finished() {
        (m.counts.succeeded, m.counts.failed)
    } else {
        m.chunks
            .iter()
            .filter(|c| c.state == ChunkState::Collected)
            .fold((0, 0), |(s, f), c| (s + c.succeeded, f + c.failed))
    };
    let errored = failed + m.counts.rejected;
    let processing = if m.status == JobStatus::Running {
        m.counts.lines.saturating_sub(succeeded + errored)
    } else {
        0
    };
    RequestCounts {
        processing,
        succeeded,
        errored,
        canceled: 0,
        expired: 0,
    }
}

fn at(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .map(rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}
