//! The handful of OpenAI wire types the client needs.

use crate::provider::{BatchError, BatchInfo, BatchState, RequestCounts, ResultFile};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct FileObject {
    pub id: String,
}

#[derive(Debug, Deserialize)]
pub struct BatchList {
    #[serde(default)]
    pub data: Vec<BatchObject>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub last_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct BatchObject {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub input_file_id: Option<String>,
    #[serde(default)]
    pub metadata: Option<std::collections::HashMap<String, String>>,
    #[serde(default)]
    pub output_file_id: Option<String>,
    #[serde(default)]
    pub error_file_id: Option<String>,
    #[serde(default)]
    pub errors: Option<ErrorList>,
    #[serde(default)]
    pub request_counts: Option<Counts>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorList {
    #[serde(default)]
    pub data: Vec<ErrorEntry>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorEntry {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub line: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Counts {
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub completed: u64,
    #[serde(default)]
    pub failed: u64,
}

impl BatchObject {
    pub fn into_info(self) -> BatchInfo {
        let state = match self.status.as_str() {
            "completed" => BatchState::Completed,
            "failed" => BatchState::Failed,
            "expired" => BatchState::Expired,
            "cancelled" => BatchState::Cancelled,
            _ => BatchState::Pending,
        };
        let counts = self.request_counts.unwrap_or_default();
        BatchInfo {
            id: self.id,
            status: self.status,
            state,
            // A clean batch may report an empty-string error file.
            result_files: [self.output_file_id, self.error_file_id]
                .into_iter()
                .flatten()
                .filter(|f| !f.is_empty())
                .map(ResultFile::Provider)
                .collect(),
            errors: self
                .errors
                .map(|e| e.data)
                .unwrap_or_default()
                .into_iter()
                .map(|e| BatchError {
                    code: e.code.unwrap_or_else(|| "unknown".into()),
                    message: e.message.unwrap_or_default(),
                    line: e.line,
                })
                .collect(),
            counts: RequestCounts {
                total: counts.total,
                completed: counts.completed,
                failed: counts.failed,
            },
        }
    }
}
