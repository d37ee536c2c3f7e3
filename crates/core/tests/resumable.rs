//! Planning that stops near an invocation's deadline and continues in the next one: the result
//! equals a one-shot run, nothing is lost or sent twice, and duplicates are found across the
//! continuations. Time passes through a clock that ticks on every reading (no sleeping).

use batchdrop_core::engine::LEASE;
use batchdrop_core::layout::ACTIVE;
use batchdrop_core::manifest::{JobStatus, Manifest};
use batchdrop_core::store::{ObjectStore, ObjectStoreExt};
use batchdrop_core::testing::{FaultyStore, ScriptedProvider, TestBed};
use batchdrop_core::{Engine, JobEvent};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

const KEY: &str = "inbox/sandbox/big/corpus.jsonl";
const RESULTS: &str = "results/sandbox/big/corpus/";
const LINES: u64 = 10_000;
const PER_BATCH: u64 = 700;

/// 10,000 lines over three models, with bad lines, lines without custom_id, and ids used
/// twice far apart (so that first use and reuse fall in different continuations).
fn corpus() -> String {
    let mut out = String::new();
    for n in 1..=LINES {
        let line = match n {
            _ if n % 997 == 0 => "{not json".to_string(),
            _ if n % 1499 == 0 => r#"{"custom_id":"no-body","url":"/v1/chat/completions"}"#.into(),
            _ if n % 1201 == 0 => format!(
                r#"{{"method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-b","messages":[{{"role":"user","content":"anonymous {n}"}}]}}}}"#
            ),
            // Reuses the id of line n - 6000.
            _ if n > 6000 && n % 1000 == 3 => chat(&format!("r{}", n - 6000), "gpt-a"),
            _ => chat(
                &format!("r{n}"),
                ["gpt-a", "gpt-b", "gpt-c"][(n % 3) as usize],
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn chat(id: &str, model: &str) -> String {
    format!(
        r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"{model}","messages":[{{"role":"user","content":"question {id}"}}]}}}}"#
    )
}

/// A bed whose clock moves one second at every reading.
fn ticking_bed() -> TestBed {
    let bed = TestBed::new(ScriptedProvider::new(), PER_BATCH);
    bed.clock.tick_on_read(Duration::from_secs(1));
    bed
}

/// `engine` for an invocation of four seconds (it stops starting work after three).
fn invocation(bed: &TestBed, engine: &Engine) -> Engine {
    use batchdrop_core::clock::Clock;
    engine.until(bed.clock.now() + Duration::from_secs(4))
}

/// Uploads the corpus and hands its event to a short invocation of the bed's engine.
async fn drop_corpus(bed: &TestBed) -> TestResult {
    let meta = bed.upload(KEY, corpus()).await?;
    invocation(bed, &bed.engine)
        .submit(KEY, Some(&meta.etag))
        .await?;
    Ok(())
}

/// Polls with short invocations until the upload is planned, then (the clock standing still)
/// until the job is done.
async fn poll_to_the_end(bed: &TestBed, engine: &Engine) -> TestResult {
    let planned = |bed: &TestBed| {
        bed.events
            .events()
            .iter()
            .any(|e| matches!(e, JobEvent::Started { .. }))
    };
    for _ in 0..100 {
        if planned(bed) {
            break;
        }
        invocation(bed, engine).poll().await?;
    }
    if !planned(bed) {
        return Err("planning never ended".into());
    }
    bed.clock.tick_on_read(Duration::ZERO);
    for _ in 0..10 {
        engine.poll().await?;
        if bed.store.list(ACTIVE).await?.is_empty() {
            return Ok(());
        }
    }
    Err("the job never finished".into())
}

/// What a run leaves that does not depend on how it was cut into batches: each output line's
/// custom_id, status, answer and error; errors.jsonl as bytes; the summary's counts.
async fn results(bed: &TestBed) -> Result<(Vec<Value>, String, Value), Error> {
    let output = bed
        .store
        .get_bytes(&format!("{RESULTS}output.jsonl"))
        .await?;
    let mut lines = Vec::new();
    for line in output.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line)?;
        // The reply's own id names its batch: what is compared is whom it answers, and how.
        lines.push(serde_json::json!([
            v["custom_id"],
            v["response"]["status_code"],
            v["response"]["body"]["choices"],
            v["error"],
        ]));
    }
    let errors = bed
        .store
        .get_bytes(&format!("{RESULTS}errors.jsonl"))
        .await?;
    let summary: Value = serde_json::from_slice(
        &bed.store
            .get_bytes(&format!("{RESULTS}summary.json"))
            .await?,
    )?;
    Ok((
        lines,
        String::from_utf8(errors.to_vec())?,
        summary["counts"].clone(),
    ))
}

async fn one_shot() -> Result<(Vec<Value>, String, Value), Error> {
    let bed = TestBed::new(ScriptedProvider::new(), PER_BATCH);
    bed.drop_file(KEY, corpus()).await?;
    for _ in 0..10 {
        bed.engine.poll().await?;
    }
    assert!(
        bed.store.list(ACTIVE).await?.is_empty(),
        "one-shot run done"
    );
    results(&bed).await
}

fn pauses(bed: &TestBed) -> usize {
    bed.events
        .events()
        .iter()
        .filter(|e| matches!(e, JobEvent::PlanningPaused { .. }))
        .count()
}

/// Every request the provider was sent, by custom_id: none twice.
fn sent_once(bed: &TestBed) -> Result<usize, Error> {
    let mut seen = HashSet::new();
    for batch in bed.provider.batches() {
        for id in batch.custom_ids {
            if !seen.insert(id.clone()) {
                return Err(format!("{id} was sent twice").into());
            }
        }
    }
    Ok(seen.len())
}

#[tokio::test]
async fn a_tiny_deadline_plans_in_several_continuations_and_the_results_equal_a_one_shot_run()
-> TestResult {
    let expected = one_shot().await?;

    // GIVEN invocations with a few seconds each
    let bed = ticking_bed();

    // WHEN the upload's event and then polls handle it
    drop_corpus(&bed).await?;
    poll_to_the_end(&bed, &bed.engine).await?;

    // THEN planning stopped and continued several times
    assert!(pauses(&bed) >= 3, "paused {} times", pauses(&bed));
    // AND output, errors and counts are those of the one-shot run
    assert_eq!(results(&bed).await?, expected);
    // AND every accepted request was sent exactly once
    assert_eq!(Value::from(sent_once(&bed)?), expected.2["accepted"]);
    Ok(())
}

#[tokio::test]
async fn a_reuse_in_a_later_continuation_is_rejected_naming_the_first_line() -> TestResult {
    let bed = ticking_bed();
    drop_corpus(&bed).await?;
    poll_to_the_end(&bed, &bed.engine).await?;

    let errors = bed
        .store
        .get_bytes(&format!("{RESULTS}errors.jsonl"))
        .await?;
    let reuse: Value = errors
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(serde_json::from_slice::<Value>)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .find(|e| e["line"] == 9003)
        .ok_or("line 9003 is not in errors.jsonl")?;
    assert_eq!(reuse["error"]["code"], "duplicate_custom_id");
    assert_eq!(reuse["custom_id"], "r3003");
    assert!(
        reuse["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("line 3003")),
        "{reuse}"
    );
    Ok(())
}

#[tokio::test]
async fn a_crash_in_a_continuation_resumes_from_the_last_checkpoint() -> TestResult {
    let expected = one_shot().await?;
    for dies_after in [3u64, 11, 25, 40] {
        // GIVEN a worker that dies after some writes, partway through planning
        let bed = ticking_bed();
        let meta = bed.upload(KEY, corpus()).await?;
        let faulty = Arc::new(FaultyStore::new(bed.store.clone()));
        faulty.die_after_writes(dies_after);
        let dying = bed.engine_over(faulty, "worker-a");
        let _ = invocation(&bed, &dying).submit(KEY, Some(&meta.etag)).await;
        for _ in 0..3 {
            let _ = invocation(&bed, &dying).poll().await;
        }

        // WHEN another worker takes over once the lease runs out
        bed.clock.advance(LEASE + Duration::from_secs(1));
        poll_to_the_end(&bed, &bed.engine("worker-b")).await?;

        // THEN the results are those of the one-shot run, and nothing was sent twice
        assert_eq!(results(&bed).await?, expected, "died after {dies_after}");
        assert_eq!(Value::from(sent_once(&bed)?), expected.2["accepted"]);
    }
    Ok(())
}

#[tokio::test]
async fn an_upload_replaced_between_continuations_ends_its_job_as_superseded() -> TestResult {
    // GIVEN a job whose planning stopped partway
    let bed = ticking_bed();
    drop_corpus(&bed).await?;
    assert_eq!(pauses(&bed), 1);
    let (job_id,) = match bed.store.list(ACTIVE).await?.as_slice() {
        [entry] => (entry.key.trim_start_matches(ACTIVE).to_string(),),
        other => return Err(format!("expected one active job, got {other:?}").into()),
    };

    // WHEN the upload is replaced before the next poll continues it
    bed.upload(KEY, "{}\n").await?;
    invocation(&bed, &bed.engine).poll().await?;

    // THEN the old job ends, cancelled, without sending anything
    let key = format!("_batchdrop/jobs/{job_id}/manifest.json");
    let (m, _) = bed.store.get_json::<Manifest>(&key).await?;
    assert_eq!(m.status, JobStatus::Cancelled);
    assert!(
        m.reason
            .as_deref()
            .is_some_and(|r| r.contains("superseded"))
    );
    assert!(bed.provider.batches().is_empty());
    assert!(bed.store.list(ACTIVE).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_failed_write_while_reused_ids_are_taken_out_is_redone_without_losing_them() -> TestResult
{
    use batchdrop_core::layout;
    // GIVEN an upload reusing an id in another chunk, and a store that fails the first write of
    // the duplicates' part of the rejected lines
    let bed = TestBed::new(ScriptedProvider::new(), 2);
    let body: String = [
        chat("r1", "gpt-a"),
        chat("r2", "gpt-a"),
        chat("r3", "gpt-a"),
        chat("r1", "gpt-a"),
    ]
    .iter()
    .map(|l| format!("{l}\n"))
    .collect();
    let meta = bed.upload(KEY, body).await?;
    let job_id = layout::job_id(batchdrop_core::testing::BUCKET, KEY, &meta.etag);
    let faulty = Arc::new(FaultyStore::new(bed.store.clone()));
    faulty.fail_writes(
        format!("_batchdrop/jobs/{job_id}/rejected/duplicates.jsonl"),
        1,
    );
    let engine = bed.engine_over(faulty, "worker-a");

    // WHEN the event fails on it, and polls go on
    assert!(engine.submit(KEY, Some(&meta.etag)).await.is_err());
    for _ in 0..5 {
        engine.poll().await?;
    }

    // THEN the reuse is in errors.jsonl and the rest in output.jsonl, once each
    assert!(bed.store.list(ACTIVE).await?.is_empty());
    let (output, errors, counts) = results(&bed).await?;
    let ids: Vec<&str> = output.iter().filter_map(|l| l[0].as_str()).collect();
    assert_eq!(ids, ["r1", "r2", "r3"]);
    assert!(
        errors.contains(r#""line":4,"custom_id":"r1","error":{"code":"duplicate_custom_id""#),
        "{errors}"
    );
    assert_eq!(counts["accepted"], 3);
    assert_eq!(counts["rejected"], 1);
    Ok(())
}
