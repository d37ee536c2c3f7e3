//! `batchdrop local` end to end: the real binary, a temp directory as the bucket, the embedded
//! sandbox as the provider.

mod common;

use common::{Local, TestResult, wait_for, workspace};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn drop_file(root: &Path, from: &Path, key: &str) -> std::io::Result<()> {
    let dest = root.join(key);
    std::fs::create_dir_all(dest.parent().expect("key has a parent"))?;
    let staging = root.with_extension("staging");
    std::fs::copy(from, &staging)?;
    std::fs::rename(&staging, &dest)
}

fn json_lines(path: &Path) -> Result<Vec<Value>, common::Error> {
    common::json_lines(&std::fs::read_to_string(path)?)
}

fn small_chunks_config(dir: &Path) -> std::io::Result<PathBuf> {
    let path = dir.join("batchdrop.toml");
    std::fs::write(&path, "[routes.sandbox]\nmax_requests_per_batch = 3\n")?;
    Ok(path)
}

#[test]
fn dropped_file_gets_ordered_output_errors_and_summary() -> TestResult {
    // GIVEN batchdrop local on an empty root, chunks of at most 3 requests
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    let local = Local::start(&root, &small_chunks_config(dir.path())?, 0)?;
    // WHEN the example file with broken lines is dropped into the inbox
    drop_file(
        &root,
        &workspace().join("examples/requests.jsonl"),
        "inbox/sandbox/run 1/requests.jsonl",
    )?;
    let results = root.join("results/sandbox/run 1/requests");
    wait_for(&results.join("summary.json"), &local)?;
    let printed = local.stop();

    // THEN output.jsonl has the accepted custom_ids in input order
    let output = json_lines(&results.join("output.jsonl"))?;
    let ids: Vec<&str> = output
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        ids,
        [
            "review-001",
            "review-002",
            "review-004",
            "line-8",
            "review-006",
            "review-008",
            "review-009",
            "review-010",
            "review-011"
        ]
    );
    // AND the request the provider rejected keeps its line with the provider's status
    assert_eq!(output[6]["response"]["status_code"], 404);
    // AND errors.jsonl names every bad line
    let errors = json_lines(&results.join("errors.jsonl"))?;
    let named: Vec<(u64, &str)> = errors
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap_or(0),
                e["error"]["code"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        named,
        [
            (4, "invalid_json"),
            (6, "missing_field"),
            (7, "duplicate_custom_id"),
            (9, "not_an_object"),
            (11, "unsupported_endpoint")
        ]
    );
    // AND the summary's counts add up
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("summary.json"))?)?;
    assert_eq!(summary["status"], "completed");
    assert_eq!(
        summary["counts"],
        serde_json::json!({"lines": 14, "accepted": 9, "rejected": 5, "succeeded": 8, "failed": 1, "retried": 0})
    );
    // 7 gpt-4o-mini requests in chunks of 3, one gpt-4.1-mini, one does-not-exist
    assert_eq!(summary["batches"].as_array().map(Vec::len), Some(5));
    assert!(summary["usage"]["input_tokens"].as_u64().unwrap_or(0) > 0);
    // AND the run was told as it went
    assert!(
        printed.contains("started: inbox/sandbox/run 1/requests.jsonl"),
        "{printed}"
    );
    assert!(
        printed.contains("completed: 8 succeeded, 1 failed, 5 rejected"),
        "{printed}"
    );
    Ok(())
}

#[test]
fn restart_does_not_submit_the_same_file_again() -> TestResult {
    // GIVEN a file that batchdrop local has already finished
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    let config = small_chunks_config(dir.path())?;
    let local = Local::start(&root, &config, 0)?;
    drop_file(
        &root,
        &workspace().join("examples/prompts.jsonl"),
        "inbox/sandbox/prompts.jsonl",
    )?;
    wait_for(&root.join("results/sandbox/prompts/summary.json"), &local)?;
    local.stop();
    let summary_before = std::fs::read(root.join("results/sandbox/prompts/summary.json"))?;

    // WHEN batchdrop local starts again on the same root and runs a second file to completion
    let local = Local::start(&root, &config, 0)?;
    drop_file(
        &root,
        &workspace().join("examples/prompts.jsonl"),
        "inbox/sandbox/again.jsonl",
    )?;
    wait_for(&root.join("results/sandbox/again/summary.json"), &local)?;
    let printed = local.stop();

    // THEN the first file was not started again and its results are untouched
    assert!(
        !printed.contains("inbox/sandbox/prompts.jsonl"),
        "{printed}"
    );
    assert_eq!(
        std::fs::read(root.join("results/sandbox/prompts/summary.json"))?,
        summary_before
    );
    assert_eq!(std::fs::read_dir(root.join("_batchdrop/jobs"))?.count(), 2);
    Ok(())
}

#[test]
fn file_under_an_unknown_route_fails_with_every_line_reported() -> TestResult {
    // GIVEN batchdrop local
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    let local = Local::start(&root, &small_chunks_config(dir.path())?, 0)?;
    // WHEN a file is dropped under a route nobody configured
    drop_file(
        &root,
        &workspace().join("examples/prompts.jsonl"),
        "inbox/nosuchroute/p.jsonl",
    )?;
    let results = root.join("results/nosuchroute/p");
    wait_for(&results.join("summary.json"), &local)?;
    local.stop();
    // THEN the job failed with the reason, and every line is in errors.jsonl
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("summary.json"))?)?;
    assert_eq!(summary["status"], "failed");
    assert!(
        summary["reason"]
            .as_str()
            .unwrap_or("")
            .contains("nosuchroute")
    );
    let errors = json_lines(&results.join("errors.jsonl"))?;
    assert_eq!(errors.len(), 6);
    assert!(errors.iter().all(|e| e["error"]["code"] == "unknown_route"));
    assert_eq!(summary["counts"]["rejected"], 6);
    Ok(())
}

#[test]
fn cancel_object_finishes_the_job_as_cancelled() -> TestResult {
    // GIVEN a job whose batches take seconds (sandbox step of 2 s)
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    let local = Local::start(&root, &small_chunks_config(dir.path())?, 2000)?;
    drop_file(
        &root,
        &workspace().join("examples/prompts.jsonl"),
        "inbox/sandbox/slow.jsonl",
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !local.output().contains("submitted") {
        if Instant::now() > deadline {
            return Err(format!("no batch submitted; output:\n{}", local.output()).into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // WHEN a cancel object for the same path is dropped
    drop_file(
        &root,
        &workspace().join("examples/prompts.jsonl"),
        "cancel/sandbox/slow.jsonl",
    )?;
    let results = root.join("results/sandbox/slow");
    wait_for(&results.join("summary.json"), &local)?;
    let printed = local.stop();

    // THEN the job is cancelled, and every accepted request has its line saying so
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("summary.json"))?)?;
    assert_eq!(summary["status"], "cancelled", "{printed}");
    let output = json_lines(&results.join("output.jsonl"))?;
    assert_eq!(output.len(), 5);
    assert!(
        output
            .iter()
            .all(|l| l["error"]["code"] == "batch_cancelled"),
        "{output:?}"
    );
    assert!(
        printed.contains("cancel/sandbox/slow.jsonl: cancelling"),
        "{printed}"
    );
    Ok(())
}

#[test]
fn same_prompt_file_through_both_providers_gives_each_native_shape_in_input_order() -> TestResult {
    // GIVEN batchdrop local with both sandbox routes
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    let local = Local::start(&root, &small_chunks_config(dir.path())?, 0)?;
    // WHEN the same prompt file is dropped under sandbox and sandbox-anthropic
    let prompts = workspace().join("examples/prompts.jsonl");
    drop_file(&root, &prompts, "inbox/sandbox/p.jsonl")?;
    drop_file(&root, &prompts, "inbox/sandbox-anthropic/p.jsonl")?;
    wait_for(&root.join("results/sandbox/p/summary.json"), &local)?;
    wait_for(
        &root.join("results/sandbox-anthropic/p/summary.json"),
        &local,
    )?;
    local.stop();

    // THEN each output lists the same ids in input order, each in its provider's own shape
    let openai = json_lines(&root.join("results/sandbox/p/output.jsonl"))?;
    let anthropic = json_lines(&root.join("results/sandbox-anthropic/p/output.jsonl"))?;
    let ids = |lines: &[Value]| -> Vec<String> {
        lines
            .iter()
            .map(|l| l["custom_id"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    assert_eq!(ids(&openai), ["q1", "line-2", "q3", "q5", "q6"]);
    assert_eq!(ids(&anthropic), ids(&openai));
    assert!(openai.iter().all(|l| l["response"]["status_code"] == 200));
    assert!(anthropic.iter().all(|l| l["result"]["type"] == "succeeded"));
    assert_eq!(
        anthropic[0]["result"]["message"]["model"],
        "claude-sonnet-4-5"
    );
    Ok(())
}

#[test]
fn custom_ids_anthropic_refuses_come_back_unchanged() -> TestResult {
    // GIVEN ids Anthropic's ^[a-zA-Z0-9_-]{1,64}$ refuses (65+ chars, dots, spaces, unicode)
    // and one that looks like batchdrop's own mapped ids
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    let long = "x".repeat(80);
    let ids = [
        long.as_str(),
        "with.dots",
        "with spaces",
        "ünïcødé-日本",
        "bd_1",
        "plain_ok-1",
    ];
    let file = dir.path().join("ids.jsonl");
    let lines: Vec<String> = ids
        .iter()
        .map(|id| serde_json::json!({"custom_id": id, "prompt": "hello"}).to_string())
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n")?;
    let local = Local::start(&root, &small_chunks_config(dir.path())?, 0)?;
    // WHEN they go through the Anthropic route
    drop_file(&root, &file, "inbox/sandbox-anthropic/ids.jsonl")?;
    wait_for(
        &root.join("results/sandbox-anthropic/ids/summary.json"),
        &local,
    )?;
    local.stop();
    // THEN output.jsonl carries each user id exactly as given, in order
    let output = json_lines(&root.join("results/sandbox-anthropic/ids/output.jsonl"))?;
    let got: Vec<&str> = output
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(got, ids);
    assert!(
        output.iter().all(|l| l["result"]["type"] == "succeeded"),
        "{output:?}"
    );
    Ok(())
}
