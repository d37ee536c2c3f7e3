//! The event-to-engine handlers over an in-memory bucket: the fixture events of `events/`, a
//! scripted provider and a manual clock (no AWS, no network). The same handlers under the real
//! runtime loop and S3 are in `tests/tests/lambda_runtime.rs` of the `tests` crate.

use aws_lambda_events::event::s3::S3Event;
use batchdrop_core::layout::{self, ACTIVE, JobKeys};
use batchdrop_core::manifest::Manifest;
use batchdrop_core::store::{ObjectStore, ObjectStoreExt};
use batchdrop_core::testing::{FaultyStore, ScriptedProvider, TestBed};
use batchdrop_lambda::events::Completions;
use batchdrop_lambda::metrics::Metrics;
use batchdrop_lambda::{App, HandlerError, RecordOutcome, handle_s3_event, handle_tick};
use batchdrop_tests::fixtures::{event, example};
use std::sync::Arc;

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

/// The bucket and decoded key of `events/s3-put-encoded-key.json`.
const FIXTURE_BUCKET: &str = "batchdrop-demo-bucket";
const UPLOAD: &str = "inbox/sandbox/my file(1).jsonl";
/// The key `events/s3-put-cancel.json` creates.
const CANCEL: &str = "cancel/sandbox/my file(1).jsonl";
/// Ticks a job of `examples/requests.jsonl` gets to finish in.
const MAX_TICKS: usize = 10;

/// An app whose every bucket is `store`, with the bed's routes, scripted provider and clock;
/// it polls the fixture bucket. Metrics lines are dropped, no completion events are sent.
fn app_over(bed: &TestBed, store: Arc<dyn ObjectStore>) -> App {
    let metrics = Metrics::new("batchdrop", bed.clock.clone(), Arc::new(|_: &str| {}));
    let completions = Arc::new(Completions::new(bed.config.clone(), metrics, None));
    App::new(
        Arc::new(move |_: &str| store.clone()),
        bed.config.clone(),
        bed.providers.clone(),
        bed.clock.clone(),
        completions,
    )
    .polling(FIXTURE_BUCKET)
}

fn app(bed: &TestBed) -> App {
    app_over(bed, bed.store.clone())
}

fn bed() -> TestBed {
    TestBed::new(ScriptedProvider::new(), 3)
}

fn fixture(name: &str) -> Result<S3Event, Error> {
    Ok(serde_json::from_slice(&std::fs::read(event(name))?)?)
}

/// `events/s3-put-encoded-key.json` for `examples/requests.jsonl` uploaded to the bed's bucket
/// under its decoded key. The fixture's eTag is the file's MD5 (as S3's); the memory store has
/// its own ETags, so the event carries the one of this upload.
async fn upload_event(bed: &TestBed) -> Result<S3Event, Error> {
    let meta = bed
        .upload(UPLOAD, std::fs::read(example("requests.jsonl"))?)
        .await?;
    let mut event = fixture("s3-put-encoded-key.json")?;
    event.records[0].s3.object.e_tag = Some(meta.etag);
    Ok(event)
}

fn only_record(records: &[RecordOutcome]) -> Result<&RecordOutcome, Error> {
    match records {
        [record] => Ok(record),
        _ => Err(format!("expected one record in {records:?}").into()),
    }
}

/// Submits the upload event; returns the job id.
async fn start_job(bed: &TestBed, app: &App) -> Result<String, Error> {
    let response = handle_s3_event(app, upload_event(bed).await?, None).await?;
    only_record(&response.records)?
        .job_id
        .clone()
        .ok_or_else(|| format!("no job started: {response:?}").into())
}

async fn manifest_of(bed: &TestBed, job_id: &str) -> Result<Manifest, Error> {
    Ok(bed
        .store
        .get_json::<Manifest>(&JobKeys::new(job_id).manifest())
        .await?
        .0)
}

#[tokio::test]
async fn an_s3_event_with_an_encoded_key_starts_a_job_on_the_decoded_key() -> TestResult {
    // GIVEN the example file uploaded under the key the fixture event names URL-encoded
    let bed = bed();
    let app = app(&bed);
    let event = upload_event(&bed).await?;
    // WHEN submit handles the event
    let response = handle_s3_event(&app, event, None).await?;
    // THEN the record reports a started job on the decoded key, and the job is active
    let record = only_record(&response.records)?;
    assert_eq!(record.outcome, "started", "{response:?}");
    assert_eq!(record.bucket, FIXTURE_BUCKET);
    assert_eq!(record.key, UPLOAD);
    let job_id = record.job_id.as_deref().ok_or("no job id")?;
    assert!(bed.store.exists(&layout::active_key(job_id)).await?);
    assert_eq!(manifest_of(&bed, job_id).await?.input.key, UPLOAD);
    Ok(())
}

#[tokio::test]
async fn an_object_outside_inbox_is_ignored_and_nothing_is_written() -> TestResult {
    // GIVEN a bucket holding the example upload
    let bed = bed();
    let app = app(&bed);
    upload_event(&bed).await?;
    let before = bed.store.list("").await?;
    // WHEN submit handles the creation of an object under results/
    let response = handle_s3_event(&app, fixture("s3-put-outside-inbox.json")?, None).await?;
    // THEN the record is ignored, without a job, and the bucket is unchanged
    let record = only_record(&response.records)?;
    assert!(record.outcome.starts_with("ignored"), "{response:?}");
    assert_eq!(record.job_id, None);
    assert_eq!(bed.store.list("").await?, before);
    Ok(())
}

#[tokio::test]
async fn a_cancel_key_asks_the_job_of_its_path_to_cancel() -> TestResult {
    // GIVEN a job started from the example upload
    let bed = bed();
    let app = app(&bed);
    let job_id = start_job(&bed, &app).await?;
    // WHEN submit handles the creation of the matching cancel/ object
    bed.upload(CANCEL, Vec::new()).await?;
    let response = handle_s3_event(&app, fixture("s3-put-cancel.json")?, None).await?;
    // THEN the record names the job asked to cancel, and its manifest says so
    let record = only_record(&response.records)?;
    assert_eq!(record.key, CANCEL);
    assert_eq!(
        record.outcome,
        format!("cancel requested for {job_id}"),
        "{response:?}"
    );
    assert!(
        manifest_of(&bed, &job_id).await?.cancel_requested.is_some(),
        "no cancel_requested in the manifest"
    );
    Ok(())
}

#[tokio::test]
async fn scheduled_ticks_advance_the_active_jobs_and_report_the_finished_ones() -> TestResult {
    // GIVEN a job started from the example upload
    let bed = bed();
    let app = app(&bed);
    let job_id = start_job(&bed, &app).await?;
    // WHEN poll handles ticks until no job is active
    let mut finished = Vec::new();
    for _ in 0..MAX_TICKS {
        let response = handle_tick(&app, None).await?;
        assert_eq!(response.failures, Vec::<String>::new(), "{response:?}");
        finished.extend(response.finished);
        if bed.store.list(ACTIVE).await?.is_empty() {
            break;
        }
    }
    // THEN the tick that finished the job reported it, and its summary is written
    assert_eq!(finished, std::slice::from_ref(&job_id));
    let summary_key = format!(
        "{}summary.json",
        manifest_of(&bed, &job_id).await?.results_prefix
    );
    let (summary, _) = bed
        .store
        .get_json::<serde_json::Value>(&summary_key)
        .await?;
    assert_eq!(summary["status"], "completed", "{summary}");
    Ok(())
}

#[tokio::test]
async fn a_tick_without_a_bucket_to_poll_is_a_configuration_error() -> TestResult {
    // GIVEN an app that polls no bucket (BATCHDROP_BUCKET unset)
    let bed = bed();
    let mut app = app(&bed);
    app.bucket = None;
    // WHEN poll handles a tick
    let result = handle_tick(&app, None).await;
    // THEN it fails with a configuration error
    assert!(matches!(result, Err(HandlerError::Config(_))), "{result:?}");
    Ok(())
}

#[tokio::test]
async fn a_record_that_may_pass_fails_the_invocation_for_a_retry_and_names_only_its_key()
-> TestResult {
    // GIVEN two uploads in one event, the second of which cannot be indexed for now
    let bed = bed();
    let faulty = Arc::new(FaultyStore::new(bed.store.clone()));
    let app = app_over(&bed, faulty.clone());
    let mut event = upload_event(&bed).await?;
    let other = "inbox/sandbox/other.jsonl";
    let meta = bed
        .upload(other, std::fs::read(example("requests.jsonl"))?)
        .await?;
    let mut record = event.records[0].clone();
    record.s3.object.key = Some("inbox/sandbox/other.jsonl".into());
    record.s3.object.e_tag = Some(meta.etag.clone());
    event.records.push(record);
    let other_job = layout::job_id(FIXTURE_BUCKET, other, &meta.etag);
    faulty.fail_writes(layout::active_key(&other_job), 1);
    // WHEN submit handles the event
    let result = handle_s3_event(&app, event, None).await;
    // THEN the invocation fails as retryable, naming the failed key only; the first job started
    let Err(HandlerError::Retryable(message)) = result else {
        return Err(format!("expected a retryable error, got {result:?}").into());
    };
    assert!(message.starts_with(&format!("{other}: ")), "{message}");
    assert!(!message.contains(UPLOAD), "{message}");
    assert_eq!(bed.store.list(ACTIVE).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_job_that_cannot_advance_is_reported_by_the_tick_and_the_others_go_on() -> TestResult {
    // GIVEN two jobs, one of whose manifest cannot be written for now
    let bed = bed();
    let faulty = Arc::new(FaultyStore::new(bed.store.clone()));
    let app = app_over(&bed, faulty.clone());
    let stuck = start_job(&bed, &app).await?;
    let other = "inbox/sandbox/other.jsonl";
    let meta = bed
        .upload(other, std::fs::read(example("requests.jsonl"))?)
        .await?;
    let mut event = fixture("s3-put-encoded-key.json")?;
    event.records[0].s3.object.key = Some(other.into());
    event.records[0].s3.object.e_tag = Some(meta.etag);
    let going = only_record(&handle_s3_event(&app, event, None).await?.records)?
        .job_id
        .clone()
        .ok_or("second job not started")?;
    faulty.fail_writes(JobKeys::new(&stuck).manifest(), u32::MAX);
    // WHEN poll handles ticks until the other job is finished
    let mut failures = Vec::new();
    let mut finished = Vec::new();
    for _ in 0..MAX_TICKS {
        let response = handle_tick(&app, None).await?;
        failures.extend(response.failures);
        finished.extend(response.finished);
        if !bed.store.exists(&layout::active_key(&going)).await? {
            break;
        }
    }
    // THEN each tick succeeded, reporting the stuck job as a failure, and the other finished
    assert!(!failures.is_empty());
    assert!(
        failures
            .iter()
            .all(|f| f.starts_with(&format!("{stuck}: "))),
        "{failures:?}"
    );
    assert_eq!(finished, [going]);
    Ok(())
}
