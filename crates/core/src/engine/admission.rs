//! Queue-aware admission: a route's `max_enqueued_tokens` (the provider's batch queue limit per
//! model, OpenAI's enqueued tokens) holds a staged chunk back while the input tokens of the
//! route's batches in flight for its model (submitting or submitted, in every active job) plus
//! its own would pass the limit. A chunk larger than the limit on its own goes once nothing of
//! its model is in flight (the provider may still refuse it; that refusal is retried after
//! drain as before). Tokens are the chunks' estimates from planning (see the `spend` module).

use crate::manifest::Manifest;
use crate::route::Route;
use crate::spend;

/// Why a staged chunk waits for the provider's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Queued {
    /// Input tokens of the route's batches in flight for the model.
    pub(super) in_flight: u64,
    /// The chunk's own input tokens.
    pub(super) chunk: u64,
    pub(super) limit: u64,
}

/// Whether chunk `i` of `manifest` must wait for the queue of its model to drain, beside the
/// route's `others` unfinished jobs (None: it may go, or the route sets no limit).
pub(super) fn queue_full(
    manifest: &Manifest,
    i: usize,
    route: &Route,
    others: &[Manifest],
) -> Option<Queued> {
    let limit = route.spend.max_enqueued_tokens?;
    let fallback = spend::fallback_output(route);
    let plan = &manifest.chunks[i].plan;
    let chunk = spend::chunk_tokens(plan, fallback).input_tokens;
    let in_flight: u64 = std::iter::once(manifest)
        .chain(others)
        .map(|m| spend::enqueued_tokens(m, &plan.model, fallback))
        .sum();
    let fits = in_flight == 0 || in_flight.saturating_add(chunk) <= limit;
    (!fits).then_some(Queued {
        in_flight,
        chunk,
        limit,
    })
}
