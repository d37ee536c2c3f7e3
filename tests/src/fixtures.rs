//! The shared fixture files (`examples/`, `events/`) and what batchdrop must make of them.
//!
//! `examples/requests.jsonl` has 14 non-blank lines: 9 requests batchdrop accepts (one of which
//! the sandbox rejects: model `does-not-exist`) and 5 it rejects. Every end-to-end test that
//! runs it checks its results against the constants here.

use crate::BoxError;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// `examples/<name>`.
pub fn example(name: &str) -> PathBuf {
    workspace().join("examples").join(name)
}

/// `events/<name>`.
pub fn event(name: &str) -> PathBuf {
    workspace().join("events").join(name)
}

/// The `custom_id`s of `output.jsonl` for `examples/requests.jsonl`, in input order (line 8
/// has none and is named after its line number).
pub const REQUESTS_OUTPUT_IDS: [&str; 9] = [
    "review-001",
    "review-002",
    "review-004",
    "line-8",
    "review-006",
    "review-008",
    "review-009",
    "review-010",
    "review-011",
];

/// `review-009` asks for model `does-not-exist`: the sandbox answers it with a 404.
pub const REQUESTS_PROVIDER_REJECTED: &str = "review-009";

/// `(line, error code)` of each line of `errors.jsonl` for `examples/requests.jsonl`.
pub const REQUESTS_ERRORS: [(u64, &str); 5] = [
    (4, "invalid_json"),
    (6, "missing_field"),
    (7, "duplicate_custom_id"),
    (9, "not_an_object"),
    (11, "unsupported_endpoint"),
];

/// The counts of `summary.json` that every job has (others may come along).
pub const COUNTS: [&str; 5] = ["lines", "accepted", "rejected", "succeeded", "failed"];

/// [`COUNTS`] of `summary.json` for `examples/requests.jsonl`.
pub fn requests_counts() -> Value {
    serde_json::json!({"lines": 14, "accepted": 9, "rejected": 5, "succeeded": 8, "failed": 1})
}

/// The [`COUNTS`] of a summary, to compare with [`requests_counts`].
pub fn counts_of(summary: &Value) -> Value {
    COUNTS
        .iter()
        .map(|name| (name.to_string(), summary["counts"][name].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Parses JSON Lines, skipping blank lines.
pub fn json_lines(text: &str) -> Result<Vec<Value>, BoxError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{e} in line {l:?}").into()))
        .collect()
}

/// The `custom_id` of each line (`"?"` where there is none).
pub fn custom_ids(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap_or("?"))
        .collect()
}

/// `(line, error.code)` of each line of an `errors.jsonl`.
pub fn error_codes(lines: &[Value]) -> Vec<(u64, &str)> {
    lines
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap_or(0),
                e["error"]["code"].as_str().unwrap_or("?"),
            )
        })
        .collect()
}
