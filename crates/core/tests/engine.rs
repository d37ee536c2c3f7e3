//! The job engine end to end over an in-memory bucket, a manual clock and a scripted provider:
//! one behaviour per test, as [DESIGN.md](../../../docs/DESIGN.md) ("Input lines", "Results", summary.json) promises it.

use batchdrop_core::clock::Clock;
use batchdrop_core::config::Config;
use batchdrop_core::engine::{Advance, LEASE};
use batchdrop_core::layout::{self, ACTIVE, JobKeys};
use batchdrop_core::manifest::{JobStatus, Lease, Manifest};
use batchdrop_core::provider::BatchError;
use batchdrop_core::store::{ObjectStore, ObjectStoreExt, PutMode};
use batchdrop_core::testing::{
    BUCKET, FaultyStore, Script, ScriptedProvider, TestBed, small_config, usage_of,
};
use batchdrop_core::{JobEvent, SubmitOutcome};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

const KEY: &str = "inbox/sandbox/run/requests.jsonl";
const RESULTS: &str = "results/sandbox/run/requests/";

/// A complete OpenAI batch line.
fn chat(id: &str, model: &str) -> String {
    format!(
        r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"{model}","messages":[{{"role":"user","content":"question {id}"}}]}}}}"#
    )
}

/// JSONL of `lines`, each ending in `\n`.
fn file(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

async fn jsonl(store: &dyn ObjectStore, key: &str) -> Result<Vec<Value>, Error> {
    let bytes = store.get_bytes(key).await?;
    let mut out = Vec::new();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        out.push(serde_json::from_slice(line)?);
    }
    Ok(out)
}

async fn json(store: &dyn ObjectStore, key: &str) -> Result<Value, Error> {
    Ok(serde_json::from_slice(&store.get_bytes(key).await?)?)
}

async fn output(bed: &TestBed) -> Result<Vec<Value>, Error> {
    jsonl(bed.store.as_ref(), &format!("{RESULTS}output.jsonl")).await
}

async fn errors(bed: &TestBed) -> Result<Vec<Value>, Error> {
    jsonl(bed.store.as_ref(), &format!("{RESULTS}errors.jsonl")).await
}

async fn summary(bed: &TestBed) -> Result<Value, Error> {
    json(bed.store.as_ref(), &format!("{RESULTS}summary.json")).await
}

async fn manifest(bed: &TestBed, job_id: &str) -> Result<Manifest, Error> {
    let key = format!("_batchdrop/jobs/{job_id}/manifest.json");
    Ok(bed.store.get_json::<Manifest>(&key).await?.0)
}

fn ids(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap_or("<none>"))
        .collect()
}

fn started(outcome: SubmitOutcome) -> Result<String, Error> {
    match outcome {
        SubmitOutcome::Started { job_id } => Ok(job_id),
        other => Err(format!("expected Started, got {other:?}").into()),
    }
}

/// Polls until no job is active (at most `max` polls); fails on any poll failure.
fn single_attempt(mut config: Config) -> Config {
    for route in config.routes.values_mut() {
        route.retries.max_attempts = 1;
    }
    config
}

async fn poll_to_end(bed: &TestBed, max: usize) -> TestResult {
    for _ in 0..max {
        let report = bed.engine.poll().await?;
        if let Some((id, e)) = report.failures.into_iter().next() {
            return Err(format!("poll failed on {id}: {e}").into());
        }
        if bed.store.list(ACTIVE).await?.is_empty() {
            return Ok(());
        }
    }
    Err(format!("jobs still active after {max} polls").into())
}

#[tokio::test]
async fn output_has_one_line_per_accepted_request_in_input_order_across_chunks_and_models()
-> TestResult {
    // GIVEN ten requests alternating two models, three requests per batch at most
    let bed = TestBed::new(ScriptedProvider::new(), 3);
    let input: Vec<(String, &str)> = (1..=10)
        .map(|i| {
            let model = if i % 2 == 1 { "gpt-a" } else { "gpt-b" };
            (format!("r{i:02}"), model)
        })
        .collect();
    let lines: Vec<String> = input.iter().map(|(id, m)| chat(id, m)).collect();

    // WHEN the file is dropped and the job polled to the end
    bed.drop_file(KEY, file(&lines)).await?;
    poll_to_end(&bed, 5).await?;

    // THEN the provider got four one-model batches of at most three requests, shuffled back
    let batches = bed.provider.batches();
    assert_eq!(batches.len(), 4);
    for b in &batches {
        assert!(b.custom_ids.len() <= 3, "{b:?}");
        assert!(b.lines.iter().all(|l| l.contains(&b.model)), "{b:?}");
    }
    let first_out = bed.provider.file("file-out-1").ok_or("no output file")?;
    let provider_order: Vec<Value> = first_out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(serde_json::from_slice)
        .collect::<Result<_, _>>()?;
    assert_ne!(
        ids(&provider_order),
        batches[0].custom_ids,
        "provider shuffles"
    );

    // AND output.jsonl has every request once, in input order, each with its own answer
    let out = output(&bed).await?;
    let expected: Vec<&str> = input.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids(&out), expected);
    for (line, (id, model)) in out.iter().zip(&input) {
        assert_eq!(line["response"]["status_code"], 200);
        assert_eq!(line["response"]["body"]["model"], *model);
        assert_eq!(
            line["response"]["body"]["choices"][0]["message"]["content"],
            format!("reply to {id}")
        );
    }
    Ok(())
}

#[tokio::test]
async fn errors_name_every_bad_line_by_number_and_blank_lines_are_skipped() -> TestResult {
    // GIVEN a CRLF file with blank lines, bad JSON, a missing field, a duplicate id, an array and
    // a prompt line without custom_id
    let bed = TestBed::new(ScriptedProvider::new(), 100);
    let lines = [
        chat("r1", "gpt-a"),                   // 1
        String::new(),                         // 2 blank
        r#"{"custom_id":"bad", "#.to_string(), // 3
        "   ".to_string(),                     // 4 blank
        r#"{"custom_id":"nobody","method":"POST","url":"/v1/chat/completions"}"#.into(), // 5
        chat("r1", "gpt-a"),                   // 6 duplicate
        "[1,2,3]".to_string(),                 // 7
        r#"{"prompt":"hello there"}"#.to_string(), // 8
        chat("r9", "gpt-a"),                   // 9
    ];
    let body: String = lines.iter().map(|l| format!("{l}\r\n")).collect();

    // WHEN it runs to the end
    bed.drop_file(KEY, body).await?;
    poll_to_end(&bed, 5).await?;

    // THEN errors.jsonl names each bad line by its 1-based number, id and code
    let errs = errors(&bed).await?;
    let got: Vec<(u64, Value, &str)> = errs
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap_or(0),
                e["custom_id"].clone(),
                e["error"]["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (3, Value::Null, "invalid_json"),
            (5, Value::from("nobody"), "missing_field"),
            (6, Value::from("r1"), "duplicate_custom_id"),
            (7, Value::Null, "not_an_object"),
        ]
    );
    assert!(errs.iter().all(|e| e["error"]["message"].is_string()));

    // AND the accepted lines run, the id-less one as line-8; blank lines count nowhere
    assert_eq!(ids(&output(&bed).await?), ["r1", "line-8", "r9"]);
    let counts = &summary(&bed).await?["counts"];
    assert_eq!(
        (counts["lines"].as_u64(), counts["accepted"].as_u64()),
        (Some(7), Some(3))
    );
    assert_eq!(counts["rejected"], 4);
    Ok(())
}

#[tokio::test]
async fn summary_counts_add_up_and_list_batches_with_usage() -> TestResult {
    // GIVEN five good lines over two batches (one answered with a 400), one bad line, a blank
    let bed = TestBed::new(
        ScriptedProvider::new().with_script(Script::complete().rejecting(["r4"])),
        3,
    );
    let mut lines: Vec<String> = (1..=5).map(|i| chat(&format!("r{i}"), "gpt-a")).collect();
    lines.insert(2, "not json".into());
    lines.push(String::new());
    let body = file(&lines);

    // WHEN it runs to the end
    let (meta, outcome) = bed.drop_file(KEY, body.clone()).await?;
    let job_id = started(outcome)?;
    poll_to_end(&bed, 5).await?;

    // THEN the summary's counts add up
    let s = summary(&bed).await?;
    let c = &s["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or(u64::MAX);
    assert_eq!(n("lines"), 6);
    assert_eq!(n("accepted") + n("rejected"), n("lines"));
    assert_eq!(n("succeeded") + n("failed"), n("accepted"));
    assert_eq!((n("succeeded"), n("failed"), n("rejected")), (4, 1, 1));
    assert_eq!(s["status"], "completed");
    assert!(s.get("reason").is_none(), "{s}");
    assert_eq!(s["job_id"], job_id.as_str());
    assert_eq!(s["route"], "sandbox");

    // AND it names the input version
    assert_eq!(s["input"]["bucket"], BUCKET);
    assert_eq!(s["input"]["key"], KEY);
    assert_eq!(s["input"]["etag"], meta.etag.as_str());
    assert_eq!(s["input"]["bytes"], body.len() as u64);
    assert_eq!(s["created_at"], "2026-01-01T00:00:00Z");
    assert!(s["finished_at"].is_string());

    // AND it lists the batches with the provider's ids
    let batches = s["batches"].as_array().ok_or("no batches")?;
    let provider_ids: Vec<String> = bed.provider.batches().into_iter().map(|b| b.id).collect();
    let listed: Vec<&str> = batches.iter().filter_map(|b| b["id"].as_str()).collect();
    assert_eq!(listed, provider_ids);
    assert!(
        batches
            .iter()
            .all(|b| b["provider"] == "openai" && b["status"] == "completed")
    );
    let requests: u64 = batches.iter().filter_map(|b| b["requests"].as_u64()).sum();
    assert_eq!(requests, n("accepted"));

    // AND usage is the sum of what the provider reported
    let (input_tokens, output_tokens) = ["r1", "r2", "r3", "r5"]
        .iter()
        .map(|id| usage_of(id))
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
    assert_eq!(s["usage"]["input_tokens"], input_tokens);
    assert_eq!(s["usage"]["output_tokens"], output_tokens);
    Ok(())
}

#[tokio::test]
async fn expired_batch_keeps_answered_requests_and_marks_the_rest_batch_expired() -> TestResult {
    // GIVEN two batches; the second expires with only its first request answered, and a route
    // that does not retry (one attempt per request)
    let bed = TestBed::with_config(
        ScriptedProvider::new().with_chunk_script(1, Script::expire_after(1)),
        single_attempt(small_config(3, 1 << 20)),
    );
    let lines: Vec<String> = (1..=6).map(|i| chat(&format!("r{i}"), "gpt-a")).collect();

    // WHEN it runs to the end
    bed.drop_file(KEY, file(&lines)).await?;
    poll_to_end(&bed, 5).await?;

    // THEN answered requests keep the provider's lines, the others get batch_expired lines,
    // each in its input position
    let out = output(&bed).await?;
    assert_eq!(ids(&out), ["r1", "r2", "r3", "r4", "r5", "r6"]);
    for line in &out[..4] {
        assert_eq!(line["response"]["status_code"], 200, "{line}");
        assert!(
            line["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("batch_req_"))
        );
        assert!(line["error"].is_null());
    }
    for line in &out[4..] {
        assert!(line["response"].is_null(), "{line}");
        assert_eq!(line["error"]["code"], "batch_expired");
        assert!(line["error"]["message"].is_string());
    }
    let s = summary(&bed).await?;
    assert_eq!(
        (
            s["counts"]["succeeded"].as_u64(),
            s["counts"]["failed"].as_u64()
        ),
        (Some(4), Some(2))
    );
    assert_eq!(s["batches"][1]["status"], "expired");
    assert_eq!(s["status"], "completed");
    Ok(())
}

#[tokio::test]
async fn failed_validation_fails_every_request_and_names_the_provider_message_on_its_line()
-> TestResult {
    // GIVEN a batch that fails validation, naming its second line
    let bed = TestBed::new(
        ScriptedProvider::new().with_script(Script::fail_validation([BatchError {
            code: "invalid_value".into(),
            message: "temperature must be at most 2".into(),
            line: Some(2),
        }])),
        10,
    );
    let lines: Vec<String> = (1..=3).map(|i| chat(&format!("r{i}"), "gpt-a")).collect();

    // WHEN it runs to the end
    bed.drop_file(KEY, file(&lines)).await?;
    poll_to_end(&bed, 5).await?;

    // THEN every request has an error line; only the named one carries the provider's message
    let out = output(&bed).await?;
    assert_eq!(ids(&out), ["r1", "r2", "r3"]);
    for line in &out {
        assert!(line["response"].is_null(), "{line}");
        assert_eq!(line["error"]["code"], "batch_failed");
    }
    let mentions = |l: &Value| {
        l["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("temperature must be at most 2"))
    };
    assert_eq!(
        out.iter().map(mentions).collect::<Vec<_>>(),
        [false, true, false]
    );
    let s = summary(&bed).await?;
    assert_eq!(
        (
            s["counts"]["succeeded"].as_u64(),
            s["counts"]["failed"].as_u64()
        ),
        (Some(0), Some(3))
    );
    assert_eq!(s["batches"][0]["status"], "failed");
    Ok(())
}

#[tokio::test]
async fn completed_batch_without_output_file_takes_lines_from_the_error_file() -> TestResult {
    // GIVEN a batch that "completes" with every request failed and only an error file
    let bed = TestBed::new(ScriptedProvider::new().with_script(Script::all_fail()), 10);
    let lines: Vec<String> = (1..=3).map(|i| chat(&format!("r{i}"), "gpt-a")).collect();

    // WHEN it runs to the end
    bed.drop_file(KEY, file(&lines)).await?;
    poll_to_end(&bed, 5).await?;

    // THEN output.jsonl holds the error file's lines, in input order, counted as failed
    let out = output(&bed).await?;
    assert_eq!(ids(&out), ["r1", "r2", "r3"]);
    for line in &out {
        assert_eq!(line["response"]["status_code"], 400, "{line}");
        assert!(line["error"].is_null());
        assert!(
            line["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("batch_req_"))
        );
    }
    let s = summary(&bed).await?;
    assert_eq!(
        (
            s["counts"]["succeeded"].as_u64(),
            s["counts"]["failed"].as_u64()
        ),
        (Some(0), Some(3))
    );
    assert_eq!(s["status"], "completed");
    assert_eq!(s["usage"]["input_tokens"], 0);
    assert_eq!(
        bed.provider.calls().downloads,
        1,
        "only the error file exists"
    );
    Ok(())
}

#[tokio::test]
async fn status_400_with_null_error_counts_as_failed() -> TestResult {
    // GIVEN a batch answering r2 with status 400 and error null in the output file
    let bed = TestBed::new(
        ScriptedProvider::new().with_script(Script::complete().rejecting(["r2"])),
        10,
    );
    let lines: Vec<String> = (1..=3).map(|i| chat(&format!("r{i}"), "gpt-a")).collect();

    // WHEN it runs to the end
    bed.drop_file(KEY, file(&lines)).await?;
    poll_to_end(&bed, 5).await?;

    // THEN r2 keeps the provider's line and is counted failed
    let out = output(&bed).await?;
    assert_eq!(out[1]["custom_id"], "r2");
    assert_eq!(out[1]["response"]["status_code"], 400);
    assert!(out[1]["error"].is_null());
    let s = summary(&bed).await?;
    assert_eq!(
        (
            s["counts"]["succeeded"].as_u64(),
            s["counts"]["failed"].as_u64()
        ),
        (Some(2), Some(1))
    );
    Ok(())
}

#[tokio::test]
async fn pending_batch_is_looked_at_again_until_it_completes() -> TestResult {
    // GIVEN a batch that stays in progress for two lookups
    let bed = TestBed::new(
        ScriptedProvider::new().with_script(Script::complete().after_polls(2)),
        10,
    );
    let (_, outcome) = bed.drop_file(KEY, file(&[chat("r1", "gpt-a")])).await?;
    let job_id = started(outcome)?;

    // WHEN polled three times
    let first = bed.engine.advance(&job_id).await?;
    let second = bed.engine.advance(&job_id).await?;
    let third = bed.engine.advance(&job_id).await?;

    // THEN it runs twice, then finishes, having reported progress once
    assert_eq!(first, Advance::Running);
    assert_eq!(second, Advance::Running);
    assert_eq!(third, Advance::Finished(JobStatus::Completed));
    assert_eq!(bed.provider.calls().lookups, 3);
    let progress: Vec<String> = bed
        .events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            JobEvent::BatchProgress { status, .. } => Some(status),
            _ => None,
        })
        .collect();
    assert_eq!(progress, ["in_progress"]);
    assert_eq!(ids(&output(&bed).await?), ["r1"]);
    Ok(())
}

#[tokio::test]
async fn unknown_route_fails_the_job_with_every_line_in_errors() -> TestResult {
    // GIVEN a file under a route the config does not know
    let bed = TestBed::new(ScriptedProvider::new(), 10);
    let key = "inbox/nowhere/x.jsonl";
    let body = file(&[
        chat("r1", "gpt-a"),
        String::new(),
        "not json".into(),
        chat("r2", "gpt-a"),
    ]);

    // WHEN it is dropped
    let (_, outcome) = bed.drop_file(key, body).await?;
    started(outcome)?;

    // THEN every non-blank line is in errors.jsonl as unknown_route
    let errs = jsonl(bed.store.as_ref(), "results/nowhere/x/errors.jsonl").await?;
    let got: Vec<(Option<u64>, Value, &Value)> = errs
        .iter()
        .map(|e| {
            (
                e["line"].as_u64(),
                e["custom_id"].clone(),
                &e["error"]["code"],
            )
        })
        .collect();
    let code = Value::from("unknown_route");
    assert_eq!(
        got,
        vec![
            (Some(1), Value::from("r1"), &code),
            (Some(3), Value::Null, &code),
            (Some(4), Value::from("r2"), &code),
        ]
    );

    // AND the summary says failed, with a reason naming the route
    let s = json(bed.store.as_ref(), "results/nowhere/x/summary.json").await?;
    assert_eq!(s["status"], "failed");
    assert!(
        s["reason"].as_str().is_some_and(|r| r.contains("nowhere")),
        "{s}"
    );
    assert_eq!(
        (
            s["counts"]["lines"].as_u64(),
            s["counts"]["rejected"].as_u64()
        ),
        (Some(3), Some(3))
    );
    assert_eq!(s["counts"]["accepted"], 0);
    assert!(
        jsonl(bed.store.as_ref(), "results/nowhere/x/output.jsonl")
            .await?
            .is_empty()
    );
    assert_eq!(bed.provider.calls().total(), 0);
    assert!(bed.store.list(ACTIVE).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn route_without_a_usable_provider_fails_the_job_with_the_reason() -> TestResult {
    // GIVEN the openai route, whose API key is not set
    let bed = TestBed::new(ScriptedProvider::new(), 10);

    // WHEN a file is dropped under it
    let (_, outcome) = bed
        .drop_file("inbox/openai/x.jsonl", file(&[chat("r1", "gpt-a")]))
        .await?;
    started(outcome)?;

    // THEN the job fails and says why
    let s = json(bed.store.as_ref(), "results/openai/x/summary.json").await?;
    assert_eq!(s["status"], "failed");
    assert!(
        s["reason"]
            .as_str()
            .is_some_and(|r| r.contains("OPENAI_API_KEY")),
        "{s}"
    );
    let errs = jsonl(bed.store.as_ref(), "results/openai/x/errors.jsonl").await?;
    assert_eq!(errs.len(), 1);
    Ok(())
}

#[tokio::test]
async fn same_upload_submitted_twice_makes_one_job_and_one_set_of_batches() -> TestResult {
    // GIVEN a dropped file whose job has submitted its batches
    let bed = TestBed::new(ScriptedProvider::new(), 2);
    let lines: Vec<String> = (1..=3).map(|i| chat(&format!("r{i}"), "gpt-a")).collect();
    let (meta, outcome) = bed.drop_file(KEY, file(&lines)).await?;
    let job_id = started(outcome)?;
    let submits = bed.provider.calls().submits;
    assert_eq!(submits, 2);

    // WHEN the same event arrives again, before and after the job finished
    let again = bed
        .engine
        .submit(KEY, Some(&format!("\"{}\"", meta.etag)))
        .await?;
    poll_to_end(&bed, 5).await?;
    let late = bed.engine.submit(KEY, None).await?;

    // THEN both are duplicates of the one job, and no batch was made twice
    assert_eq!(
        again,
        SubmitOutcome::Duplicate {
            job_id: job_id.clone()
        }
    );
    assert_eq!(late, SubmitOutcome::Duplicate { job_id });
    assert_eq!(bed.provider.calls().submits, submits);
    assert_eq!(bed.provider.batches().len(), 2);
    assert_eq!(ids(&output(&bed).await?), ["r1", "r2", "r3"]);
    Ok(())
}

#[tokio::test]
async fn stale_event_for_an_overwritten_object_is_superseded() -> TestResult {
    // GIVEN an upload that was overwritten before its event was handled
    let bed = TestBed::new(ScriptedProvider::new(), 10);
    let old = bed.upload(KEY, file(&[chat("r1", "gpt-a")])).await?;
    bed.upload(KEY, file(&[chat("r2", "gpt-a")])).await?;

    // WHEN the old event arrives
    let outcome = bed.engine.submit(KEY, Some(&old.etag)).await?;

    // THEN nothing starts for it (the newer version has its own event)
    assert_eq!(outcome, SubmitOutcome::Superseded);
    assert!(bed.store.list("_batchdrop/").await?.is_empty());
    assert_eq!(bed.provider.calls().total(), 0);
    Ok(())
}

#[tokio::test]
async fn reupload_starts_a_new_job_cancels_the_superseded_one_and_keeps_the_newer_results()
-> TestResult {
    // GIVEN a first upload whose batch stays in progress for a while
    let bed = TestBed::new(
        ScriptedProvider::new().with_script(Script::complete().after_polls(3)),
        10,
    );
    let (_, first) = bed
        .drop_file(KEY, file(&[chat("a1", "gpt-a"), chat("a2", "gpt-a")]))
        .await?;
    let old_job = started(first)?;

    // WHEN the same key is uploaded again with other content
    bed.provider.set_script(Script::complete());
    let (_, second) = bed
        .drop_file(
            KEY,
            file(&[
                chat("b1", "gpt-a"),
                chat("b2", "gpt-a"),
                chat("b3", "gpt-a"),
            ]),
        )
        .await?;
    let new_job = started(second)?;
    assert_ne!(new_job, old_job);
    // AND the new job finishes first
    assert_eq!(
        bed.engine.advance(&new_job).await?,
        Advance::Finished(JobStatus::Completed)
    );
    let output_key = format!("{RESULTS}output.jsonl");
    let summary_key = format!("{RESULTS}summary.json");
    let newer_output = bed.store.get_bytes(&output_key).await?;
    let newer_summary = bed.store.get_bytes(&summary_key).await?;
    assert_eq!(ids(&output(&bed).await?), ["b1", "b2", "b3"]);

    // AND the old job is advanced after it
    assert_eq!(
        bed.engine.advance(&old_job).await?,
        Advance::Finished(JobStatus::Cancelled)
    );

    // THEN the old job's batch, still running, was cancelled at the provider (nobody would
    // see its results)
    assert_eq!(bed.provider.calls().cancels, 1);
    // AND results/ still holds the newer job's files, untouched
    assert_eq!(bed.store.get_bytes(&output_key).await?, newer_output);
    assert_eq!(bed.store.get_bytes(&summary_key).await?, newer_summary);
    assert_eq!(summary(&bed).await?["job_id"], new_job.as_str());

    // AND the old job ended cancelled as superseded, its summary kept in its own state
    let old = manifest(&bed, &old_job).await?;
    assert_eq!(old.status, JobStatus::Cancelled);
    assert!(
        old.reason
            .as_deref()
            .is_some_and(|r| r.contains("superseded")),
        "{old:?}"
    );
    let old_summary = json(
        bed.store.as_ref(),
        &format!("_batchdrop/jobs/{old_job}/summary.json"),
    )
    .await?;
    assert_eq!(old_summary["status"], "cancelled");
    Ok(())
}

#[tokio::test]
async fn non_retryable_submit_error_fails_only_that_chunks_requests() -> TestResult {
    // GIVEN two batches; the provider refuses the second for good (HTTP 400)
    let bed = TestBed::new(
        ScriptedProvider::new()
            .with_chunk_script(1, Script::refuse_submit("model not available for batch")),
        2,
    );
    let lines: Vec<String> = (1..=4).map(|i| chat(&format!("r{i}"), "gpt-a")).collect();

    // WHEN it runs to the end
    bed.drop_file(KEY, file(&lines)).await?;
    poll_to_end(&bed, 5).await?;

    // THEN the first batch's requests succeed and the refused ones carry the provider's message
    let out = output(&bed).await?;
    assert_eq!(ids(&out), ["r1", "r2", "r3", "r4"]);
    assert_eq!(out[0]["response"]["status_code"], 200);
    assert_eq!(out[1]["response"]["status_code"], 200);
    for line in &out[2..] {
        assert!(line["response"].is_null(), "{line}");
        assert_eq!(line["error"]["code"], "batch_failed");
        assert!(
            line["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("model not available for batch")),
            "{line}"
        );
    }

    // AND the job completes, counting them failed; the refused chunk has no batch id
    let s = summary(&bed).await?;
    assert_eq!(s["status"], "completed");
    assert_eq!(
        (
            s["counts"]["succeeded"].as_u64(),
            s["counts"]["failed"].as_u64()
        ),
        (Some(2), Some(2))
    );
    assert!(s["batches"][1]["id"].is_null(), "{s}");
    assert_eq!(bed.provider.batches().len(), 1);
    Ok(())
}

#[tokio::test]
async fn retryable_submit_error_leaves_the_job_resumable_and_a_later_poll_completes_it()
-> TestResult {
    // GIVEN a provider that answers the first submit with a 500
    let bed = TestBed::new(
        ScriptedProvider::new().with_script(Script::complete().after_submit_errors(1)),
        10,
    );
    let meta = bed
        .upload(KEY, file(&[chat("r1", "gpt-a"), chat("r2", "gpt-a")]))
        .await?;

    // WHEN the upload is submitted
    let err = match bed.engine.submit(KEY, Some(&meta.etag)).await {
        Err(e) => e,
        Ok(outcome) => return Err(format!("expected a retryable error, got {outcome:?}").into()),
    };

    // THEN the error is retryable and the job is kept, active and unsubmitted
    assert!(err.is_retryable(), "{err}");
    let job_id = layout::job_id(BUCKET, KEY, &meta.etag);
    assert_eq!(manifest(&bed, &job_id).await?.status, JobStatus::Running);
    assert!(bed.store.exists(&layout::active_key(&job_id)).await?);
    assert!(bed.provider.batches().is_empty());

    // AND polls submit it once and complete it
    poll_to_end(&bed, 3).await?;
    assert_eq!(bed.provider.calls().submits, 2);
    assert_eq!(bed.provider.batches().len(), 1);
    assert_eq!(ids(&output(&bed).await?), ["r1", "r2"]);
    assert_eq!(summary(&bed).await?["counts"]["succeeded"], 2);
    Ok(())
}

#[tokio::test]
async fn finished_jobs_cost_nothing_on_later_polls() -> TestResult {
    // GIVEN a job that has finished
    let bed = TestBed::new(ScriptedProvider::new(), 10);
    bed.drop_file(KEY, file(&[chat("r1", "gpt-a")])).await?;
    poll_to_end(&bed, 5).await?;
    let calls = bed.provider.calls();

    // WHEN polled again and again
    let mut active = Vec::new();
    for _ in 0..3 {
        active.push(bed.engine.poll().await?.active);
    }

    // THEN no provider call is made and nothing is listed as active
    assert_eq!(bed.provider.calls(), calls);
    assert_eq!(active, [0, 0, 0]);
    assert!(bed.store.list(ACTIVE).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn keys_outside_inbox_or_not_jsonl_are_ignored() -> TestResult {
    // GIVEN objects that are not uploads batchdrop handles
    let bed = TestBed::new(ScriptedProvider::new(), 10);
    let keys = [
        "results/sandbox/x.jsonl",
        "inbox/sandbox/x.json",
        "inbox/sandbox.jsonl",
        "cancel/sandbox/x.jsonl",
        "_batchdrop/jobs/x.jsonl",
        "other/sandbox/x.jsonl",
    ];
    for key in keys {
        bed.upload(key, file(&[chat("r1", "gpt-a")])).await?;
    }

    // WHEN their events arrive, and one for an upload that no longer exists
    let mut outcomes = Vec::new();
    for key in keys.iter().chain(&["inbox/sandbox/gone.jsonl"]) {
        outcomes.push(bed.engine.submit(key, None).await?);
    }

    // THEN each is Ignored and nothing is written or sent
    for (key, outcome) in keys.iter().zip(&outcomes) {
        assert!(
            matches!(outcome, SubmitOutcome::Ignored { .. }),
            "{key}: {outcome:?}"
        );
    }
    assert!(
        matches!(outcomes[6], SubmitOutcome::Ignored { .. }),
        "{:?}",
        outcomes[6]
    );
    let stored: Vec<String> = bed
        .store
        .list("")
        .await?
        .into_iter()
        .map(|m| m.key)
        .collect();
    let mut uploaded: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    uploaded.sort();
    assert_eq!(stored, uploaded, "only the uploads themselves");
    assert_eq!(bed.provider.calls().total(), 0);
    Ok(())
}

#[tokio::test]
async fn paths_with_spaces_and_unicode_map_to_results_and_nothing_lands_in_inbox() -> TestResult {
    // GIVEN an upload whose path has spaces, a subfolder and non-ASCII letters
    let bed = TestBed::new(ScriptedProvider::new(), 10);
    let key = "inbox/sandbox/my dir/résumé (1).jsonl";

    // WHEN it runs to the end
    bed.drop_file(key, file(&[chat("r1", "gpt-a")])).await?;
    poll_to_end(&bed, 5).await?;

    // THEN its results are under the same path, and inbox/ holds only the upload
    let out = jsonl(
        bed.store.as_ref(),
        "results/sandbox/my dir/résumé (1)/output.jsonl",
    )
    .await?;
    assert_eq!(ids(&out), ["r1"]);
    let inbox: Vec<String> = bed
        .store
        .list("inbox/")
        .await?
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(inbox, [key]);
    Ok(())
}

#[tokio::test]
async fn file_without_a_valid_line_completes_without_a_batch() -> TestResult {
    // GIVEN a file of bad lines only
    let bed = TestBed::new(ScriptedProvider::new(), 10);

    // WHEN it is dropped
    let (_, outcome) = bed.drop_file(KEY, "oops\n[1]\n\n").await?;
    started(outcome)?;
    poll_to_end(&bed, 2).await?;

    // THEN it completes at once: empty output, two errors, no provider call
    assert!(output(&bed).await?.is_empty());
    assert_eq!(errors(&bed).await?.len(), 2);
    let s = summary(&bed).await?;
    assert_eq!(s["status"], "completed");
    assert_eq!(s["counts"]["rejected"], 2);
    assert_eq!(bed.provider.calls().total(), 0);
    Ok(())
}

#[tokio::test]
async fn second_engine_is_busy_while_the_lease_is_fresh_and_takes_over_once_it_expires()
-> TestResult {
    // GIVEN a job in progress whose manifest worker-a holds a fresh lease on (mid-advance)
    let bed = TestBed::new(
        ScriptedProvider::new().with_script(Script::complete().after_polls(10)),
        10,
    );
    let (_, outcome) = bed.drop_file(KEY, file(&[chat("r1", "gpt-a")])).await?;
    let job_id = started(outcome)?;
    let key = JobKeys::new(&job_id).manifest();
    let (mut held, etag): (Manifest, String) = bed.store.get_json(&key).await?;
    held.lease = Some(Lease {
        owner: "worker-a".into(),
        until: bed.clock.now().unix_timestamp() + LEASE.as_secs() as i64,
    });
    bed.store
        .put_json(&key, &held, PutMode::Update(etag))
        .await?;
    let lookups_before = bed.provider.calls().lookups;
    let worker_b = bed.engine("worker-b");

    // WHEN worker-b advances it while worker-a's lease is fresh
    let busy = worker_b.advance(&job_id).await?;

    // THEN it is Busy and costs nothing
    assert_eq!(busy, Advance::Busy);
    assert_eq!(bed.provider.calls().lookups, lookups_before);

    // WHEN the lease runs out (worker-a died)
    bed.clock.advance(LEASE + Duration::from_secs(1));
    let taken = worker_b.advance(&job_id).await?;

    // THEN worker-b carries the job on
    assert_eq!(taken, Advance::Running);
    assert_eq!(bed.provider.calls().lookups, lookups_before + 1);
    Ok(())
}

#[tokio::test]
async fn advance_with_nothing_to_do_writes_nothing_and_holds_no_lease() -> TestResult {
    // GIVEN a job whose batch is still running
    let bed = TestBed::new(
        ScriptedProvider::new().with_script(Script::complete().after_polls(10)),
        10,
    );
    let (_, outcome) = bed.drop_file(KEY, file(&[chat("r1", "gpt-a")])).await?;
    let job_id = started(outcome)?;
    bed.engine.advance(&job_id).await?; // status word changes once: validating → in_progress
    let key = JobKeys::new(&job_id).manifest();
    let before = bed.store.head(&key).await?.etag;

    // WHEN it is advanced again with no change at the provider
    let again = bed.engine.advance(&job_id).await?;

    // THEN nothing was written and nobody holds the job
    assert_eq!(again, Advance::Running);
    assert_eq!(bed.store.head(&key).await?.etag, before);
    let (m, _): (Manifest, String) = bed.store.get_json(&key).await?;
    assert_eq!(m.lease, None);
    Ok(())
}

#[tokio::test]
async fn line_without_custom_id_gets_one_even_when_its_body_has_a_custom_id_field() -> TestResult {
    // GIVEN an OpenAI line without custom_id whose body happens to hold a "custom_id" key
    let bed = TestBed::new(ScriptedProvider::new(), 10);
    let line = r#"{"method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-a","messages":[],"metadata":{"custom_id":"inner"}}}"#;

    // WHEN it runs to the end
    bed.drop_file(KEY, file(&[chat("r1", "gpt-a"), line.to_string()]))
        .await?;
    poll_to_end(&bed, 5).await?;

    // THEN the request was sent with custom_id line-2 and answered
    let sent = bed.provider.batches();
    assert_eq!(sent[0].custom_ids, ["r1", "line-2"]);
    let out = output(&bed).await?;
    assert_eq!(ids(&out), ["r1", "line-2"]);
    assert_eq!(out[1]["response"]["status_code"], 200, "{}", out[1]);
    Ok(())
}

#[tokio::test]
async fn crash_while_failing_a_whole_file_is_repaired_by_the_retried_event() -> TestResult {
    // GIVEN an upload under an unknown route, and a first attempt that dies before its summary
    let bed = TestBed::new(ScriptedProvider::new(), 10);
    let faulty = Arc::new(FaultyStore::new(bed.store.clone()));
    faulty.fail_writes("results/nowhere/x/summary.json", 1);
    let engine = bed.engine_over(faulty, "worker-a");
    let meta = bed
        .upload("inbox/nowhere/x.jsonl", file(&[chat("r1", "gpt-a")]))
        .await?;
    let first = engine
        .submit("inbox/nowhere/x.jsonl", Some(&meta.etag))
        .await;
    assert!(first.as_ref().is_err_and(|e| e.is_retryable()), "{first:?}");

    // WHEN the event is delivered again
    engine
        .submit("inbox/nowhere/x.jsonl", Some(&meta.etag))
        .await?;

    // THEN the failed job's results are all there
    let s = json(bed.store.as_ref(), "results/nowhere/x/summary.json").await?;
    assert_eq!(s["status"], "failed");
    let errs = jsonl(bed.store.as_ref(), "results/nowhere/x/errors.jsonl").await?;
    assert_eq!(errs.len(), 1);
    Ok(())
}

#[tokio::test]
async fn crash_while_writing_results_is_finished_by_the_next_poll() -> TestResult {
    // GIVEN a job whose first attempt to write summary.json dies
    let bed = TestBed::new(ScriptedProvider::new(), 10);
    let faulty = Arc::new(FaultyStore::new(bed.store.clone()));
    faulty.fail_writes(format!("{RESULTS}summary.json"), 1);
    let engine = bed.engine_over(faulty, "worker-a");
    let meta = bed
        .upload(KEY, file(&[chat("r1", "gpt-a"), chat("r2", "gpt-a")]))
        .await?;
    let job_id = started(engine.submit(KEY, Some(&meta.etag)).await?)?;
    let failed = engine.advance(&job_id).await;
    assert!(
        failed.as_ref().is_err_and(|e| e.is_retryable()),
        "{failed:?}"
    );

    // WHEN the job is advanced again
    let again = engine.advance(&job_id).await?;

    // THEN it finishes with complete results, without asking the provider for a new batch
    assert_eq!(again, Advance::Finished(JobStatus::Completed));
    assert_eq!(ids(&output(&bed).await?), ["r1", "r2"]);
    assert_eq!(summary(&bed).await?["counts"]["succeeded"], 2);
    assert_eq!(bed.provider.calls().submits, 1);
    assert!(bed.store.list(ACTIVE).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn crash_right_after_a_batch_is_created_does_not_submit_it_twice() -> TestResult {
    // GIVEN a submit whose manifest save right after the batch was created dies (the manifest
    // is written on create, on taking the lease, then with the batch id)
    let bed = TestBed::new(ScriptedProvider::new(), 10);
    let meta = bed.upload(KEY, file(&[chat("r1", "gpt-a")])).await?;
    let job_id = layout::job_id(BUCKET, KEY, &meta.etag);
    let faulty = Arc::new(FaultyStore::new(bed.store.clone()));
    faulty.fail_writes_after(format!("_batchdrop/jobs/{job_id}/manifest.json"), 2, 1);
    let engine = bed.engine_over(faulty, "worker-a");
    let first = engine.submit(KEY, Some(&meta.etag)).await;
    assert!(first.is_err(), "{first:?}");

    // WHEN the job is polled to the end
    for _ in 0..5 {
        engine.poll().await?;
    }

    // THEN the provider made exactly one batch
    assert_eq!(bed.provider.batches().len(), 1);
    Ok(())
}

#[tokio::test]
async fn cancel_object_cancels_running_batches_keeps_finished_results_and_marks_the_rest()
-> TestResult {
    // GIVEN a job of two batches (chunks of 2): the first finishes, the second keeps running
    let bed = TestBed::new(
        ScriptedProvider::new().with_chunk_script(1, Script::complete().after_polls(100)),
        2,
    );
    let lines: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| chat(id, "gpt-a"))
        .collect();
    let (_, outcome) = bed.drop_file(KEY, file(&lines)).await?;
    let job_id = started(outcome)?;
    bed.engine.poll().await?;

    // WHEN a cancel object for the same path is handled
    let asked = bed
        .engine
        .cancel("cancel/sandbox/run/requests.jsonl")
        .await?;
    for _ in 0..3 {
        bed.engine.poll().await?;
    }

    // THEN the running batch was cancelled at the provider and the job finished as cancelled
    assert_eq!(asked, [job_id]);
    assert_eq!(bed.provider.calls().cancels, 1);
    let summary = summary(&bed).await?;
    assert_eq!(summary["status"], "cancelled");
    assert!(
        summary["reason"]
            .as_str()
            .unwrap_or("")
            .contains("cancel/sandbox/run/requests.jsonl")
    );
    // AND every request still has exactly one line, in order: the finished ones kept
    let out = output(&bed).await?;
    assert_eq!(ids(&out), ["a", "b", "c", "d"]);
    assert_eq!(out[0]["response"]["status_code"], 200);
    assert_eq!(out[2]["error"]["code"], "batch_cancelled");
    assert_eq!(out[3]["error"]["code"], "batch_cancelled");
    assert_eq!(summary["counts"]["succeeded"], 2);
    assert_eq!(summary["counts"]["failed"], 2);
    Ok(())
}

#[tokio::test]
async fn cancel_after_the_job_finished_does_nothing() -> TestResult {
    // GIVEN a finished job
    let bed = TestBed::new(ScriptedProvider::new(), 10);
    bed.drop_file(KEY, file(&[chat("a", "gpt-a")])).await?;
    bed.engine.poll().await?;
    let before = summary(&bed).await?;

    // WHEN a cancel object arrives
    let asked = bed
        .engine
        .cancel("cancel/sandbox/run/requests.jsonl")
        .await?;

    // THEN no job is touched and the results stand
    assert!(asked.is_empty());
    assert_eq!(summary(&bed).await?, before);
    assert_eq!(bed.provider.calls().cancels, 0);
    Ok(())
}

#[tokio::test]
async fn expired_requests_are_sent_again_and_the_last_attempt_is_the_output() -> TestResult {
    // GIVEN a route with 3 attempts, and a second batch that expires with one answer
    let bed = TestBed::new(
        ScriptedProvider::new().with_chunk_script(1, Script::expire_after(1)),
        3,
    );
    let lines: Vec<String> = (1..=6).map(|i| chat(&format!("r{i}"), "gpt-a")).collect();

    // WHEN it runs to the end
    bed.drop_file(KEY, file(&lines)).await?;
    poll_to_end(&bed, 6).await?;

    // THEN the two unanswered requests went out again in a follow-up batch and succeeded
    let batches = bed.provider.batches();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[2].custom_ids, ["r5", "r6"]);
    let out = output(&bed).await?;
    assert_eq!(ids(&out), ["r1", "r2", "r3", "r4", "r5", "r6"]);
    assert!(
        out.iter().all(|l| l["response"]["status_code"] == 200),
        "{out:?}"
    );
    // AND the summary counts each request once, and the extra attempts
    let s = summary(&bed).await?;
    assert_eq!(s["counts"]["succeeded"], 6);
    assert_eq!(s["counts"]["failed"], 0);
    assert_eq!(s["counts"]["retried"], 2);
    assert_eq!(s["batches"][2]["attempt"], 2);
    Ok(())
}

#[tokio::test]
async fn permanent_errors_are_not_sent_again() -> TestResult {
    // GIVEN a request the provider rejects with a 400 inside a completed batch
    let bed = TestBed::new(
        ScriptedProvider::new().with_script(Script::complete().rejecting(["r2"])),
        10,
    );
    let lines: Vec<String> = (1..=3).map(|i| chat(&format!("r{i}"), "gpt-a")).collect();
    // WHEN it runs to the end
    bed.drop_file(KEY, file(&lines)).await?;
    poll_to_end(&bed, 4).await?;
    // THEN no follow-up batch was made and the rejection stands
    assert_eq!(bed.provider.batches().len(), 1);
    let s = summary(&bed).await?;
    assert_eq!(
        (
            s["counts"]["failed"].as_u64(),
            s["counts"]["retried"].as_u64()
        ),
        (Some(1), Some(0))
    );
    Ok(())
}

#[tokio::test]
async fn retries_stop_after_max_attempts_with_the_last_failure_in_the_output() -> TestResult {
    // GIVEN every batch expires unanswered, and 2 attempts per request
    let mut config = small_config(10, 1 << 20);
    config
        .routes
        .get_mut("sandbox")
        .ok_or("no route")?
        .retries
        .max_attempts = 2;
    let bed = TestBed::with_config(
        ScriptedProvider::new().with_script(Script::expire_after(0)),
        config,
    );
    // WHEN a file of two requests runs to the end
    bed.drop_file(KEY, file(&[chat("a", "gpt-a"), chat("b", "gpt-a")]))
        .await?;
    poll_to_end(&bed, 6).await?;
    // THEN there were exactly two batches and both requests end as expired, once each
    assert_eq!(bed.provider.batches().len(), 2);
    let out = output(&bed).await?;
    assert_eq!(ids(&out), ["a", "b"]);
    assert!(out.iter().all(|l| l["error"]["code"] == "batch_expired"));
    let s = summary(&bed).await?;
    assert_eq!(
        (
            s["counts"]["failed"].as_u64(),
            s["counts"]["retried"].as_u64()
        ),
        (Some(2), Some(2))
    );
    Ok(())
}

#[tokio::test]
async fn capacity_refusal_waits_for_in_flight_batches_then_goes_again() -> TestResult {
    // GIVEN a first batch refused for capacity and a second one that runs for a while
    let bed = TestBed::new(
        ScriptedProvider::new()
            .with_chunk_script(
                0,
                Script::fail_validation([BatchError {
                    code: "token_limit_exceeded".into(),
                    message: "Enqueued token limit reached".into(),
                    line: None,
                }]),
            )
            .with_chunk_script(1, Script::complete().after_polls(2)),
        2,
    );
    let lines: Vec<String> = (1..=4).map(|i| chat(&format!("r{i}"), "gpt-a")).collect();
    bed.drop_file(KEY, file(&lines)).await?;

    // WHEN the first poll sees the refusal while the second batch is in flight
    bed.engine.poll().await?;
    // THEN nothing is sent again yet
    assert_eq!(bed.provider.batches().len(), 2);

    // WHEN the job runs to the end
    poll_to_end(&bed, 6).await?;
    // THEN the refused requests went out once the other batch was done, and all succeeded
    let batches = bed.provider.batches();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[2].custom_ids, ["r1", "r2"]);
    let out = output(&bed).await?;
    assert!(
        out.iter().all(|l| l["response"]["status_code"] == 200),
        "{out:?}"
    );
    Ok(())
}

#[tokio::test]
async fn route_cap_keeps_batches_in_flight_under_the_limit() -> TestResult {
    // GIVEN a route that allows one batch in flight, and a file of three batches
    let mut config = small_config(1, 1 << 20);
    config
        .routes
        .get_mut("sandbox")
        .ok_or("no route")?
        .max_batches_in_flight = Some(1);
    let bed = TestBed::with_config(
        ScriptedProvider::new().with_script(Script::complete().after_polls(1)),
        config,
    );
    let lines: Vec<String> = (1..=3).map(|i| chat(&format!("r{i}"), "gpt-a")).collect();
    // WHEN it is submitted
    bed.drop_file(KEY, file(&lines)).await?;
    // THEN one batch goes out, and the next only after it finished
    assert_eq!(bed.provider.batches().len(), 1);
    bed.engine.poll().await?;
    assert_eq!(bed.provider.batches().len(), 1, "still in flight");
    poll_to_end(&bed, 10).await?;
    assert_eq!(bed.provider.batches().len(), 3);
    assert_eq!(ids(&output(&bed).await?), ["r1", "r2", "r3"]);
    Ok(())
}

/// One run of a 5-request file in chunks of 2 whose second batch expires half answered (so a
/// follow-up batch is made), through `engine`; returns the upload's ETag.
async fn run_with_crash(bed: &TestBed, dies_after: Option<u64>) -> Result<(String, u64), Error> {
    let lines: Vec<String> = (1..=5).map(|i| chat(&format!("r{i}"), "gpt-a")).collect();
    let meta = bed.upload(KEY, file(&lines)).await?;
    let faulty = Arc::new(FaultyStore::new(bed.store.clone()));
    if let Some(n) = dies_after {
        faulty.die_after_writes(n);
    }
    let dying = bed.engine_over(faulty.clone(), "worker-a");
    let _ = dying.submit(KEY, Some(&meta.etag)).await;
    for _ in 0..6 {
        let _ = dying.poll().await;
    }
    Ok((meta.etag, faulty.writes()))
}

#[tokio::test]
async fn a_crash_after_any_write_then_a_retry_loses_no_request_and_submits_none_twice() -> TestResult
{
    let script = || ScriptedProvider::new().with_chunk_script(1, Script::expire_after(1));
    // The writes of a run that does not crash.
    let clean = TestBed::new(script(), 2);
    let (_, total_writes) = run_with_crash(&clean, None).await?;
    assert!(total_writes > 10, "{total_writes}");
    let expected: Vec<String> = (1..=5).map(|i| format!("r{i}")).collect();

    for n in 0..total_writes {
        // GIVEN a process that dies after its n-th write
        let bed = TestBed::new(script(), 2);
        let (etag, _) = run_with_crash(&bed, Some(n)).await?;

        // WHEN a new process takes over (the dead one's lease runs out) and S3 delivers the
        // event again
        bed.clock.advance(LEASE + Duration::from_secs(1));
        let engine = bed.engine("worker-b");
        engine.submit(KEY, Some(&etag)).await?;
        let mut done = false;
        for _ in 0..10 {
            engine.poll().await?;
            if bed.store.list(ACTIVE).await?.is_empty() {
                done = true;
                break;
            }
        }
        assert!(done, "crash after write {n}: job never finished");

        // THEN every accepted request is in output.jsonl exactly once, in order
        let out = output(&bed).await?;
        assert_eq!(ids(&out), expected, "crash after write {n}");
        // AND the provider never got two batches for the same chunk
        let mut seen = std::collections::HashSet::new();
        for b in bed.provider.batches() {
            assert!(
                seen.insert((b.job_id.clone(), b.chunk)),
                "crash after write {n}: chunk {} submitted twice",
                b.chunk
            );
        }
        let s = summary(&bed).await?;
        assert_eq!(s["counts"]["succeeded"], 5, "crash after write {n}: {s}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_event_delivered_twice_at_once_makes_one_job_and_one_set_of_batches() -> TestResult
{
    // GIVEN an upload and two workers receiving its event at the same moment
    let bed = TestBed::new(ScriptedProvider::new(), 2);
    let lines: Vec<String> = (1..=5).map(|i| chat(&format!("r{i}"), "gpt-a")).collect();
    let meta = bed.upload(KEY, file(&lines)).await?;
    let (a, b) = (bed.engine("worker-a"), bed.engine("worker-b"));
    // WHEN both submit concurrently
    let (ra, rb) = tokio::join!(
        a.submit(KEY, Some(&meta.etag)),
        b.submit(KEY, Some(&meta.etag))
    );
    let outcomes = [ra?, rb?];
    // THEN one started the job, the other found it
    let started = outcomes
        .iter()
        .filter(|o| matches!(o, SubmitOutcome::Started { .. }))
        .count();
    let duplicates = outcomes
        .iter()
        .filter(|o| matches!(o, SubmitOutcome::Duplicate { .. }))
        .count();
    assert_eq!((started, duplicates), (1, 1), "{outcomes:?}");
    // AND the job runs once: 3 batches, each request once in the output
    poll_to_end(&bed, 5).await?;
    assert_eq!(bed.provider.batches().len(), 3);
    assert_eq!(ids(&output(&bed).await?), ["r1", "r2", "r3", "r4", "r5"]);
    Ok(())
}
