//! Metrics (EMF lines) and completion events of jobs run by the engine with the functions'
//! observer: against a fake publisher over an in-memory bucket, and against EventBridge on a
//! moto server (a rule forwards the event to an SQS queue the test reads).

use async_trait::async_trait;
use batchdrop_core::engine::Engine;
use batchdrop_core::layout::ACTIVE;
use batchdrop_core::store::{ObjectStore, ObjectStoreExt};
use batchdrop_core::testing::{BUCKET, ScriptedProvider, TestBed, usage_of};
use batchdrop_lambda::events::{
    CompletionEvent, Completions, DETAIL_TYPE, EventBridge, EventPublisher, SOURCE,
};
use batchdrop_lambda::metrics::Metrics;
use batchdrop_tests::moto::MotoServer;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

const KEY: &str = "inbox/sandbox/night/reviews.jsonl";
const SECRET_PROMPT: &str = "zebracorn private words";

/// Captures what would go to EventBridge.
#[derive(Default)]
struct FakeBus {
    sent: Mutex<Vec<CompletionEvent>>,
    refuse: bool,
}

#[async_trait]
impl EventPublisher for FakeBus {
    async fn publish(&self, events: &[CompletionEvent]) -> Result<Vec<(usize, String)>, String> {
        if self.refuse {
            return Err("AccessDeniedException: not authorized to perform events:PutEvents".into());
        }
        self.sent.lock().unwrap().extend_from_slice(events);
        Ok(Vec::new())
    }
}

struct Setup {
    bed: TestBed,
    engine: Engine,
    completions: Arc<Completions>,
    lines: Arc<Mutex<Vec<String>>>,
}

fn setup(publisher: Arc<dyn EventPublisher>) -> Setup {
    let bed = TestBed::new(ScriptedProvider::new(), 3);
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    let metrics = Metrics::new(
        "batchdrop",
        bed.clock.clone(),
        Arc::new(move |l: &str| sink.lock().unwrap().push(l.to_string())),
    );
    let completions = Arc::new(Completions::new(
        bed.config.clone(),
        metrics,
        Some(publisher),
    ));
    let engine = Engine::new(
        bed.store.clone(),
        BUCKET,
        bed.config.clone(),
        bed.providers.clone(),
        bed.clock.clone(),
    )
    .with_observer(completions.observer(bed.store.clone()));
    Setup {
        bed,
        engine,
        completions,
        lines,
    }
}

fn chat(id: &str) -> String {
    format!(
        r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{SECRET_PROMPT} {id}"}}]}}}}"#
    )
}

const IDS: [&str; 5] = ["r1", "r2", "r3", "r4", "r5"];

/// Submits five requests and a bad line, then polls to the end, flushing like a handler.
async fn run_job(s: &Setup) -> Result<String, Error> {
    let mut text: String = IDS.iter().map(|id| chat(id) + "\n").collect();
    text.push_str("not json\n");
    let meta = s.bed.upload(KEY, text).await?;
    let job_id = match s.engine.submit(KEY, Some(&meta.etag)).await? {
        batchdrop_core::SubmitOutcome::Started { job_id } => job_id,
        other => return Err(format!("not started: {other:?}").into()),
    };
    s.completions.flush().await;
    for _ in 0..10 {
        s.engine.poll().await?;
        s.completions.flush().await;
        if s.bed.store.list(ACTIVE).await?.is_empty() {
            return Ok(job_id);
        }
    }
    Err("job did not finish".into())
}

fn parsed(lines: &[String]) -> Result<Vec<Value>, Error> {
    Ok(lines
        .iter()
        .map(|l| serde_json::from_str(l))
        .collect::<Result<_, _>>()?)
}

/// Sums of each metric over the lines of `route`.
fn sums(lines: &[Value], route: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for l in lines.iter().filter(|l| l["Route"] == route) {
        for m in l["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = m["Name"].as_str().unwrap_or("").to_string();
            *out.entry(name.clone()).or_default() += l[&name].as_f64().unwrap_or(0.0);
        }
    }
    out
}

#[tokio::test]
async fn every_emf_line_has_the_cloudwatch_shape_and_only_numbers_and_the_route() -> TestResult {
    // GIVEN a job run by an engine with the functions' observer
    let s = setup(Arc::new(FakeBus::default()));
    run_job(&s).await?;
    let lines = s.lines.lock().unwrap().clone();
    assert!(lines.len() >= 6, "{lines:#?}");
    for (raw, line) in lines.iter().zip(parsed(&lines)?) {
        // THEN each line is one JSON object: _aws with an integer millisecond timestamp and
        // one directive in namespace batchdrop, dimension Route …
        assert!(!raw.contains('\n'));
        let aws = &line["_aws"];
        assert_eq!(aws["Timestamp"], 1_767_225_600_000i64, "{raw}");
        let directives = aws["CloudWatchMetrics"].as_array().ok_or("no directives")?;
        assert_eq!(directives.len(), 1);
        assert_eq!(directives[0]["Namespace"], "batchdrop");
        assert_eq!(directives[0]["Dimensions"], serde_json::json!([["Route"]]));
        // … each declared metric has a unit and a number at the top level …
        let declared: Vec<&str> = directives[0]["Metrics"]
            .as_array()
            .ok_or("no metrics")?
            .iter()
            .map(|m| {
                assert!(
                    ["Count", "None"].contains(&m["Unit"].as_str().unwrap_or("")),
                    "{raw}"
                );
                m["Name"].as_str().unwrap_or("")
            })
            .collect();
        for name in &declared {
            assert!(line[*name].is_number(), "{name} in {raw}");
        }
        // … and nothing else: no prompt, no custom_id, no key, no object key
        let obj = line.as_object().ok_or("not an object")?;
        assert_eq!(obj.len(), declared.len() + 2, "{raw}");
        assert_eq!(line["Route"], "sandbox");
        for secret in ["zebracorn", "r1", "inbox/", "night"] {
            assert!(!raw.contains(secret), "{secret} in {raw}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn metrics_add_up_to_the_jobs_counts_tokens_and_cost() -> TestResult {
    // GIVEN five requests (two batches of at most three) and one bad line
    let s = setup(Arc::new(FakeBus::default()));
    let job_id = run_job(&s).await?;
    let summary: Value = serde_json::from_slice(
        &s.bed
            .store
            .get_bytes("results/sandbox/night/reviews/summary.json")
            .await?,
    )?;
    assert_eq!(summary["job_id"], job_id.as_str());
    // WHEN the metrics of the whole run are added up
    let sums = sums(&parsed(&s.lines.lock().unwrap())?, "sandbox");
    // THEN they are the job's counts, tokens and cost
    let (input, output) = IDS.iter().fold((0.0, 0.0), |(i, o), id| {
        let (a, b) = usage_of(id);
        (i + a as f64, o + b as f64)
    });
    let expected: BTreeMap<String, f64> = [
        ("JobsStarted", 1.0),
        ("RequestsAccepted", 5.0),
        ("RequestsRejected", 1.0),
        ("BatchesSubmitted", 2.0),
        ("BatchesCollected", 2.0),
        ("RequestsSucceeded", 5.0),
        ("RequestsFailed", 0.0),
        ("JobsCompleted", 1.0),
        ("InputTokens", input),
        ("OutputTokens", output),
        ("CostUSD", summary["cost"]["batch"].as_f64().unwrap_or(-1.0)),
        (
            "SynchronousEquivalentUSD",
            summary["cost"]["synchronous_equivalent"]
                .as_f64()
                .unwrap_or(-1.0),
        ),
        (
            "SavedUSD",
            summary["cost"]["saved"].as_f64().unwrap_or(-1.0),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(sums, expected);
    // 5 × 10+2 = 60 input tokens, 5 × 5 = 25 output at gpt-4o-mini's batch prices
    assert_eq!((input, output), (60.0, 25.0));
    assert_eq!(summary["cost"]["batch"], 0.0000120);
    Ok(())
}

#[tokio::test]
async fn batches_in_flight_is_a_gauge_per_route() -> TestResult {
    // GIVEN a job whose two batches were submitted and not yet collected
    let s = setup(Arc::new(FakeBus::default()));
    let text: String = IDS.iter().map(|id| chat(id) + "\n").collect();
    let meta = s.bed.upload(KEY, text).await?;
    s.engine.submit(KEY, Some(&meta.etag)).await?;
    s.lines.lock().unwrap().clear();
    // WHEN the gauge is taken
    s.completions.batches_in_flight(s.bed.store.as_ref()).await;
    // THEN every configured route has a line, sandbox with its 2 batches
    let lines = parsed(&s.lines.lock().unwrap())?;
    let gauge: BTreeMap<String, i64> = lines
        .iter()
        .map(|l| {
            (
                l["Route"].as_str().unwrap_or("").to_string(),
                l["BatchesInFlight"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(gauge["sandbox"], 2);
    assert_eq!(gauge["openai"], 0);
    assert_eq!(gauge.len(), s.bed.config.routes.len());
    Ok(())
}

#[tokio::test]
async fn a_finished_job_sends_one_event_whose_detail_is_its_summary() -> TestResult {
    let bus = Arc::new(FakeBus::default());
    let s = setup(bus.clone());
    let job_id = run_job(&s).await?;
    let sent = bus.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].job_id, job_id);
    assert_eq!(sent[0].route, "sandbox");
    assert_eq!(sent[0].time.as_deref(), Some("2026-01-01T00:00:00Z"));
    let detail: Value = serde_json::from_str(&sent[0].detail)?;
    let summary: Value = serde_json::from_slice(
        &s.bed
            .store
            .get_bytes("results/sandbox/night/reviews/summary.json")
            .await?,
    )?;
    assert_eq!(detail, summary);
    Ok(())
}

#[tokio::test]
async fn an_event_the_bus_refuses_is_logged_and_counted_and_the_job_still_finishes() -> TestResult {
    let s = setup(Arc::new(FakeBus {
        refuse: true,
        ..FakeBus::default()
    }));
    run_job(&s).await?;
    assert!(
        s.bed
            .store
            .exists("results/sandbox/night/reviews/summary.json")
            .await?
    );
    let sums = sums(&parsed(&s.lines.lock().unwrap())?, "sandbox");
    assert_eq!(sums.get("CompletionEventsFailed"), Some(&1.0));
    Ok(())
}

/// A bodiless-auth JSON call to moto's SQS.
async fn sqs(
    http: &reqwest::Client,
    endpoint: &str,
    action: &str,
    body: Value,
) -> Result<Value, Error> {
    let res = http
        .post(endpoint)
        .header("X-Amz-Target", format!("AmazonSQS.{action}"))
        .header("Content-Type", "application/x-amz-json-1.0")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await?;
    let status = res.status();
    let text = res.text().await?;
    if !status.is_success() {
        return Err(format!("SQS {action}: {status} {text}").into());
    }
    Ok(if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)?
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn eventbridge_on_moto_delivers_the_event_to_a_rule_matching_source_and_detail_type()
-> TestResult {
    // GIVEN a bus with a rule on source batchdrop / detail-type "Batch Job Finished" that
    // forwards to an SQS queue
    let moto = MotoServer::try_start()?;
    let conf = aws_sdk_eventbridge::Config::builder()
        .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
        .region(aws_sdk_eventbridge::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_eventbridge::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .endpoint_url(moto.endpoint())
        .build();
    let client = aws_sdk_eventbridge::Client::from_conf(conf);
    client.create_event_bus().name("batch-jobs").send().await?;
    let http = reqwest::Client::new();
    let queue = sqs(
        &http,
        moto.endpoint(),
        "CreateQueue",
        serde_json::json!({"QueueName": "finished"}),
    )
    .await?;
    let queue_url = queue["QueueUrl"]
        .as_str()
        .ok_or("no queue url")?
        .to_string();
    let attrs = sqs(
        &http,
        moto.endpoint(),
        "GetQueueAttributes",
        serde_json::json!({"QueueUrl": queue_url, "AttributeNames": ["QueueArn"]}),
    )
    .await?;
    let queue_arn = attrs["Attributes"]["QueueArn"].as_str().ok_or("no arn")?;
    client
        .put_rule()
        .name("batchdrop-finished")
        .event_bus_name("batch-jobs")
        .event_pattern(
            serde_json::json!({"source": [SOURCE], "detail-type": [DETAIL_TYPE], "detail": {"status": ["completed"]}})
                .to_string(),
        )
        .send()
        .await?;
    client
        .put_targets()
        .rule("batchdrop-finished")
        .event_bus_name("batch-jobs")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()?,
        )
        .send()
        .await?;

    // WHEN a job finishes with the EventBridge publisher on that bus
    let s = setup(Arc::new(EventBridge::new(client, "batch-jobs")));
    let job_id = run_job(&s).await?;

    // THEN the queue gets the event, its detail the job's summary
    let got = sqs(
        &http,
        moto.endpoint(),
        "ReceiveMessage",
        serde_json::json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 2}),
    )
    .await?;
    let messages = got["Messages"]
        .as_array()
        .ok_or_else(|| format!("no message: {got}"))?;
    assert_eq!(messages.len(), 1, "{got}");
    let event: Value = serde_json::from_str(messages[0]["Body"].as_str().ok_or("no body")?)?;
    assert_eq!(event["source"], "batchdrop");
    assert_eq!(event["detail-type"], "Batch Job Finished");
    assert_eq!(event["detail"]["job_id"], job_id.as_str());
    let summary: Value = serde_json::from_slice(
        &s.bed
            .store
            .get_bytes("results/sandbox/night/reviews/summary.json")
            .await?,
    )?;
    assert_eq!(event["detail"], summary);
    // AND no completion event failed
    let sums = sums(&parsed(&s.lines.lock().unwrap())?, "sandbox");
    assert_eq!(sums.get("CompletionEventsFailed"), None);
    Ok(())
}
