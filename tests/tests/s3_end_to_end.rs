//! The whole pipeline through the S3 protocol: the job engine over the S3 store on a moto
//! server, the sandbox provider in-process (instant batches), `examples/requests.jsonl` as the
//! upload. Each test starts its own server and sandbox.

use batchdrop_core::clock::SystemClock;
use batchdrop_core::config::Config;
use batchdrop_core::engine::{Engine, SubmitOutcome};
use batchdrop_s3::S3Store;
use batchdrop_sandbox::Sandbox;
use batchdrop_tests::bucket::{exists, keys, read_text, upload_file};
use batchdrop_tests::fixtures::{
    REQUESTS_ERRORS, REQUESTS_OUTPUT_IDS, REQUESTS_PROVIDER_REJECTED, counts_of, custom_ids,
    error_codes, example, json_lines, requests_counts,
};
use batchdrop_tests::moto::MotoServer;
use batchdrop_tests::{BoxError, TestResult};
use serde_json::Value;
use std::sync::Arc;

const BUCKET: &str = "batchdrop-e2e";
const UPLOAD: &str = "inbox/sandbox/run 1/requests.jsonl";
const RESULTS: &str = "results/sandbox/run 1/requests/";
/// Polls before a job on instant batches must have finished.
const MAX_POLLS: usize = 20;

/// A moto bucket, a sandbox whose batches end at once, and an engine over both whose `sandbox`
/// route sends at most 3 requests per batch.
struct Pipeline {
    moto: MotoServer,
    sandbox: Sandbox,
    engine: Engine,
    client: aws_sdk_s3::Client,
}

impl Pipeline {
    async fn start() -> Result<Pipeline, BoxError> {
        let moto = MotoServer::try_start()?;
        moto.create_bucket(BUCKET).await?;
        let sandbox = batchdrop_tests::sandbox::instant().await?;
        let base_url = sandbox.base_url();
        let env = move |name: &str| (name == "BATCHDROP_SANDBOX_URL").then(|| base_url.clone());
        let mut config = Config::builtin(&env);
        config
            .routes
            .get_mut("sandbox")
            .ok_or("no built-in sandbox route")?
            .limits
            .max_requests_per_batch = 3;
        let providers = batchdrop_core::providers::clients(&config.routes, &env);
        let client = moto.client();
        let engine = Engine::new(
            Arc::new(S3Store::new(client.clone(), BUCKET)),
            BUCKET,
            Arc::new(config),
            Arc::new(providers),
            Arc::new(SystemClock),
        );
        Ok(Pipeline {
            moto,
            sandbox,
            engine,
            client,
        })
    }

    /// Uploads `examples/requests.jsonl` under [`UPLOAD`]; returns its ETag.
    async fn upload_requests(&self) -> Result<String, BoxError> {
        upload_file(&self.client, BUCKET, UPLOAD, &example("requests.jsonl")).await
    }

    /// Polls until `<results>summary.json` exists; returns how many polls it took.
    async fn poll_until_finished(&self, results: &str) -> Result<usize, BoxError> {
        let summary = format!("{results}summary.json");
        for polls in 1..=MAX_POLLS {
            let report = self.engine.poll().await?;
            if !report.failures.is_empty() {
                return Err(format!("poll {polls} failed: {:?}", report.failures).into());
            }
            if exists(&self.client, BUCKET, &summary).await? {
                return Ok(polls);
            }
        }
        Err(format!("{summary} did not appear after {MAX_POLLS} polls").into())
    }

    async fn read(&self, key: &str) -> Result<String, BoxError> {
        read_text(&self.client, BUCKET, key).await
    }

    async fn stop(self) {
        self.sandbox.stop().await;
        drop(self.moto);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_through_s3_gets_ordered_output_errors_and_summary() -> TestResult {
    // GIVEN a bucket on moto with the example file uploaded under a key with a space
    let pipeline = Pipeline::start().await?;
    let etag = pipeline.upload_requests().await?;

    // WHEN its S3 event is submitted and the bucket polled until the summary appears
    let outcome = pipeline.engine.submit(UPLOAD, Some(&etag)).await?;
    assert!(
        matches!(outcome, SubmitOutcome::Started { .. }),
        "{outcome:?}"
    );
    pipeline.poll_until_finished(RESULTS).await?;

    // THEN output.jsonl has one line per accepted request, in input order
    let output = json_lines(&pipeline.read(&format!("{RESULTS}output.jsonl")).await?)?;
    assert_eq!(custom_ids(&output), REQUESTS_OUTPUT_IDS);
    // AND the request the sandbox refused keeps its line, with the provider's status
    let refused = output
        .iter()
        .find(|l| l["custom_id"] == REQUESTS_PROVIDER_REJECTED)
        .ok_or("no line for the refused request")?;
    assert_eq!(refused["response"]["status_code"], 404, "{refused}");
    // AND errors.jsonl names every rejected line with its code
    let errors = json_lines(&pipeline.read(&format!("{RESULTS}errors.jsonl")).await?)?;
    assert_eq!(error_codes(&errors), REQUESTS_ERRORS);
    // AND the summary says completed, with counts that add up
    let summary: Value =
        serde_json::from_str(&pipeline.read(&format!("{RESULTS}summary.json")).await?)?;
    assert_eq!(summary["status"], "completed", "{summary}");
    assert_eq!(counts_of(&summary), requests_counts(), "{summary}");
    assert_eq!(summary["input"]["key"], UPLOAD);
    assert_eq!(summary["input"]["etag"], etag.as_str());
    // AND the accepted requests went in batches within the route's limit of 3
    let sizes: Vec<u64> = summary["batches"]
        .as_array()
        .ok_or("no batches in the summary")?
        .iter()
        .map(|b| b["requests"].as_u64().unwrap_or(0))
        .collect();
    assert!(sizes.iter().all(|n| (1..=3).contains(n)), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<u64>(), 9, "{sizes:?}");
    // AND batchdrop wrote nothing under inbox/ and left no job active
    assert_eq!(keys(&pipeline.client, BUCKET, "inbox/").await?, [UPLOAD]);
    assert_eq!(
        keys(&pipeline.client, BUCKET, "_batchdrop/active/").await?,
        Vec::<String>::new()
    );
    pipeline.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_event_for_the_same_upload_makes_one_job() -> TestResult {
    // GIVEN an upload whose event was submitted once
    let pipeline = Pipeline::start().await?;
    let etag = pipeline.upload_requests().await?;
    let first = pipeline.engine.submit(UPLOAD, Some(&etag)).await?;
    let SubmitOutcome::Started { job_id } = first else {
        return Err(format!("first submit: {first:?}").into());
    };
    let batches = pipeline.sandbox.stats().batches_created;
    assert!(batches > 0, "the first submit created no batch");

    // WHEN S3 delivers the same event again
    let second = pipeline.engine.submit(UPLOAD, Some(&etag)).await?;

    // THEN it finds the job, creates no batch, and the bucket holds one job
    assert_eq!(second, SubmitOutcome::Duplicate { job_id });
    assert_eq!(pipeline.sandbox.stats().batches_created, batches);
    let manifests: Vec<String> = keys(&pipeline.client, BUCKET, "_batchdrop/jobs/")
        .await?
        .into_iter()
        .filter(|k| k.ends_with("/manifest.json"))
        .collect();
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    pipeline.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_in_the_uploads_metadata_is_the_jobs_deadline() -> TestResult {
    // GIVEN the example file uploaded with `x-amz-meta-batchdrop-deadline` (an offset, not UTC)
    let pipeline = Pipeline::start().await?;
    let body = tokio::fs::read(example("requests.jsonl")).await?;
    let put = pipeline
        .client
        .put_object()
        .bucket(BUCKET)
        .key(UPLOAD)
        .metadata("batchdrop-deadline", "2099-01-01T09:00:00+02:00")
        .body(body.into())
        .send()
        .await?;
    let etag = put
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_string();

    // WHEN its event is submitted and the bucket polled until the summary appears
    pipeline.engine.submit(UPLOAD, Some(&etag)).await?;
    pipeline.poll_until_finished(RESULTS).await?;

    // THEN the summary carries that deadline (in UTC), read from the metadata, and met
    let summary: Value =
        serde_json::from_str(&pipeline.read(&format!("{RESULTS}summary.json")).await?)?;
    let deadline = &summary["deadline"];
    assert_eq!(deadline["at"], "2099-01-01T07:00:00Z", "{summary}");
    assert_eq!(deadline["source"], "metadata");
    assert_eq!(deadline["met"], true);
    pipeline.stop().await;
    Ok(())
}
