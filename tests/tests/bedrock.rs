//! Bedrock end to end: the engine over a directory bucket, the real Bedrock client (the AWS
//! SDK) and the sandbox's Bedrock side reading the staged chunks from and writing its output
//! into the same directory, as Bedrock reads and writes the bucket. The fault matrix (each
//! fault alone, then all at once) and a crash after every write of the engine: every accepted
//! request ends in exactly one line of output.jsonl, in input order, and the sandbox saw one
//! model invocation job per chunk.

use batchdrop_core::clock::{ManualClock, SystemClock};
use batchdrop_core::config::Config;
use batchdrop_core::engine::{Engine, LEASE};
use batchdrop_core::layout::ACTIVE;
use batchdrop_core::provider::{Provider, Providers};
use batchdrop_core::providers::bedrock::SANDBOX_ROLE_ARN;
use batchdrop_core::providers::{BedrockProvider, RetryPolicy};
use batchdrop_core::store::{LocalStore, ObjectStore, ObjectStoreExt, PutMode};
use batchdrop_core::testing::FaultyStore;
use batchdrop_sandbox::{BedrockConfig, BedrockObjects, Faults, Sandbox, SandboxConfig};
use bytes::Bytes;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

const ROUTE: &str = "sandbox-bedrock";
const KEY: &str = "inbox/sandbox-bedrock/claims.jsonl";
const RESULTS: &str = "results/sandbox-bedrock/claims/";

/// `n` prompt lines `c000`…: on Bedrock, Claude bodies.
fn input(n: usize) -> String {
    (0..n)
        .map(|i| format!(r#"{{"custom_id":"c{i:03}","prompt":"claim {i}"}}"#) + "\n")
        .collect()
}

fn expected(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i:03}")).collect()
}

/// A sandbox whose Bedrock jobs read and write `root`, injecting `spec`.
async fn sandbox(root: &Path, spec: &str) -> Result<Sandbox, Error> {
    let faults = Faults::parse(spec).map_err(|e| format!("{spec}: {e}"))?;
    Ok(Sandbox::start(
        "127.0.0.1:0".parse()?,
        SandboxConfig {
            faults,
            bedrock: BedrockConfig {
                objects: Some(BedrockObjects::Directory(root.to_path_buf())),
                ..BedrockConfig::default()
            },
            ..SandboxConfig::default()
        },
    )
    .await?)
}

/// The `sandbox-bedrock` route at most `max` requests per job (Bedrock's minimum, 100,
/// stays), `attempts` per request; its client talks to `sandbox`.
fn engine(
    store: Arc<dyn ObjectStore>,
    sandbox: &Sandbox,
    clock: Arc<dyn batchdrop_core::clock::Clock>,
    max: u64,
    owner: &str,
) -> Engine {
    let retry = RetryPolicy {
        max_attempts: 6,
        initial: Duration::from_millis(5),
        max: Duration::from_millis(20),
    };
    let provider: Arc<dyn Provider> = Arc::new(
        BedrockProvider::new(
            &sandbox.anthropic_base_url(),
            Some(SANDBOX_ROLE_ARN.to_string()),
        )
        .with_retry(retry),
    );
    let mut providers: HashMap<String, Result<Arc<dyn Provider>, String>> = HashMap::new();
    providers.insert(ROUTE.to_string(), Ok(provider));
    let mut config = Config::builtin(&|_| None);
    if let Some(route) = config.routes.get_mut(ROUTE) {
        route.limits.max_requests_per_batch = max;
        route.retries.max_attempts = 4;
    }
    Engine::new(
        store,
        "bucket",
        Arc::new(config),
        Arc::new(providers) as Arc<dyn Providers>,
        clock,
    )
    .with_owner(owner)
}

async fn jsonl(store: &dyn ObjectStore, key: &str) -> Result<Vec<Value>, Error> {
    let bytes = store.get_bytes(key).await?;
    let mut out = Vec::new();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        out.push(serde_json::from_slice(line)?);
    }
    Ok(out)
}

fn ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The model invocation jobs summary.json lists (not the chunks sent on demand).
fn jobs_recorded(summary: &Value) -> usize {
    summary["batches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["on_demand"] != true && b["id"].is_string())
        .count()
}

/// Polls `engine` until no job is active (at most `max` polls, failures allowed).
async fn poll_to_end(engine: &Engine, store: &dyn ObjectStore, max: usize) -> Result<bool, Error> {
    for _ in 0..max {
        let _ = engine.poll().await;
        if store.list(ACTIVE).await?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Runs 450 requests (chunks of 200, 125 and 125 once balanced) against a sandbox injecting
/// `spec`; checks the output and that no chunk became two jobs.
async fn check(spec: &str) -> TestResult {
    const N: usize = 450;
    let dir = tempfile::tempdir()?;
    let sandbox = sandbox(dir.path(), spec).await?;
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path())?);
    let engine = engine(store.clone(), &sandbox, Arc::new(SystemClock), 200, "w");
    let meta = store
        .put(KEY, Bytes::from(input(N)), PutMode::Create)
        .await?;
    // S3 delivers the event again when submit fails: so does this loop.
    let mut started = false;
    for _ in 0..20 {
        if engine.submit(KEY, Some(&meta.etag)).await.is_ok() {
            started = true;
            break;
        }
    }
    assert!(started, "{spec}: submit never succeeded");
    assert!(
        poll_to_end(&engine, store.as_ref(), 200).await?,
        "{spec}: job never finished"
    );
    let out = jsonl(store.as_ref(), &format!("{RESULTS}output.jsonl")).await?;
    assert_eq!(ids(&out), expected(N), "{spec}");
    let summary: Value =
        serde_json::from_slice(&store.get_bytes(&format!("{RESULTS}summary.json")).await?)?;
    let c = &summary["counts"];
    assert_eq!(
        c["succeeded"].as_u64().unwrap_or(0) + c["failed"].as_u64().unwrap_or(0),
        N as u64,
        "{spec}: {summary}"
    );
    assert_eq!(
        sandbox.stats().bedrock_jobs_created as usize,
        jobs_recorded(&summary),
        "{spec}: jobs made vs jobs the job knows: {summary}"
    );
    // The answers are the model's: every success has its modelOutput, and the faults (given
    // four attempts) leave most requests answered.
    let succeeded = c["succeeded"].as_u64().unwrap_or(0);
    let answered = out.iter().filter(|l| l["modelOutput"].is_object()).count() as u64;
    assert_eq!(answered, succeeded, "{spec}: {summary}");
    eprintln!(
        "{spec}: {succeeded} of {N} succeeded, {} jobs, {} on demand",
        jobs_recorded(&summary),
        summary["on_demand_requests"]
    );
    assert!(succeeded >= N as u64 * 3 / 4, "{spec}: {summary}");
    sandbox.stop().await;
    Ok(())
}

const SPECS: &[&str] = &[
    "seed=1,throttle=0.3",
    "seed=2,http500=0.2",
    "seed=3,drop=0.1",
    "seed=4,partial=1",
    "seed=5,expire=0.5,expire_keep=0.5",
    "seed=6,req429=0.2,req500=0.1,req400=0.1",
];

const ALL_AT_ONCE: &str = "seed=42,throttle=0.1,http500=0.05,drop=0.05,partial=0.2,expire=0.2,req429=0.1,req500=0.05,req400=0.05";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_each_fault_alone_loses_no_request_and_duplicates_no_job() -> TestResult {
    for spec in SPECS {
        check(spec).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_all_faults_at_once_lose_no_request_and_duplicate_no_job() -> TestResult {
    check(ALL_AT_ONCE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_a_crash_after_any_write_then_a_retry_loses_no_request_and_makes_no_second_job()
-> TestResult {
    const N: usize = 250;
    // One run that does not crash counts the engine's writes.
    let run = |dies_after: Option<u64>| async move {
        let dir = tempfile::tempdir()?;
        let sandbox = sandbox(dir.path(), "").await?;
        let local: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path())?);
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        let meta = local
            .put(KEY, Bytes::from(input(N)), PutMode::Create)
            .await?;
        let faulty = Arc::new(FaultyStore::new(local.clone()));
        if let Some(n) = dies_after {
            faulty.die_after_writes(n);
        }
        let dying = engine(faulty.clone(), &sandbox, clock.clone(), 200, "worker-a");
        let _ = dying.submit(KEY, Some(&meta.etag)).await;
        for _ in 0..6 {
            let _ = dying.poll().await;
        }
        Ok::<_, Error>((dir, sandbox, local, clock, meta.etag, faulty.writes()))
    };
    let (_dir, clean, _, _, _, total_writes) = run(None).await?;
    clean.stop().await;
    assert!(total_writes > 10, "{total_writes}");

    for n in 0..total_writes {
        // GIVEN a process that dies after its n-th write
        let (_dir, sandbox, store, clock, etag, _) = run(Some(n)).await?;
        // WHEN a new process takes over (the dead one's lease runs out) and S3 delivers the
        // event again
        clock.advance(LEASE + Duration::from_secs(1));
        let engine = engine(store.clone(), &sandbox, clock.clone(), 200, "worker-b");
        engine.submit(KEY, Some(&etag)).await?;
        assert!(
            poll_to_end(&engine, store.as_ref(), 20).await?,
            "crash after write {n}: job never finished"
        );
        // THEN every request is in output.jsonl exactly once, in order
        let out = jsonl(store.as_ref(), &format!("{RESULTS}output.jsonl")).await?;
        assert_eq!(ids(&out), expected(N), "crash after write {n}");
        // AND the sandbox made one job per chunk: none twice
        let summary: Value =
            serde_json::from_slice(&store.get_bytes(&format!("{RESULTS}summary.json")).await?)?;
        assert_eq!(
            summary["counts"]["succeeded"], N,
            "crash after write {n}: {summary}"
        );
        assert_eq!(
            sandbox.stats().bedrock_jobs_created as usize,
            jobs_recorded(&summary),
            "crash after write {n}: {summary}"
        );
        sandbox.stop().await;
    }
    Ok(())
}
