//! `batchdrop local` on the built-in `sandbox-sync` route (provider `openai-sync`: an
//! OpenAI-compatible server without a batch API): every request goes through the synchronous
//! lane to the embedded sandbox's `/v1/chat/completions`.

mod common;

use common::{Local, TestResult, drop_text, json_lines, sandbox_stats, wait_until};
use serde_json::Value;
use std::time::Duration;

#[test]
fn a_file_on_a_server_without_a_batch_api_comes_back_in_the_batch_output_shape() -> TestResult {
    // GIVEN batchdrop local with the built-in routes
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    let config = dir.path().join("batchdrop.toml");
    std::fs::write(&config, "[routes.sandbox-sync]\nmax_concurrency = 8\n")?;
    let local = Local::start(&root, &config, 0)?;
    // WHEN 500 prompt lines are dropped under inbox/sandbox-sync/
    let body: String = (1..=500)
        .map(|i| format!(r#"{{"custom_id":"s{i:04}","prompt":"question {i}"}}"#) + "\n")
        .collect();
    drop_text(&root, "inbox/sandbox-sync/run/requests.jsonl", &body)?;
    let results = root.join("results/sandbox-sync/run/requests");
    wait_until(
        &results.join("summary.json"),
        &local,
        Duration::from_secs(180),
    )?;

    // THEN every request has its answer, in input order, in the OpenAI batch output shape
    let output = json_lines(&std::fs::read_to_string(results.join("output.jsonl"))?)?;
    let ids: Vec<&str> = output
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap_or("?"))
        .collect();
    let expected: Vec<String> = (1..=500).map(|i| format!("s{i:04}")).collect();
    assert_eq!(ids, expected);
    assert!(output.iter().all(|l| {
        l["response"]["status_code"] == 200
            && l["response"]["body"]["object"] == "chat.completion"
            && l["error"].is_null()
    }));
    // AND the server was asked once per request, no batch was made
    let stats = sandbox_stats(&local)?;
    assert_eq!(stats["sync_requests"], 500, "{stats}");
    assert_eq!(stats["batches_created"], 0, "{stats}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("summary.json"))?)?;
    assert_eq!(summary["counts"]["succeeded"], 500, "{summary}");
    assert_eq!(summary["on_demand_requests"], 500, "{summary}");
    local.stop();
    Ok(())
}
