//! [`ScriptedProvider`]: an in-memory batch provider that behaves like OpenAI's Files +
//! Batches, each batch following its [`Script`], counting every call.

use super::batch::{Batch, SubmittedBatch, check_chunk};
use super::script::Script;
use crate::provider::{BatchInfo, BatchLookup, ChunkUpload, Provider, ProviderError, Submitted};
use crate::store::ByteStream;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use std::collections::HashMap;
use std::sync::Mutex;

/// How often each provider operation was called (failed calls included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    pub submits: u64,
    /// Searches for the batch of an interrupted submit.
    pub finds: u64,
    pub lookups: u64,
    pub cancels: u64,
    pub downloads: u64,
    /// Requests sent one by one on demand.
    pub invokes: u64,
}

impl Calls {
    pub fn total(&self) -> u64 {
        self.submits + self.finds + self.lookups + self.cancels + self.downloads + self.invokes
    }
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
    /// After each accepted submit: the ids of the batches not ended then (it included).
    open_at_submits: Vec<Vec<String>>,
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

    /// For each batch accepted, in order: the ids of the batches that had not ended right after
    /// it was created (it included) — what the provider's queue held.
    pub fn open_at_submits(&self) -> Vec<Vec<String>> {
        self.lock().open_at_submits.clone()
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
    crate::providers::http::refused(operation, status, Some(code.to_string()), message, None)
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
        let open = state
            .batches
            .iter()
            .filter(|b| b.ended.is_none())
            .map(|b| b.record.id.clone())
            .collect();
        state.open_at_submits.push(open);
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

    /// Answers the request as a batch would.
    async fn invoke(&self, _model: &str, request: &[u8]) -> Result<Vec<u8>, ProviderError> {
        let mut state = self.lock();
        state.calls.invokes += 1;
        let number = state.calls.invokes;
        let answer = super::batch::answer_on_demand(request, number).ok_or_else(|| {
            http(
                "invoke",
                400,
                "invalid_request",
                "not an OpenAI batch line".into(),
            )
        })?;
        serde_json::to_vec(&answer).map_err(|e| ProviderError::Decode {
            operation: "invoke",
            message: e.to_string(),
        })
    }
}
