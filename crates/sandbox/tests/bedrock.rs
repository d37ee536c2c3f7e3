//! The sandbox's Bedrock side over real HTTP, with a directory as the bucket: the job walk on
//! a manual clock, idempotent creates, validation failures, output naming, order and manifest,
//! stop, listings, InvokeModel, quotas and faults.

use std::sync::Arc;
use std::time::Duration;

use batchdrop_sandbox::{
    BedrockConfig, BedrockObjects, Faults, MAX_BEDROCK_RECORDS, MODEL_NOT_FOUND, ManualClock, Rate,
    Sandbox, SandboxConfig,
};
use serde_json::{Value, json};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T = ()> = std::result::Result<T, Error>;

/// Where manual clocks start: 2023-11-14T22:13:20Z.
const T0: u64 = 1_700_000_000;
const STEP: Duration = Duration::from_secs(10);
const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const ROLE: &str = "arn:aws:iam::123456789012:role/BedrockBatch";
const SIGV4: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-west-2/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000";

/// A sandbox on a manual clock with a temporary directory as its bucket.
struct Bedrock {
    sandbox: Sandbox,
    clock: Arc<ManualClock>,
    bucket: tempfile::TempDir,
    client: reqwest::Client,
    base: String,
}

async fn start(step: Duration, adjust: impl FnOnce(&mut SandboxConfig)) -> Result<Bedrock> {
    let bucket = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::at_unix(T0));
    let mut config = SandboxConfig {
        step,
        bedrock: BedrockConfig {
            objects: Some(BedrockObjects::Directory(bucket.path().to_owned())),
            ..BedrockConfig::default()
        },
        ..SandboxConfig::default()
    };
    adjust(&mut config);
    let sandbox =
        Sandbox::start_with_clock(([127, 0, 0, 1], 0).into(), config, clock.clone()).await?;
    let base = sandbox.anthropic_base_url();
    Ok(Bedrock {
        sandbox,
        clock,
        bucket,
        client: reqwest::Client::builder().no_proxy().build()?,
        base,
    })
}

/// A Claude record.
fn record(index: usize) -> Value {
    json!({
        "recordId": format!("rec-{index:04}"),
        "modelInput": {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": format!("What is {index} plus {index}?")}],
        },
    })
}

fn jsonl(records: impl IntoIterator<Item = Value>) -> String {
    records.into_iter().map(|r| format!("{r}\n")).collect()
}

impl Bedrock {
    fn write(&self, key: &str, content: &str) -> Result {
        let path = self.bucket.path().join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, content)?;
        Ok(())
    }

    fn read(&self, key: &str) -> Result<String> {
        let path = self.bucket.path().join(key);
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()).into())
    }

    fn lines(&self, key: &str) -> Result<Vec<Value>> {
        self.read(key)?
            .lines()
            .map(|line| serde_json::from_str(line).map_err(Error::from))
            .collect()
    }

    /// Sends a signed-looking request; returns status, `x-amzn-ErrorType` and JSON body.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, String, Value)> {
        let response = request.header("authorization", SIGV4).send().await?;
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.json().await?;
        Ok((status, kind, body))
    }

    async fn post(&self, path: &str, body: &Value) -> Result<(u16, String, Value)> {
        self.send(self.client.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    async fn get(&self, path: &str) -> Result<(u16, String, Value)> {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    async fn create_raw(&self, body: Value) -> Result<(u16, String, Value)> {
        self.post("/model-invocation-job", &body).await
    }

    /// Creates a job over `input` (a key) writing under `out/`; returns its ARN.
    async fn create(&self, name: &str, input: &str, token: Option<&str>) -> Result<String> {
        let mut body = create_body(name, input);
        if let Some(token) = token {
            body["clientRequestToken"] = json!(token);
        }
        let (status, kind, body) = self.create_raw(body).await?;
        if status != 200 {
            return Err(format!("create answered {status} {kind}: {body}").into());
        }
        Ok(body["jobArn"].as_str().ok_or("no jobArn")?.to_owned())
    }

    async fn job(&self, arn: &str) -> Result<Value> {
        let (status, kind, body) = self
            .get(&format!("/model-invocation-job/{}", encode(arn)))
            .await?;
        if status != 200 {
            return Err(format!("get answered {status} {kind}: {body}").into());
        }
        Ok(body)
    }

    async fn list(&self, query: &str) -> Result<Value> {
        let (status, kind, body) = self.get(&format!("/model-invocation-jobs?{query}")).await?;
        if status != 200 {
            return Err(format!("list answered {status} {kind}: {body}").into());
        }
        Ok(body)
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

fn create_body(name: &str, input: &str) -> Value {
    json!({
        "jobName": name,
        "roleArn": ROLE,
        "modelId": MODEL,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": format!("s3://bucket/{input}")}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://bucket/out/"}},
    })
}

/// Percent-encodes an ARN as a path segment, as botocore does.
fn encode(arn: &str) -> String {
    arn.replace(':', "%3A").replace('/', "%2F")
}

fn job_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|line| line["recordId"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_job_walks_submitted_validating_scheduled_in_progress_completed() -> Result {
    // GIVEN 120 records and a 10-second step
    let bedrock = start(STEP, |_| {}).await?;
    bedrock.write("in/input.jsonl", &jsonl((0..120).map(record)))?;
    let arn = bedrock.create("walk", "in/input.jsonl", None).await?;
    assert!(
        arn.starts_with("arn:aws:bedrock:us-west-2:123456789012:model-invocation-job/")
            && job_id(&arn).len() == 12,
        "{arn}"
    );
    // WHEN the clock moves THEN the job walks the statuses, by ARN or by id
    let status = |job: &Value| job["status"].as_str().unwrap_or_default().to_owned();
    assert_eq!(status(&bedrock.job(&arn).await?), "Submitted");
    bedrock.advance(STEP);
    assert_eq!(status(&bedrock.job(job_id(&arn)).await?), "Validating");
    bedrock.advance(STEP);
    let scheduled = bedrock.job(&arn).await?;
    assert_eq!(status(&scheduled), "Scheduled");
    assert_eq!(scheduled["totalRecordCount"], 120);
    bedrock.advance(STEP + STEP / 2);
    let running = bedrock.job(&arn).await?;
    assert_eq!(status(&running), "InProgress");
    assert_eq!(running["processedRecordCount"], 60);
    bedrock.advance(STEP / 2);
    let done = bedrock.job(&arn).await?;
    assert_eq!(status(&done), "Completed");
    assert_eq!(done["successRecordCount"], 120);
    assert_eq!(done["endTime"], "2023-11-14T22:14:00Z");
    assert_eq!(done["submitTime"], "2023-11-14T22:13:20Z");
    assert_eq!(done["jobName"], "walk");
    assert_eq!(done["modelId"], MODEL);
    bedrock.sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_same_client_request_token_makes_no_second_job() -> Result {
    // GIVEN a job created with a token
    let bedrock = start(Duration::ZERO, |_| {}).await?;
    bedrock.write("in/input.jsonl", &jsonl((0..100).map(record)))?;
    let first = bedrock
        .create("once", "in/input.jsonl", Some("token-1"))
        .await?;
    let before = bedrock.list("").await?["invocationJobSummaries"]
        .as_array()
        .map(Vec::len);
    // WHEN the same create comes again with the same token
    let second = bedrock
        .create("once", "in/input.jsonl", Some("token-1"))
        .await?;
    // THEN it names the same job and there is still one
    assert_eq!(first, second);
    let after = bedrock.list("").await?["invocationJobSummaries"]
        .as_array()
        .map(Vec::len);
    assert_eq!((before, after), (Some(1), Some(1)));
    assert_eq!(bedrock.sandbox.stats().bedrock_jobs_created, 1);
    bedrock.sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn fewer_records_than_the_minimum_fail_the_job_at_validation() -> Result {
    // GIVEN 40 records
    let bedrock = start(STEP, |_| {}).await?;
    bedrock.write("in/small.jsonl", &jsonl((0..40).map(record)))?;
    let arn = bedrock.create("small", "in/small.jsonl", None).await?;
    // WHEN validation is over
    bedrock.advance(STEP * 2);
    let job = bedrock.job(&arn).await?;
    // THEN the job failed with both numbers, and nothing was written
    assert_eq!(job["status"], "Failed");
    assert_eq!(
        job["message"],
        format!("Batch job {arn} contains less records (40) than the required minimum of: 100")
    );
    assert!(!bedrock.bucket.path().join("out").exists());
    bedrock.sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn more_records_than_the_maximum_fail_the_job_at_validation() -> Result {
    // GIVEN one record more than Bedrock's 50,000
    let bedrock = start(Duration::ZERO, |_| {}).await?;
    let line = "{\"modelInput\":{\"inputText\":\"x\"}}\n";
    bedrock.write("in/big.jsonl", &line.repeat(MAX_BEDROCK_RECORDS + 1))?;
    let arn = bedrock.create("big", "in/big.jsonl", None).await?;
    // WHEN it is read THEN the job failed naming both numbers
    let job = bedrock.job(&arn).await?;
    assert_eq!(job["status"], "Failed");
    assert_eq!(
        job["message"],
        format!("Batch job {arn} contains more records (50001) than the allowed maximum of: 50000")
    );
    bedrock.sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_malformed_line_fails_the_job_naming_the_line() -> Result {
    let bedrock = start(Duration::ZERO, |_| {}).await?;
    let mut content = jsonl((0..120).map(record));
    content.push_str("{\"recordId\": \"broken\"\n");
    bedrock.write("in/input.jsonl", &content)?;
    let arn = bedrock.create("broken", "in/input.jsonl", None).await?;
    let job = bedrock.job(&arn).await?;
    assert_eq!(job["status"], "Failed");
    let message = job["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Invalid JSONL in input file s3://bucket/in/input.jsonl, line 121"),
        "{message}"
    );
    bedrock.sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn output_is_named_after_each_input_file_and_shuffled() -> Result {
    // GIVEN a folder of two files, one record without an id
    let bedrock = start(Duration::ZERO, |_| {}).await?;
    bedrock.write("in/chunk-3.jsonl", &jsonl((0..100).map(record)))?;
    let mut second: Vec<Value> = (100..150).map(record).collect();
    second[0].as_object_mut().map(|r| r.remove("recordId"));
    bedrock.write("in/chunk-4.jsonl", &jsonl(second))?;
    bedrock.write("in/notes.txt", "not an input")?;
    let arn = bedrock.create("folder", "in/", None).await?;
    // WHEN it has completed
    assert_eq!(bedrock.job(&arn).await?["status"], "Completed");
    // THEN each input file has its .out, every record once, in a shuffled order
    let id = job_id(&arn);
    let first = bedrock.lines(&format!("out/{id}/chunk-3.jsonl.out"))?;
    let expected: Vec<String> = (0..100).map(|i| format!("rec-{i:04}")).collect();
    let got = ids(&first);
    assert_ne!(got, expected, "output kept the input order");
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    assert!(
        first
            .iter()
            .all(|line| line["modelOutput"]["type"] == "message")
    );
    assert_eq!(
        first[0]["modelInput"]["anthropic_version"],
        "bedrock-2023-05-31"
    );
    let second = bedrock.lines(&format!("out/{id}/chunk-4.jsonl.out"))?;
    assert_eq!(second.len(), 50);
    assert!(
        ids(&second).contains(&"RECORD0000000101".to_owned()),
        "{:?}",
        ids(&second)
    );
    assert!(
        !bedrock
            .bucket
            .path()
            .join(format!("out/{id}/notes.txt.out"))
            .exists()
    );
    bedrock.sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_manifest_counts_records_and_tokens() -> Result {
    // GIVEN 100 good records and one the model cannot read
    let bedrock = start(Duration::ZERO, |_| {}).await?;
    let mut records: Vec<Value> = (0..100).map(record).collect();
    records.push(json!({"recordId": "bad", "modelInput": {"prompt": "hello"}}));
    bedrock.write("in/input.jsonl", &jsonl(records))?;
    let arn = bedrock.create("manifest", "in/input.jsonl", None).await?;
    let job = bedrock.job(&arn).await?;
    // THEN the job completed, the bad record has a 400 and the manifest adds up
    assert_eq!(job["status"], "Completed");
    let id = job_id(&arn);
    let lines = bedrock.lines(&format!("out/{id}/input.jsonl.out"))?;
    let bad = lines
        .iter()
        .find(|l| l["recordId"] == "bad")
        .ok_or("no bad line")?;
    assert_eq!(bad["error"]["errorCode"], 400);
    assert!(
        bad["error"]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.starts_with("Malformed input request")),
        "{bad}"
    );
    let manifest: Value =
        serde_json::from_str(&bedrock.read(&format!("out/{id}/manifest.json.out"))?)?;
    assert_eq!(manifest["totalRecordCount"], 101);
    assert_eq!(manifest["processedRecordCount"], 101);
    assert_eq!(manifest["successRecordCount"], 100);
    assert_eq!(manifest["errorRecordCount"], 1);
    let input_tokens: u64 = lines
        .iter()
        .filter_map(|l| l["modelOutput"]["usage"]["input_tokens"].as_u64())
        .sum();
    let output_tokens: u64 = lines
        .iter()
        .filter_map(|l| l["modelOutput"]["usage"]["output_tokens"].as_u64())
        .sum();
    assert_eq!(manifest["inputTokenCount"], input_tokens);
    assert_eq!(manifest["outputTokenCount"], output_tokens);
    assert_eq!(
        (
            job["successRecordCount"].clone(),
            job["errorRecordCount"].clone()
        ),
        (json!(100), json!(1))
    );
    bedrock.sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_stopped_job_outputs_only_what_it_processed() -> Result {
    // GIVEN a job a quarter of the way through processing
    let bedrock = start(STEP, |_| {}).await?;
    bedrock.write("in/input.jsonl", &jsonl((0..200).map(record)))?;
    let arn = bedrock.create("stopped", "in/input.jsonl", None).await?;
    bedrock.advance(STEP * 3 + STEP / 4);
    // WHEN it is stopped
    let (status, _, body) = bedrock
        .post(
            &format!("/model-invocation-job/{}/stop", encode(&arn)),
            &json!({}),
        )
        .await?;
    assert_eq!((status, body), (200, json!({})));
    // THEN it is Stopping for a step, then Stopped with 50 records in its output
    assert_eq!(bedrock.job(&arn).await?["status"], "Stopping");
    bedrock.advance(STEP);
    let job = bedrock.job(&arn).await?;
    assert_eq!(job["status"], "Stopped");
    let id = job_id(&arn);
    assert_eq!(
        bedrock.lines(&format!("out/{id}/input.jsonl.out"))?.len(),
        50
    );
    let manifest: Value =
        serde_json::from_str(&bedrock.read(&format!("out/{id}/manifest.json.out"))?)?;
    assert_eq!(
        (
            manifest["totalRecordCount"].clone(),
            manifest["processedRecordCount"].clone()
        ),
        (json!(200), json!(50))
    );
    // AND an ended job cannot be stopped again
    let (status, kind, _) = bedrock
        .post(&format!("/model-invocation-job/{id}/stop"), &json!({}))
        .await?;
    assert_eq!((status, kind.as_str()), (400, "ValidationException"));
    bedrock.sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn listings_filter_sort_and_page_as_botocore_asks() -> Result {
    // GIVEN three jobs ten seconds apart, the first one failed
    let bedrock = start(Duration::ZERO, |_| {}).await?;
    bedrock.write("in/small.jsonl", &jsonl((0..5).map(record)))?;
    bedrock.write("in/input.jsonl", &jsonl((0..100).map(record)))?;
    let failed = bedrock
        .create("alpha-small", "in/small.jsonl", None)
        .await?;
    bedrock.advance(STEP);
    let beta = bedrock.create("beta-one", "in/input.jsonl", None).await?;
    bedrock.advance(STEP);
    let gamma = bedrock.create("gamma-one", "in/input.jsonl", None).await?;
    let names = |list: &Value| -> Vec<String> {
        list["invocationJobSummaries"]
            .as_array()
            .map(|jobs| {
                jobs.iter()
                    .filter_map(|j| j["jobName"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let listed = bedrock.list("").await?;
    let first = &listed["invocationJobSummaries"][0];
    assert_eq!(
        (first["jobArn"].as_str(), first["status"].as_str()),
        (Some(gamma.as_str()), Some("Completed"))
    );
    assert_eq!(
        listed["invocationJobSummaries"][2]["jobArn"].as_str(),
        Some(failed.as_str())
    );
    assert_eq!(
        listed["invocationJobSummaries"][1]["jobArn"].as_str(),
        Some(beta.as_str())
    );
    // THEN newest first by default, and each filter narrows
    assert_eq!(names(&listed), ["gamma-one", "beta-one", "alpha-small"]);
    let ascending = bedrock
        .list("sortBy=CreationTime&sortOrder=Ascending")
        .await?;
    assert_eq!(names(&ascending), ["alpha-small", "beta-one", "gamma-one"]);
    let failed = bedrock.list("statusEquals=Failed").await?;
    assert_eq!(names(&failed), ["alpha-small"]);
    let named = bedrock.list("nameContains=-one").await?;
    assert_eq!(names(&named), ["gamma-one", "beta-one"]);
    let between = bedrock
        .list("submitTimeAfter=2023-11-14T22%3A13%3A25Z&submitTimeBefore=2023-11-14T22%3A13%3A35Z")
        .await?;
    assert_eq!(names(&between), ["beta-one"]);
    let page = bedrock.list("maxResults=2").await?;
    assert_eq!(names(&page), ["gamma-one", "beta-one"]);
    let token = page["nextToken"].as_str().ok_or("no nextToken")?;
    let rest = bedrock
        .list(&format!("maxResults=2&nextToken={token}"))
        .await?;
    assert_eq!(names(&rest), ["alpha-small"]);
    assert!(rest.get("nextToken").is_none());
    let (status, kind, _) = bedrock
        .get("/model-invocation-jobs?statusEquals=Done")
        .await?;
    assert_eq!((status, kind.as_str()), (400, "ValidationException"));
    bedrock.sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn invoke_model_answers_as_a_batch_record_is_answered() -> Result {
    // GIVEN a completed job
    let bedrock = start(Duration::ZERO, |_| {}).await?;
    bedrock.write("in/input.jsonl", &jsonl((0..100).map(record)))?;
    let arn = bedrock.create("same", "in/input.jsonl", None).await?;
    bedrock.job(&arn).await?;
    let lines = bedrock.lines(&format!("out/{}/input.jsonl.out", job_id(&arn)))?;
    let batch = lines
        .iter()
        .find(|l| l["recordId"] == "rec-0007")
        .ok_or("no rec-0007")?;
    // WHEN the same body is sent to InvokeModel
    let (status, _, answer) = bedrock
        .post(
            &format!("/model/{}/invoke", MODEL.replace(':', "%3A")),
            &record(7)["modelInput"],
        )
        .await?;
    // THEN the answer is the record's modelOutput
    assert_eq!(status, 200);
    assert_eq!(answer, batch["modelOutput"]);
    assert_eq!(answer["model"], MODEL);
    assert_eq!(bedrock.sandbox.stats().bedrock_invocations, 1);
    // AND a Nova body, a Titan body and an unknown body get theirs
    let (_, _, nova) = bedrock
        .post("/model/amazon.nova-lite-v1%3A0/invoke", &json!({"schemaVersion": "messages-v1", "messages": [{"role": "user", "content": [{"text": "hi"}]}]}))
        .await?;
    assert_eq!(nova["output"]["message"]["role"], "assistant");
    let (_, _, titan) = bedrock
        .post(
            "/model/amazon.titan-embed-text-v2%3A0/invoke",
            &json!({"inputText": "hi"}),
        )
        .await?;
    assert_eq!(titan["embedding"].as_array().map(Vec::len), Some(8));
    let (status, kind, body) = bedrock
        .post("/model/x/invoke", &json!({"prompt": "hi"}))
        .await?;
    assert_eq!((status, kind.as_str()), (400, "ValidationException"));
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Malformed input request"))
    );
    let (status, kind, body) = bedrock
        .post(
            &format!("/model/{MODEL_NOT_FOUND}/invoke"),
            &record(1)["modelInput"],
        )
        .await?;
    assert_eq!((status, kind.as_str()), (400, "ValidationException"));
    assert_eq!(body["message"], "The provided model identifier is invalid.");
    bedrock.sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_request_without_authorization_is_refused() -> Result {
    let bedrock = start(Duration::ZERO, |_| {}).await?;
    let response = bedrock
        .client
        .get(format!("{}/model-invocation-jobs", bedrock.base))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(
        response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok()),
        Some("MissingAuthenticationTokenException")
    );
    bedrock.sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn create_refuses_bad_members_unknown_models_and_a_sandbox_without_a_bucket() -> Result {
    let bedrock = start(Duration::ZERO, |_| {}).await?;
    let mut bad_name = create_body("-bad", "in/input.jsonl");
    let (status, kind, body) = bedrock.create_raw(bad_name.take()).await?;
    assert_eq!((status, kind.as_str()), (400, "ValidationException"));
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("at 'jobName' failed to satisfy constraint")),
        "{body}"
    );
    let mut unknown = create_body("unknown", "in/input.jsonl");
    unknown["modelId"] = json!(MODEL_NOT_FOUND);
    let (status, kind, _) = bedrock.create_raw(unknown).await?;
    assert_eq!((status, kind.as_str()), (400, "ValidationException"));
    bedrock.sandbox.stop().await;

    let bare = Sandbox::start(([127, 0, 0, 1], 0).into(), SandboxConfig::default()).await?;
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .post(format!(
            "{}/model-invocation-job",
            bare.anthropic_base_url()
        ))
        .header("authorization", SIGV4)
        .json(&create_body("nowhere", "in/input.jsonl"))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await?;
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("--root") && m.contains("--s3-endpoint")),
        "{body}"
    );
    bare.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_model_over_its_job_quota_is_refused() -> Result {
    // GIVEN a quota of two jobs per model, both taken
    let bedrock = start(STEP, |config| config.bedrock.max_jobs_per_model = 2).await?;
    bedrock.write("in/input.jsonl", &jsonl((0..100).map(record)))?;
    bedrock.create("one", "in/input.jsonl", None).await?;
    bedrock.create("two", "in/input.jsonl", None).await?;
    // WHEN a third comes THEN it is refused with ServiceQuotaExceededException
    let (status, kind, _) = bedrock
        .create_raw(create_body("three", "in/input.jsonl"))
        .await?;
    assert_eq!(
        (status, kind.as_str()),
        (400, "ServiceQuotaExceededException")
    );
    // AND once they have ended there is room again
    bedrock.advance(STEP * 4);
    bedrock.create("four", "in/input.jsonl", None).await?;
    bedrock.sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn throttling_refuses_control_plane_calls_with_429() -> Result {
    let bedrock = start(Duration::ZERO, |config| {
        config.faults = Faults::default().throttle(Rate::ALWAYS);
    })
    .await?;
    let (status, kind, body) = bedrock.get("/model-invocation-jobs").await?;
    assert_eq!((status, kind.as_str()), (429, "ThrottlingException"));
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("sandbox fault injection"))
    );
    assert_eq!(bedrock.sandbox.stats().faults.throttle, 1);
    bedrock.sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_partial_fault_ends_partially_completed_with_429_and_500_records() -> Result {
    let bedrock = start(Duration::ZERO, |config| {
        config.faults = Faults::seeded(3).partial(Rate::ALWAYS).partial_errors(0.2);
    })
    .await?;
    bedrock.write("in/input.jsonl", &jsonl((0..200).map(record)))?;
    let arn = bedrock.create("partial", "in/input.jsonl", None).await?;
    let job = bedrock.job(&arn).await?;
    assert_eq!(job["status"], "PartiallyCompleted");
    let lines = bedrock.lines(&format!("out/{}/input.jsonl.out", job_id(&arn)))?;
    let codes: Vec<u64> = lines
        .iter()
        .filter_map(|l| l["error"]["errorCode"].as_u64())
        .collect();
    assert!(codes.contains(&429) && codes.contains(&500), "{codes:?}");
    assert!((20..=60).contains(&codes.len()), "{} errors", codes.len());
    assert_eq!(job["errorRecordCount"], codes.len());
    bedrock.sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_expire_fault_ends_expired_with_part_of_the_records() -> Result {
    let bedrock = start(Duration::ZERO, |config| {
        config.faults = Faults::default().expire(Rate::ALWAYS).expire_keep(0.3);
    })
    .await?;
    bedrock.write("in/input.jsonl", &jsonl((0..100).map(record)))?;
    let arn = bedrock.create("expiring", "in/input.jsonl", None).await?;
    let job = bedrock.job(&arn).await?;
    assert_eq!(job["status"], "Expired");
    assert_eq!(job["processedRecordCount"], 30);
    assert_eq!(
        bedrock
            .lines(&format!("out/{}/input.jsonl.out", job_id(&arn)))?
            .len(),
        30
    );
    bedrock.sandbox.stop().await;
    Ok(())
}

#[tokio::test]
async fn request_faults_put_record_errors_in_the_output() -> Result {
    let bedrock = start(Duration::ZERO, |config| {
        config.faults = Faults::default().request_error(400, Rate::every(10));
    })
    .await?;
    bedrock.write("in/input.jsonl", &jsonl((0..100).map(record)))?;
    let arn = bedrock.create("errors", "in/input.jsonl", None).await?;
    let job = bedrock.job(&arn).await?;
    // Client errors leave the job Completed.
    assert_eq!(job["status"], "Completed");
    assert_eq!(job["errorRecordCount"], 10);
    let lines = bedrock.lines(&format!("out/{}/input.jsonl.out", job_id(&arn)))?;
    let failed: Vec<&Value> = lines.iter().filter(|l| l.get("error").is_some()).collect();
    assert_eq!(failed.len(), 10);
    assert!(failed.iter().all(|l| l["error"]["errorCode"] == 400));
    bedrock.sandbox.stop().await;
    Ok(())
}

#[test]
fn bedrock_fault_keys_parse_and_print_back() -> Result {
    let faults = Faults::parse("throttle=0.1,partial=every:2,partial_errors=0.3")?;
    assert_eq!(faults.throttle, Rate::Share(0.1));
    assert_eq!(faults.partial, Rate::every(2));
    assert_eq!(Faults::parse(&faults.to_string())?, faults);
    assert!(Faults::parse("partial_errors=2").is_err());
    Ok(())
}
