//! `batchdrop local` on the built-in `sandbox-bedrock` route: the real binary, a temp directory
//! as the bucket, the embedded sandbox reading the staged chunks from it and writing the jobs'
//! output into it, as Bedrock does with a bucket.

mod common;

use common::{Local, TestResult, json_lines};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// `n` prompt lines `q000001`….
fn prompts(n: usize) -> String {
    (1..=n)
        .map(|i| format!(r#"{{"custom_id":"q{i:06}","prompt":"question {i}"}}"#) + "\n")
        .collect()
}

/// Drops `body` at `key` under `root` (written beside it, then renamed into place).
fn drop_file(root: &Path, key: &str, body: &str) -> std::io::Result<()> {
    let dest = root.join(key);
    std::fs::create_dir_all(dest.parent().expect("key has a parent"))?;
    let staging = root.with_extension("staging");
    std::fs::write(&staging, body)?;
    std::fs::rename(&staging, &dest)
}

fn wait_for(path: &Path, local: &Local, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not appear; output:\n{}",
                path.display(),
                local.output()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The embedded sandbox's statistics (its address is printed at start).
fn sandbox_stats(local: &Local) -> Result<Value, common::Error> {
    let printed = local.output();
    let url = printed
        .lines()
        .find_map(|l| l.strip_prefix("sandbox provider at "))
        .ok_or("the sandbox address was not printed")?
        .trim()
        .trim_end_matches("/v1")
        .to_string();
    // A plain HTTP/1.0 GET: the body is what follows the blank line.
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr)?;
    write!(
        stream,
        "GET /sandbox/stats HTTP/1.0\r\nHost: {addr}\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let body = answer.split_once("\r\n\r\n").ok_or("no HTTP body")?.1;
    Ok(serde_json::from_str(body)?)
}

fn ids_in_order(output: &[Value], n: usize) -> bool {
    output.len() == n
        && output
            .iter()
            .enumerate()
            .all(|(i, l)| l["custom_id"] == format!("q{:06}", i + 1))
}

#[test]
fn a_file_of_120000_requests_comes_back_in_order_through_three_jobs() -> TestResult {
    // GIVEN batchdrop local with the built-in routes
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    let config = dir.path().join("batchdrop.toml");
    std::fs::write(&config, "")?;
    let local = Local::start(&root, &config, 0)?;
    // WHEN 120,000 prompt lines are dropped under inbox/sandbox-bedrock/
    drop_file(
        &root,
        "inbox/sandbox-bedrock/big/requests.jsonl",
        &prompts(120_000),
    )?;
    let results = root.join("results/sandbox-bedrock/big/requests");
    wait_for(
        &results.join("summary.json"),
        &local,
        Duration::from_secs(600),
    )?;

    // THEN every request has its answer, in input order
    let output = json_lines(&std::fs::read_to_string(results.join("output.jsonl"))?)?;
    assert!(
        ids_in_order(&output, 120_000),
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
    // GIVEN batchdrop local with the built-in routes
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    let config = dir.path().join("batchdrop.toml");
    std::fs::write(&config, "")?;
    let local = Local::start(&root, &config, 0)?;
    // WHEN 40 prompt lines (Bedrock's minimum per job is 100) are dropped
    drop_file(
        &root,
        "inbox/sandbox-bedrock/small/requests.jsonl",
        &prompts(40),
    )?;
    let results = root.join("results/sandbox-bedrock/small/requests");
    wait_for(
        &results.join("summary.json"),
        &local,
        Duration::from_secs(120),
    )?;

    // THEN every request has its answer, in input order, from InvokeModel, no job made
    let output = json_lines(&std::fs::read_to_string(results.join("output.jsonl"))?)?;
    assert!(
        ids_in_order(&output, 40),
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
