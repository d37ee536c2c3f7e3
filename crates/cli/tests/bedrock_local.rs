//! `batchdrop local` on the built-in `sandbox-bedrock` route: the real binary, a temp directory
//! as the bucket, the embedded sandbox reading the staged chunks from it and writing the jobs'
//! output into it, as Bedrock does with a bucket.

mod common;

use common::{Local, TestResult, drop_text, json_lines, sandbox_stats, wait_until};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `n` prompt lines `q000001`….
fn prompts(n: usize) -> String {
    (1..=n)
        .map(|i| format!(r#"{{"custom_id":"q{i:06}","prompt":"question {i}"}}"#) + "\n")
        .collect()
}

fn ids_in_order(output: &[Value], n: usize) -> bool {
    output.len() == n
        && output
            .iter()
            .enumerate()
            .all(|(i, l)| l["custom_id"] == format!("q{:06}", i + 1))
}

/// Starts `batchdrop local` with the built-in routes on a temporary root, drops `n` prompt
/// lines at `inbox/sandbox-bedrock/<name>/requests.jsonl` and waits (at most `limit`) for the
/// summary. Gives the root's directory (kept while it lives), the running process and the
/// results directory.
fn drop_and_wait(
    name: &str,
    n: usize,
    limit: Duration,
) -> Result<(tempfile::TempDir, Local, PathBuf), common::Error> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    let config = dir.path().join("batchdrop.toml");
    std::fs::write(&config, "")?;
    let local = Local::start(&root, &config, 0)?;
    drop_text(
        &root,
        &format!("inbox/sandbox-bedrock/{name}/requests.jsonl"),
        &prompts(n),
    )?;
    let results = root.join(format!("results/sandbox-bedrock/{name}/requests"));
    wait_until(&results.join("summary.json"), &local, limit)?;
    Ok((dir, local, results))
}

/// output.jsonl holds `n` lines, in input order, each with the model's answer.
fn assert_answered_in_order(results: &Path, n: usize) -> TestResult {
    let output = json_lines(&std::fs::read_to_string(results.join("output.jsonl"))?)?;
    assert!(
        ids_in_order(&output, n),
        "output out of order or incomplete"
    );
    let unanswered: Vec<&Value> = output
        .iter()
        .filter(|l| !l["modelOutput"]["content"][0]["text"].is_string())
        .collect();
    assert!(
        unanswered.is_empty(),
        "{} unanswered, the first: {}",
        unanswered.len(),
        unanswered[0]
    );
    Ok(())
}

#[test]
fn a_file_of_120000_requests_comes_back_in_order_through_three_jobs() -> TestResult {
    // GIVEN batchdrop local with the built-in routes, WHEN 120,000 prompt lines are dropped
    // under inbox/sandbox-bedrock/
    let (_dir, local, results) = drop_and_wait("big", 120_000, Duration::from_secs(600))?;

    // THEN every request has its answer, in input order
    assert_answered_in_order(&results, 120_000)?;
    // AND they went as three model invocation jobs, none below Bedrock's minimum
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("summary.json"))?)?;
    assert_eq!(summary["counts"]["succeeded"], 120_000, "{summary}");
    let jobs = summary["batches"].as_array().ok_or("no batches")?;
    assert_eq!(jobs.len(), 3, "{summary}");
    assert!(
        jobs.iter()
            .all(|j| j["requests"].as_u64().unwrap_or(0) >= 100),
        "{summary}"
    );
    assert!(summary.get("on_demand_requests").is_none(), "{summary}");
    let stats = sandbox_stats(&local)?;
    assert_eq!(stats["bedrock_jobs_created"], 3, "{stats}");
    assert_eq!(stats["bedrock_invocations"], 0, "{stats}");
    local.stop();
    Ok(())
}

#[test]
fn a_file_below_the_minimum_of_a_job_completes_on_demand() -> TestResult {
    // GIVEN batchdrop local with the built-in routes, WHEN 40 prompt lines (Bedrock's minimum
    // per job is 100) are dropped
    let (_dir, local, results) = drop_and_wait("small", 40, Duration::from_secs(120))?;

    // THEN every request has its answer, in input order, from InvokeModel, no job made
    assert_answered_in_order(&results, 40)?;
    let stats = sandbox_stats(&local)?;
    assert_eq!(stats["bedrock_jobs_created"], 0, "{stats}");
    assert_eq!(stats["bedrock_invocations"], 40, "{stats}");
    // AND the summary says they went on demand, at the synchronous price
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("summary.json"))?)?;
    assert_eq!(summary["on_demand_requests"], 40, "{summary}");
    assert_eq!(summary["counts"]["succeeded"], 40, "{summary}");
    let cost = &summary["cost"];
    assert!(cost["on_demand"].as_f64().unwrap_or(0.0) > 0.0, "{cost}");
    assert_eq!(cost["batch"], 0.0, "{cost}");
    local.stop();
    Ok(())
}
