//! Paying once (`reuse_results`): a request answered successfully on the route before is not
//! sent again, its stored answer goes into output.jsonl marked with where it came from;
//! identical requests of one file are sent once and answered to each; failed answers and
//! answers older than `reuse_days` are not reused. Against the sandbox over HTTP (the OpenAI
//! batch API), counting what it was sent by listing its batches.

use batchdrop_core::clock::ManualClock;
use batchdrop_core::config::Config;
use batchdrop_core::engine::Engine;
use batchdrop_core::engine::LEASE;
use batchdrop_core::layout::ACTIVE;
use batchdrop_core::provider::{Provider, Providers};
use batchdrop_core::providers::OpenAiProvider;
use batchdrop_core::store::{MemoryStore, ObjectStore, ObjectStoreExt, PutMode};
use batchdrop_core::testing::{FaultyStore, ScriptedProvider, TestBed, small_config};
use batchdrop_sandbox::{MODEL_NOT_FOUND, Sandbox, SandboxConfig};
use bytes::Bytes;
use secrecy::SecretString;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

/// Requests in the file dropped twice.
const N: usize = 10_000;
const DAY: Duration = Duration::from_secs(86_400);

/// The sandbox, and an engine over an in-memory bucket and a manual clock whose `sandbox`
/// route (batches of at most `per_batch`, one attempt) reuses answers for `days`.
struct Bed {
    sandbox: Sandbox,
    store: Arc<dyn ObjectStore>,
    clock: Arc<ManualClock>,
    engine: Engine,
}

impl Bed {
    async fn start(per_batch: u64, days: u32) -> Result<Bed, Error> {
        Self::start_with(per_batch, days, None).await
    }

    /// Same, with a spending cap per job.
    async fn start_with(per_batch: u64, days: u32, max_usd: Option<f64>) -> Result<Bed, Error> {
        let sandbox = Sandbox::start("127.0.0.1:0".parse()?, SandboxConfig::default()).await?;
        let mut config = Config::builtin(&|_| None);
        let route = config.routes.get_mut("sandbox").ok_or("no sandbox route")?;
        route.limits.max_requests_per_batch = per_batch;
        route.retries.max_attempts = 1;
        route.reuse.enabled = true;
        route.reuse.days = days;
        route.spend.max_usd_per_job = max_usd;
        let provider: Arc<dyn Provider> = Arc::new(OpenAiProvider::new(
            &sandbox.base_url(),
            Some(SecretString::from("sk-test")),
        ));
        let mut providers: HashMap<String, Result<Arc<dyn Provider>, String>> = HashMap::new();
        providers.insert("sandbox".into(), Ok(provider));
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(OffsetDateTime::from_unix_timestamp(
            1_767_225_600,
        )?));
        let engine = Engine::new(
            store.clone(),
            "bucket",
            Arc::new(config),
            Arc::new(providers) as Arc<dyn Providers>,
            clock.clone(),
        );
        Ok(Bed {
            sandbox,
            store,
            clock,
            engine,
        })
    }

    /// Drops `body` as `inbox/sandbox/<name>.jsonl` and polls the job to the end; returns its
    /// output.jsonl lines and summary.json.
    async fn run(&self, name: &str, body: &str) -> Result<(Vec<Value>, Value), Error> {
        let key = format!("inbox/sandbox/{name}.jsonl");
        let meta = self
            .store
            .put(&key, Bytes::from(body.to_string()), PutMode::Create)
            .await?;
        self.engine.submit(&key, Some(&meta.etag)).await?;
        for _ in 0..50 {
            if self.store.list(ACTIVE).await?.is_empty() {
                break;
            }
            let report = self.engine.poll().await?;
            if let Some((id, e)) = report.failures.into_iter().next() {
                return Err(format!("poll failed on {id}: {e}").into());
            }
            self.clock.advance(Duration::from_secs(60));
        }
        let results = format!("results/sandbox/{name}/");
        let out = self
            .store
            .get_bytes(&format!("{results}output.jsonl"))
            .await?;
        let out = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(serde_json::from_slice)
            .collect::<Result<_, _>>()?;
        let summary = serde_json::from_slice(
            &self
                .store
                .get_bytes(&format!("{results}summary.json"))
                .await?,
        )?;
        Ok((out, summary))
    }

    /// Requests the sandbox was sent in batches so far (its batches' request counts, every
    /// page of its batch list).
    async fn requests_sent(&self) -> Result<u64, Error> {
        let mut sent = 0;
        let mut after: Option<String> = None;
        loop {
            let mut url = format!("{}/batches?limit=100", self.sandbox.base_url());
            if let Some(after) = &after {
                url.push_str(&format!("&after={after}"));
            }
            let list: Value = reqwest::Client::new()
                .get(url)
                .bearer_auth("sk-test")
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let data = list["data"].as_array().ok_or("no batch list")?;
            sent += data
                .iter()
                .map(|b| b["request_counts"]["total"].as_u64().unwrap_or(0))
                .sum::<u64>();
            match data.last().and_then(|b| b["id"].as_str()) {
                Some(last) if list["has_more"] == true => after = Some(last.to_string()),
                _ => return Ok(sent),
            }
        }
    }
}

/// An OpenAI chat line with id `id` asking `question` of `model`.
fn line(id: &str, model: &str, question: &str) -> String {
    format!(
        r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"{model}","max_tokens":20,"messages":[{{"role":"user","content":"{question}"}}]}}}}"#
    ) + "\n"
}

/// `n` distinct questions, ids `<prefix>0001`….
fn file(prefix: &str, n: usize) -> String {
    (1..=n)
        .map(|i| {
            line(
                &format!("{prefix}{i:04}"),
                "gpt-4o-mini",
                &format!("question {i}"),
            )
        })
        .collect()
}

fn ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap_or("<none>").to_string())
        .collect()
}

/// The answer's content, whatever line it is on.
fn answers(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| l["response"]["body"].clone())
        .collect()
}

fn reused_from(line: &Value) -> &Value {
    &line["batchdrop"]["reused_from"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_file_under_a_second_name_sends_nothing_and_gets_the_same_answers() -> TestResult {
    // GIVEN a route that reuses answers, and a file of 10,000 requests answered once
    let bed = Bed::start(2_500, 30).await?;
    let (first, first_summary) = bed.run("first", &file("a", N)).await?;
    assert_eq!(bed.requests_sent().await?, N as u64);

    // WHEN the same requests are dropped again under another name and other ids
    let (second, summary) = bed.run("second", &file("b", N)).await?;

    // THEN nothing more was sent
    assert_eq!(bed.requests_sent().await?, N as u64);
    // AND every line has the first run's answer, under its own id, in input order
    assert_eq!(
        ids(&second),
        (1..=N).map(|i| format!("b{i:04}")).collect::<Vec<_>>()
    );
    assert_eq!(answers(&second), answers(&first));
    assert!(second.iter().all(|l| l["response"]["status_code"] == 200));
    // AND each says where it came from: the first job, the same line
    let first_job = first_summary["job_id"].as_str().ok_or("no job id")?;
    assert_eq!(reused_from(&second[6])["job"], first_job);
    assert_eq!(reused_from(&second[6])["line"], 7);
    assert!(first.iter().all(|l| l.get("batchdrop").is_none()));
    // AND the summary counts them at no cost, saving what the first run cost
    assert_eq!(summary["counts"]["succeeded"], N);
    assert_eq!(summary["reuse"]["requests"], N);
    assert_eq!(summary["reuse"]["from_earlier_jobs"], N);
    assert_eq!(summary["batches"].as_array().map(Vec::len), Some(0));
    assert_eq!(summary["cost"]["batch"], 0.0);
    let paid = first_summary["cost"]["batch"].as_f64().ok_or("no cost")?;
    assert!(paid > 0.0);
    assert_eq!(summary["reuse"]["saved_usd"].as_f64(), Some(paid));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_merged_at_a_jobs_end_still_answers_every_request_it_held() -> TestResult {
    // GIVEN a route whose first job sends 130 batches of 10: 130 index objects at its end
    let bed = Bed::start(10, 30).await?;
    let n = 1_300;
    let (first, _) = bed.run("first", &file("a", n)).await?;
    assert_eq!(bed.requests_sent().await?, n as u64);
    let merged = bed.store.list("_batchdrop/reuse/sandbox/_merged/").await?;
    let index = bed.store.list("_batchdrop/reuse/sandbox/").await?;

    // THEN the job's end merged 64 of them into one
    assert_eq!(merged.len(), 1, "{merged:?}");
    assert_eq!(index.len(), 130 - 64 + 1);

    // WHEN the same requests come again
    let (second, summary) = bed.run("second", &file("b", n)).await?;

    // THEN nothing more was sent: every answer was found, merged or not
    assert_eq!(bed.requests_sent().await?, n as u64);
    assert_eq!(summary["reuse"]["from_earlier_jobs"], n);
    assert_eq!(answers(&second), answers(&first));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_30_percent_answered_requests_sends_70_percent() -> TestResult {
    // GIVEN 30 requests answered by an earlier job
    let bed = Bed::start(25, 30).await?;
    let (_, first_summary) = bed.run("first", &file("a", 30)).await?;
    let before = bed.requests_sent().await?;

    // WHEN a file of 100 requests, 30 of them those, is dropped
    let body: String = (1..=100)
        .map(|i| {
            let question = if (1..=3).contains(&(i % 10)) {
                format!("question {}", (i / 10) * 3 + i % 10)
            } else {
                format!("new question {i}")
            };
            line(&format!("n{i:04}"), "gpt-4o-mini", &question)
        })
        .collect();
    let (out, summary) = bed.run("mixed", &body).await?;

    // THEN 70 requests were sent, and every line has its answer in order
    assert_eq!(bed.requests_sent().await? - before, 70);
    assert_eq!(
        ids(&out),
        (1..=100).map(|i| format!("n{i:04}")).collect::<Vec<_>>()
    );
    assert_eq!(
        out.iter().filter(|l| l.get("batchdrop").is_some()).count(),
        30
    );
    assert!(out.iter().all(|l| l["response"]["status_code"] == 200));
    // AND the costs add up: the 70 sent cost about 70/30 of the first job, the 30 reused
    // saved exactly what they cost then
    assert_eq!(summary["reuse"]["requests"], 30);
    let paid = first_summary["cost"]["batch"].as_f64().ok_or("no cost")?;
    assert_eq!(summary["reuse"]["saved_usd"].as_f64(), Some(paid));
    let batches: u64 = summary["batches"]
        .as_array()
        .ok_or("no batches")?
        .iter()
        .map(|b| b["requests"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(batches, 70);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_requests_in_one_file_are_sent_once_and_answered_to_each() -> TestResult {
    // GIVEN a file of 12 lines holding 4 distinct requests, 3 times each
    let bed = Bed::start(10, 30).await?;
    let body: String = (1..=12)
        .map(|i| line(&format!("r{i:02}"), "gpt-4o-mini", &format!("q{}", i % 4)))
        .collect();

    // WHEN it is dropped
    let (out, summary) = bed.run("repeats", &body).await?;

    // THEN 4 requests were sent, and each of the 12 lines has its request's answer
    assert_eq!(bed.requests_sent().await?, 4);
    assert_eq!(
        ids(&out),
        (1..=12).map(|i| format!("r{i:02}")).collect::<Vec<_>>()
    );
    for i in 4..12 {
        assert_eq!(out[i]["response"]["body"], out[i % 4]["response"]["body"]);
        assert_eq!(reused_from(&out[i])["line"], (i % 4 + 1) as u64);
    }
    assert!(out[..4].iter().all(|l| l.get("batchdrop").is_none()));
    assert_eq!(summary["counts"]["succeeded"], 12);
    assert_eq!(summary["reuse"]["repeated_in_file"], 8);
    assert!(summary["reuse"]["saved_usd"].as_f64().unwrap_or(0.0) > 0.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_older_than_reuse_days_are_not_reused() -> TestResult {
    // GIVEN a route that reuses answers for 7 days, and 10 requests answered
    let bed = Bed::start(10, 7).await?;
    bed.run("first", &file("a", 10)).await?;

    // WHEN the same file comes again 8 days later
    bed.clock.advance(8 * DAY);
    let (out, summary) = bed.run("later", &file("a", 10)).await?;

    // THEN every request was sent again
    assert_eq!(bed.requests_sent().await?, 20);
    assert!(out.iter().all(|l| l.get("batchdrop").is_none()));
    assert!(summary.get("reuse").is_none(), "{summary}");

    // AND a third drop the next day reuses the second one's answers
    bed.clock.advance(DAY);
    let (third, _) = bed.run("third", &file("a", 10)).await?;
    assert_eq!(bed.requests_sent().await?, 20);
    let second_job = summary["job_id"].as_str().ok_or("no job id")?;
    assert_eq!(reused_from(&third[0])["job"], second_job);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_answer_is_not_reused() -> TestResult {
    // GIVEN a file whose second request fails (a model the provider does not have)
    let bed = Bed::start(10, 30).await?;
    let body = line("ok", "gpt-4o-mini", "fine") + &line("bad", MODEL_NOT_FOUND, "fails");
    let (first, _) = bed.run("first", &body).await?;
    assert_eq!(first[1]["response"]["status_code"], 404);

    // WHEN the same file comes again
    let (second, summary) = bed.run("second", &body).await?;

    // THEN only the failed request was sent again, and it failed again on its own
    assert_eq!(bed.requests_sent().await?, 3);
    assert!(second[0].get("batchdrop").is_some());
    assert!(second[1].get("batchdrop").is_none());
    assert_eq!(second[1]["response"]["status_code"], 404);
    assert_eq!(summary["reuse"]["requests"], 1);
    assert_eq!(summary["counts"]["failed"], 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_without_reuse_sends_everything_again() -> TestResult {
    // GIVEN a route that does not reuse answers
    let bed = Bed::start(10, 30).await?;
    let mut config = Config::builtin(&|_| None);
    if let Some(route) = config.routes.get_mut("sandbox") {
        route.retries.max_attempts = 1;
    }
    let provider: Arc<dyn Provider> = Arc::new(OpenAiProvider::new(
        &bed.sandbox.base_url(),
        Some(SecretString::from("sk-test")),
    ));
    let mut providers: HashMap<String, Result<Arc<dyn Provider>, String>> = HashMap::new();
    providers.insert("sandbox".into(), Ok(provider));
    let plain = Bed {
        engine: Engine::new(
            bed.store.clone(),
            "bucket",
            Arc::new(config),
            Arc::new(providers) as Arc<dyn Providers>,
            bed.clock.clone(),
        ),
        ..bed
    };

    // WHEN the same file is dropped twice
    plain.run("first", &file("a", 5)).await?;
    let (out, summary) = plain.run("second", &file("a", 5)).await?;

    // THEN both were sent, and no index was written
    assert_eq!(plain.requests_sent().await?, 10);
    assert!(out.iter().all(|l| l.get("batchdrop").is_none()));
    assert!(summary.get("reuse").is_none());
    assert!(plain.store.list("_batchdrop/reuse/").await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_route_counts_only_what_is_sent_against_its_cap() -> TestResult {
    // GIVEN a route with reuse and a spending cap per job, and 20 requests answered
    let bed = Bed::start_with(10, 30, Some(1.0)).await?;
    let (_, first) = bed.run("first", &file("a", 20)).await?;
    assert_eq!(first["status"], "completed", "{first}");

    // WHEN the same 20 requests and 5 new ones are dropped
    let body = file("b", 25);
    let (out, summary) = bed.run("second", &body).await?;

    // THEN the job ran within its cap, its estimate covering only the 5 sent
    assert_eq!(summary["status"], "completed", "{summary}");
    assert_eq!(bed.requests_sent().await?, 25);
    assert_eq!(summary["budget"]["within"], true, "{summary}");
    let estimate = summary["budget"]["estimate"]
        .as_f64()
        .ok_or("no estimate")?;
    let first_estimate = first["budget"]["estimate"].as_f64().ok_or("no estimate")?;
    assert!(
        estimate > 0.0 && estimate < first_estimate / 2.0,
        "{estimate} vs {first_estimate}"
    );
    assert!(out.iter().all(|l| l["response"]["status_code"] == 200));
    Ok(())
}

/// The first job of the crash test: q1…q4 answered, on a bed whose `sandbox` route (2
/// requests per batch) reuses answers, over the scripted provider.
async fn answered_bed() -> Result<TestBed, Error> {
    let mut config = small_config(2, 1 << 20);
    if let Some(route) = config.routes.get_mut("sandbox") {
        route.reuse.enabled = true;
    }
    let bed = TestBed::with_config(ScriptedProvider::new(), config);
    let body: String = (1..=4)
        .map(|i| line(&format!("a{i}"), "gpt-4o-mini", &format!("q{i}")))
        .collect();
    let meta = bed.upload("inbox/sandbox/first.jsonl", body).await?;
    let engine = bed.engine("worker-a");
    engine
        .submit("inbox/sandbox/first.jsonl", Some(&meta.etag))
        .await?;
    for _ in 0..10 {
        engine.poll().await?;
    }
    if !bed.store.list(ACTIVE).await?.is_empty() {
        return Err("the first job never finished".into());
    }
    Ok(bed)
}

/// The second file: q1 and q2 answered before, q5 three times, q6 once.
const SECOND: [(&str, &str); 6] = [
    ("b1", "q1"),
    ("b2", "q5"),
    ("b3", "q5"),
    ("b4", "q2"),
    ("b5", "q6"),
    ("b6", "q5"),
];

/// Drops the second file through an engine that dies after its `dies_after`-th write; returns
/// the upload's ETag and the writes made.
async fn second_with_crash(bed: &TestBed, dies_after: Option<u64>) -> Result<(String, u64), Error> {
    let body: String = SECOND
        .iter()
        .map(|(id, q)| line(id, "gpt-4o-mini", q))
        .collect();
    let meta = bed.upload("inbox/sandbox/second.jsonl", body).await?;
    let faulty = Arc::new(FaultyStore::new(bed.store.clone()));
    if let Some(n) = dies_after {
        faulty.die_after_writes(n);
    }
    let dying = bed.engine_over(faulty.clone(), "worker-a");
    let _ = dying
        .submit("inbox/sandbox/second.jsonl", Some(&meta.etag))
        .await;
    for _ in 0..6 {
        let _ = dying.poll().await;
    }
    Ok((meta.etag, faulty.writes()))
}

#[tokio::test]
async fn a_crash_after_any_write_of_a_reusing_job_loses_nothing_and_sends_nothing_twice()
-> TestResult {
    let clean = answered_bed().await?;
    let (_, total_writes) = second_with_crash(&clean, None).await?;
    assert!(total_writes > 10, "{total_writes}");
    for n in 0..total_writes {
        // GIVEN answers to q1…q4, and a process that dies after the n-th write of the job of
        // a file asking q1 and q2 again, q5 three times and q6
        let bed = answered_bed().await?;
        let first_job_batches = bed.provider.batches().len();
        let (etag, _) = second_with_crash(&bed, Some(n)).await?;

        // WHEN a new process takes over and the event comes again
        bed.clock.advance(LEASE + Duration::from_secs(1));
        let engine = bed.engine("worker-b");
        engine
            .submit("inbox/sandbox/second.jsonl", Some(&etag))
            .await?;
        for _ in 0..10 {
            engine.poll().await?;
        }
        assert!(
            bed.store.list(ACTIVE).await?.is_empty(),
            "crash after write {n}: not finished"
        );

        // THEN only q5 and q6 were sent, once each
        let sent: Vec<String> = bed.provider.batches()[first_job_batches..]
            .iter()
            .flat_map(|b| b.custom_ids.clone())
            .collect();
        assert_eq!(sent.len(), 2, "crash after write {n}: sent {sent:?}");
        // AND every line has its answer once, in order, the reused ones marked
        let out = bed
            .store
            .get_bytes("results/sandbox/second/output.jsonl")
            .await?;
        let out: Vec<Value> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(serde_json::from_slice)
            .collect::<Result<_, _>>()?;
        let expected: Vec<String> = SECOND.iter().map(|(id, _)| id.to_string()).collect();
        assert_eq!(ids(&out), expected, "crash after write {n}");
        let marked: Vec<bool> = out.iter().map(|l| l.get("batchdrop").is_some()).collect();
        assert_eq!(
            marked,
            [true, false, true, true, false, true],
            "crash after write {n}"
        );
        let summary: Value = serde_json::from_slice(
            &bed.store
                .get_bytes("results/sandbox/second/summary.json")
                .await?,
        )?;
        assert_eq!(
            summary["counts"]["succeeded"], 6,
            "crash after write {n}: {summary}"
        );
        assert_eq!(
            summary["reuse"]["requests"], 4,
            "crash after write {n}: {summary}"
        );
    }
    Ok(())
}
