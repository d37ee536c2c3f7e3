//! Prompt-cache-aware chunking: requests sharing a long prompt prefix (a system prompt of a
//! few thousand bytes) are planned into the same chunks, though the file interleaves them,
//! and output.jsonl still holds every request once in input order. Over an in-memory bucket,
//! a manual clock and a scripted provider.

use batchdrop_core::layout::ACTIVE;
use batchdrop_core::store::{ObjectStore, ObjectStoreExt};
use batchdrop_core::testing::{ScriptedProvider, TestBed, small_config};
use serde_json::Value;

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

const KEY: &str = "inbox/sandbox/run/cached.jsonl";
const RESULTS: &str = "results/sandbox/run/cached/";

/// 12 chat lines alternating between two long system prompts: `a01`, `b02`, `a03`, …
fn file() -> String {
    let system = |name: &str| {
        format!(
            "You are assistant {name}. {}",
            "Follow the rules. ".repeat(300)
        )
    };
    (1..=12)
        .map(|i| {
            let kind = if i % 2 == 1 { "a" } else { "b" };
            let line = serde_json::json!({
                "custom_id": format!("{kind}{i:02}"), "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "messages": [
                    {"role": "system", "content": system(kind)},
                    {"role": "user", "content": format!("question {i}")}]}});
            line.to_string() + "\n"
        })
        .collect()
}

async fn run(aware: bool) -> Result<(Vec<Vec<String>>, Vec<String>), Error> {
    let mut config = small_config(4, 1 << 20);
    if let Some(route) = config.routes.get_mut("sandbox") {
        route.spend.cache_aware_chunks = aware;
    }
    let bed = TestBed::with_config(ScriptedProvider::new(), config);
    bed.drop_file(KEY, file()).await?;
    for _ in 0..10 {
        bed.engine.poll().await?;
        if bed.store.list(ACTIVE).await?.is_empty() {
            break;
        }
    }
    let batches = bed
        .provider
        .batches()
        .iter()
        .map(|b| b.custom_ids.clone())
        .collect();
    let bytes = bed
        .store
        .get_bytes(&format!("{RESULTS}output.jsonl"))
        .await?;
    let mut out = Vec::new();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line)?;
        out.push(v["custom_id"].as_str().unwrap_or("?").to_string());
    }
    Ok((batches, out))
}

fn expected() -> Vec<String> {
    (1..=12)
        .map(|i| format!("{}{i:02}", if i % 2 == 1 { "a" } else { "b" }))
        .collect()
}

#[tokio::test]
async fn requests_sharing_a_long_system_prompt_share_their_batches() -> TestResult {
    // GIVEN 12 requests alternating between two long system prompts, 4 per batch
    // WHEN the file runs with cache-aware chunks (the default)
    let (batches, out) = run(true).await?;

    // THEN each batch holds requests of one system prompt only
    assert_eq!(batches.len(), 4, "{batches:?}");
    for ids in &batches {
        let first = &ids[0][..1];
        assert!(ids.iter().all(|id| id.starts_with(first)), "{batches:?}");
    }
    // AND output.jsonl holds every request once, in input order
    assert_eq!(out, expected());
    Ok(())
}

#[tokio::test]
async fn with_cache_aware_chunks_off_the_file_is_chunked_in_input_order() -> TestResult {
    let (batches, out) = run(false).await?;
    assert_eq!(batches.len(), 3, "{batches:?}");
    assert!(
        batches
            .iter()
            .all(|ids| ids.iter().any(|id| id.starts_with('a'))
                && ids.iter().any(|id| id.starts_with('b')))
    );
    assert_eq!(out, expected());
    Ok(())
}
