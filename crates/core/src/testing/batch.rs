//! One scripted batch: what the provider received ([`SubmittedBatch`], checked as OpenAI's
//! batch validation would), and the files it ends with (answers, rejections, shuffled).

use super::script::{End, Script};
use crate::provider::{BatchInfo, BatchState, RequestCounts, ResultFile};
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

/// A batch the provider accepted, as it received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmittedBatch {
    /// `batch_1`, `batch_2`, … in the order batches were created.
    pub id: String,
    pub input_file_id: String,
    pub job_id: String,
    pub chunk: u32,
    pub endpoint: String,
    pub model: String,
    /// The request lines, exactly as received, in order.
    pub lines: Vec<String>,
    pub custom_ids: Vec<String>,
}

#[derive(Debug)]
pub(super) struct Batch {
    pub(super) record: SubmittedBatch,
    pub(super) script: Script,
    pub(super) lookups: u32,
    pub(super) cancelled: bool,
    /// Set once the batch has ended; it never changes afterwards.
    pub(super) ended: Option<BatchInfo>,
}

/// The token usage the provider reports for a request: `(prompt_tokens, completion_tokens)`.
pub fn usage_of(custom_id: &str) -> (u64, u64) {
    let n = custom_id.len() as u64;
    (10 + n, 2 * n + 1)
}

/// Checks a chunk as OpenAI's batch validation would; returns (model, custom_ids, lines).
pub(super) fn check_chunk(
    body: &[u8],
    endpoint: &str,
    requests: u64,
    bytes: u64,
) -> Result<(String, Vec<String>, Vec<String>), String> {
    if body.len() as u64 != bytes {
        return Err(format!(
            "announced {bytes} bytes, the file has {}",
            body.len()
        ));
    }
    if !body.is_empty() && !body.ends_with(b"\n") {
        return Err("the file does not end with a newline".into());
    }
    let mut model: Option<String> = None;
    let mut ids = Vec::new();
    let mut lines = Vec::new();
    let mut seen = HashSet::new();
    for (n, raw) in body.split(|b| *b == b'\n').enumerate() {
        if raw.is_empty() {
            continue;
        }
        let n = n + 1;
        let text = std::str::from_utf8(raw).map_err(|_| format!("line {n} is not valid UTF-8"))?;
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("line {n} is not JSON: {e}"))?;
        let id = v["custom_id"]
            .as_str()
            .ok_or_else(|| format!("line {n} has no string custom_id"))?
            .to_string();
        if !seen.insert(id.clone()) {
            return Err(format!("line {n}: duplicate custom_id {id:?}"));
        }
        if v["method"] != "POST" {
            return Err(format!("line {n}: method must be POST"));
        }
        if v["url"] != endpoint {
            return Err(format!(
                "line {n}: url {} differs from the batch endpoint {endpoint}",
                v["url"]
            ));
        }
        let m = v["body"]["model"]
            .as_str()
            .ok_or_else(|| format!("line {n}: body.model missing"))?;
        match &model {
            None => model = Some(m.to_string()),
            Some(first) if first != m => {
                return Err(format!(
                    "line {n}: model {m:?} differs from {first:?}; one model per batch"
                ));
            }
            Some(_) => {}
        }
        ids.push(id);
        lines.push(text.to_string());
    }
    if ids.len() as u64 != requests {
        return Err(format!(
            "announced {requests} requests, the file has {}",
            ids.len()
        ));
    }
    if ids.is_empty() {
        return Err("the file has no requests".into());
    }
    Ok((model.unwrap_or_default(), ids, lines))
}

/// A 200 answer in OpenAI's output line shape.
fn answer(batch: &SubmittedBatch, i: usize) -> Value {
    let id = &batch.custom_ids[i];
    let (prompt, completion) = usage_of(id);
    let usage = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    });
    let body = if batch.endpoint == crate::providers::openai::EMBEDDINGS {
        json!({
            "object": "list",
            "model": batch.model,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 1.0]}],
            "usage": usage,
        })
    } else {
        json!({
            "id": format!("chatcmpl-{}-{i}", batch.id),
            "object": "chat.completion",
            "created": 0,
            "model": batch.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": format!("reply to {id}")},
                "finish_reason": "stop",
            }],
            "usage": usage,
        })
    };
    json!({
        "id": format!("batch_req_{}_{i}", batch.id),
        "custom_id": id,
        "response": {"status_code": 200, "request_id": format!("req_{}_{i}", batch.id), "body": body},
        "error": null,
    })
}

/// The answer to one request line sent on demand (outside a batch), as a batch would give it.
pub(super) fn answer_on_demand(request: &[u8], number: u64) -> Option<Value> {
    let line: Value = serde_json::from_slice(request).ok()?;
    let batch = SubmittedBatch {
        id: format!("on_demand_{number}"),
        input_file_id: String::new(),
        job_id: String::new(),
        chunk: 0,
        endpoint: line["url"].as_str()?.to_string(),
        model: line["body"]["model"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        lines: Vec::new(),
        custom_ids: vec![line["custom_id"].as_str()?.to_string()],
    };
    Some(answer(&batch, 0))
}

/// A request the model endpoint rejected: `status_code` 400 and `error: null`.
fn rejection(batch: &SubmittedBatch, i: usize) -> Value {
    json!({
        "id": format!("batch_req_{}_{i}", batch.id),
        "custom_id": batch.custom_ids[i],
        "response": {
            "status_code": 400,
            "request_id": format!("req_{}_{i}", batch.id),
            "body": {"error": {
                "message": format!("scripted rejection of {}", batch.custom_ids[i]),
                "type": "invalid_request_error",
                "param": null,
                "code": null,
            }},
        },
        "error": null,
    })
}

/// JSONL of `lines`, shuffled with a seed; never left in the original order when it can move.
fn shuffled_file(mut lines: Vec<Value>, seed: u64) -> Bytes {
    let original: Vec<Value> = lines.clone();
    fastrand::Rng::with_seed(seed).shuffle(&mut lines);
    if lines.len() > 1 && lines == original {
        lines.rotate_left(1);
    }
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(&serde_json::to_vec(&l).unwrap_or_default());
        out.push(b'\n');
    }
    Bytes::from(out)
}

impl Batch {
    pub(super) fn pending(&self, status: &str) -> BatchInfo {
        BatchInfo {
            id: self.record.id.clone(),
            status: status.to_string(),
            state: BatchState::Pending,
            result_files: Vec::new(),
            errors: Vec::new(),
            counts: RequestCounts {
                total: self.record.custom_ids.len() as u64,
                completed: 0,
                failed: 0,
            },
        }
    }

    /// Ends the batch: writes its files into `files` and fixes its final [`BatchInfo`].
    pub(super) fn end(&mut self, number: u64, files: &mut HashMap<String, Bytes>) -> BatchInfo {
        let b = &self.record;
        let total = b.custom_ids.len() as u64;
        let out_id = format!("file-out-{number}");
        let err_id = format!("file-err-{number}");
        let mut info = BatchInfo {
            id: b.id.clone(),
            status: String::new(),
            state: BatchState::Completed,
            result_files: Vec::new(),
            errors: Vec::new(),
            counts: RequestCounts {
                total,
                completed: 0,
                failed: 0,
            },
        };
        let end = if self.cancelled {
            End::Expired {
                answered: self.script.answered_when_cancelled,
            }
        } else {
            self.script.end.clone()
        };
        match end {
            End::Completed => {
                let lines: Vec<Value> = (0..b.custom_ids.len())
                    .map(|i| {
                        if self.script.rejected.contains(&b.custom_ids[i]) {
                            rejection(b, i)
                        } else {
                            answer(b, i)
                        }
                    })
                    .collect();
                let failed = (0..b.custom_ids.len())
                    .filter(|&i| self.script.rejected.contains(&b.custom_ids[i]))
                    .count() as u64;
                files.insert(out_id.clone(), shuffled_file(lines, number));
                info.status = "completed".into();
                info.result_files.push(ResultFile::Provider(out_id));
                info.counts.completed = total - failed;
                info.counts.failed = failed;
            }
            End::Expired { answered } => {
                let answered = answered.min(b.custom_ids.len());
                if answered > 0 {
                    let lines = (0..answered).map(|i| answer(b, i)).collect();
                    files.insert(out_id.clone(), shuffled_file(lines, number));
                    info.result_files.push(ResultFile::Provider(out_id));
                }
                info.counts.completed = answered as u64;
                if self.cancelled {
                    info.status = "cancelled".into();
                    info.state = BatchState::Cancelled;
                } else {
                    info.status = "expired".into();
                    info.state = BatchState::Expired;
                }
            }
            End::Failed { errors } => {
                info.status = "failed".into();
                info.state = BatchState::Failed;
                info.errors = errors;
            }
            End::AllFailed => {
                let lines = (0..b.custom_ids.len()).map(|i| rejection(b, i)).collect();
                files.insert(err_id.clone(), shuffled_file(lines, number));
                info.status = "completed".into();
                info.result_files.push(ResultFile::Provider(err_id));
                info.counts.failed = total;
            }
        }
        self.ended = Some(info.clone());
        info
    }
}
