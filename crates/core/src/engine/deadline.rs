//! A job's deadline: when it must be done by, and the cutoff at which batches still running
//! are given up for the synchronous lane.
//!
//! Where a deadline comes from, first found wins: the upload's user metadata
//! `x-amz-meta-batchdrop-deadline` (RFC 3339), a `<upload>.deadline` object beside it holding
//! the same (what `batchdrop submit --deadline` writes, and the way to say it in a local
//! directory), or the route's `deadline_hours` after the job starts. A value that is not an
//! RFC 3339 time fails the job at once (`invalid_deadline`): nothing is sent, nothing is paid.
//!
//! The cutoff is the deadline minus the time the lane needs for every request not yet
//! collected (their count ÷ the route's measured lane throughput) minus the route's margin
//! (`deadline_margin_minutes`: a cancel's drain, the poll interval, slack). Each advance looks
//! once; past the cutoff the job is *cut* ([`Deadline::cut_at`]): its running batches are
//! cancelled, what they answered is kept, and every request not answered — the cancelled
//! batches' rest and every chunk still staged — goes through the synchronous lane
//! (`on_demand`). The throughput is what the lane last achieved on the route
//! (`_batchdrop/lanes/<route>.json`, written after each lane run of a second or more), or
//! [`LANE_RATE_PER_SLOT`] per slot of the route's concurrency before it was ever measured.

use super::run::JobRun;
use super::{Engine, JobError};
use crate::clock::{parse_rfc3339 as parse_time, rfc3339};
use crate::layout;
use crate::manifest::{ChunkState, Deadline, Manifest};
use crate::route::Route;
use crate::store::{ObjectStoreExt, PutMode, StoreError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The user-metadata name of an upload's deadline (`x-amz-meta-batchdrop-deadline`).
pub const METADATA: &str = "batchdrop-deadline";
/// The suffix of the object beside an upload that holds its deadline.
pub const SIDECAR: &str = ".deadline";
/// Requests per second one slot of the lane is assumed to answer before the route's lane
/// was ever measured (a chat answer of a few hundred tokens takes about a second).
pub const LANE_RATE_PER_SLOT: f64 = 1.0;
/// A lane run shorter than this says too little about its pace to be recorded.
const MEASURE_AT_LEAST: Duration = Duration::from_secs(1);

/// What the lane achieved on a route, last time it ran for a while.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneRate {
    pub requests_per_second: f64,
    /// Requests answered in the run measured.
    pub requests: u64,
    pub measured_at: String,
}

/// Where a route's lane pace is kept.
pub fn lane_rate_key(route: &str) -> String {
    format!("{}lanes/{route}.json", layout::STATE)
}

impl Engine {
    /// The deadline of the upload at `key`, if it has one; `Ok(Err(why))` for a value that
    /// cannot be read as a time.
    pub(super) async fn deadline_of(
        &self,
        key: &str,
        route: &Route,
    ) -> Result<Result<Option<Deadline>, String>, JobError> {
        let found = |at: &str, source: &str| Deadline {
            at: at.to_string(),
            source: source.to_string(),
            cut_at: None,
        };
        let metadata = match self.store.user_metadata(key).await {
            Ok(m) => m,
            Err(StoreError::NotFound { .. }) => Default::default(),
            Err(e) => return Err(e.into()),
        };
        if let Some(text) = metadata.get(METADATA) {
            return Ok(match parse_time(text) {
                Ok(at) => Ok(Some(found(&rfc3339(at), "metadata"))),
                Err(why) => Err(format!("x-amz-meta-{METADATA}: {why}")),
            });
        }
        let sidecar = format!("{key}{SIDECAR}");
        match self.store.get_bytes(&sidecar).await {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                return Ok(match parse_time(&text) {
                    Ok(at) => Ok(Some(found(&rfc3339(at), "sidecar"))),
                    Err(why) => Err(format!("{sidecar}: {why}")),
                });
            }
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Ok(route.deadlines.after.map(|after| {
            found(&rfc3339(self.clock.now() + after), "route")
        })))
    }
}

/// Whether the job was cut: its staged chunks go through the lane.
pub(super) fn is_cut(manifest: &Manifest) -> bool {
    manifest
        .deadline
        .as_ref()
        .is_some_and(|d| d.cut_at.is_some())
}

impl JobRun<'_> {
    /// Cuts the job when its cutoff has come (see the module doc); once per advance.
    pub(super) async fn check_deadline(&mut self, manifest: &mut Manifest) -> Result<(), JobError> {
        let Some(deadline) = &manifest.deadline else {
            return Ok(());
        };
        if deadline.cut_at.is_some()
            || manifest.planning.is_some()
            || manifest.cancel_requested.is_some()
        {
            return Ok(());
        }
        let Ok(at) = parse_time(&deadline.at) else {
            return Ok(());
        };
        let engine = self.engine;
        let Some(route) = engine.config.route(&manifest.route) else {
            return Ok(());
        };
        let left: u64 = manifest
            .chunks
            .iter()
            .filter(|c| c.state != ChunkState::Collected)
            .map(|c| c.plan.requests)
            .sum();
        if left == 0 {
            return Ok(());
        }
        let rate = self.lane_rate(&manifest.route, route).await?;
        let lane_time = Duration::from_secs_f64(left as f64 / rate);
        let cutoff = at - lane_time - route.deadlines.margin;
        let now = engine.clock.now();
        if now < cutoff {
            return Ok(());
        }
        tracing::info!(
            job_id = %manifest.job_id,
            deadline = %deadline.at,
            requests_left = left,
            lane_requests_per_second = rate,
            "deadline cutoff reached: running batches are cancelled and the rest goes through the synchronous lane"
        );
        let cut = rfc3339(now);
        self.update(
            manifest,
            |m| {
                if let Some(d) = m.deadline.as_mut() {
                    d.cut_at = Some(cut);
                }
            },
            None,
        )
        .await
    }

    /// Requests per second the lane answers on `route_name`: as last measured, else assumed
    /// from its concurrency.
    async fn lane_rate(&self, route_name: &str, route: &Route) -> Result<f64, JobError> {
        let key = lane_rate_key(route_name);
        match self.engine.store.get_json::<LaneRate>(&key).await {
            Ok((rate, _)) if rate.requests_per_second > 0.0 => Ok(rate.requests_per_second),
            // Never measured, or a record that cannot be read (measured again next run).
            Ok(_)
            | Err(
                StoreError::NotFound { .. }
                | StoreError::Backend {
                    retryable: false, ..
                },
            ) => {
                let slots = route
                    .max_concurrency
                    .unwrap_or(super::pace::DEFAULT_MAX_CONCURRENCY as u32);
                Ok(f64::from(slots) * LANE_RATE_PER_SLOT)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records what a lane run on the job's route achieved: `answered` requests in `took`.
    pub(super) async fn record_lane_rate(
        &self,
        manifest: &Manifest,
        answered: u64,
        took: Duration,
    ) {
        if answered == 0 || took < MEASURE_AT_LEAST {
            return;
        }
        let rate = LaneRate {
            requests_per_second: answered as f64 / took.as_secs_f64(),
            requests: answered,
            measured_at: rfc3339(self.engine.clock.now()),
        };
        let key = lane_rate_key(&manifest.route);
        if let Err(e) = self
            .engine
            .store
            .put_json(&key, &rate, PutMode::Overwrite)
            .await
        {
            // The next run measures again; the deadline arithmetic assumes meanwhile.
            tracing::warn!(job_id = %manifest.job_id, error = %e, "could not record the lane's pace");
        }
    }
}
