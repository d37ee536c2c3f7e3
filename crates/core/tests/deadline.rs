//! Deadlines: a job that must be done by a given time gives up its batches at the cutoff
//! (the deadline minus the lane's time for what is left, minus the route's margin), keeps
//! what they answered, and runs the rest through the synchronous lane. Over an in-memory
//! bucket, a manual clock and a scripted provider serving the `sandbox` route.

mod common;

use batchdrop_core::clock::{Clock, rfc3339};
use batchdrop_core::config::Config;
use batchdrop_core::engine::{LaneRate, lane_rate_key};
use batchdrop_core::layout::ACTIVE;
use batchdrop_core::store::{ObjectStore, ObjectStoreExt, PutMode};
use batchdrop_core::testing::{Script, ScriptedProvider, TestBed, small_config};
use bytes::Bytes;
use common::{Error, TestResult, expected_ids, file, ids, json, jsonl};
use serde_json::Value;
use std::time::Duration;

const KEY: &str = "inbox/sandbox/nightly/requests.jsonl";
const RESULTS: &str = "results/sandbox/nightly/requests/";
/// How often the scheduled poll runs in these tests.
const POLL_EVERY: Duration = Duration::from_secs(5 * 60);

/// The `sandbox` route, 10 requests per batch, one attempt, with `deadline_hours` if given.
fn config(deadline_hours: Option<f64>) -> Config {
    let mut config = small_config(10, 1 << 20);
    if let Some(route) = config.routes.get_mut("sandbox") {
        route.retries.max_attempts = 1;
        route.deadlines.after = deadline_hours.map(|h| Duration::from_secs_f64(h * 3600.0));
        route.deadlines.margin = Duration::from_secs(30 * 60);
    }
    config
}

/// Polls every [`POLL_EVERY`] of the bed's clock until no job is active (at most a day).
async fn poll_until_done(bed: &TestBed) -> TestResult {
    common::poll_until_idle(&bed.engine, bed.store.as_ref(), 24 * 12, || {
        bed.clock.advance(POLL_EVERY)
    })
    .await
}

/// The job's summary.json, parsed.
async fn summary(bed: &TestBed) -> Result<Value, Error> {
    json(bed.store.as_ref(), &format!("{RESULTS}summary.json")).await
}

/// Whether an output line was answered through the lane (the scripted provider names its
/// on-demand answers `batch_req_on_demand_…`).
fn by_lane(line: &Value) -> bool {
    line["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("batch_req_on_demand_"))
}

#[tokio::test]
async fn a_batch_still_running_at_the_cutoff_is_cancelled_and_the_rest_goes_through_the_lane()
-> TestResult {
    // GIVEN a route whose jobs must be done 2 hours after they start (30 minutes' margin),
    // and a batch that would run for days but has answered 4 of its 10 requests when cancelled
    let bed = TestBed::with_config(
        ScriptedProvider::new().with_script(
            Script::complete()
                .after_polls(10_000)
                .answering_before_cancel(4),
        ),
        config(Some(2.0)),
    );
    let started = bed.clock.now();

    // WHEN the file is dropped and polled every 5 minutes until the job ends
    bed.drop_file(KEY, file(10)).await?;
    poll_until_done(&bed).await?;

    // THEN the batch was cancelled once, and only its 6 unanswered requests were sent on their own
    assert_eq!(bed.provider.calls().cancels, 1);
    assert_eq!(bed.provider.calls().invokes, 6);
    // AND output.jsonl holds every request once, in input order: the batch's 4 answers kept
    let out = jsonl(bed.store.as_ref(), &format!("{RESULTS}output.jsonl")).await?;
    assert_eq!(ids(&out), expected_ids(10));
    let lane: Vec<bool> = out.iter().map(by_lane).collect();
    assert_eq!(
        lane,
        [
            false, false, false, false, true, true, true, true, true, true
        ]
    );
    assert!(
        out.iter().all(|l| l["response"]["status_code"] == 200),
        "{out:?}"
    );
    // AND the summary shows the deadline met, when the cutoff came and what the lane cost extra
    let summary = summary(&bed).await?;
    let deadline = &summary["deadline"];
    assert_eq!(
        deadline["at"],
        rfc3339(started + Duration::from_secs(2 * 3600))
    );
    assert_eq!(deadline["source"], "route");
    assert_eq!(deadline["met"], true, "{summary}");
    assert_eq!(deadline["lane_requests"], 6);
    assert!(
        deadline["extra_cost"].as_f64().is_some_and(|c| c > 0.0),
        "{deadline}"
    );
    // The cutoff: 2 h − 30 min margin − 10 requests at 4 per second, at the poll after it.
    assert_eq!(
        deadline["cut_at"],
        rfc3339(started + Duration::from_secs(90 * 60))
    );
    assert_eq!(summary["counts"]["succeeded"], 10);
    Ok(())
}

#[tokio::test]
async fn a_job_done_before_its_cutoff_keeps_its_batches_and_meets_its_deadline() -> TestResult {
    // GIVEN a 2-hour deadline and a batch that ends after 3 polls
    let bed = TestBed::with_config(
        ScriptedProvider::new().with_script(Script::complete().after_polls(3)),
        config(Some(2.0)),
    );

    // WHEN the file is dropped and polled to the end
    bed.drop_file(KEY, file(10)).await?;
    poll_until_done(&bed).await?;

    // THEN nothing was cancelled or sent on its own, and the deadline was met without a cut
    assert_eq!(bed.provider.calls().cancels, 0);
    assert_eq!(bed.provider.calls().invokes, 0);
    let deadline = summary(&bed).await?["deadline"].clone();
    assert_eq!(deadline["met"], true);
    assert!(deadline.get("cut_at").is_none(), "{deadline}");
    Ok(())
}

#[tokio::test]
async fn a_deadline_beside_the_upload_overrides_the_route() -> TestResult {
    // GIVEN a route without a deadline, and a `.deadline` object beside the upload saying
    // the job is already late
    let bed = TestBed::with_config(ScriptedProvider::new(), config(None));
    let late = rfc3339(bed.clock.now() - Duration::from_secs(60));
    bed.store
        .put(
            &format!("{KEY}.deadline"),
            Bytes::from(format!("{late}\n")),
            PutMode::Create,
        )
        .await?;

    // WHEN the file is dropped and polled to the end
    bed.drop_file(KEY, file(10)).await?;
    poll_until_done(&bed).await?;

    // THEN no batch was made: every request went through the lane at once
    assert!(bed.provider.batches().is_empty());
    assert_eq!(bed.provider.calls().invokes, 10);
    let out = jsonl(bed.store.as_ref(), &format!("{RESULTS}output.jsonl")).await?;
    assert_eq!(ids(&out), expected_ids(10));
    // AND the summary says where the deadline came from, and that it was missed
    let deadline = summary(&bed).await?["deadline"].clone();
    assert_eq!(deadline["at"], late);
    assert_eq!(deadline["source"], "sidecar");
    assert_eq!(deadline["met"], false);
    Ok(())
}

#[tokio::test]
async fn an_unreadable_deadline_fails_the_job_before_anything_is_sent() -> TestResult {
    // GIVEN a `.deadline` object that is not a time
    let bed = TestBed::with_config(ScriptedProvider::new(), config(None));
    bed.store
        .put(
            &format!("{KEY}.deadline"),
            Bytes::from_static(b"tomorrow morning"),
            PutMode::Create,
        )
        .await?;

    // WHEN the file is dropped
    bed.drop_file(KEY, file(3)).await?;

    // THEN the job failed at once, nothing was sent, and every line says why in errors.jsonl
    assert_eq!(bed.provider.calls().total(), 0);
    let summary = summary(&bed).await?;
    assert_eq!(summary["status"], "failed");
    let errors = jsonl(bed.store.as_ref(), &format!("{RESULTS}errors.jsonl")).await?;
    assert_eq!(errors.len(), 3);
    for error in &errors {
        assert_eq!(error["error"]["code"], "invalid_deadline", "{error}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("requests.jsonl.deadline") && message.contains("tomorrow morning"),
            "{message}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_slower_lane_measured_on_the_route_brings_the_cutoff_earlier() -> TestResult {
    // GIVEN the 2-hour deadline of the first test, and a lane measured on the route at one
    // request every 100 seconds: 10 requests need 1,000 s (16 min 40 s) of it
    let bed = TestBed::with_config(
        ScriptedProvider::new().with_script(Script::complete().after_polls(10_000)),
        config(Some(2.0)),
    );
    let measured = LaneRate {
        requests_per_second: 0.01,
        requests: 50,
        measured_at: rfc3339(bed.clock.now()),
    };
    bed.store
        .put_json(&lane_rate_key("sandbox"), &measured, PutMode::Overwrite)
        .await?;
    let started = bed.clock.now();

    // WHEN the file is dropped and polled every 5 minutes until the job ends
    bed.drop_file(KEY, file(10)).await?;
    poll_until_done(&bed).await?;

    // THEN the cutoff came at the first poll after 2 h − 30 min − 16 min 40 s = 73 min 20 s
    let deadline = summary(&bed).await?["deadline"].clone();
    assert_eq!(
        deadline["cut_at"],
        rfc3339(started + Duration::from_secs(75 * 60)),
        "{deadline}"
    );
    Ok(())
}

#[tokio::test]
async fn a_lane_run_records_the_pace_it_achieved_on_the_route() -> TestResult {
    // GIVEN a job already past its deadline (all of it goes through the lane) and a clock that
    // moves a second at every reading
    let bed = TestBed::with_config(ScriptedProvider::new(), config(None));
    let late = rfc3339(bed.clock.now() - Duration::from_secs(60));
    bed.store
        .put(
            &format!("{KEY}.deadline"),
            Bytes::from(late),
            PutMode::Create,
        )
        .await?;
    bed.clock.tick_on_read(Duration::from_secs(1));

    // WHEN the file is dropped and polled to the end
    bed.drop_file(KEY, file(10)).await?;
    poll_until_done(&bed).await?;

    // THEN the route's lane pace is recorded: 10 requests, at a positive finite rate
    let (rate, _): (LaneRate, String) = bed.store.get_json(&lane_rate_key("sandbox")).await?;
    assert_eq!(rate.requests, 10);
    assert!(
        rate.requests_per_second.is_finite() && rate.requests_per_second > 0.0,
        "{rate:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_chunk_whose_submit_never_went_through_goes_to_the_lane_at_the_cutoff() -> TestResult {
    // GIVEN a 2-hour deadline and a provider that refuses every batch create with a 500
    let bed = TestBed::with_config(
        ScriptedProvider::new().with_script(Script::complete().after_submit_errors(10_000)),
        config(Some(2.0)),
    );

    // WHEN the file is dropped and polled every 5 minutes (the failed submits fail the polls)
    bed.drop_file(KEY, file(10)).await.ok();
    for _ in 0..(24 * 12) {
        bed.engine.poll().await?;
        if bed.store.list(ACTIVE).await?.is_empty() {
            break;
        }
        bed.clock.advance(POLL_EVERY);
    }

    // THEN no batch was ever made, and at the cutoff every request went through the lane once
    assert!(bed.provider.batches().is_empty());
    assert_eq!(bed.provider.calls().invokes, 10);
    let out = jsonl(bed.store.as_ref(), &format!("{RESULTS}output.jsonl")).await?;
    assert_eq!(ids(&out), expected_ids(10));
    assert!(out.iter().all(|l| l["response"]["status_code"] == 200));
    assert_eq!(summary(&bed).await?["deadline"]["met"], true);
    Ok(())
}
