//! The end of a job: output.jsonl (every chunk's results merged back into input order),
//! errors.jsonl (the rejected lines, in line order), then summary.json, and the job leaves
//! the index. Both merges are k-way: memory holds one line per source, not the job.

use super::JobError;
use super::run::JobRun;
use crate::chunk_files::Sidecar;
use crate::clock::rfc3339;
use crate::layout;
use crate::manifest::{JobStatus, Manifest};
use crate::store::{ObjectStoreExt, PutMode, StoreError};
use crate::writer::StreamWriter;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use tokio::io::AsyncBufReadExt;

impl JobRun<'_> {
    /// Writes output.jsonl (input order), errors.jsonl, settles the job's spend of the day
    /// (a route with `max_usd_per_day`), then summary.json; closes the job.
    pub(super) async fn finish(&mut self, manifest: &mut Manifest) -> Result<(), JobError> {
        self.acquire(manifest).await?;
        let engine = self.engine;
        // Routes with reuse_results: repeats within the file get their first line's answer,
        // and the job's answers enter the route's index.
        self.answer_followers(manifest).await?;
        self.index_answers(manifest).await?;
        // A newer upload of the same key owns results/: this job must not overwrite it.
        let superseded = match engine.store.head(&manifest.input.key).await {
            Ok(now) => now.etag != manifest.input.etag,
            Err(StoreError::NotFound { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        let summary_key = if superseded {
            self.keys.summary()
        } else {
            self.write_output(manifest).await?;
            self.write_errors(manifest).await?;
            format!("{}summary.json", manifest.results_prefix)
        };
        self.settle_spend(manifest).await?;
        self.close(manifest, &summary_key, |done| {
            done.counts.succeeded = done.chunks.iter().map(|c| c.succeeded).sum();
            done.counts.failed = done.chunks.iter().map(|c| c.failed).sum();
            done.status = JobStatus::Completed;
            if let Some(why) = &done.cancel_requested {
                done.status = JobStatus::Cancelled;
                done.reason = Some(why.clone());
            }
            // Refused for its cost: nothing was sent.
            if let Some(why) = done.budget.as_ref().and_then(|b| b.refused.clone()) {
                done.status = JobStatus::Failed;
                done.reason = Some(why);
            }
            if superseded {
                done.status = JobStatus::Cancelled;
                done.reason = Some(format!(
                    "superseded: {} was uploaded again; results stay with the newer upload",
                    done.input.key
                ));
            }
        })
        .await
    }

    /// Ends a job: `change` (its finished state) is made on a copy of `manifest` (see
    /// [`JobRun::update`]), whose summary is written at `summary_key` before the copy is saved
    /// and replaces `manifest`; the job then leaves the index.
    pub(super) async fn close(
        &mut self,
        manifest: &mut Manifest,
        summary_key: &str,
        change: impl FnOnce(&mut Manifest),
    ) -> Result<(), JobError> {
        let engine = self.engine;
        let finished_at = rfc3339(engine.clock.now());
        let end = |done: &mut Manifest| {
            change(done);
            done.finished_at = Some(finished_at);
        };
        self.update(manifest, end, Some(summary_key)).await?;
        engine
            .store
            .delete(&layout::active_key(&manifest.job_id))
            .await?;
        engine.finished_event(manifest);
        Ok(())
    }

    /// Merges the parts of the rejected lines (one per planning segment, and the duplicates)
    /// into errors.jsonl, in line order: a k-way merge, one line per part in memory.
    async fn write_errors(&self, manifest: &Manifest) -> Result<(), JobError> {
        let store = &self.engine.store;
        let keys: Vec<String> = store
            .list(&self.keys.rejected_parts())
            .await?
            .into_iter()
            .map(|m| m.key)
            .collect();
        let mut parts = Vec::with_capacity(keys.len());
        for key in keys {
            let (_, reader) = store.reader(&key).await?;
            parts.push((key, reader));
        }
        let mut current: Vec<Vec<u8>> = vec![Vec::new(); parts.len()];
        let mut heap = BinaryHeap::new();
        for (p, (key, reader)) in parts.iter_mut().enumerate() {
            if let Some(n) = next_rejection(key, reader, &mut current[p]).await? {
                heap.push(Reverse((n, p)));
            }
        }
        let mut out = StreamWriter::open(
            store.clone(),
            format!("{}errors.jsonl", manifest.results_prefix),
            PutMode::Overwrite,
        );
        while let Some(Reverse((_, p))) = heap.pop() {
            out.write(&current[p]).await?;
            let (key, reader) = &mut parts[p];
            if let Some(n) = next_rejection(key, reader, &mut current[p]).await? {
                heap.push(Reverse((n, p)));
            }
        }
        out.finish().await?;
        Ok(())
    }

    /// Merges the chunks' ordered results by input line number (a k-way merge: memory holds
    /// one line per chunk, not the job).
    async fn write_output(&self, manifest: &Manifest) -> Result<(), JobError> {
        let store = &self.engine.store;
        let mut sources = Vec::new();
        let attempts: Vec<u32> = manifest.chunks.iter().map(|c| c.attempt).collect();
        for c in &manifest.chunks {
            let sidecar = Sidecar::open(store.as_ref(), &self.keys, c.plan.index).await?;
            let (_, results) = store.reader(&self.keys.chunk_results(c.plan.index)).await?;
            sources.push(MergeSource {
                sidecar,
                results,
                key: self.keys.chunk_results(c.plan.index),
            });
        }
        // Ordered by input line, then latest attempt first: a request sent again keeps only
        // its last attempt's line.
        let mut heap = BinaryHeap::new();
        let mut current: Vec<Vec<u8>> = vec![Vec::new(); sources.len()];
        for (s, source) in sources.iter_mut().enumerate() {
            if let Some(n) = source.next(&mut current[s]).await? {
                heap.push(Reverse((n, Reverse(attempts[s]), s)));
            }
        }
        let mut out = StreamWriter::open(
            store.clone(),
            format!("{}output.jsonl", manifest.results_prefix),
            PutMode::Overwrite,
        );
        let mut last_line = None;
        while let Some(Reverse((n, _, s))) = heap.pop() {
            if last_line != Some(n) {
                out.write(&current[s]).await?;
                last_line = Some(n);
            }
            if let Some(n) = sources[s].next(&mut current[s]).await? {
                heap.push(Reverse((n, Reverse(attempts[s]), s)));
            }
        }
        out.finish().await?;
        Ok(())
    }
}

/// One collected chunk in the merge of output.jsonl: its sidecar and its results, row for row.
struct MergeSource {
    sidecar: Sidecar,
    results: Box<dyn tokio::io::AsyncBufRead + Send + Unpin>,
    /// The results' key, for errors.
    key: String,
}

impl MergeSource {
    /// Reads the next (input line number, result line) pair into `line`.
    async fn next(&mut self, line: &mut Vec<u8>) -> Result<Option<u64>, StoreError> {
        let Some(n) = self.sidecar.next().await?.map(|entry| entry.line()) else {
            return Ok(None);
        };
        line.clear();
        self.results
            .read_until(b'\n', line)
            .await
            .map_err(|e| StoreError::io_at(&self.key, e))?;
        if line.last() != Some(&b'\n') {
            return Err(StoreError::Io {
                key: self.key.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "fewer results than requests in a collected chunk",
                ),
            });
        }
        Ok(Some(n))
    }
}

/// Reads the next line of a part of the rejected lines into `line`; returns its input line.
async fn next_rejection(
    key: &str,
    reader: &mut (dyn tokio::io::AsyncBufRead + Send + Unpin),
    line: &mut Vec<u8>,
) -> Result<Option<u64>, StoreError> {
    #[derive(serde::Deserialize)]
    struct At {
        line: u64,
    }
    line.clear();
    if reader
        .read_until(b'\n', line)
        .await
        .map_err(|e| StoreError::io_at(key, e))?
        == 0
    {
        return Ok(None);
    }
    let at: At = serde_json::from_slice(line).map_err(|e| StoreError::Backend {
        key: key.to_string(),
        message: format!("not a rejected line: {e}"),
        retryable: false,
        source: Some(Box::new(e)),
    })?;
    Ok(Some(at.line))
}
