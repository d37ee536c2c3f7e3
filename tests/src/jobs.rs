//! A job run to its end by a test's own engine: polling until no job is active, and reading
//! what the job wrote under its results prefix (`results/<route>/<name>/`) in batchdrop's store.

use crate::{BoxError, TestResult};
use batchdrop_core::engine::Engine;
use batchdrop_core::layout::ACTIVE;
use batchdrop_core::store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;

/// Polls `engine` until no job is active in `store`, at most `polls` times, running `between`
/// (moving the clocks on, say) after each poll that leaves one active.
pub async fn poll_until_idle(
    engine: &Engine,
    store: &dyn ObjectStore,
    polls: usize,
    mut between: impl FnMut(),
) -> TestResult {
    for _ in 0..polls {
        engine.poll().await?;
        if store.list(ACTIVE).await?.is_empty() {
            return Ok(());
        }
        between();
    }
    Err(format!("jobs still active after {polls} polls").into())
}

/// The lines of the job's `output.jsonl` under `results`, each parsed.
pub async fn output(store: &dyn ObjectStore, results: &str) -> Result<Vec<Value>, BoxError> {
    let bytes = store.get_bytes(&format!("{results}output.jsonl")).await?;
    Ok(bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(serde_json::from_slice)
        .collect::<Result<_, _>>()?)
}

/// The job's `summary.json` under `results`, parsed.
pub async fn summary(store: &dyn ObjectStore, results: &str) -> Result<Value, BoxError> {
    let bytes = store.get_bytes(&format!("{results}summary.json")).await?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// The `custom_id` of each line, in order (`<none>` where a line has none).
pub fn custom_ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap_or("<none>").to_string())
        .collect()
}
