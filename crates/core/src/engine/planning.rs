//! Planning an upload: reading it from the manifest's checkpoint on, staging each segment
//! ([`crate::staging`]), taking out the lines that reuse a custom_id once the whole upload is
//! staged, and ending the job if the upload changed meanwhile.

use super::run::{JobRun, next_chunk_index};
use super::{COPY_CONCURRENCY, JobError, JobEvent, PLAN_CHECK_LINES, READ_AHEAD};
use crate::chunk_files::{self, Sidecar, copy_chunk};
use crate::ids;
use crate::input::{RejectCode, Rejection};
use crate::manifest::{ChunkRecord, JobStatus, Manifest, PlanCursor};
use crate::provider::ProviderError;
use crate::providers;
use crate::staging::Stager;
use crate::store::{PutMode, StoreError, StreamLines, read_ahead};
use crate::writer::StreamWriter;
use futures::{StreamExt, TryStreamExt};
use std::collections::HashMap;

/// The chunks that held a reused custom_id, copied without those lines: what
/// [`JobRun::drop_duplicates`] wrote, to be taken into the manifest.
#[derive(Default)]
struct Deduplicated {
    /// (position in the manifest's chunks, new index, requests, bytes) of each copy.
    copies: Vec<(usize, u32, u64, u64)>,
    /// The indices the copies replace (their files go once the manifest no longer names them).
    replaced: Vec<u32>,
    /// Lines rejected as duplicates.
    rejected: u64,
    /// Their line numbers.
    lines: std::collections::HashSet<u64>,
}

impl Deduplicated {
    /// The lowest index no copy of it uses (0 without copies).
    fn next_index(&self) -> u32 {
        self.copies.iter().map(|c| c.1 + 1).max().unwrap_or(0)
    }

    fn apply(&self, manifest: &mut Manifest) {
        if self.copies.is_empty() && self.rejected == 0 {
            return;
        }
        for &(i, to, requests, bytes) in &self.copies {
            let plan = &mut manifest.chunks[i].plan;
            // The lines taken out carry their share of the estimate away.
            plan.estimate = plan.estimate.map(|e| e.share(requests, plan.requests));
            (plan.index, plan.requests, plan.bytes) = (to, requests, bytes);
        }
        manifest.chunks.retain(|c| c.plan.requests > 0);
        manifest.counts.accepted -= self.rejected;
        manifest.counts.rejected += self.rejected;
    }
}

impl JobRun<'_> {
    /// Plans the upload from the manifest's checkpoint on: reads it, validates and stages its
    /// lines, until the end or the deadline. Returns whether the whole upload is planned.
    pub(super) async fn plan(&mut self, manifest: &mut Manifest) -> Result<bool, JobError> {
        let engine = self.engine;
        let Some(cursor) = manifest.planning.clone() else {
            return Ok(true);
        };
        let Some(route) = engine.config.route(&manifest.route) else {
            return Err(ProviderError::Unavailable {
                reason: format!("route {:?} is no longer configured", manifest.route),
            }
            .into());
        };
        let dialect =
            providers::dialect(&route.provider).map_err(|e| ProviderError::Unavailable {
                reason: format!("route {:?}: {e}", manifest.route),
            })?;
        self.acquire(manifest).await?;
        if cursor.offset < manifest.input.bytes || cursor.segment == 0 {
            let key = manifest.input.key.clone();
            let got = match engine.store.get_from(&key, cursor.offset).await {
                Ok(got) if got.meta.etag == manifest.input.etag => got,
                Ok(_) | Err(StoreError::NotFound { .. }) => {
                    self.superseded_while_planning(manifest).await?;
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            };
            engine.observer.event(&JobEvent::Planning {
                job_id: manifest.job_id.clone(),
                key: key.clone(),
                from_line: cursor.line,
            });
            let mut stager = Stager::start(
                engine.store.clone(),
                self.keys.clone(),
                route,
                dialect,
                cursor.segment,
                next_chunk_index(manifest),
            )
            .await?;
            let mut lines = StreamLines::new(read_ahead(got.body, READ_AHEAD));
            let (mut offset, mut line_no) = (cursor.offset, cursor.line);
            let mut paused = false;
            loop {
                let Some(line) = lines
                    .next_line()
                    .await
                    .map_err(|e| StoreError::io_at(&key, e))?
                else {
                    break;
                };
                offset += line.len() as u64;
                line_no += 1;
                stager.line(line_no, line).await?;
                if line_no % PLAN_CHECK_LINES == 0 {
                    if engine.near_deadline() {
                        paused = true;
                        break;
                    }
                    self.keep_lease(manifest).await?;
                }
            }
            let staged = stager.finish().await?;
            manifest.counts.add_planned(&staged.counts);
            manifest
                .chunks
                .extend(staged.chunks.into_iter().map(ChunkRecord::staged));
            manifest.planning = Some(PlanCursor {
                offset,
                line: line_no,
                segment: cursor.segment + 1,
            });
            self.save(manifest).await?;
            if paused {
                engine.observer.event(&JobEvent::PlanningPaused {
                    job_id: manifest.job_id.clone(),
                    lines: line_no,
                    offset,
                    bytes: manifest.input.bytes,
                });
                return Ok(false);
            }
        }
        // The whole upload is staged: drop the duplicates, balance the chunks against the
        // provider's minimum, then planning is over. If anything fails, `manifest` stays what
        // was last saved, and this is redone.
        let deduplicated = self.drop_duplicates(manifest).await?;
        let mut deduplicated_manifest = manifest.clone();
        deduplicated.apply(&mut deduplicated_manifest);
        // Requests answered before, and repeats within the file (routes with reuse_results).
        // New chunks never take an index a replaced one had (its files go afterwards).
        let first_index = next_chunk_index(manifest).max(deduplicated.next_index());
        let mut reused = self
            .find_reused(&deduplicated_manifest, &deduplicated.lines, first_index)
            .await?;
        reused.take_out(&mut deduplicated_manifest);
        let balanced = self.balance(&deduplicated_manifest, &route.limits).await?;
        let mut balanced_manifest = deduplicated_manifest;
        balanced.apply(&mut balanced_manifest);
        let answers_index = next_chunk_index(&balanced_manifest);
        self.write_reused(&balanced_manifest, &mut reused, answers_index)
            .await?;
        let finish_planning = |planned: &mut Manifest| {
            deduplicated.apply(planned);
            reused.take_out(planned);
            balanced.apply(planned);
            reused.add_answers(planned);
            // Chunks left empty by reuse are dropped only now: until here their indices stay
            // taken.
            planned.chunks.retain(|c| c.plan.requests > 0);
            planned.planning = None;
        };
        self.update(manifest, finish_planning, None).await?;
        let replaced = deduplicated.replaced.iter().chain(&reused.replaced);
        for &index in replaced.chain(&balanced.replaced) {
            chunk_files::delete(engine.store.as_ref(), &self.keys, index).await?;
        }
        ids::remove_runs(engine.store.as_ref(), &self.keys).await?;
        self.remove_reuse_work().await?;
        engine.observer.event(&JobEvent::Started {
            job_id: manifest.job_id.clone(),
            key: manifest.input.key.clone(),
            counts: manifest.counts.clone(),
            chunks: manifest.chunks.len(),
        });
        Ok(true)
    }

    /// Rejects every line whose custom_id an earlier line used: each chunk holding one is
    /// copied without it under a new index, and the lines go to the duplicates' part of the
    /// rejected lines. Only writes new objects: the old files stay intact until the manifest
    /// no longer names them (the returned change is not in `manifest` yet), so a crash here is
    /// simply redone.
    async fn drop_duplicates(&mut self, manifest: &Manifest) -> Result<Deduplicated, JobError> {
        let store = self.engine.store.clone();
        let duplicates = ids::find_duplicates(&store, &self.keys).await?;
        if duplicates.is_empty() {
            return Ok(Deduplicated::default());
        }
        let first_use: HashMap<u64, u64> =
            duplicates.iter().map(|d| (d.line, d.first_line)).collect();
        // The line numbers alone say which chunks hold a reuse; each gets its new index now, so
        // that a redo after a crash writes the same keys.
        let mut copies = Vec::new();
        let mut next = next_chunk_index(manifest);
        for (i, chunk) in manifest.chunks.iter().enumerate() {
            let from = chunk.plan.index;
            let mut sidecar = Sidecar::open(store.as_ref(), &self.keys, from).await?;
            while let Some(entry) = sidecar.next().await? {
                if first_use.contains_key(&entry.line()) {
                    copies.push((i, from, next));
                    next += 1;
                    break;
                }
            }
        }
        // The id a request went out under, read as its provider writes it.
        let dialect = providers::dialect(&manifest.provider).ok();
        let request_id = move |request: &[u8]| dialect.and_then(|d| d.request_id(request));
        let keys = &self.keys;
        let first_use = &first_use;
        let copied: Vec<_> = futures::stream::iter(copies)
            .map(|(i, from, to)| {
                let store = store.clone();
                async move {
                    let mut dropped = Vec::new();
                    let (requests, bytes) = copy_chunk(store, keys, from, to, |_, row| {
                        let Some(first) = first_use.get(&row.line()) else {
                            return true;
                        };
                        let custom_id = row.user_id().or_else(|| request_id(row.request));
                        dropped.push(Rejection {
                            line: row.line(),
                            message: ids::duplicate_message(
                                custom_id.as_deref().unwrap_or_default(),
                                *first,
                            ),
                            custom_id,
                            code: RejectCode::DuplicateCustomId,
                        });
                        false
                    })
                    .await?;
                    Ok::<_, StoreError>((i, from, to, requests, bytes, dropped))
                }
            })
            .buffer_unordered(COPY_CONCURRENCY)
            .try_collect()
            .await?;
        let mut rejections = Vec::with_capacity(duplicates.len());
        let mut deduplicated = Deduplicated::default();
        for (i, from, to, requests, bytes, dropped) in copied {
            deduplicated.copies.push((i, to, requests, bytes));
            deduplicated.replaced.push(from);
            rejections.extend(dropped);
        }
        rejections.sort_by_key(|r| r.line);
        let mut out = StreamWriter::open(
            store.clone(),
            self.keys.rejected_duplicates(),
            PutMode::Overwrite,
        );
        for r in &rejections {
            out.write(&r.to_json_line()).await?;
        }
        out.finish().await?;
        deduplicated.rejected = rejections.len() as u64;
        deduplicated.lines = rejections.iter().map(|r| r.line).collect();
        Ok(deduplicated)
    }

    /// The upload changed (or went away) while it was being planned: the newer version is a
    /// job of its own, this one ends as cancelled without sending anything.
    async fn superseded_while_planning(&mut self, manifest: &mut Manifest) -> Result<(), JobError> {
        let summary_key = self.keys.summary();
        self.close(manifest, &summary_key, |done| {
            done.status = JobStatus::Cancelled;
            done.reason = Some(format!(
                "superseded: {} changed while it was being planned; nothing was sent",
                done.input.key
            ));
            done.planning = None;
            done.chunks.clear();
        })
        .await
    }
}
