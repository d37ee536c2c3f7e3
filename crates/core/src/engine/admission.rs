//! Queue-aware admission: a route's `max_enqueued_tokens` (the provider's batch queue limit per
//! model, OpenAI's enqueued tokens) holds a staged chunk back while the input tokens of the
//! route's batches in flight for its model (submitting or submitted, in every active job) plus
//! its own would pass the limit. A chunk larger than the limit on its own goes once nothing of
//! its model is in flight (the provider may still refuse it; that refusal is retried after
//! drain as before). Tokens are the chunks' estimates from planning (see the `spend` module).

use super::{Engine, JobError};
use crate::layout::{self, JobKeys};
use crate::manifest::Manifest;
use crate::route::Route;
use crate::spend;
use crate::store::{ObjectStoreExt, StoreError};

/// Why a staged chunk waits for the provider's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Queued {
    /// Input tokens of the route's batches in flight for the model.
    pub(super) in_flight: u64,
    /// The chunk's own input tokens.
    pub(super) chunk: u64,
    pub(super) limit: u64,
}

impl Engine {
    /// Whether chunk `i` of `manifest` must wait for the queue of its model to drain (None:
    /// it may go, or the route sets no limit).
    pub(super) async fn queue_full(
        &self,
        manifest: &Manifest,
        i: usize,
        route: &Route,
    ) -> Result<Option<Queued>, JobError> {
        let Some(limit) = route.spend.max_enqueued_tokens else {
            return Ok(None);
        };
        let fallback = spend::fallback_output(route);
        let plan = &manifest.chunks[i].plan;
        let chunk = spend::chunk_tokens(plan, fallback).input_tokens;
        let here = spend::enqueued_tokens(manifest, &plan.model, fallback);
        let in_flight = here
            + self
                .enqueued_elsewhere(&manifest.route, &plan.model, &manifest.job_id, fallback)
                .await?;
        let fits = in_flight == 0 || in_flight.saturating_add(chunk) <= limit;
        Ok((!fits).then_some(Queued {
            in_flight,
            chunk,
            limit,
        }))
    }

    /// Input tokens of `route`'s batches in flight for `model` in active jobs other than
    /// `except`.
    async fn enqueued_elsewhere(
        &self,
        route: &str,
        model: &str,
        except: &str,
        fallback_output: u64,
    ) -> Result<u64, JobError> {
        let mut total = 0;
        for entry in self.store.list(layout::ACTIVE).await? {
            let Some(job_id) = entry.key.strip_prefix(layout::ACTIVE) else {
                continue;
            };
            if job_id == except {
                continue;
            }
            let manifest: Manifest =
                match self.store.get_json(&JobKeys::new(job_id).manifest()).await {
                    Ok((m, _)) => m,
                    Err(StoreError::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                };
            if manifest.route == route && !manifest.status.is_finished() {
                total += spend::enqueued_tokens(&manifest, model, fallback_output);
            }
        }
        Ok(total)
    }
}
