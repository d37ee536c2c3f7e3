//! A provider's minimum requests per batch (Bedrock: 100 records per job): chunks are
//! balanced so that none falls below it whenever the file holds that many; what is below it
//! goes on demand, request by request, or fails, as the route says. Over an in-memory bucket,
//! a manual clock and a scripted provider whose `sandbox` route is given a minimum.

mod common;

use batchdrop_core::config::{BelowMinimum, Config};
use batchdrop_core::engine::Engine;
use batchdrop_core::layout::ACTIVE;
use batchdrop_core::store::ObjectStore;
use batchdrop_core::testing::{FaultyStore, ScriptedProvider, TestBed, small_config};
use common::{TestResult, expected_ids, file, ids, json, jsonl};
use std::sync::Arc;

const KEY: &str = "inbox/sandbox/run/requests.jsonl";
const RESULTS: &str = "results/sandbox/run/requests/";

/// The `sandbox` route with at least `min` and at most `max` requests per batch.
fn config(min: u64, max: u64, below: BelowMinimum) -> Config {
    let mut config = small_config(max, 1 << 20);
    if let Some(route) = config.routes.get_mut("sandbox") {
        route.limits.min_requests_per_batch = min;
        route.below_minimum = below;
        route.retries.max_attempts = 1;
    }
    config
}

/// Polls the bed's engine until no job is active, at most 10 times.
async fn poll_to_end(bed: &TestBed) -> TestResult {
    common::poll_to_end(bed, 10).await
}

/// Polls `engine` until no job of the bed is active, at most 10 times, whatever the polls say
/// (the bucket under `engine` refuses some writes).
async fn poll_through_failures(engine: &Engine, bed: &TestBed) -> TestResult {
    for _ in 0..10 {
        let _ = engine.poll().await;
        if bed.store.list(ACTIVE).await?.is_empty() {
            break;
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_remainder_below_the_minimum_is_shared_with_a_full_chunk() -> TestResult {
    // GIVEN a minimum of 3 and a maximum of 6 requests per batch, and 13 requests (6 + 6 + 1)
    let bed = TestBed::with_config(
        ScriptedProvider::new(),
        config(3, 6, BelowMinimum::OnDemand),
    );

    // WHEN the file is dropped and the job polled to the end
    bed.drop_file(KEY, file(13)).await?;
    poll_to_end(&bed).await?;

    // THEN every batch holds between 3 and 6 requests, nothing went on demand
    let mut sizes: Vec<usize> = bed
        .provider
        .batches()
        .iter()
        .map(|b| b.custom_ids.len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, [3, 4, 6], "{sizes:?}");
    assert_eq!(bed.provider.calls().invokes, 0);
    // AND output.jsonl holds every request once, in input order
    let out = jsonl(bed.store.as_ref(), &format!("{RESULTS}output.jsonl")).await?;
    assert_eq!(ids(&out), expected_ids(13));
    Ok(())
}

#[tokio::test]
async fn a_file_below_the_minimum_goes_on_demand_and_says_so_in_the_summary() -> TestResult {
    // GIVEN a minimum of 5 and a file of 3 requests
    let bed = TestBed::with_config(
        ScriptedProvider::new(),
        config(5, 10, BelowMinimum::OnDemand),
    );

    // WHEN the file is dropped and the job polled to the end
    bed.drop_file(KEY, file(3)).await?;
    poll_to_end(&bed).await?;

    // THEN no batch was made: each request was sent on its own
    assert!(bed.provider.batches().is_empty());
    assert_eq!(bed.provider.calls().invokes, 3);
    // AND every request has its answer, in input order
    let out = jsonl(bed.store.as_ref(), &format!("{RESULTS}output.jsonl")).await?;
    assert_eq!(ids(&out), expected_ids(3));
    assert!(out.iter().all(|l| l["response"]["status_code"] == 200));
    // AND the summary counts them as on demand, priced at the synchronous prices
    let summary = json(bed.store.as_ref(), &format!("{RESULTS}summary.json")).await?;
    assert_eq!(summary["on_demand_requests"], 3);
    assert_eq!(summary["counts"]["succeeded"], 3);
    assert_eq!(summary["batches"][0]["on_demand"], true);
    let cost = &summary["cost"];
    assert_eq!(cost["batch"], 0.0);
    assert!(cost["on_demand"].as_f64().unwrap_or(0.0) > 0.0, "{cost}");
    assert_eq!(cost["on_demand"], cost["synchronous_equivalent"]);
    Ok(())
}

#[tokio::test]
async fn below_minimum_fail_fails_each_request_with_the_reason() -> TestResult {
    // GIVEN a minimum of 5, a route that says below_minimum = "fail", and 3 requests
    let bed = TestBed::with_config(ScriptedProvider::new(), config(5, 10, BelowMinimum::Fail));

    // WHEN the file is dropped and the job polled to the end
    bed.drop_file(KEY, file(3)).await?;
    poll_to_end(&bed).await?;

    // THEN nothing was sent, and each request's line says why
    assert_eq!(bed.provider.calls().total(), 0);
    let out = jsonl(bed.store.as_ref(), &format!("{RESULTS}output.jsonl")).await?;
    assert_eq!(ids(&out), expected_ids(3));
    let message = out[0].to_string();
    assert!(message.contains("below_minimum"), "{message}");
    assert!(message.contains("minimum of 5"), "{message}");
    Ok(())
}

#[tokio::test]
async fn a_failure_in_the_middle_of_the_on_demand_run_asks_again_only_the_piece_in_flight()
-> TestResult {
    // GIVEN a minimum of 50, a file of 40 requests (pieces of 16, 16 and 8 answers), and a
    // bucket that refuses to save the second piece once
    let bed = TestBed::with_config(
        ScriptedProvider::new(),
        config(50, 100, BelowMinimum::OnDemand),
    );
    let faulty = Arc::new(FaultyStore::new(bed.store.clone()));
    let engine = bed.engine_over(faulty.clone(), "worker-a");
    let meta = bed.upload(KEY, file(40)).await?;
    faulty.fail_writes(
        format!(
            "_batchdrop/jobs/{}/output/00000/on-demand/part-00000016-000016.jsonl",
            batchdrop_core::layout::job_id(batchdrop_core::testing::BUCKET, KEY, &meta.etag)
        ),
        1,
    );

    // WHEN the job is submitted (the submit's advance fails on that write) and polled to the
    // end through that bucket
    let _ = engine.submit(KEY, Some(&meta.etag)).await;
    poll_through_failures(&engine, &bed).await?;

    // THEN the 16 requests whose answers were lost were asked again, no other
    assert_eq!(bed.provider.calls().invokes, 40 + 16);
    // AND every request is in output.jsonl once, in input order
    let out = jsonl(bed.store.as_ref(), &format!("{RESULTS}output.jsonl")).await?;
    assert_eq!(ids(&out), expected_ids(40));
    Ok(())
}

#[tokio::test]
async fn a_cancel_during_the_on_demand_run_keeps_what_was_answered_and_sends_no_more() -> TestResult
{
    // GIVEN a minimum of 50 and a file of 40 requests whose on-demand run stopped after its
    // first piece of 16 answers (the bucket refused the second piece)
    let bed = TestBed::with_config(
        ScriptedProvider::new(),
        config(50, 100, BelowMinimum::OnDemand),
    );
    let faulty = Arc::new(FaultyStore::new(bed.store.clone()));
    let engine = bed.engine_over(faulty.clone(), "worker-a");
    let meta = bed.upload(KEY, file(40)).await?;
    let job = batchdrop_core::layout::job_id(batchdrop_core::testing::BUCKET, KEY, &meta.etag);
    faulty.fail_writes(
        format!("_batchdrop/jobs/{job}/output/00000/on-demand/part-00000016-000016.jsonl"),
        1,
    );
    let _ = engine.submit(KEY, Some(&meta.etag)).await;

    // WHEN the job is cancelled, then polled to the end
    engine.cancel("cancel/sandbox/run/requests.jsonl").await?;
    poll_through_failures(&engine, &bed).await?;

    // THEN no request was sent after the cancel
    assert_eq!(bed.provider.calls().invokes, 32);
    // AND the 16 saved answers are kept, the other 24 requests say batch_cancelled
    let out = jsonl(bed.store.as_ref(), &format!("{RESULTS}output.jsonl")).await?;
    assert_eq!(ids(&out), expected_ids(40));
    let answered = out
        .iter()
        .filter(|l| l["response"]["status_code"] == 200)
        .count();
    let cancelled = out
        .iter()
        .filter(|l| l["error"]["code"] == "batch_cancelled")
        .count();
    assert_eq!((answered, cancelled), (16, 24));
    Ok(())
}

#[tokio::test]
async fn an_invocation_deadline_in_the_middle_of_a_piece_keeps_the_answers_it_got() -> TestResult {
    use batchdrop_core::clock::Clock;
    use std::time::Duration;
    // GIVEN 40 requests that go on demand one at a time, and a clock that moves a second at
    // every reading, with invocations of 40 seconds (they stop starting work after 30)
    let mut config = config(1000, 10_000, BelowMinimum::OnDemand);
    if let Some(route) = config.routes.get_mut("sandbox") {
        route.max_concurrency = Some(1);
    }
    let bed = TestBed::with_config(ScriptedProvider::new(), config);
    bed.clock.tick_on_read(Duration::from_secs(1));
    let invocation = |bed: &TestBed| bed.engine.until(bed.clock.now() + Duration::from_secs(40));
    let meta = bed.upload(KEY, file(40)).await?;
    invocation(&bed).submit(KEY, Some(&meta.etag)).await?;

    // WHEN invocations run until one stops in the middle of a piece of answers
    let mut stopped_mid_piece = false;
    for _ in 0..20 {
        let keys = bed.store.list("_batchdrop/jobs/").await?;
        if keys.iter().any(|m| m.key.contains("/on-demand/partial-")) {
            stopped_mid_piece = true;
            break;
        }
        invocation(&bed).poll().await?;
    }
    assert!(
        stopped_mid_piece,
        "no invocation stopped in the middle of a piece"
    );
    let before = bed.provider.calls().invokes;
    assert!(
        before > 0 && before < 40,
        "{before} requests sent before the stop"
    );
    // AND the rest runs without a deadline
    bed.clock.tick_on_read(Duration::ZERO);
    poll_to_end(&bed).await?;

    // THEN no request was sent twice: the answers got before the stop were kept
    assert_eq!(bed.provider.calls().invokes, 40);
    let out = jsonl(bed.store.as_ref(), &format!("{RESULTS}output.jsonl")).await?;
    assert_eq!(ids(&out), expected_ids(40));
    assert!(out.iter().all(|l| l["response"]["status_code"] == 200));
    Ok(())
}
