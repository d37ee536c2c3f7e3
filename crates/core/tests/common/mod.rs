//! What the engine's scenario tests share: OpenAI request files, reading what a job wrote, and
//! polling an engine until no job is active.

#![allow(dead_code)] // each test binary uses its own part of this module

use batchdrop_core::engine::Engine;
use batchdrop_core::layout::ACTIVE;
use batchdrop_core::store::{ObjectStore, ObjectStoreExt};
use batchdrop_core::testing::TestBed;
use serde_json::Value;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type TestResult = Result<(), Error>;

/// `n` OpenAI chat lines `r0001`… of model `gpt-4o-mini`.
pub fn file(n: usize) -> String {
    (1..=n)
        .map(|i| {
            format!(
                r#"{{"custom_id":"r{i:04}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"question {i}"}}]}}}}"#
            ) + "\n"
        })
        .collect()
}

/// The lines of the JSON Lines object at `key`, each parsed.
pub async fn jsonl(store: &dyn ObjectStore, key: &str) -> Result<Vec<Value>, Error> {
    let bytes = store.get_bytes(key).await?;
    let mut out = Vec::new();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        out.push(serde_json::from_slice(line)?);
    }
    Ok(out)
}

/// The JSON object at `key`, parsed.
pub async fn json(store: &dyn ObjectStore, key: &str) -> Result<Value, Error> {
    Ok(serde_json::from_slice(&store.get_bytes(key).await?)?)
}

/// The `custom_id` of each line, in order (`<none>` where a line has none).
pub fn ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap_or("<none>").to_string())
        .collect()
}

/// The custom_ids of [`file`]`(n)`, in order.
pub fn expected_ids(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("r{i:04}")).collect()
}

/// Polls `engine` until no job is active in `store`, at most `polls` times, running `between`
/// after each poll that leaves one active; fails on the first job a poll failed.
pub async fn poll_until_idle(
    engine: &Engine,
    store: &dyn ObjectStore,
    polls: usize,
    mut between: impl FnMut(),
) -> TestResult {
    for _ in 0..polls {
        let report = engine.poll().await?;
        if let Some((id, e)) = report.failures.into_iter().next() {
            return Err(format!("poll failed on {id}: {e}").into());
        }
        if store.list(ACTIVE).await?.is_empty() {
            return Ok(());
        }
        between();
    }
    Err(format!("jobs still active after {polls} polls").into())
}

/// Polls the bed's engine until no job is active, at most `polls` times, without moving its
/// clock.
pub async fn poll_to_end(bed: &TestBed, polls: usize) -> TestResult {
    poll_until_idle(&bed.engine, bed.store.as_ref(), polls, || {}).await
}
