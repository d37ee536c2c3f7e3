//! Paying once, the engine's side (a route with `reuse_results`; formats and the index are
//! the `reuse` module's).
//!
//! - At the end of planning ([`JobRun::find_reused`]): the job's content hashes, merged in
//!   hash order, give each distinct content its first line (the *leader*) and the later lines
//!   of the same content (its *followers*). The leaders are looked up in the route's index.
//!   A content answered there within `reuse_days` is not sent: its lines (leader and
//!   followers) leave the staged chunks and get the stored answer, in a chunk that is
//!   collected from the start ([`JobRun::write_reused`]). The followers of the other contents
//!   leave the staged chunks too; only their leader is sent.
//! - At the end of the job ([`JobRun::answer_followers`]): each follower gets its leader's
//!   final answer (success or not), in one more collected chunk; then
//!   ([`JobRun::index_answers`]) every successful answer of the chunks the job sent enters
//!   the route's index.
//!
//! Like taking out reused ids, planning's part only writes new objects under indices fixed
//! by the manifest as saved, so a crash is simply redone. Memory: the merge buffers, and one
//! entry per reused or repeated request.

use super::run::{JobRun, next_chunk_index};
use super::{COPY_CONCURRENCY, JobError};
use crate::chunk_files::{ChunkRows, LineNumbers, Sidecar, copy_chunk};
use crate::ids;
use crate::manifest::{
    ChunkPlan, ChunkRecord, ChunkState, Manifest, ReuseSource, ReusedAnswers, Usage,
};
use crate::provider::{Dialect, ProviderError};
use crate::providers;
use crate::reuse::{Fetcher, IndexEntry, Location, compact, content_hash, index, marked};
use crate::store::{ObjectStoreExt, PutMode, StoreError, StreamLines};
use crate::writer::StreamWriter;
use futures::{StreamExt, TryStreamExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use tokio::io::AsyncBufReadExt;

const DAY: i64 = 86_400;
/// The provider status word of a chunk answered from elsewhere.
pub(super) const REUSED_STATUS: &str = "reused";

/// What [`JobRun::find_reused`] found and wrote, to be taken into the manifest.
#[derive(Default)]
pub(super) struct Reused {
    /// (position in the manifest's chunks, new index, requests, bytes) of each copy.
    copies: Vec<(usize, u32, u64, u64)>,
    /// The indices the copies replace (their files go once the manifest no longer names them).
    pub(super) replaced: Vec<u32>,
    /// The lines answered from the index, in line order: (line, custom_id, answer).
    found: Vec<(u64, String, Location)>,
    /// The chunk of their answers, once [`JobRun::write_reused`] wrote it.
    answered: Option<ChunkRecord>,
}

impl Reused {
    /// Takes the reused and repeated lines out of the manifest's chunks. A chunk left empty
    /// stays (its index taken) until planning drops every empty chunk at its end.
    pub(super) fn take_out(&self, manifest: &mut Manifest) {
        for &(i, to, requests, bytes) in &self.copies {
            let plan = &mut manifest.chunks[i].plan;
            plan.estimate = plan.estimate.map(|e| e.share(requests, plan.requests));
            (plan.index, plan.requests, plan.bytes) = (to, requests, bytes);
        }
    }

    /// Adds the chunk of answers found in the index.
    pub(super) fn add_answers(&self, manifest: &mut Manifest) {
        if let Some(chunk) = &self.answered {
            manifest.chunks.push(chunk.clone());
        }
    }
}

/// A line answered with the answer of an earlier line of the same file.
#[derive(serde::Serialize, serde::Deserialize)]
struct Follower {
    line: u64,
    leader: u64,
    custom_id: String,
}

/// The chunk record of answers that were never sent.
fn answered_chunk(
    index: u32,
    requests: u64,
    succeeded: u64,
    source: ReuseSource,
    saved: BTreeMap<String, Usage>,
) -> ChunkRecord {
    let mut chunk = ChunkRecord::staged(ChunkPlan {
        index,
        endpoint: String::new(),
        model: String::new(),
        requests,
        bytes: 0,
        estimate: None,
    });
    chunk.state = ChunkState::Collected;
    chunk.provider_status = Some(REUSED_STATUS.into());
    chunk.succeeded = succeeded;
    chunk.failed = requests - succeeded;
    chunk.reused = Some(ReusedAnswers {
        source,
        saved_usage_by_model: saved,
    });
    chunk
}

/// The dialect of the job's provider.
pub(super) fn dialect_of(manifest: &Manifest) -> Result<&'static dyn Dialect, JobError> {
    providers::dialect(&manifest.provider).map_err(|e| {
        ProviderError::Unavailable {
            reason: e.to_string(),
        }
        .into()
    })
}

impl JobRun<'_> {
    /// Whether the job's route reuses answers.
    fn reuses(&self, manifest: &Manifest) -> Option<u32> {
        let route = self.engine.config.route(&manifest.route)?;
        route.reuse.enabled.then_some(route.reuse.days)
    }

    /// Finds the lines of `planned` (the whole upload staged, reused ids taken out: their
    /// lines are `rejected`) answered in the route's index, and the repeats of a content
    /// earlier in the file; copies the chunks holding them without them, and writes the
    /// repeats down for the end of the job. Nothing when the route does not reuse answers.
    /// The copies take indices from `first_index` on (above any replaced before).
    pub(super) async fn find_reused(
        &mut self,
        planned: &Manifest,
        rejected: &HashSet<u64>,
        first_index: u32,
    ) -> Result<Reused, JobError> {
        let Some(days) = self.reuses(planned) else {
            return Ok(Reused::default());
        };
        let engine = self.engine;
        let store = engine.store.clone();
        // Each distinct content's first line goes to the leaders (in hash order), the later
        // ones are its followers.
        let leaders_key = self.keys.reuse_leaders();
        let mut leaders =
            StreamWriter::open(store.clone(), leaders_key.clone(), PutMode::Overwrite);
        let mut followers: Vec<(u64, u64)> = Vec::new();
        let mut current: Option<(u128, u64)> = None;
        ids::merged_pairs(&store, &self.keys.content_runs(), async |(hash, line)| {
            if rejected.contains(&line) {
                return Ok(());
            }
            match current {
                Some((h, leader)) if h == hash => followers.push((line, leader)),
                _ => {
                    current = Some((hash, line));
                    leaders.write(&index::encode_pair(hash, line)).await?;
                }
            }
            Ok(())
        })
        .await?;
        leaders.finish().await?;
        let not_before = engine.clock.now().unix_timestamp() - i64::from(days) * DAY;
        let mut found = index::lookup(
            &store,
            &planned.route,
            &leaders_key,
            not_before,
            &planned.job_id,
        )
        .await?;
        // An answer whose job's files are gone is not reused.
        let mut present: HashMap<String, bool> = HashMap::new();
        for location in found.values() {
            let key = location.results_key();
            if let std::collections::hash_map::Entry::Vacant(slot) = present.entry(key) {
                let exists = store.exists(slot.key()).await?;
                slot.insert(exists);
            }
        }
        found.retain(|_, l| present.get(&l.results_key()).copied().unwrap_or(false));
        let mut taken: HashMap<u64, Option<Location>> = found
            .iter()
            .map(|(line, l)| (*line, Some(l.clone())))
            .collect();
        let mut repeats: Vec<(u64, u64)> = Vec::new();
        for (line, leader) in followers {
            match found.get(&leader) {
                Some(l) => {
                    taken.insert(line, Some(l.clone()));
                }
                None => {
                    taken.insert(line, None);
                    repeats.push((line, leader));
                }
            }
        }
        if taken.is_empty() {
            return Ok(Reused::default());
        }
        let (copies, ids) = self.copy_without(planned, &taken, first_index).await?;
        let mut reused = Reused::default();
        for (i, from, to, requests, bytes) in copies {
            reused.copies.push((i, to, requests, bytes));
            reused.replaced.push(from);
        }
        let mut found: Vec<(u64, String, Location)> = taken
            .into_iter()
            .filter_map(|(line, l)| Some((line, ids.get(&line)?.clone(), l?)))
            .collect();
        found.sort_by_key(|(line, _, _)| *line);
        reused.found = found;
        repeats.sort_unstable();
        let mut out = StreamWriter::open(store, self.keys.reuse_followers(), PutMode::Overwrite);
        for (line, leader) in repeats {
            let follower = Follower {
                line,
                leader,
                custom_id: ids.get(&line).cloned().unwrap_or_default(),
            };
            let mut json = serde_json::to_vec(&follower)
                .map_err(|e| StoreError::io_at(&self.keys.reuse_followers(), e.into()))?;
            json.push(b'\n');
            out.write(&json).await?;
        }
        out.finish().await?;
        Ok(reused)
    }

    /// Copies each chunk of `planned` holding a line of `taken` without those lines, under new
    /// indices; returns the copies (position, old index, new index, requests, bytes) and the
    /// custom_id of every line taken out.
    #[allow(clippy::type_complexity)]
    async fn copy_without(
        &self,
        planned: &Manifest,
        taken: &HashMap<u64, Option<Location>>,
        first_index: u32,
    ) -> Result<(Vec<(usize, u32, u32, u64, u64)>, HashMap<u64, String>), JobError> {
        let store = self.engine.store.clone();
        let mut plans = Vec::new();
        let mut next = next_chunk_index(planned).max(first_index);
        for (i, chunk) in planned.chunks.iter().enumerate() {
            if chunk.state != ChunkState::Staged {
                continue;
            }
            let from = chunk.plan.index;
            let mut sidecar = Sidecar::open(store.as_ref(), &self.keys, from).await?;
            while let Some(entry) = sidecar.next().await? {
                if taken.contains_key(&entry.line()) {
                    plans.push((i, from, next));
                    next += 1;
                    break;
                }
            }
        }
        let dialect = dialect_of(planned)?;
        let keys = &self.keys;
        let copied: Vec<_> = futures::stream::iter(plans)
            .map(|(i, from, to)| {
                let store = store.clone();
                async move {
                    let mut ids = Vec::new();
                    let (requests, bytes) = copy_chunk(store, keys, from, to, |_, row| {
                        if !taken.contains_key(&row.line()) {
                            return true;
                        }
                        let id = row
                            .user_id()
                            .or_else(|| dialect.request_id(row.request))
                            .unwrap_or_default();
                        ids.push((row.line(), id));
                        false
                    })
                    .await?;
                    Ok::<_, StoreError>(((i, from, to, requests, bytes), ids))
                }
            })
            .buffer_unordered(COPY_CONCURRENCY)
            .try_collect()
            .await?;
        let mut copies = Vec::with_capacity(copied.len());
        let mut ids = HashMap::new();
        for (copy, taken_ids) in copied {
            copies.push(copy);
            ids.extend(taken_ids);
        }
        Ok((copies, ids))
    }

    /// Writes the chunk of the answers [`JobRun::find_reused`] found, as chunk `index`: each
    /// stored answer under its new line's custom_id, marked with where it came from.
    pub(super) async fn write_reused(
        &self,
        manifest: &Manifest,
        reused: &mut Reused,
        index: u32,
    ) -> Result<(), JobError> {
        if reused.found.is_empty() {
            return Ok(());
        }
        let store = self.engine.store.clone();
        let dialect = dialect_of(manifest)?;
        let mut fetcher = Fetcher::new(store.clone());
        let mut lines = LineNumbers::open(&store, &self.keys, index);
        let mut out = StreamWriter::open(
            store.clone(),
            self.keys.chunk_results(index),
            PutMode::Overwrite,
        );
        let (mut succeeded, mut saved) = (0u64, BTreeMap::<String, Usage>::new());
        for (line, custom_id, from) in &reused.found {
            let answer = fetcher
                .fetch(&from.results_key(), from.offset, from.len)
                .await?;
            tally(dialect, &answer, &mut succeeded, &mut saved);
            lines.push(*line).await?;
            out.write(&marked(dialect, &answer, custom_id, &from.job, from.line))
                .await?;
            out.write(b"\n").await?;
        }
        lines.finish().await?;
        out.finish().await?;
        let requests = reused.found.len() as u64;
        reused.answered = Some(answered_chunk(
            index,
            requests,
            succeeded,
            ReuseSource::Bucket,
            saved,
        ));
        Ok(())
    }

    /// Removes planning's working files of reuse.
    pub(super) async fn remove_reuse_work(&self) -> Result<(), JobError> {
        let store = self.engine.store.as_ref();
        ids::remove_runs_in(store, &self.keys.content_runs()).await?;
        store.delete(&self.keys.reuse_leaders()).await?;
        Ok(())
    }

    /// Answers each line that repeats an earlier line of the file with that line's final
    /// answer, in one more collected chunk (once: a job that has it is not changed).
    pub(super) async fn answer_followers(
        &mut self,
        manifest: &mut Manifest,
    ) -> Result<(), JobError> {
        if self.reuses(manifest).is_none()
            || manifest.chunks.iter().any(|c| {
                c.reused
                    .as_ref()
                    .is_some_and(|r| r.source == ReuseSource::InFile)
            })
        {
            return Ok(());
        }
        let store = self.engine.store.clone();
        let key = self.keys.reuse_followers();
        let body = match store.get_bytes(&key).await {
            Ok(body) => body,
            Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut followers = Vec::new();
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let follower: Follower =
                serde_json::from_slice(line).map_err(|e| StoreError::io_at(&key, e.into()))?;
            followers.push(follower);
        }
        if followers.is_empty() {
            return Ok(());
        }
        let leaders: HashSet<u64> = followers.iter().map(|f| f.leader).collect();
        // leader line → (attempt, chunk, offset, length) of its last attempt's answer.
        let mut answers: HashMap<u64, (u32, u32, u64, u32)> = HashMap::new();
        for chunk in &manifest.chunks {
            if chunk.reused.is_some() || chunk.state != ChunkState::Collected {
                continue;
            }
            let index = chunk.plan.index;
            let mut sidecar = Sidecar::open(store.as_ref(), &self.keys, index).await?;
            let results_key = self.keys.chunk_results(index);
            let (_, mut results) = store.reader(&results_key).await?;
            let (mut offset, mut answer) = (0u64, Vec::new());
            while let Some(entry) = sidecar.next().await? {
                answer.clear();
                let read = results
                    .read_until(b'\n', &mut answer)
                    .await
                    .map_err(|e| StoreError::io_at(&results_key, e))?;
                let line = entry.line();
                if leaders.contains(&line)
                    && answers.get(&line).is_none_or(|a| a.0 <= chunk.attempt)
                {
                    let len = answer.trim_ascii_end().len() as u32;
                    answers.insert(line, (chunk.attempt, index, offset, len));
                }
                offset += read as u64;
            }
        }
        let dialect = dialect_of(manifest)?;
        let index = next_chunk_index(manifest);
        let mut fetcher = Fetcher::new(store.clone());
        let mut lines = LineNumbers::open(&store, &self.keys, index);
        let mut out = StreamWriter::open(
            store.clone(),
            self.keys.chunk_results(index),
            PutMode::Overwrite,
        );
        let (mut succeeded, mut saved) = (0u64, BTreeMap::<String, Usage>::new());
        for f in &followers {
            let answer = match answers.get(&f.leader) {
                Some(&(_, chunk, offset, len)) => {
                    fetcher
                        .fetch(&self.keys.chunk_results(chunk), offset, len)
                        .await?
                }
                // Every request has a line in its chunk's results; this is only for safety.
                None => dialect.missing_result(
                    &f.custom_id,
                    "missing_result",
                    "the request this line repeats got no answer",
                ),
            };
            tally(dialect, &answer, &mut succeeded, &mut saved);
            lines.push(f.line).await?;
            let job = manifest.job_id.as_str();
            out.write(&marked(dialect, &answer, &f.custom_id, job, f.leader))
                .await?;
            out.write(b"\n").await?;
        }
        lines.finish().await?;
        out.finish().await?;
        let chunk = answered_chunk(
            index,
            followers.len() as u64,
            succeeded,
            ReuseSource::InFile,
            saved,
        );
        self.update(manifest, |m| m.chunks.push(chunk), None).await
    }

    /// Enters every successful answer of the chunks the job sent into the route's index (one
    /// object per chunk, created once).
    pub(super) async fn index_answers(&self, manifest: &Manifest) -> Result<(), JobError> {
        let Some(days) = self.reuses(manifest) else {
            return Ok(());
        };
        let store = self.engine.store.clone();
        let dialect = dialect_of(manifest)?;
        let answered_at = self.engine.clock.now().unix_timestamp();
        for chunk in &manifest.chunks {
            if chunk.reused.is_some() || chunk.state != ChunkState::Collected {
                continue;
            }
            let index = chunk.plan.index;
            let key = index::key(&manifest.route, &manifest.job_id, index);
            if store.exists(&key).await? {
                continue;
            }
            let mut rows = ChunkRows::open(store.as_ref(), &self.keys, index).await?;
            let results_key = self.keys.chunk_results(index);
            let mut results = StreamLines::new(store.get(&results_key).await?.body);
            let mut entries = Vec::new();
            let mut offset = 0u64;
            while let Some(row) = rows.next().await? {
                let (line, hash) = (
                    row.line(),
                    content_hash(&chunk.plan.endpoint, &chunk.plan.model, row.request),
                );
                let Some(answer) = results
                    .next_line()
                    .await
                    .map_err(|e| StoreError::io_at(&results_key, e))?
                else {
                    break;
                };
                let trimmed = answer.trim_ascii_end();
                let succeeded = dialect.read_result(trimmed).is_ok_and(|f| f.succeeded);
                if let Some(hash) = hash
                    && succeeded
                {
                    entries.push(IndexEntry {
                        hash,
                        answered_at,
                        line,
                        chunk: index,
                        offset,
                        len: trimmed.len() as u32,
                    });
                }
                offset += answer.len() as u64;
            }
            index::write(store.as_ref(), &key, entries).await?;
        }
        // Keeping the index small is never the job's problem: a failure is retried by the
        // next job's end.
        if !self.engine.near_deadline() {
            let not_before = answered_at - i64::from(days) * DAY;
            match compact::compact(&store, &manifest.route, not_before).await {
                Ok(Some(done)) => tracing::info!(
                    route = manifest.route,
                    merged = done.merged,
                    entries = done.entries,
                    expired = done.expired,
                    "reuse index compacted"
                ),
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    route = manifest.route,
                    error = %e,
                    "reuse index not compacted; the next job's end tries again"
                ),
            }
        }
        Ok(())
    }
}

/// Counts a reused answer: whether it is a success, and the tokens it used when it was sent.
fn tally(
    dialect: &dyn Dialect,
    answer: &[u8],
    succeeded: &mut u64,
    saved: &mut BTreeMap<String, Usage>,
) {
    let Ok(facts) = dialect.read_result(answer) else {
        return;
    };
    if facts.succeeded {
        *succeeded += 1;
    }
    let usage = saved.entry(facts.model.unwrap_or_default()).or_default();
    usage.input_tokens += facts.input_tokens;
    usage.output_tokens += facts.output_tokens;
}
