//! Deadlines end to end: the engine, the real OpenAI client and the sandbox over HTTP, the
//! sandbox's batches slowed past the job's deadline. The engine and the sandbox each read a
//! manual clock that the test moves on together, poll by poll: nothing sleeps.
//!
//! The sandbox's batches take an hour per step (validating, in progress, finalizing: done three
//! hours after they are created) and an hour to cancel. The job must be done 165 minutes after
//! it starts, with a margin of 70 minutes (more than the sandbox's cancel): its cutoff comes
//! while the batches are in progress, part answered.

use batchdrop_core::clock::{Clock, rfc3339};
use batchdrop_core::config::Config;
use batchdrop_core::engine::Engine;
use batchdrop_core::layout;
use batchdrop_core::store::{MemoryStore, ObjectStore, PutMode};
use batchdrop_core::testing::FaultyStore;
use batchdrop_sandbox::{Sandbox, SandboxConfig};
use batchdrop_tests::TestResult;
use batchdrop_tests::clocks::{Clocks, one_route, openai_provider};
use batchdrop_tests::jobs::{custom_ids, output, poll_until_idle, summary};
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const ROUTE: &str = "sandbox";
const KEY: &str = "inbox/sandbox/nightly.jsonl";
const RESULTS: &str = "results/sandbox/nightly/";
const BUCKET: &str = "bucket";
const N: usize = 200;
const STEP: Duration = Duration::from_secs(3600);
const POLL_EVERY: Duration = Duration::from_secs(5 * 60);
/// Requests answered between two saves on the lane at concurrency 4 (engine/on_demand.rs).
const PIECE: u64 = 16;

/// The engine's clock and the sandbox's, moved on together.
struct Run {
    sandbox: Sandbox,
    store: Arc<FaultyStore>,
    clocks: Clocks,
    engine: Engine,
}

async fn start() -> Result<Run, Box<dyn std::error::Error + Send + Sync>> {
    let clocks = Clocks::at_unix(1_800_000_000)?;
    let sandbox = Sandbox::start_with_clock(
        "127.0.0.1:0".parse()?,
        SandboxConfig {
            step: STEP,
            ..SandboxConfig::default()
        },
        clocks.sandbox.clone(),
    )
    .await?;
    let providers = one_route(
        ROUTE,
        openai_provider(&sandbox.base_url(), clocks.engine.clone()),
    );
    let mut config = Config::builtin(&|_| None);
    let route = config.routes.get_mut(ROUTE).ok_or("no sandbox route")?;
    route.limits.max_requests_per_batch = 100;
    route.max_concurrency = Some(4);
    route.deadlines.margin = Duration::from_secs(70 * 60);
    let store = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let engine = Engine::new(
        store.clone(),
        BUCKET,
        Arc::new(config),
        Arc::new(providers),
        clocks.engine.clone(),
    );
    Ok(Run {
        sandbox,
        store,
        clocks,
        engine,
    })
}

impl Run {
    /// Drops the file with a `.deadline` beside it, 165 minutes from now; returns the job id.
    async fn drop_with_deadline(&self) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        let deadline = rfc3339(self.clocks.engine.now() + Duration::from_secs(165 * 60));
        self.store
            .put(
                &format!("{KEY}.deadline"),
                Bytes::from(deadline),
                PutMode::Create,
            )
            .await?;
        let body: String = (0..N)
            .map(|i| format!(r#"{{"custom_id":"r{i:03}","prompt":"question {i}"}}"#) + "\n")
            .collect();
        let meta = self
            .store
            .put(KEY, Bytes::from(body), PutMode::Create)
            .await?;
        self.engine.submit(KEY, Some(&meta.etag)).await?;
        Ok(layout::job_id(BUCKET, KEY, &meta.etag))
    }

    /// Polls every 5 minutes of both clocks until no job is active (at most 6 hours); a poll
    /// whose job failed (the crash a test injected) is followed by the next one, as the
    /// schedule would.
    async fn poll_until_done(&self) -> TestResult {
        poll_until_idle(&self.engine, self.store.as_ref(), 6 * 12, || {
            self.clocks.advance(POLL_EVERY)
        })
        .await
    }
}

/// Whether an output line came from a batch (the sandbox names batch result lines
/// `batch_req_…`); the others were answered through the lane.
fn from_batch(line: &Value) -> bool {
    line["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("batch_req_"))
}

fn expected_ids() -> Vec<String> {
    (0..N).map(|i| format!("r{i:03}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_slowed_past_the_deadline_finish_through_the_lane_by_the_deadline() -> TestResult {
    // GIVEN 200 requests in two batches that would end three hours after they start, and a
    // deadline 165 minutes away
    let run = start().await?;
    run.drop_with_deadline().await?;

    // WHEN the bucket is polled every 5 minutes until the job ends
    run.poll_until_done().await?;

    // THEN every request is in output.jsonl once, in input order, answered
    let out = output(run.store.as_ref(), RESULTS).await?;
    assert_eq!(custom_ids(&out), expected_ids());
    assert!(
        out.iter().all(|l| l["response"]["status_code"] == 200),
        "{:?}",
        out.iter().find(|l| l["response"]["status_code"] != 200)
    );
    // AND the batches' answers were kept: some requests were answered by them, and the
    // sandbox was asked synchronously exactly once for each of the others
    let by_batch = out.iter().filter(|l| from_batch(l)).count() as u64;
    assert!(
        by_batch > 0 && by_batch < N as u64,
        "{by_batch} answered by the batches"
    );
    assert_eq!(run.sandbox.stats().sync_requests, N as u64 - by_batch);
    // AND the summary says the deadline was met, with the requests that went through the lane
    let summary = summary(run.store.as_ref(), RESULTS).await?;
    let deadline = &summary["deadline"];
    assert_eq!(deadline["met"], true, "{summary}");
    assert_eq!(deadline["source"], "sidecar");
    assert_eq!(deadline["lane_requests"], N as u64 - by_batch, "{deadline}");
    assert!(deadline["cut_at"].is_string(), "{deadline}");
    run.sandbox.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_the_lane_asks_again_only_the_requests_in_flight() -> TestResult {
    // GIVEN the same job, and a bucket that refuses to save the second piece of answers of
    // the first chunk sent through the lane once (a crash after its requests were answered)
    let run = start().await?;
    let job_id = run.drop_with_deadline().await?;
    let first_lane_chunk = 2; // chunks 0 and 1 are the batches; their remainders come next
    let piece = format!(
        "{STATE}jobs/{job_id}/output/{first_lane_chunk:05}/on-demand/part-{PIECE:08}-{PIECE:06}.jsonl",
        STATE = layout::STATE
    );
    run.store.fail_writes(piece, 1);

    // WHEN the bucket is polled every 5 minutes until the job ends
    run.poll_until_done().await?;

    // THEN every request is in output.jsonl once, in input order
    let out = output(run.store.as_ref(), RESULTS).await?;
    assert_eq!(custom_ids(&out), expected_ids());
    eprintln!("SUMMARY {}", summary(run.store.as_ref(), RESULTS).await?);
    // AND only the piece in flight at the crash was asked again
    let by_lane = out.iter().filter(|l| !from_batch(l)).count() as u64;
    assert!(by_lane > 2 * PIECE, "{by_lane} answered through the lane");
    assert_eq!(run.sandbox.stats().sync_requests, by_lane + PIECE);
    run.sandbox.stop().await;
    Ok(())
}
