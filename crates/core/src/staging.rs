//! Staging an upload: what happens to each line of one planning segment.
//!
//! A segment reads the upload from a line boundary on (the whole file, or the rest of it after
//! an earlier invocation stopped near its deadline). Each line is validated; rejected lines go
//! to the segment's part of the rejected lines; accepted requests are appended to their open
//! chunk (its files are [`crate::chunk_files`]'), streamed into the store, and their ids are
//! remembered for the duplicate check ([`crate::ids`]). When the segment ends, every open chunk
//! is sealed: the next segment starts new ones, so nothing half-written is carried over.
//! Memory is bounded by the open chunks' write buffers and the id buffer, not by the upload.
//! On a route with a spending cap or an admission limit, each accepted request's tokens are
//! estimated too ([`crate::spend::ChunkEstimator`]) and its chunk's plan carries their sum.

use crate::chunk_files::ChunkWriter;
use crate::ids::{IdRuns, RUN_ENTRIES};
use crate::input::{Outcome, Validator};
use crate::layout::JobKeys;
use crate::manifest::Counts;
use crate::manifest::TokenEstimate;
use crate::plan::{ChunkPlan, Planner};
use crate::provider::Dialect;
use crate::reuse::content_hash;
use crate::route::Route;
use crate::spend::ChunkEstimator;
use crate::store::{ObjectStore, PutMode, StoreError};
use crate::writer::StreamWriter;
use std::collections::HashMap;
use std::sync::Arc;

/// What one segment staged.
#[derive(Debug, Default)]
pub struct Staged {
    /// Lines, accepted and rejected requests of this segment.
    pub counts: Counts,
    /// The chunks it sealed, in index order.
    pub chunks: Vec<ChunkPlan>,
}

/// The state of one planning segment.
pub struct Stager {
    store: Arc<dyn ObjectStore>,
    keys: JobKeys,
    validator: Validator,
    planner: Planner,
    ids: IdRuns,
    /// The requests' content hashes, on a route with `reuse_results` (the `reuse` module).
    contents: Option<IdRuns>,
    rejected: StreamWriter,
    open: HashMap<u32, ChunkWriter>,
    staged: Staged,
    /// Only on a route that needs estimates.
    estimator: Option<ChunkEstimator>,
    /// The estimated tokens of each open chunk.
    estimates: HashMap<u32, TokenEstimate>,
}

impl Stager {
    /// Starts segment `segment`; its first chunk gets index `first_chunk`.
    pub async fn start(
        store: Arc<dyn ObjectStore>,
        keys: JobKeys,
        route: &Route,
        dialect: &'static dyn Dialect,
        segment: u32,
        first_chunk: u32,
    ) -> Result<Self, StoreError> {
        let ids = IdRuns::start(store.clone(), keys.clone(), segment).await?;
        let contents = match route.reuse.enabled {
            true => Some(
                IdRuns::in_dir(store.clone(), keys.content_runs(), segment, RUN_ENTRIES).await?,
            ),
            false => None,
        };
        let rejected = StreamWriter::open(
            store.clone(),
            keys.rejected_part(segment),
            PutMode::Overwrite,
        );
        Ok(Self {
            validator: Validator::new(route, dialect),
            planner: Planner::starting_at(route.limits, first_chunk),
            ids,
            contents,
            rejected,
            open: HashMap::new(),
            staged: Staged::default(),
            estimator: ChunkEstimator::for_route(route, dialect),
            estimates: HashMap::new(),
            store,
            keys,
        })
    }

    /// Handles input line `line_no` (1-based; `raw` may end in a newline).
    pub async fn line(&mut self, line_no: u64, raw: &[u8]) -> Result<(), StoreError> {
        let counts = &mut self.staged.counts;
        let acc = match self.validator.check(line_no, raw) {
            Outcome::Blank => return Ok(()),
            Outcome::Rejected(r) => {
                counts.lines += 1;
                counts.rejected += 1;
                return self.rejected.write(&r.to_json_line()).await;
            }
            Outcome::Accepted(acc) => acc,
        };
        counts.lines += 1;
        counts.accepted += 1;
        self.ids.push(&acc.custom_id, line_no).await?;
        if let Some(contents) = &mut self.contents
            && let Some(hash) = content_hash(&acc.group.endpoint, &acc.group.model, &acc.request)
        {
            contents.push_hash(hash, line_no).await?;
        }
        let place = self
            .planner
            .place(&acc.group, acc.request.len() as u64, acc.units);
        if let Some(mut sealed) = place.seals {
            if let Some(chunk) = self.open.remove(&sealed.index) {
                chunk.finish().await?;
            }
            sealed.estimate = self.estimates.remove(&sealed.index);
            self.staged.chunks.push(sealed);
        }
        if let Some(estimator) = &self.estimator {
            let tokens = estimator.request(&acc.request);
            self.estimates.entry(place.chunk).or_default().add(tokens);
        }
        let chunk = self
            .open
            .entry(place.chunk)
            .or_insert_with(|| ChunkWriter::open(&self.store, &self.keys, place.chunk));
        // The request goes out under another id: the sidecar keeps the user's.
        let user_id = acc.sent_id.is_some().then_some(acc.custom_id.as_ref());
        chunk.push(&acc.request, line_no, user_id).await
    }

    /// Seals every open chunk and writes out the rejected lines and ids of the segment.
    pub async fn finish(mut self) -> Result<Staged, StoreError> {
        let mut open: Vec<_> = self.open.drain().collect();
        open.sort_by_key(|(index, _)| *index);
        for (_, chunk) in open {
            chunk.finish().await?;
        }
        self.rejected.finish().await?;
        self.ids.finish().await?;
        if let Some(contents) = self.contents.take() {
            contents.finish().await?;
        }
        let estimates = &mut self.estimates;
        self.staged
            .chunks
            .extend(self.planner.finish().into_iter().map(|mut plan| {
                plan.estimate = estimates.remove(&plan.index);
                plan
            }));
        self.staged.chunks.sort_by_key(|p| p.index);
        Ok(self.staged)
    }
}
