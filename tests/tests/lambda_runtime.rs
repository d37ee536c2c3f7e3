//! The Lambda functions under the real runtime loop: `cargo lambda watch` builds and runs
//! `functions/submit` and `functions/poll`, which talk to a moto S3 server and to the sandbox
//! provider (in-process, instant batches), and are invoked with the fixture events of
//! `events/`, exactly as a user would with `cargo lambda invoke`.
//!
//! Slow: the first invocation of each function builds it (minutes on a cold target directory,
//! seconds on a warm one). Needs `<workspace>/.venv/bin/cargo-lambda` (`make venv`); without it
//! the test fails and says so.

use batchdrop_tests::bucket::{exists, keys, read_text, upload_file};
use batchdrop_tests::fixtures::{
    REQUESTS_ERRORS, REQUESTS_OUTPUT_IDS, counts_of, custom_ids, error_codes, event, example,
    json_lines, requests_counts,
};
use batchdrop_tests::lambda::{LambdaWatch, still_running};
use batchdrop_tests::moto::MotoServer;
use batchdrop_tests::{BoxError, TestResult};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The bucket and key of `events/s3-put-encoded-key.json` (its key is URL-encoded there).
const BUCKET: &str = "batchdrop-demo-bucket";
const UPLOAD: &str = "inbox/sandbox/my file(1).jsonl";
const RESULTS: &str = "results/sandbox/my file(1)/";
/// Poll invocations before the job must have finished (each one is a short round trip).
const MAX_POLLS: usize = 20;
const BETWEEN_POLLS: Duration = Duration::from_millis(250);

/// The single record of a submit response.
fn only_record(response: &Value) -> Result<&Value, BoxError> {
    match response["records"].as_array().map(Vec::as_slice) {
        Some([record]) => Ok(record),
        _ => Err(format!("expected one record in {response}").into()),
    }
}

fn fixture_event(name: &str) -> Result<Value, BoxError> {
    Ok(serde_json::from_slice(&std::fs::read(event(name))?)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_under_cargo_lambda_turn_an_s3_event_into_results() -> TestResult {
    let started = Instant::now();
    // GIVEN a moto bucket holding the example file under the fixture event's key, with the
    // event's ETag
    let moto = MotoServer::try_start()?;
    moto.create_bucket(BUCKET).await?;
    let s3 = moto.client();
    let etag = upload_file(&s3, BUCKET, UPLOAD, &example("requests.jsonl")).await?;
    let put_event = fixture_event("s3-put-encoded-key.json")?;
    let object = &put_event["Records"][0]["s3"]["object"];
    assert_eq!(
        object["eTag"], etag,
        "events/s3-put-encoded-key.json must carry the ETag of examples/requests.jsonl"
    );
    assert_eq!(
        object["size"],
        std::fs::metadata(example("requests.jsonl"))?.len()
    );
    // AND the sandbox provider, with batches that end at once
    let sandbox = batchdrop_tests::sandbox::instant().await?;
    let sandbox_url = sandbox.base_url();
    // AND cargo lambda watch serving the functions, configured from the environment only
    let watch = LambdaWatch::start(&[
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("BATCHDROP_BUCKET", BUCKET),
        ("BATCHDROP_SANDBOX_URL", &sandbox_url),
        ("RUST_LOG", "info"),
    ])
    .await?;

    // WHEN submit is invoked with the S3 event
    let first_invoke = Instant::now();
    let response = watch
        .invoke("submit", &event("s3-put-encoded-key.json"))
        .await?;
    eprintln!(
        "first submit invocation (build included): {:?}",
        first_invoke.elapsed()
    );
    // THEN it starts a job for the decoded key
    let record = only_record(&response)?;
    assert_eq!(record["outcome"], "started", "{response}");
    assert_eq!(record["key"], UPLOAD, "{response}");
    let job_id = record["job_id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| format!("no job id in {response}"))?
        .to_string();

    // WHEN the same event is delivered again
    let response = watch
        .invoke("submit", &event("s3-put-encoded-key.json"))
        .await?;
    // THEN it finds the same job
    let record = only_record(&response)?;
    assert_eq!(record["outcome"], "duplicate", "{response}");
    assert_eq!(record["job_id"], job_id.as_str(), "{response}");

    // WHEN submit gets an event for an object outside inbox/
    let before = keys(&s3, BUCKET, "").await?;
    let response = watch
        .invoke("submit", &event("s3-put-outside-inbox.json"))
        .await?;
    // THEN it ignores it and writes nothing
    let record = only_record(&response)?;
    let outcome = record["outcome"].as_str().unwrap_or_default();
    assert!(outcome.starts_with("ignored"), "{response}");
    assert!(record.get("job_id").is_none(), "{response}");
    assert_eq!(keys(&s3, BUCKET, "").await?, before);

    // WHEN poll is invoked on its schedule until the summary appears
    let summary_key = format!("{RESULTS}summary.json");
    let mut polls = 0;
    while !exists(&s3, BUCKET, &summary_key).await? {
        polls += 1;
        if polls > MAX_POLLS {
            return Err(format!(
                "{summary_key} did not appear after {MAX_POLLS} polls; log:\n{}",
                watch.log_tail()
            )
            .into());
        }
        let response = watch.invoke("poll", &event("scheduled.json")).await?;
        assert_eq!(response["failures"], serde_json::json!([]), "{response}");
        if !exists(&s3, BUCKET, &summary_key).await? {
            tokio::time::sleep(BETWEEN_POLLS).await;
        }
    }

    // THEN the results are complete: counts that add up, output in input order, every
    // rejected line named
    let summary: Value = serde_json::from_str(&read_text(&s3, BUCKET, &summary_key).await?)?;
    assert_eq!(summary["status"], "completed", "{summary}");
    assert_eq!(summary["job_id"], job_id.as_str(), "{summary}");
    assert_eq!(counts_of(&summary), requests_counts(), "{summary}");
    let output = json_lines(&read_text(&s3, BUCKET, &format!("{RESULTS}output.jsonl")).await?)?;
    assert_eq!(custom_ids(&output), REQUESTS_OUTPUT_IDS);
    let errors = json_lines(&read_text(&s3, BUCKET, &format!("{RESULTS}errors.jsonl")).await?)?;
    assert_eq!(error_codes(&errors), REQUESTS_ERRORS);
    // AND no job is left active, and the inbox holds only the upload
    assert_eq!(
        keys(&s3, BUCKET, "_batchdrop/active/").await?,
        Vec::<String>::new()
    );
    assert_eq!(keys(&s3, BUCKET, "inbox/").await?, [UPLOAD]);

    // AND stopping cargo lambda watch leaves none of its processes (the functions) behind
    let processes = watch.processes();
    assert!(
        processes.len() >= 3,
        "emulator, submit and poll: {processes:?}"
    );
    drop(watch);
    assert_eq!(still_running(&processes), []);
    sandbox.stop().await;
    eprintln!(
        "lambda runtime test: {polls} poll(s), {:?} in all",
        started.elapsed()
    );
    Ok(())
}
