//! The poll function's other events, over an in-memory bucket with the fixtures of `events/`:
//! an OpenAI webhook through its function URL advances the job of its batch; a Bedrock job's
//! state change advances only the job of that job ARN; a schedule tick is still a tick.

use batchdrop_core::batch_index::{self, BatchOwner};
use batchdrop_core::layout::JobKeys;
use batchdrop_core::manifest::{JobStatus, Manifest};
use batchdrop_core::push::InboundSecrets;
use batchdrop_core::store::{ObjectStore, ObjectStoreExt};
use batchdrop_core::testing::{ScriptedProvider, TestBed};
use batchdrop_core::webhooks::WebhookSecret;
use batchdrop_lambda::App;
use batchdrop_lambda::events::Completions;
use batchdrop_lambda::metrics::Metrics;
use batchdrop_lambda::push::{
    FunctionUrlRequest, PollEvent, handle_bedrock_state_change, handle_webhook,
};
use batchdrop_tests::fixtures::event;
use serde_json::Value;
use std::sync::Arc;

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const BEDROCK_ARN: &str =
    "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdefghij12";

fn app(bed: &TestBed) -> Result<App, Error> {
    let metrics = Metrics::new("batchdrop", bed.clock.clone(), Arc::new(|_: &str| {}));
    let completions = Arc::new(Completions::new(bed.config.clone(), metrics, None));
    let store: Arc<dyn ObjectStore> = bed.store.clone();
    Ok(App::new(
        Arc::new(move |_: &str| store.clone()),
        bed.config.clone(),
        bed.providers.clone(),
        bed.clock.clone(),
        completions,
    )
    .polling("bucket")
    .with_webhook_secrets(InboundSecrets::from_secrets([(
        "sandbox".to_string(),
        WebhookSecret::parse(SECRET)?,
    )])))
}

fn fixture(name: &str) -> Result<Value, Error> {
    Ok(serde_json::from_slice(&std::fs::read(event(name))?)?)
}

/// Starts a job on `key` (its batch submitted, not yet looked at); its id.
async fn job(bed: &TestBed, key: &str) -> Result<String, Error> {
    let line = r#"{"custom_id":"a","prompt":"hello"}"#;
    let meta = bed.upload(key, format!("{line}\n")).await?;
    bed.engine.submit(key, Some(&meta.etag)).await?;
    Ok(batchdrop_core::layout::job_id(
        batchdrop_core::testing::BUCKET,
        key,
        &meta.etag,
    ))
}

async fn manifest(bed: &TestBed, job_id: &str) -> Result<(Manifest, String), Error> {
    Ok(bed
        .store
        .get_json::<Manifest>(&JobKeys::new(job_id).manifest())
        .await?)
}

#[tokio::test]
async fn an_openai_webhook_through_the_function_url_finishes_the_job_of_its_batch() -> TestResult {
    // GIVEN a job whose batch `batch_1` has ended at the provider, and the fixture webhook for
    // it, signed with the route's secret at the time of the call
    let bed = TestBed::new(ScriptedProvider::new(), 10);
    let app = app(&bed)?;
    let job_id = job(&bed, "inbox/sandbox/hooked.jsonl").await?;
    let mut payload = fixture("function-url-openai-webhook.json")?;
    let body = payload["body"].as_str().ok_or("no body")?.to_string();
    let id = payload["headers"]["webhook-id"]
        .as_str()
        .ok_or("no id")?
        .to_string();
    let stamp: i64 = payload["headers"]["webhook-timestamp"]
        .as_str()
        .ok_or("no timestamp")?
        .parse()?;
    payload["headers"]["webhook-signature"] =
        Value::from(WebhookSecret::parse(SECRET)?.sign(&id, stamp, body.as_bytes()));
    let PollEvent::Http(request) = PollEvent::of(payload) else {
        return Err("the function URL request was not recognised".into());
    };

    // WHEN the poll function handles it
    let response = handle_webhook(&app, request, None).await?;

    // THEN it answers 200 and the job is finished
    assert_eq!(response.status_code, 200, "{}", response.body);
    assert_eq!(
        manifest(&bed, &job_id).await?.0.status,
        JobStatus::Completed
    );
    Ok(())
}

#[tokio::test]
async fn a_forged_webhook_through_the_function_url_is_refused_with_401() -> TestResult {
    let bed = TestBed::new(ScriptedProvider::new(), 10);
    let app = app(&bed)?;
    let job_id = job(&bed, "inbox/sandbox/hooked.jsonl").await?;
    let before = manifest(&bed, &job_id).await?.1;
    let request: FunctionUrlRequest =
        serde_json::from_value(fixture("function-url-openai-webhook.json")?)?;

    let response = handle_webhook(&app, request, None).await?;

    assert_eq!(response.status_code, 401, "{}", response.body);
    assert_eq!(manifest(&bed, &job_id).await?.1, before);
    Ok(())
}

#[tokio::test]
async fn a_bedrock_state_change_advances_only_the_job_of_its_job_arn() -> TestResult {
    // GIVEN two jobs in flight, the first one's batch indexed as the fixture's Bedrock job
    let bed = TestBed::new(ScriptedProvider::new(), 10);
    let app = app(&bed)?;
    let first = job(&bed, "inbox/sandbox/first.jsonl").await?;
    let second = job(&bed, "inbox/sandbox/second.jsonl").await?;
    let owner = BatchOwner {
        job_id: first.clone(),
        route: "sandbox".into(),
        chunk: 0,
    };
    batch_index::record(bed.store.as_ref(), "bedrock", BEDROCK_ARN, &owner).await?;
    // (the scripted provider knows the first job's batch as batch_1)
    let second_before = manifest(&bed, &second).await?.1;
    let PollEvent::BedrockStateChange { job_arn, status } =
        PollEvent::of(fixture("bedrock-state-change.json")?)
    else {
        return Err("the state change was not recognised".into());
    };
    assert_eq!(
        (job_arn.as_str(), status.as_str()),
        (BEDROCK_ARN, "Completed")
    );

    // WHEN the poll function handles it
    let response = handle_bedrock_state_change(&app, job_arn, status, None).await?;

    // THEN the first job is advanced (finished) and the second is untouched
    assert_eq!(response.job_id.as_deref(), Some(first.as_str()));
    assert_eq!(manifest(&bed, &first).await?.0.status, JobStatus::Completed);
    assert_eq!(manifest(&bed, &second).await?.1, second_before);
    Ok(())
}

#[tokio::test]
async fn a_state_change_of_a_job_batchdrop_did_not_submit_does_nothing() -> TestResult {
    let bed = TestBed::new(ScriptedProvider::new(), 10);
    let app = app(&bed)?;
    let response =
        handle_bedrock_state_change(&app, BEDROCK_ARN.into(), "Completed".into(), None).await?;
    assert_eq!(response.job_id, None);
    Ok(())
}

#[test]
fn the_scheduled_tick_is_still_a_tick() -> TestResult {
    assert!(matches!(
        PollEvent::of(fixture("scheduled.json")?),
        PollEvent::Tick
    ));
    Ok(())
}
