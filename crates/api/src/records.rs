//! What the Batch API keeps about a file and a batch (plain data, stored as JSON beside them).
//! A batch's progress is not kept here: it is read from its engine job's manifest.

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
}
