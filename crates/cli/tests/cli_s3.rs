//! The operator's commands against an S3 bucket (`--bucket`, moto on loopback), with the job
//! engine run in-process on the same bucket (what the Lambda functions do on AWS) and the
//! sandbox as the provider.
//!
//! (This lives with the CLI rather than in `tests/` because it runs the real `batchdrop`
//! binary, which cargo builds and names only for the CLI package's own tests.)

mod common;

use batchdrop_core::clock::SystemClock;
use batchdrop_core::config::Config;
use batchdrop_core::engine::{Engine, SubmitOutcome};
use batchdrop_core::layout;
use batchdrop_core::store::{ObjectStore, ObjectStoreExt};
use batchdrop_s3::S3Store;
use batchdrop_sandbox::{Sandbox, SandboxConfig};
use batchdrop_tests::moto::MotoServer;
use common::{Error, Ran, batchdrop, json_lines, printed_job_id, ran, workspace};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const BUCKET: &str = "batchdrop-cli";

/// `batchdrop ARGS --bucket BUCKET`, with the AWS settings of the moto server only.
fn cli(moto: &MotoServer, args: &[&str]) -> Result<Ran, Error> {
    let out = batchdrop()
        .args(args)
        .args(["--bucket", BUCKET])
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()?;
    Ok(ran(out))
}

async fn engine(moto: &MotoServer, sandbox: &Sandbox) -> Result<Engine, Error> {
    let base_url = sandbox.base_url();
    let env = move |name: &str| (name == "BATCHDROP_SANDBOX_URL").then(|| base_url.clone());
    let mut config = Config::builtin(&env);
    config
        .routes
        .get_mut("sandbox")
        .ok_or("no sandbox route")?
        .limits
        .max_requests_per_batch = 3;
    let providers = batchdrop_core::providers::clients(&config.routes, &env);
    Ok(Engine::new(
        Arc::new(S3Store::new(moto.client(), BUCKET)),
        BUCKET,
        Arc::new(config),
        Arc::new(providers),
        Arc::new(SystemClock),
    ))
}

/// Polls (every 200 ms, for at most 30 s) until no job is active.
async fn poll_to_end(engine: &Engine, store: &S3Store) -> Result<(), Error> {
    for _ in 0..150 {
        engine.poll().await?;
        if store.list(layout::ACTIVE).await?.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err("jobs still active after 30 s".into())
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_work_on_an_s3_bucket_as_on_a_local_root() -> Result<(), Error> {
    // GIVEN a moto bucket, a sandbox whose batches end on their first look, an engine on both
    let moto = MotoServer::try_start()?;
    moto.create_bucket(BUCKET).await?;
    let sandbox = batchdrop_tests::sandbox::instant().await?;
    let engine = engine(&moto, &sandbox).await?;
    let store = S3Store::new(moto.client(), BUCKET);
    let requests = workspace().join("examples/requests.jsonl");
    let requests = requests.to_str().unwrap_or("");

    // WHEN a file is submitted to the bucket
    let sub = cli(
        &moto,
        &[
            "submit",
            requests,
            "--route",
            "sandbox",
            "--as",
            "s3 run/requests",
        ],
    )?;
    assert_eq!(sub.code, 0, "{sub:?}");
    let printed = printed_job_id(&sub.stdout)?;
    assert!(sub.stdout.contains(&format!(
        "follow it with: batchdrop status {printed} --watch --bucket {BUCKET}"
    )));
    // THEN the object is in the inbox, byte for byte
    let key = "inbox/sandbox/s3 run/requests.jsonl";
    assert_eq!(
        store.get_bytes(key).await?.as_ref(),
        std::fs::read(workspace().join("examples/requests.jsonl"))?.as_slice()
    );
    // AND the job the S3 event starts has the printed id
    let started = engine.submit(key, None).await?;
    assert_eq!(
        started,
        SubmitOutcome::Started {
            job_id: printed.clone()
        }
    );

    // WHEN it is looked at before its batches are collected
    let js = cli(&moto, &["status", &printed, "--json"])?;
    assert_eq!(js.code, 0, "{js:?}");
    let v: Value = serde_json::from_str(&js.stdout)?;
    // THEN it is running with every request at the provider
    assert_eq!(v[0]["status"], "running");
    assert_eq!(v[0]["requests"]["in_flight"], 9);
    assert_eq!(v[0]["requests"]["done"], 0);
    assert_eq!(v[0]["batches"]["submitted"], 5, "{v}");

    // WHEN the job runs to the end
    poll_to_end(&engine, &store).await?;
    // THEN status shows it completed, with the cost of its summary
    let st = cli(&moto, &["status", "sandbox/s3 run/requests"])?;
    assert_eq!(st.code, 0, "{st:?}");
    assert!(
        st.stdout.starts_with(&format!("{printed} completed sandbox/s3 run/requests [####################] 9/9 requests; batches: 5 completed; 5 rejected, 1 failed;")),
        "{}",
        st.stdout
    );
    let summary: Value = serde_json::from_slice(
        &store
            .get_bytes("results/sandbox/s3 run/requests/summary.json")
            .await?,
    )?;
    let js: Value = serde_json::from_str(&cli(&moto, &["status", &printed, "--json"])?.stdout)?;
    assert_eq!(js[0]["cost"], summary["cost"]);
    // AND results fetches output.jsonl and the summary from the bucket
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("output.jsonl");
    let r = cli(
        &moto,
        &[
            "results",
            "sandbox/s3 run/requests",
            "-o",
            out.to_str().unwrap_or(""),
        ],
    )?;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        std::fs::read(&out)?,
        store
            .get_bytes("results/sandbox/s3 run/requests/output.jsonl")
            .await?
            .to_vec()
    );
    let ids: Vec<String> = json_lines(&std::fs::read_to_string(&out)?)?
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(ids.first().map(String::as_str), Some("review-001"));
    assert_eq!(ids.len(), 9);
    let s = cli(&moto, &["results", &printed, "--summary"])?;
    assert_eq!(serde_json::from_str::<Value>(&s.stdout)?, summary);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_writes_the_cancel_object_that_the_s3_event_acts_on() -> Result<(), Error> {
    // GIVEN a running job on the bucket (submitted, not polled yet; its batches would take 6 s)
    let moto = MotoServer::try_start()?;
    moto.create_bucket(BUCKET).await?;
    let sandbox = Sandbox::start(
        "127.0.0.1:0".parse()?,
        SandboxConfig {
            step: Duration::from_secs(2),
            ..SandboxConfig::default()
        },
    )
    .await?;
    let engine = engine(&moto, &sandbox).await?;
    let store = S3Store::new(moto.client(), BUCKET);
    let prompts = workspace().join("examples/prompts.jsonl");
    let sub = cli(
        &moto,
        &[
            "submit",
            prompts.to_str().unwrap_or(""),
            "--route",
            "sandbox",
        ],
    )?;
    let job_id = printed_job_id(&sub.stdout)?;
    engine.submit("inbox/sandbox/prompts.jsonl", None).await?;

    // WHEN it is cancelled with the CLI
    let c = cli(&moto, &["cancel", "sandbox/prompts"])?;
    assert_eq!(c.code, 0, "{c:?}");
    assert!(c.stdout.contains("wrote cancel/sandbox/prompts.jsonl"));
    assert!(
        c.stdout
            .contains(&format!("job {job_id} (running: 0/5 requests done")),
        "{}",
        c.stdout
    );
    assert!(
        c.stdout
            .contains("the submit function acts on the S3 event for cancel/ at once")
    );
    // THEN the cancel object is in the bucket, and the event it makes cancels the job
    assert!(store.exists("cancel/sandbox/prompts.jsonl").await?);
    assert_eq!(
        engine.cancel("cancel/sandbox/prompts.jsonl").await?,
        vec![job_id.clone()]
    );
    poll_to_end(&engine, &store).await?;
    let st = cli(&moto, &["status", &job_id])?;
    assert!(
        st.stdout
            .starts_with(&format!("{job_id} cancelled sandbox/prompts")),
        "{}",
        st.stdout
    );
    assert!(
        st.stdout
            .contains("reason: cancelled: cancel/sandbox/prompts.jsonl asked for it")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_is_one_line_saying_what_to_check() -> Result<(), Error> {
    let moto = MotoServer::try_start()?;
    let r = cli(&moto, &["status"])?;
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("batchdrop: cannot list the jobs in s3://batchdrop-cli"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("check the bucket name, AWS credentials and region"),
        "{}",
        r.stderr
    );
    Ok(())
}
