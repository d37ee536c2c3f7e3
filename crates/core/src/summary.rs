//! `summary.json`: what a finished job reports ([DESIGN.md](../../../docs/DESIGN.md) fixes its shape), with its cost at the
//! config's prices.

use crate::clock::parse_rfc3339 as parse_time;
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
        // Answers reused from the bucket or the same file were never a batch.
        .filter(|c| c.reused.is_none())
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
    if let Some(deadline) = deadline(manifest, config, default_model) {
        v["deadline"] = deadline;
    }
    if let Some(reuse) = reuse(manifest, config, default_model) {
        v["reuse"] = reuse;
    }
    if let Some(budget) = &manifest.budget {
        // The spending check: the estimate, the caps, the day's spend before this job, and
        // why nothing was sent when it was refused.
        v["budget"] = serde_json::to_value(budget).unwrap_or_default();
        v["budget"]["within"] = budget.refused.is_none().into();
    }
    if let Some(reason) = &manifest.reason {
        v["reason"] = serde_json::Value::String(reason.clone());
    }
    v
}

/// The `reuse` object (jobs with reused answers): the requests answered without being sent
/// (from the route's earlier jobs, and repeats within the file), and what sending them would
/// have cost at batch prices (the tokens their answers used).
fn reuse(
    manifest: &Manifest,
    config: &Config,
    default_model: Option<&str>,
) -> Option<serde_json::Value> {
    let mut tally = cost::Tally::new();
    let (mut from_bucket, mut in_file) = (0u64, 0u64);
    for chunk in &manifest.chunks {
        let Some(reused) = &chunk.reused else {
            continue;
        };
        match reused.source {
            crate::manifest::ReuseSource::Bucket => from_bucket += chunk.plan.requests,
            crate::manifest::ReuseSource::InFile => in_file += chunk.plan.requests,
        }
        for (model, usage) in &reused.saved_usage_by_model {
            // Answers that name no model were the route's default model's.
            let model = match model.as_str() {
                "" => default_model.unwrap_or_default(),
                named => named,
            };
            tally.add(model, usage.input_tokens, usage.output_tokens);
        }
    }
    if from_bucket + in_file == 0 {
        return None;
    }
    let saved = tally.cost(&config.prices);
    Some(serde_json::json!({
        "requests": from_bucket + in_file,
        "from_earlier_jobs": from_bucket,
        "repeated_in_file": in_file,
        "saved_usd": saved.batch,
    }))
}

/// The `deadline` object: when the job had to be done by, whether it was, and — when the
/// cutoff was reached — when, how many requests went through the synchronous lane from then
/// on, and what that cost beyond the batch price of the same tokens.
fn deadline(
    manifest: &Manifest,
    config: &Config,
    default_model: Option<&str>,
) -> Option<serde_json::Value> {
    let deadline = manifest.deadline.as_ref()?;
    let mut v = serde_json::json!({"at": deadline.at, "source": deadline.source});
    if let Some(finished) = &manifest.finished_at {
        let met = match (parse_time(finished), parse_time(&deadline.at)) {
            (Ok(finished), Ok(at)) => finished <= at,
            _ => false,
        };
        v["met"] = met.into();
    }
    if let Some(cut) = &deadline.cut_at {
        v["cut_at"] = cut.clone().into();
        let cut_unix = parse_time(cut).map_or(i64::MAX, |t| t.unix_timestamp());
        // The chunks sent through the lane once the job was cut.
        let mut after_cut = manifest.clone();
        after_cut
            .chunks
            .retain(|c| c.on_demand && c.submit_started_at.is_some_and(|t| t >= cut_unix));
        // Each request once: one sent again from a lane chunk is counted where it ended.
        v["lane_requests"] = after_cut
            .chunks
            .iter()
            .map(|c| c.plan.requests - c.retried.min(c.plan.requests))
            .sum::<u64>()
            .into();
        let on_demand = cost::job_cost(&after_cut, &config.prices, default_model).on_demand;
        for chunk in &mut after_cut.chunks {
            chunk.on_demand = false;
        }
        let at_batch_price = cost::job_cost(&after_cut, &config.prices, default_model).batch;
        v["extra_cost"] = (((on_demand - at_batch_price) * 1e9).round() / 1e9).into();
    }
    Some(v)
}
