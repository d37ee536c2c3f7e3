//! A job's spending check ([`JobRun::check_budget`]) and its settling at the end
//! ([`JobRun::settle_spend`]), on routes with `max_usd_per_job` or `max_usd_per_day`.
//!
//! Once planning has ended and before any chunk is sent, the job's cost bound (the chunks'
//! estimated tokens at batch prices; see the `spend` module) is checked against the caps, once:
//! the decision is saved in the manifest (`budget`). Over `max_usd_per_job`, or with a model
//! the price table does not know, nothing is sent. Against `max_usd_per_day` the job reserves
//! its bound in the route's spend object for the UTC day it started, by compare-and-swap: of
//! two jobs racing for the last of the day's allowance exactly one gets it; the other sends
//! nothing. A job refused sends nothing: every chunk is collected as withheld (each request
//! fails `over_budget`) and the job ends `failed` with the reason. When a job that reserved
//! finishes, its reservation is replaced by what it actually cost.
//!
//! A crash between the reservation and the manifest's save is redone: the spend object already
//! names the job, which keeps its reservation.

use super::JobError;
use super::collect::Ending;
use super::run::JobRun;
use crate::config::{BelowMinimum, Route};
use crate::cost;
use crate::manifest::{Budget, ChunkState, Manifest};
use crate::provider::{BatchError, Provider};
use crate::spend::{self, JobSpend, usd};

/// The error code and status word of a job (and its requests) refused for its cost.
pub const OVER_BUDGET: &str = "over_budget";

impl JobRun<'_> {
    /// Checks the job's cost bound against its route's caps (once), and withholds every chunk
    /// of a job refused.
    pub(super) async fn check_budget(
        &mut self,
        manifest: &mut Manifest,
        provider: &dyn Provider,
    ) -> Result<(), JobError> {
        let engine = self.engine;
        let Some(route) = engine.config.route(&manifest.route) else {
            return Ok(());
        };
        if !route.spend.has_cap() || manifest.cancel_requested.is_some() {
            return Ok(());
        }
        if manifest.budget.is_none() {
            // Only before anything is sent (a job older than the cap goes on as it was);
            // answers reused were never sent.
            if manifest
                .chunks
                .iter()
                .filter(|c| c.reused.is_none())
                .any(|c| c.state != ChunkState::Staged || c.on_demand)
            {
                return Ok(());
            }
            let budget = self.decide(manifest, route).await?;
            self.update(manifest, |m| m.budget = Some(budget), None)
                .await?;
        }
        let Some(why) = manifest.budget.as_ref().and_then(|b| b.refused.clone()) else {
            return Ok(());
        };
        for i in 0..manifest.chunks.len() {
            if manifest.chunks[i].state == ChunkState::Staged {
                let error = BatchError {
                    code: OVER_BUDGET.into(),
                    message: why.clone(),
                    line: None,
                };
                self.collect(manifest, i, provider, Ending::Withheld(error))
                    .await?;
            }
        }
        Ok(())
    }

    /// The job's cost bound against the caps; reserves it in the day's spend when let through.
    async fn decide(&self, manifest: &Manifest, route: &Route) -> Result<Budget, JobError> {
        let engine = self.engine;
        let fallback = spend::fallback_output(route);
        let mut chunks = Vec::with_capacity(manifest.chunks.len());
        for (i, chunk) in manifest.chunks.iter().enumerate() {
            // Answered from the bucket or the same file (reuse): never sent, costs nothing.
            if chunk.reused.is_some() {
                continue;
            }
            let on_demand = match self.below_minimum(manifest, i) {
                // Fails without being sent: costs nothing.
                Some(BelowMinimum::Fail) => continue,
                Some(BelowMinimum::OnDemand) => true,
                None => false,
            };
            let tokens = spend::chunk_tokens(&chunk.plan, fallback);
            chunks.push((chunk.plan.model.as_str(), tokens, on_demand));
        }
        let cost = spend::cost_bound(chunks.iter().copied(), &engine.config.prices);
        let estimate = cost.batch + cost.on_demand;
        let mut budget = Budget {
            estimate,
            input_tokens: chunks.iter().map(|c| c.1.input_tokens).sum(),
            output_tokens: chunks.iter().map(|c| c.1.output_tokens).sum(),
            max_usd_per_job: route.spend.max_usd_per_job,
            max_usd_per_day: route.spend.max_usd_per_day,
            day: None,
            day_spent_before: None,
            refused: None,
        };
        if !cost.unpriced.is_empty() {
            let models: Vec<&str> = cost.unpriced.iter().map(|u| u.model.as_str()).collect();
            budget.refused = Some(format!(
                "{OVER_BUDGET}: no price for {}: a route with a spending cap sends only what it can price (add [prices.\"{}\"] to the config)",
                models.join(", "),
                models[0]
            ));
            return Ok(budget);
        }
        if let Some(cap) = route.spend.max_usd_per_job
            && spend::exceeds(estimate, 0.0, cap)
        {
            budget.refused = Some(format!(
                "{OVER_BUDGET}: the estimate {} exceeds max_usd_per_job {}",
                usd(estimate),
                usd(cap)
            ));
            return Ok(budget);
        }
        let Some(cap) = route.spend.max_usd_per_day else {
            return Ok(budget);
        };
        let day = spend::day_of(&manifest.created_at).map_err(|message| {
            crate::store::StoreError::Backend {
                key: self.keys.manifest(),
                message: format!("created_at: {message}"),
                retryable: false,
                source: None,
            }
        })?;
        let job_id = manifest.job_id.as_str();
        let (before, fits) =
            spend::change_day(engine.store.as_ref(), &manifest.route, &day, |spent| {
                let before = spent.total_without(job_id);
                if spent.jobs.contains_key(job_id) {
                    // Reserved by an earlier try of this check.
                    return ((before, true), false);
                }
                if spend::exceeds(before, estimate, cap) {
                    return ((before, false), false);
                }
                let reservation = JobSpend {
                    usd: estimate,
                    settled: false,
                };
                spent.jobs.insert(job_id.to_string(), reservation);
                ((before, true), true)
            })
            .await?;
        budget.day = Some(day.clone());
        budget.day_spent_before = Some(before);
        if !fits {
            budget.refused = Some(format!(
                "{OVER_BUDGET}: the estimate {} with the {} already reserved or spent on route {} on {day} (UTC) exceeds max_usd_per_day {}",
                usd(estimate),
                usd(before),
                manifest.route,
                usd(cap)
            ));
        }
        Ok(budget)
    }

    /// Replaces the job's reservation in the day's spend by its actual cost (idempotent).
    pub(super) async fn settle_spend(&self, manifest: &Manifest) -> Result<(), JobError> {
        let Some(budget) = &manifest.budget else {
            return Ok(());
        };
        let (Some(day), None) = (&budget.day, &budget.refused) else {
            return Ok(());
        };
        let engine = self.engine;
        let default_model = engine
            .config
            .route(&manifest.route)
            .and_then(|r| r.defaults.model.as_deref());
        let cost = cost::job_cost(manifest, &engine.config.prices, default_model);
        let actual = JobSpend {
            usd: cost.batch + cost.on_demand,
            settled: true,
        };
        let job_id = manifest.job_id.as_str();
        spend::change_day(engine.store.as_ref(), &manifest.route, day, |spent| {
            let unchanged = spent.jobs.get(job_id) == Some(&actual);
            spent.jobs.insert(job_id.to_string(), actual);
            ((), !unchanged)
        })
        .await?;
        Ok(())
    }
}
