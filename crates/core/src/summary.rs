//! `summary.json`: what a finished job reports ([DESIGN.md](../../../docs/DESIGN.md) fixes its shape), with its cost at the
//! config's prices.

use crate::config::Config;
use crate::cost;
use crate::manifest::Manifest;

/// `summary.json` of `manifest`, with `cost` at `config`'s prices (the route's default model
/// prices results that did not name their model).
pub fn summary(manifest: &Manifest, config: &Config) -> serde_json::Value {
    let default_model = config
        .route(&manifest.route)
        .and_then(|r| r.defaults.model.as_deref());
    let cost = cost::job_cost(manifest, &config.prices, default_model);
    let batches: Vec<_> = manifest
        .chunks
        .iter()
        .map(|c| {
            let mut batch = serde_json::json!({
                "provider": manifest.provider,
                "id": c.batch_id,
                "requests": c.plan.requests,
                "status": c.provider_status,
                "attempt": c.attempt,
            });
            if c.on_demand {
                batch["on_demand"] = serde_json::Value::Bool(true);
            }
            batch
        })
        .collect();
    // Requests sent one by one on demand (chunks below the provider's batch minimum).
    let on_demand: u64 = manifest
        .chunks
        .iter()
        .filter(|c| c.on_demand)
        .map(|c| c.plan.requests)
        .sum();
    let mut v = serde_json::json!({
        "job_id": manifest.job_id,
        "route": manifest.route,
        "status": manifest.status.as_str(),
        "input": manifest.input,
        "counts": manifest.counts,
        "batches": batches,
        "usage": manifest.usage(),
        "cost": cost.to_json(),
        "created_at": manifest.created_at,
        "finished_at": manifest.finished_at,
    });
    if on_demand > 0 {
        v["on_demand_requests"] = on_demand.into();
    }
    if let Some(reason) = &manifest.reason {
        v["reason"] = serde_json::Value::String(reason.clone());
    }
    v
}
