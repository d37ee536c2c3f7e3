//! Collecting a chunk whose batch ended (or that never became one): its results put in chunk
//! order, one line per request (a made-up failure line for each request without a result),
//! the user's custom_ids given back, the tally of successes and usage, and the requests worth
//! another attempt staged again.

use super::JobError;
use super::events::JobEvent;
use super::run::JobRun;
use crate::chunk_files::Sidecar;
use crate::manifest::{ChunkState, Manifest, Usage};
use crate::provider::{
    BatchError, BatchInfo, BatchState, Leftovers, Provider, ProviderError, ResultFacts, ResultFile,
};
use crate::providers;
use crate::store::{ObjectStoreExt, PutMode, StoreError, lines_of};
use crate::writer::StreamWriter;
use std::collections::HashMap;
use tokio::io::AsyncBufReadExt;

/// How a chunk ended: what [`JobRun::collect`] is told.
pub(super) enum Ending<'a> {
    /// Its batch reached a terminal state at the provider.
    Batch(&'a BatchInfo),
    /// It never became a batch: no result files; every request gets the failure `state` says,
    /// and the chunk the provider status word `status`.
    NeverSent {
        state: BatchState,
        status: &'static str,
        /// What the batch as a whole failed with, if anything.
        error: Option<BatchError>,
    },
    /// It never became a batch because batchdrop withheld it (over budget): every request
    /// fails with the error's own code and message, and the chunk takes the code as its status.
    Withheld(BatchError),
}

impl Ending<'_> {
    /// A chunk cancelled before it reached the provider.
    pub(super) fn cancelled_unsent() -> Self {
        Ending::NeverSent {
            state: BatchState::Cancelled,
            status: "cancelled",
            error: None,
        }
    }

    /// A chunk the provider refused for good (not worth submitting again): its requests fail.
    pub(super) fn refused(why: &ProviderError) -> Self {
        Ending::NeverSent {
            state: BatchState::Failed,
            status: "rejected",
            error: Some(BatchError {
                code: "batch_rejected".into(),
                message: why.to_string(),
                line: None,
            }),
        }
    }

    fn state(&self) -> BatchState {
        match self {
            Ending::Batch(info) => info.state,
            Ending::NeverSent { state, .. } => *state,
            Ending::Withheld(_) => BatchState::Failed,
        }
    }

    /// The provider's status word recorded for the chunk.
    fn status(&self) -> &str {
        match self {
            Ending::Batch(info) => &info.status,
            Ending::NeverSent { status, .. } => status,
            Ending::Withheld(error) => &error.code,
        }
    }

    /// The batch's errors: as a whole (no line) or of one request (its line in the chunk).
    fn errors(&self) -> &[BatchError] {
        match self {
            Ending::Batch(info) => &info.errors,
            Ending::NeverSent { error, .. } => error.as_slice(),
            Ending::Withheld(error) => std::slice::from_ref(error),
        }
    }

    /// The provider's result files to read (output, then errors).
    fn files(&self) -> &[ResultFile] {
        match self {
            Ending::Batch(info) => &info.result_files,
            Ending::NeverSent { .. } | Ending::Withheld(_) => &[],
        }
    }
}

impl JobRun<'_> {
    /// Puts a finished batch's results in chunk order, one per request, and tallies them.
    pub(super) async fn collect(
        &mut self,
        manifest: &mut Manifest,
        i: usize,
        provider: &dyn Provider,
        ending: Ending<'_>,
    ) -> Result<(), JobError> {
        self.acquire(manifest).await?;
        let engine = self.engine;
        let index = manifest.chunks[i].plan.index;
        let dialect =
            providers::dialect(&manifest.provider).map_err(|e| ProviderError::Unavailable {
                reason: e.to_string(),
            })?;
        // The user's custom_id where the request went out under another one.
        let restore = Sidecar::open(engine.store.as_ref(), &self.keys, index)
            .await?
            .user_ids()
            .await?;
        // custom_id (as sent) → position in the chunk.
        let mut positions: HashMap<String, usize> = HashMap::new();
        let mut ids: Vec<String> = Vec::new();
        let (_, mut reader) = engine.store.reader(&self.keys.chunk(index)).await?;
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| StoreError::io_at(&self.keys.chunk(index), e))?
                == 0
            {
                break;
            }
            let id = dialect.request_id(&line).unwrap_or_default();
            positions.insert(id.clone(), ids.len());
            ids.push(id);
        }
        let mut slots: Vec<Option<(Vec<u8>, ResultFacts)>> = vec![None; ids.len()];
        let mut unexpected = 0u64;
        for file in ending.files() {
            let body = match file {
                ResultFile::Provider(name) if name.is_empty() => continue,
                ResultFile::Provider(name) => provider.download(name).await?,
                // A job that was stopped or expired early may have written nothing.
                ResultFile::Bucket(key) => match engine.store.get(key).await {
                    Ok(got) => got.body,
                    Err(StoreError::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                },
            };
            let mut reader = lines_of(body);
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line).await.map_err(|e| {
                    ProviderError::Transport {
                        operation: "download results",
                        message: e.to_string(),
                    }
                })? == 0
                {
                    break;
                }
                let trimmed = line.trim_ascii();
                if trimmed.is_empty() {
                    continue;
                }
                let facts = match dialect.read_result(trimmed) {
                    Ok(f) => f,
                    Err(_) => {
                        unexpected += 1;
                        continue;
                    }
                };
                match positions.get(&facts.custom_id) {
                    Some(&pos) if slots[pos].is_none() => {
                        slots[pos] = Some((trimmed.to_vec(), facts));
                    }
                    _ => unexpected += 1,
                }
            }
        }
        if unexpected > 0 {
            tracing::warn!(
                job_id = %manifest.job_id,
                chunk = index,
                unexpected,
                "provider result lines that match no request of the batch were left out"
            );
        }
        let (code, why) = match (&ending, ending.state()) {
            (Ending::Withheld(error), _) => (error.code.as_str(), error.message.clone()),
            (_, BatchState::Expired) => (
                "batch_expired",
                "the batch expired before this request ran".to_string(),
            ),
            (_, BatchState::Cancelled) => (
                "batch_cancelled",
                "the batch was cancelled before this request ran".to_string(),
            ),
            (_, BatchState::Failed) => (
                "batch_failed",
                match ending.errors().iter().find(|e| e.line.is_none()) {
                    Some(e) => format!("the batch failed: {}: {}", e.code, e.message),
                    None => "the batch failed validation".to_string(),
                },
            ),
            (_, BatchState::Completed | BatchState::Pending) => (
                "missing_result",
                "the provider returned no result for this request".to_string(),
            ),
        };
        let line_errors: HashMap<u64, &BatchError> = ending
            .errors()
            .iter()
            .filter_map(|e| e.line.map(|l| (l, e)))
            .collect();
        // The provider refused the work for capacity: everything goes again once in-flight
        // work has drained.
        let capacity = ending.state() == BatchState::Failed
            && ending
                .errors()
                .iter()
                .any(|e| dialect.is_capacity_refusal(e));
        // Cancelled at the deadline cutoff: what it did not answer never ran, and goes on
        // through the synchronous lane whatever attempt this was.
        let cut = manifest.chunks[i].deadline_cut;
        let missing_retryable =
            capacity || cut || matches!(code, "batch_expired" | "missing_result");
        let (attempt, max_attempts) = (manifest.chunks[i].attempt, manifest.max_attempts);
        let may_retry = (cut || attempt < max_attempts) && manifest.cancel_requested.is_none();
        let mut retry: Vec<usize> = Vec::new();
        let mut tally = (0u64, 0u64, Usage::default());
        // The same usage by the model each result names, to price batches that mix models.
        let mut by_model: std::collections::BTreeMap<String, Usage> = Default::default();
        let mut out = StreamWriter::open(
            engine.store.clone(),
            self.keys.chunk_results(index),
            PutMode::Overwrite,
        );
        for (pos, slot) in slots.into_iter().enumerate() {
            // Every request keeps a line here, also one sent again: if the retry never comes
            // back, this attempt's line is the answer.
            let retryable = match slot {
                Some((bytes, facts)) => {
                    let usage = facts.usage();
                    tally.2.add(&usage);
                    if !usage.is_empty() {
                        let m = by_model.entry(facts.model.clone().unwrap_or_default());
                        m.or_default().add(&usage);
                    }
                    let user_id = restore.get(&pos).map(String::as_str);
                    out.write(&dialect.output_line(&bytes, user_id)).await?;
                    if facts.succeeded {
                        tally.0 += 1;
                        false
                    } else {
                        facts.retryable || (cut && facts.not_run)
                    }
                }
                None => {
                    let message = match line_errors.get(&(pos as u64 + 1)) {
                        Some(e) => format!("{why}: {}: {}", e.code, e.message),
                        None => why.clone(),
                    };
                    let missing = dialect.missing_result(&ids[pos], code, &message);
                    let user_id = restore.get(&pos).map(String::as_str);
                    out.write(&dialect.output_line(&missing, user_id)).await?;
                    missing_retryable && !line_errors.contains_key(&(pos as u64 + 1))
                }
            };
            out.write(b"\n").await?;
            if retryable && may_retry {
                retry.push(pos);
            }
        }
        out.finish().await?;
        let failed = ids.len() as u64 - tally.0 - retry.len() as u64;
        if !retry.is_empty() {
            self.stage_retry(manifest, i, &retry, capacity).await?;
        }
        let chunk = &mut manifest.chunks[i];
        chunk.state = ChunkState::Collected;
        chunk.provider_status = Some(ending.status().to_string());
        chunk.succeeded = tally.0;
        chunk.failed = failed;
        chunk.retried = retry.len() as u64;
        chunk.usage = tally.2;
        chunk.usage_by_model = by_model;
        let batch_id = chunk.batch_id.clone().unwrap_or_default();
        let input_file_id = chunk.input_file_id.clone();
        self.save(manifest).await?;
        // The lines are in the bucket and the manifest says so: what the batch left at the
        // provider can go (a crash before this leaves it there, as `keep_provider_files` does).
        let keep = engine
            .config
            .route(&manifest.route)
            .is_none_or(|r| r.keep_provider_files);
        if !keep && !batch_id.is_empty() {
            let leftovers = Leftovers {
                batch_id: &batch_id,
                input_file_id: input_file_id.as_deref(),
                result_files: ending.files(),
            };
            if let Err(e) = provider.forget(leftovers).await {
                tracing::warn!(
                    job_id = manifest.job_id,
                    chunk = index,
                    batch_id,
                    error = %e,
                    "the batch's files stay at the provider"
                );
            }
        }
        let data = serde_json::json!({
            "job_id": manifest.job_id,
            "route": manifest.route,
            "chunk": index,
            "batch_id": batch_id,
            "status": ending.status(),
            "succeeded": tally.0,
            "failed": failed,
        });
        engine.observer.event(&JobEvent::BatchCollected {
            job_id: manifest.job_id.clone(),
            chunk: index,
            batch_id,
            status: ending.status().to_string(),
            succeeded: tally.0,
            failed,
        });
        engine.enqueue_batch_collected(manifest, index, data).await;
        Ok(())
    }
}
