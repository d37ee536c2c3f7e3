//! Test fakes that are real implementations of the ports (behind the `testing` feature).
//!
//! - [`ScriptedProvider`]: an in-memory batch provider that behaves like OpenAI's Files +
//!   Batches (ids, statuses, output and error files, shuffled output lines, the error-file
//!   rules) and whose batches each follow a [`Script`]: complete, stay pending for a while,
//!   expire half done, fail validation, fail every request, refuse the submit, … It counts every
//!   call so that tests can say "no duplicate batch" or "a finished job costs nothing".
//! - [`TestBed`]: an [`Engine`] over a [`MemoryStore`], a [`ManualClock`] and a scripted
//!   provider, with a `sandbox` route of small chunk limits.
//! - [`EventLog`]: an [`Observer`] that keeps every event.
//! - [`FaultyStore`]: a store over another that fails chosen writes, to play a crash.
//!
//! Everything here is deterministic: no sleeping, no network, no randomness but seeded.

use crate::clock::ManualClock;
use crate::config::Config;
use crate::engine::{Engine, JobEvent, Observer, SubmitOutcome};
use crate::provider::{
    BatchError, BatchInfo, BatchLookup, BatchState, ChunkUpload, Provider, ProviderError,
    Providers, RequestCounts, Submitted,
};
use crate::store::{
    ByteStream, GetResult, MemoryStore, ObjectMeta, ObjectStore, PutMode, StoreError,
};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// How a batch ends once it stops being pending.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// `completed`: every request answered (some maybe with a 4xx, see [`Script::rejecting`]).
    Completed,
    /// `expired`: only the first `answered` requests (chunk order) have a result; the others
    /// appear in no file.
    Expired { answered: usize },
    /// `failed` validation with these `errors.data`; no output or error file.
    Failed { errors: Vec<BatchError> },
    /// `completed` with `output_file_id: null`: every request is in the error file with
    /// `status_code` 400 and `error: null`.
    AllFailed,
}

/// What happens to one batch, from its submit to its end.
///
/// Built from one of the constructors and refined with the `after_*` / `rejecting` methods:
/// `Script::complete().after_polls(2).rejecting(["r3"])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Submits answered with a retryable HTTP 500 before one is accepted.
    submit_errors: u32,
    /// When set, every submit is refused with a non-retryable HTTP 400 and this message.
    refusal: Option<String>,
    /// Lookups answered `in_progress` before the batch ends.
    pending_polls: u32,
    end: End,
    /// custom_ids answered in the output file with `status_code` 400 and `error: null`.
    rejected: Vec<String>,
}

impl Default for Script {
    fn default() -> Self {
        Self::complete()
    }
}

impl Script {
    /// Every request answered with status 200; `completed` at the first lookup.
    pub fn complete() -> Self {
        Self {
            submit_errors: 0,
            refusal: None,
            pending_polls: 0,
            end: End::Completed,
            rejected: Vec::new(),
        }
    }

    /// `expired`, with only the first `answered` requests of the chunk answered; the rest are
    /// in no file at all.
    pub fn expire_after(answered: usize) -> Self {
        Self {
            end: End::Expired { answered },
            ..Self::complete()
        }
    }

    /// `failed` validation, reporting `errors` in `errors.data` (`line`: 1-based line of the
    /// chunk file).
    pub fn fail_validation(errors: impl IntoIterator<Item = BatchError>) -> Self {
        Self {
            end: End::Failed {
                errors: errors.into_iter().collect(),
            },
            ..Self::complete()
        }
    }

    /// `completed` although every request failed: no output file, only an error file whose
    /// lines carry `status_code` 400 and `error: null`.
    pub fn all_fail() -> Self {
        Self {
            end: End::AllFailed,
            ..Self::complete()
        }
    }

    /// The submit is refused for good: HTTP 400, not retryable. No batch is made.
    pub fn refuse_submit(message: impl Into<String>) -> Self {
        Self {
            refusal: Some(message.into()),
            ..Self::complete()
        }
    }

    /// Answers the first `polls` lookups with `in_progress`.
    pub fn after_polls(mut self, polls: u32) -> Self {
        self.pending_polls = polls;
        self
    }

    /// Fails the first `errors` submits of the chunk with a retryable HTTP 500.
    pub fn after_submit_errors(mut self, errors: u32) -> Self {
        self.submit_errors = errors;
        self
    }

    /// Answers these requests in the output file with `status_code` 400 and `error: null`.
    pub fn rejecting<I, S>(mut self, custom_ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rejected = custom_ids.into_iter().map(Into::into).collect();
        self
    }
}

/// How often each provider operation was called (failed calls included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    pub submits: u64,
    /// Searches for the batch of an interrupted submit.
    pub finds: u64,
    pub lookups: u64,
    pub cancels: u64,
    pub downloads: u64,
}

impl Calls {
    pub fn total(&self) -> u64 {
        self.submits + self.finds + self.lookups + self.cancels + self.downloads
    }
}

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
struct Batch {
    record: SubmittedBatch,
    script: Script,
    lookups: u32,
    cancelled: bool,
    /// Set once the batch has ended; it never changes afterwards.
    ended: Option<BatchInfo>,
}

#[derive(Debug, Default)]
struct State {
    default: Script,
    per_chunk: HashMap<u32, Script>,
    /// Submit attempts per (job, chunk).
    attempts: HashMap<(String, u32), u32>,
    batches: Vec<Batch>,
    files: HashMap<String, Bytes>,
    calls: Calls,
}

/// An in-memory OpenAI-like batch provider driven by [`Script`]s.
///
/// A batch's script is chosen when it is submitted: the one set for its chunk index with
/// [`Self::set_chunk_script`], else the default ([`Self::set_script`], initially
/// [`Script::complete`]). Changing scripts later affects only later submits.
///
/// Submit checks the chunk as OpenAI would (JSON object lines, unique string `custom_id`s,
/// `method` POST, every `url` equal to the endpoint, one model, and the request and byte counts
/// the engine announced) and refuses a bad one with HTTP 400. Output and error files are
/// streamed in small pieces, output lines shuffled (seeded by the batch number).
#[derive(Debug, Default)]
pub struct ScriptedProvider {
    state: Mutex<State>,
}

/// The token usage the provider reports for a request: `(prompt_tokens, completion_tokens)`.
pub fn usage_of(custom_id: &str) -> (u64, u64) {
    let n = custom_id.len() as u64;
    (10 + n, 2 * n + 1)
}

/// Bytes per piece when streaming a file, small so that lines span pieces.
const PIECE: usize = 7;

impl ScriptedProvider {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_script(self, script: Script) -> Self {
        self.set_script(script);
        self
    }

    pub fn with_chunk_script(self, chunk: u32, script: Script) -> Self {
        self.set_chunk_script(chunk, script);
        self
    }

    /// The script of later batches whose chunk has none of its own.
    pub fn set_script(&self, script: Script) {
        self.lock().default = script;
    }

    /// The script of later batches of chunk `chunk` (of any job).
    pub fn set_chunk_script(&self, chunk: u32, script: Script) {
        self.lock().per_chunk.insert(chunk, script);
    }

    pub fn calls(&self) -> Calls {
        self.lock().calls
    }

    /// Every batch created so far, in creation order.
    pub fn batches(&self) -> Vec<SubmittedBatch> {
        self.lock()
            .batches
            .iter()
            .map(|b| b.record.clone())
            .collect()
    }

    /// The raw content of a file the provider produced (output or error file).
    pub fn file(&self, id: &str) -> Option<Bytes> {
        self.lock().files.get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("scripted provider lock")
    }
}

fn http(operation: &'static str, status: u16, code: &str, message: String) -> ProviderError {
    ProviderError::Http {
        operation,
        status,
        code: Some(code.to_string()),
        message,
        retry_after: None,
    }
}

/// Checks a chunk as OpenAI's batch validation would; returns (model, custom_ids, lines).
fn check_chunk(
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
    let body = if batch.endpoint == crate::input::EMBEDDINGS {
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
    fn pending(&self, status: &str) -> BatchInfo {
        BatchInfo {
            id: self.record.id.clone(),
            status: status.to_string(),
            state: BatchState::Pending,
            output_file: None,
            error_file: None,
            errors: Vec::new(),
            counts: RequestCounts {
                total: self.record.custom_ids.len() as u64,
                completed: 0,
                failed: 0,
            },
        }
    }

    /// Ends the batch: writes its files into `files` and fixes its final [`BatchInfo`].
    fn end(&mut self, number: u64, files: &mut HashMap<String, Bytes>) -> BatchInfo {
        let b = &self.record;
        let total = b.custom_ids.len() as u64;
        let out_id = format!("file-out-{number}");
        let err_id = format!("file-err-{number}");
        let mut info = BatchInfo {
            id: b.id.clone(),
            status: String::new(),
            state: BatchState::Completed,
            output_file: None,
            error_file: None,
            errors: Vec::new(),
            counts: RequestCounts {
                total,
                completed: 0,
                failed: 0,
            },
        };
        let end = if self.cancelled {
            End::Expired { answered: 0 }
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
                info.output_file = Some(out_id);
                info.counts.completed = total - failed;
                info.counts.failed = failed;
            }
            End::Expired { answered } => {
                let answered = answered.min(b.custom_ids.len());
                if answered > 0 {
                    let lines = (0..answered).map(|i| answer(b, i)).collect();
                    files.insert(out_id.clone(), shuffled_file(lines, number));
                    info.output_file = Some(out_id);
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
                info.error_file = Some(err_id);
                info.counts.failed = total;
            }
        }
        self.ended = Some(info.clone());
        info
    }
}

#[async_trait]
impl Provider for ScriptedProvider {
    async fn submit(&self, chunk: ChunkUpload<'_>) -> Result<Submitted, ProviderError> {
        let script = {
            let mut state = self.lock();
            state.calls.submits += 1;
            let script = state
                .per_chunk
                .get(&chunk.chunk)
                .unwrap_or(&state.default)
                .clone();
            let attempt = state
                .attempts
                .entry((chunk.job_id.to_string(), chunk.chunk))
                .or_insert(0);
            *attempt += 1;
            if *attempt <= script.submit_errors {
                return Err(http(
                    "create batch",
                    500,
                    "server_error",
                    format!("scripted server error {attempt}"),
                ));
            }
            if let Some(message) = &script.refusal {
                return Err(http(
                    "create batch",
                    400,
                    "invalid_request_error",
                    message.clone(),
                ));
            }
            script
        };
        let body: BytesMut = chunk
            .body
            .open()
            .await?
            .try_fold(BytesMut::new(), |mut acc, piece| async move {
                acc.extend_from_slice(&piece);
                Ok(acc)
            })
            .await
            .map_err(|e| ProviderError::Transport {
                operation: "upload file",
                message: e.to_string(),
            })?;
        let (model, custom_ids, lines) =
            check_chunk(&body, chunk.endpoint, chunk.requests, chunk.bytes).map_err(|m| {
                http(
                    "create batch",
                    400,
                    "invalid_batch_input",
                    format!("the batch input is not valid: {m}"),
                )
            })?;
        let mut state = self.lock();
        let number = state.batches.len() + 1;
        let record = SubmittedBatch {
            id: format!("batch_{number}"),
            input_file_id: format!("file-in-{number}"),
            job_id: chunk.job_id.to_string(),
            chunk: chunk.chunk,
            endpoint: chunk.endpoint.to_string(),
            model,
            lines,
            custom_ids,
        };
        let submitted = Submitted {
            batch_id: record.id.clone(),
            input_file_id: Some(record.input_file_id.clone()),
        };
        state.batches.push(Batch {
            record,
            script,
            lookups: 0,
            cancelled: false,
            ended: None,
        });
        Ok(submitted)
    }

    /// Finds a batch by the job and chunk it was created for (OpenAI keeps them in `metadata`).
    async fn find_batch(
        &self,
        lookup: BatchLookup<'_>,
    ) -> Result<Option<Submitted>, ProviderError> {
        let mut state = self.lock();
        state.calls.finds += 1;
        Ok(state
            .batches
            .iter()
            .find(|b| b.record.job_id == lookup.job_id && b.record.chunk == lookup.chunk)
            .map(|b| Submitted {
                batch_id: b.record.id.clone(),
                input_file_id: Some(b.record.input_file_id.clone()),
            }))
    }

    async fn batch(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        let mut state = self.lock();
        state.calls.lookups += 1;
        let State { batches, files, .. } = &mut *state;
        let Some((n, batch)) = batches
            .iter_mut()
            .enumerate()
            .find(|(_, b)| b.record.id == batch_id)
        else {
            return Err(http(
                "retrieve batch",
                404,
                "not_found",
                format!("no batch {batch_id:?}"),
            ));
        };
        if let Some(info) = &batch.ended {
            return Ok(info.clone());
        }
        batch.lookups += 1;
        if !batch.cancelled && batch.lookups <= batch.script.pending_polls {
            return Ok(batch.pending("in_progress"));
        }
        Ok(batch.end(n as u64 + 1, files))
    }

    async fn cancel(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        let mut state = self.lock();
        state.calls.cancels += 1;
        let Some(batch) = state.batches.iter_mut().find(|b| b.record.id == batch_id) else {
            return Err(http(
                "cancel batch",
                404,
                "not_found",
                format!("no batch {batch_id:?}"),
            ));
        };
        if let Some(info) = &batch.ended {
            return Ok(info.clone());
        }
        batch.cancelled = true;
        Ok(batch.pending("cancelling"))
    }

    async fn download(&self, file: &str) -> Result<ByteStream, ProviderError> {
        let mut state = self.lock();
        state.calls.downloads += 1;
        let Some(bytes) = state.files.get(file).cloned() else {
            return Err(http(
                "download file",
                404,
                "not_found",
                format!("no file {file:?}"),
            ));
        };
        let pieces: Vec<std::io::Result<Bytes>> = (0..bytes.len())
            .step_by(PIECE)
            .map(|at| Ok(bytes.slice(at..(at + PIECE).min(bytes.len()))))
            .collect();
        Ok(Box::pin(futures::stream::iter(pieces)))
    }
}

/// An [`Observer`] that keeps every event, in order.
#[derive(Debug, Default)]
pub struct EventLog {
    events: Mutex<Vec<JobEvent>>,
}

impl EventLog {
    pub fn events(&self) -> Vec<JobEvent> {
        self.events.lock().expect("event log lock").clone()
    }
}

impl Observer for EventLog {
    fn event(&self, event: &JobEvent) {
        self.events
            .lock()
            .expect("event log lock")
            .push(event.clone());
    }
}

/// A store over another one that fails the next writes to chosen keys with a retryable
/// backend error, as if the process had died there. Reads, lists and deletes pass through.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    /// (key, writes still to let through first, writes still to fail)
    faults: Mutex<Vec<(String, u32, u32)>>,
    /// Writes let through so far (any key).
    writes: std::sync::atomic::AtomicU64,
    /// After this many writes, every write fails: the process "died".
    dies_after: Mutex<Option<u64>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            faults: Mutex::new(Vec::new()),
            writes: std::sync::atomic::AtomicU64::new(0),
            dies_after: Mutex::new(None),
        }
    }

    /// Lets `n` writes (any key) through, then fails every write after them, as if the process
    /// had died there.
    pub fn die_after_writes(&self, n: u64) {
        *self.dies_after.lock().expect("faulty store lock") = Some(n);
    }

    /// Writes that went through so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Fails the next `times` writes (put or put_stream) to `key`.
    pub fn fail_writes(&self, key: impl Into<String>, times: u32) {
        self.fail_writes_after(key, 0, times);
    }

    /// Lets `skip` writes to `key` through, then fails the `times` after them.
    pub fn fail_writes_after(&self, key: impl Into<String>, skip: u32, times: u32) {
        self.faults
            .lock()
            .expect("faulty store lock")
            .push((key.into(), skip, times));
    }

    fn check(&self, key: &str) -> Result<(), StoreError> {
        if let Some(limit) = *self.dies_after.lock().expect("faulty store lock")
            && self.writes() >= limit
        {
            return Err(StoreError::Backend {
                key: key.to_string(),
                message: "the process died before this write".into(),
                retryable: true,
                source: None,
            });
        }
        let result = self.check_key(key);
        if result.is_ok() {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        result
    }

    fn check_key(&self, key: &str) -> Result<(), StoreError> {
        let mut faults = self.faults.lock().expect("faulty store lock");
        let Some((_, skip, times)) = faults.iter_mut().find(|(k, _, n)| k == key && *n > 0) else {
            return Ok(());
        };
        if *skip > 0 {
            *skip -= 1;
            return Ok(());
        }
        *times -= 1;
        Err(StoreError::Backend {
            key: key.to_string(),
            message: "scripted write failure".into(),
            retryable: true,
            source: None,
        })
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        self.inner.head(key).await
    }
    async fn get_from(&self, key: &str, offset: u64) -> Result<GetResult, StoreError> {
        self.inner.get_from(key, offset).await
    }
    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<ObjectMeta, StoreError> {
        self.check(key)?;
        self.inner.put(key, body, mode).await
    }
    async fn put_stream(
        &self,
        key: &str,
        body: ByteStream,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        self.check(key)?;
        self.inner.put_stream(key, body, mode).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    fn describe(&self) -> String {
        format!("faulty+{}", self.inner.describe())
    }
}

/// 2026-01-01T00:00:00Z, where every [`TestBed`] clock starts.
pub const START_UNIX: i64 = 1_767_225_600;

/// The built-in configuration with the `sandbox` route limited to `max_requests` requests and
/// `max_bytes` bytes per batch.
pub fn small_config(max_requests: u64, max_bytes: u64) -> Config {
    let mut config = Config::builtin(&|_| None);
    if let Some(sandbox) = config.routes.get_mut("sandbox") {
        sandbox.limits.max_requests_per_batch = max_requests;
        sandbox.limits.max_bytes_per_batch = max_bytes;
        sandbox.limits.max_line_bytes = sandbox.limits.max_line_bytes.min(max_bytes);
    }
    config
}

/// An engine over an in-memory bucket, a manual clock and a [`ScriptedProvider`] that serves
/// the `sandbox` route (the `openai` route has no provider: its key is "not set").
pub struct TestBed {
    pub store: Arc<MemoryStore>,
    pub clock: Arc<ManualClock>,
    pub provider: Arc<ScriptedProvider>,
    pub providers: Arc<dyn Providers>,
    pub config: Arc<Config>,
    pub events: Arc<EventLog>,
    /// The engine of lease owner `worker-a`.
    pub engine: Engine,
}

/// The bucket name every [`TestBed`] engine uses.
pub const BUCKET: &str = "test-bucket";

impl TestBed {
    /// A bed whose `sandbox` route takes at most `max_requests` requests per batch.
    pub fn new(provider: ScriptedProvider, max_requests: u64) -> Self {
        Self::with_config(provider, small_config(max_requests, 1 << 20))
    }

    pub fn with_config(provider: ScriptedProvider, config: Config) -> Self {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(
            OffsetDateTime::from_unix_timestamp(START_UNIX).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        ));
        let provider = Arc::new(provider);
        let mut map: HashMap<String, Result<Arc<dyn Provider>, String>> = HashMap::new();
        map.insert("sandbox".into(), Ok(provider.clone() as Arc<dyn Provider>));
        map.insert("openai".into(), Err("OPENAI_API_KEY is not set".into()));
        let providers: Arc<dyn Providers> = Arc::new(map);
        let config = Arc::new(config);
        let events = Arc::new(EventLog::default());
        let engine = Engine::new(
            store.clone(),
            BUCKET,
            config.clone(),
            providers.clone(),
            clock.clone(),
        )
        .with_owner("worker-a")
        .with_observer(events.clone());
        Self {
            store,
            clock,
            provider,
            providers,
            config,
            events,
            engine,
        }
    }

    /// Another engine over the same bucket, clock and provider, with its own lease owner.
    pub fn engine(&self, owner: &str) -> Engine {
        self.engine_over(self.store.clone(), owner)
    }

    /// An engine over `store` (e.g. a [`FaultyStore`] over [`Self::store`]), with the bed's
    /// clock, config and provider.
    pub fn engine_over(&self, store: Arc<dyn ObjectStore>, owner: &str) -> Engine {
        Engine::new(
            store,
            BUCKET,
            self.config.clone(),
            self.providers.clone(),
            self.clock.clone(),
        )
        .with_owner(owner)
        .with_observer(self.events.clone())
    }

    /// Writes an object as a user's upload would.
    pub async fn upload(
        &self,
        key: &str,
        body: impl Into<Bytes>,
    ) -> Result<ObjectMeta, StoreError> {
        self.store.put(key, body.into(), PutMode::Overwrite).await
    }

    /// Uploads `body` under `key` and delivers its creation event (with the new ETag).
    pub async fn drop_file(
        &self,
        key: &str,
        body: impl Into<Bytes>,
    ) -> Result<(ObjectMeta, SubmitOutcome), crate::engine::JobError> {
        let meta = self.upload(key, body).await?;
        let outcome = self.engine.submit(key, Some(&meta.etag)).await?;
        Ok((meta, outcome))
    }
}
