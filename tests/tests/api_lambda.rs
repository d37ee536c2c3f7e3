//! The API function under the real Lambda runtime loop: `cargo lambda watch` serves
//! `functions/api` on its function-URL path (`/lambda-url/api/…`, the HTTP API v2 event a real
//! function URL sends) and `functions/poll`, over a moto S3 bucket and the sandbox provider
//! (in-process, instant batches). The official `openai` SDK (`api_lambda_check.py`) uploads a
//! file through the Uploads API in several small parts and creates a batch; the poll function
//! is invoked until the batch is done; the output download is a 307 to a presigned S3 URL,
//! which the SDK follows; the error file (re-shaped on the way) streams; a wrong key is 401.
//! A second test gives the tenant a webhook whose secret is in moto's Secrets Manager: the poll
//! function reads the keys file and that secret, and signs the webhook the reference
//! `standardwebhooks` library verifies.
//!
//! Slow: the first invocation of each function builds it (see
//! `batchdrop_tests::lambda::FIRST_INVOKE_TIMEOUT`). Needs `<workspace>/.venv` (`make venv`:
//! cargo-lambda, moto, openai); without it the test fails and says so.

use batchdrop_api::auth::{digest_of, keys_file_entry};

use batchdrop_tests::fixtures::{event, workspace};
use batchdrop_tests::lambda::{FIRST_INVOKE_TIMEOUT, LambdaWatch};
use batchdrop_tests::moto::MotoServer;
use batchdrop_tests::webhook_receiver::WebhookReceiver;
use batchdrop_tests::{BoxError, TestResult};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const BUCKET: &str = "batchdrop-api-bucket";
const KEY: &str = "bdk_lambda_test_key_0123456789";
/// Request lines of the uploaded file (one more line is not JSON).
const REQUESTS: usize = 12;
/// Bytes per part of the SDK's chunked upload: the file takes several.
const PART_SIZE: usize = 600;
/// Poll invocations before the batch must have finished.
const MAX_POLLS: usize = 20;
const BETWEEN_POLLS: Duration = Duration::from_millis(250);

/// The Python with the `openai` SDK: `$BATCHDROP_PYTHON`, else the workspace's venv.
fn python() -> PathBuf {
    std::env::var_os("BATCHDROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"))
}

/// The keys-file entry of tenant `acme`, whose key is [`KEY`], on route `sandbox`.
fn acme_entry() -> String {
    let digest: String = digest_of(KEY).iter().map(|b| format!("{b:02x}")).collect();
    keys_file_entry("acme", &digest, &["sandbox".to_string()], "sandbox")
}

/// `cargo lambda watch` serving the functions over `moto`'s bucket and `sandbox`, with the
/// keys file `keys` (inline).
async fn functions(
    moto: &MotoServer,
    sandbox: &batchdrop_sandbox::Sandbox,
    keys: &str,
) -> Result<LambdaWatch, BoxError> {
    LambdaWatch::start(&[
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("BATCHDROP_BUCKET", BUCKET),
        ("BATCHDROP_SANDBOX_URL", &sandbox.base_url()),
        ("BATCHDROP_API_KEYS", keys),
        ("RUST_LOG", "info"),
    ])
    .await
}

/// Runs one step of `api_lambda_check.py`; its stdout, or an error with everything it said.
fn sdk_step(args: &[&str]) -> Result<String, BoxError> {
    let output = Command::new(python())
        .arg(workspace().join("tests/tests/api_lambda_check.py"))
        .args(args)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .output()
        .map_err(|e| format!("cannot run {} ({e}): make venv", python().display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "api_lambda_check.py {} failed:\n{stdout}\n{}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(stdout)
}

/// A client that shows redirects instead of following them.
fn no_redirects() -> Result<reqwest::Client, BoxError> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(FIRST_INVOKE_TIMEOUT)
        .build()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_function_takes_chunked_uploads_and_redirects_downloads_to_s3() -> TestResult {
    // GIVEN a moto bucket, the sandbox provider with batches that end at once, and cargo
    // lambda watch serving the functions with one tenant's key (inline keys file)
    let moto = MotoServer::try_start()?;
    moto.create_bucket(BUCKET).await?;
    let sandbox = batchdrop_tests::sandbox::instant().await?;
    let watch = functions(&moto, &sandbox, &acme_entry()).await?;
    let base = format!("http://127.0.0.1:{}/lambda-url/api/v1", watch.port());
    let http = no_redirects()?;

    // WHEN a wrong key calls (this first request also builds the function)
    let response = http
        .get(format!("{base}/batches"))
        .bearer_auth("bdk_wrong")
        .send()
        .await
        .map_err(|e| format!("{e}; cargo lambda watch's log:\n{}", watch.log_tail()))?;
    // THEN it is refused
    assert_eq!(response.status(), 401, "{}", watch.log_tail());

    // WHEN the SDK uploads the file in parts and creates a batch on it
    let submitted = sdk_step(&[
        "submit",
        &base,
        KEY,
        &REQUESTS.to_string(),
        &PART_SIZE.to_string(),
    ])?;
    eprint!("{submitted}");
    let ids: Value = serde_json::from_str(submitted.lines().last().unwrap_or_default())?;
    let batch_id = ids["batch_id"].as_str().ok_or("no batch id")?.to_string();
    let file_id = ids["file_id"].as_str().ok_or("no file id")?.to_string();
    // THEN the parts were stored and joined (the SDK checked the content, read back)

    // WHEN the poll function runs on its schedule until the batch is done
    let mut batch = Value::Null;
    for polls in 0.. {
        batch = http
            .get(format!("{base}/batches/{batch_id}"))
            .bearer_auth(KEY)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if batch["status"] == "completed" || batch["status"] == "failed" {
            break;
        }
        if polls == MAX_POLLS {
            return Err(format!("batch not done after {MAX_POLLS} polls: {batch}").into());
        }
        let response = watch.invoke("poll", &event("scheduled.json")).await?;
        assert_eq!(response["failures"], serde_json::json!([]), "{response}");
        tokio::time::sleep(BETWEEN_POLLS).await;
    }
    assert_eq!(batch["status"], "completed", "{batch}");
    let output_id = batch["output_file_id"].as_str().ok_or("no output file")?;
    let error_id = batch["error_file_id"].as_str().ok_or("no error file")?;

    // THEN the output's download is a redirect to a presigned URL of the bucket's output.jsonl
    let response = http
        .get(format!("{base}/files/{output_id}/content"))
        .bearer_auth(KEY)
        .send()
        .await?;
    assert_eq!(response.status(), 307);
    let location = response
        .headers()
        .get("location")
        .ok_or("no Location")?
        .to_str()?
        .to_string();
    let object = format!("{}/{BUCKET}/results/sandbox/", moto.endpoint());
    assert!(location.starts_with(&object), "{location}");
    assert!(location.contains("/output.jsonl?") && location.contains("X-Amz-Signature="));
    assert!(
        location.contains("X-Amz-Expires=900"),
        "15 minutes: {location}"
    );
    // AND the URL needs no key: the bucket answers it
    let lines = reqwest::get(&location)
        .await?
        .error_for_status()?
        .text()
        .await?;
    assert_eq!(lines.lines().count(), REQUESTS);
    // AND so is the upload's
    let response = http
        .get(format!("{base}/files/{file_id}/content"))
        .bearer_auth(KEY)
        .send()
        .await?;
    assert_eq!(response.status(), 307);
    // AND the error file, re-shaped on the way, streams from the function
    let response = http
        .get(format!("{base}/files/{error_id}/content"))
        .bearer_auth(KEY)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert!(response.text().await?.contains("\"response\":null"));

    // AND the SDK reads the output (following the redirect) in input order, and the rest
    let downloaded = sdk_step(&["download", &base, KEY, &batch_id, &REQUESTS.to_string()])?;
    eprint!("{downloaded}");
    assert!(
        downloaded.trim_end().ends_with("checks passed"),
        "{downloaded}"
    );

    drop(watch);
    sandbox.stop().await;
    Ok(())
}

/// Puts `secret` in moto's Secrets Manager under `name`; its ARN.
async fn put_secret(moto: &MotoServer, name: &str, secret: &str) -> Result<String, BoxError> {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
        .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "batchdrop-tests",
        ))
        .endpoint_url(moto.endpoint())
        .build();
    let created = aws_sdk_secretsmanager::Client::from_conf(config)
        .create_secret()
        .name(name)
        .secret_string(secret)
        .send()
        .await
        .map_err(|e| aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())?;
    Ok(created.arn().ok_or("no ARN")?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poll_function_signs_a_keys_webhook_with_the_tenants_secret_from_secrets_manager()
-> TestResult {
    // GIVEN a tenant whose keys-file entry has a webhook, its secret in Secrets Manager by ARN
    let moto = MotoServer::try_start()?;
    moto.create_bucket(BUCKET).await?;
    let sandbox = batchdrop_tests::sandbox::instant().await?;
    let secret = batchdrop_core::webhooks::WebhookSecret::generate();
    let arn = put_secret(&moto, "batchdrop-test/tenant-webhooks/acme", &secret).await?;
    let receiver = WebhookReceiver::start(&secret)?;
    let keys = format!(
        "{}webhook_url = \"{}/acme\"\nwebhook_secret_arn = \"{arn}\"\n",
        acme_entry(),
        receiver.url
    );
    let watch = functions(&moto, &sandbox, &keys).await?;
    let base = format!("http://127.0.0.1:{}/lambda-url/api/v1", watch.port());

    // WHEN the SDK creates a batch and the poll function runs until it is done
    let submitted = sdk_step(&[
        "submit",
        &base,
        KEY,
        &REQUESTS.to_string(),
        &PART_SIZE.to_string(),
    ])
    .map_err(|e| format!("{e}\ncargo lambda watch's log:\n{}", watch.log_tail()))?;
    let ids: Value = serde_json::from_str(submitted.lines().last().unwrap_or_default())?;
    let batch_id = ids["batch_id"].as_str().ok_or("no batch id")?.to_string();
    let mut got = Vec::new();
    for _ in 0..MAX_POLLS {
        let response = watch.invoke("poll", &event("scheduled.json")).await?;
        assert_eq!(response["failures"], serde_json::json!([]), "{response}");
        got = receiver.received().await?;
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(BETWEEN_POLLS).await;
    }

    // THEN the tenant got one webhook, signed with its secret, naming its batch
    assert_eq!(got.len(), 1, "{got:#?}\n{}", watch.log_tail());
    assert_eq!(got[0]["verified"], true, "{got:#?}");
    assert_eq!(got[0]["body"]["type"], "batch_job.completed");
    assert_eq!(got[0]["body"]["data"]["api_batch_id"], batch_id.as_str());
    // AND the secret is in no log line
    assert!(
        !watch
            .log_tail()
            .contains(secret.trim_start_matches("whsec_"))
    );

    drop(watch);
    sandbox.stop().await;
    Ok(())
}
