//! What the Batch API keeps about a file and a batch (plain data, stored as JSON beside them).
//! A batch's progress is not kept here: it is read from its engine job's manifest.

use batchdrop_core::manifest::JobWebhook;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub id: String,
    pub bytes: u64,
    pub created_at: i64,
    pub filename: String,
    pub purpose: String,
}

/// A batch: what was asked, on which route, and the engine job that runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub id: String,
    pub input_file_id: String,
    pub endpoint: String,
    pub completion_window: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    pub created_at: i64,
    pub route: String,
    pub job_id: String,
    /// The key of the input file's content (the job's input).
    pub input_key: String,
    pub results_prefix: String,
    /// When the batch was asked to cancel (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelling_at: Option<i64>,
    /// The webhook of the key that created it, which its job sends to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<JobWebhook>,
}

/// An upload in parts (OpenAI's Uploads API): what was announced, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub id: String,
    /// The size announced at creation; the parts must add up to it.
    pub bytes: u64,
    pub created_at: i64,
    pub expires_at: i64,
    pub filename: String,
    pub mime_type: String,
    pub purpose: String,
    pub state: UploadState,
    /// The parts it was completed with, in order (set with [`UploadState::Completed`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_ids: Vec<String>,
    /// The file it became (set with [`UploadState::Completed`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
}

/// Where an upload is. An upload past its `expires_at` while pending shows as expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadState {
    Pending,
    Completed,
    Cancelled,
}
