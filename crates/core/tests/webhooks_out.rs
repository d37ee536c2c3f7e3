//! Webhooks out: a job on a route with a `webhook_url` sends Standard-Webhooks-signed POSTs
//! that the reference `standardwebhooks` Python library verifies (`webhook_receiver.py`, run
//! from the repository's `.venv`), retried on the outbox's schedule under a manual clock, to
//! checked addresses only, without ever failing the job. The engine runs over an in-memory
//! bucket and a scripted provider; the webhooks go over real HTTP.

use batchdrop_core::config::{Config, KeySource, WebhookTarget};
use batchdrop_core::engine::{Engine, JobEvent, JobStart, PollReport, SubmitOutcome};
use batchdrop_core::layout::ACTIVE;
use batchdrop_core::manifest::JobWebhook;
use batchdrop_core::store::{ObjectStore, ObjectStoreExt};
use batchdrop_core::testing::{ScriptedProvider, TestBed};
use batchdrop_core::webhooks::outbox::{self, DeliveryState, OutboxEntry};
use batchdrop_core::webhooks::{WebhookSecret, Webhooks};
use serde_json::Value;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

const KEY: &str = "inbox/sandbox/hooks/requests.jsonl";
const RESULTS: &str = "results/sandbox/hooks/requests/";
const SECRET_VAR: &str = "HOOKS_TEST_SECRET";

/// The Python receiver, stopped when dropped.
struct Receiver {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start(secret: &str) -> Result<Self, Error> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let python = root.join(".venv/bin/python");
        let script = root.join("crates/core/tests/webhook_receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(secret)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let port: u16 = line
            .trim()
            .parse()
            .map_err(|e| format!("receiver printed {line:?}: {e}"))?;
        Ok(Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        })
    }

    /// Statuses of the next POSTs.
    async fn script(&self, statuses: &[u16]) -> TestResult {
        self.client
            .post(format!("{}/_script", self.base))
            .json(statuses)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// The time the receiver verifies timestamps at.
    async fn set_now(&self, unix: i64) -> TestResult {
        self.client
            .post(format!("{}/_now", self.base))
            .json(&unix)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    async fn received(&self) -> Result<Vec<Value>, Error> {
        Ok(self
            .client
            .get(format!("{}/_received", self.base))
            .send()
            .await?
            .json()
            .await?)
    }
}

/// A bed whose `sandbox` and `openai` routes send webhooks to `url` (set in code, past the config's own
/// check) and an engine with the routes' secrets resolved from `secret`.
fn bed_with_hook(url: &str, secret: &str, batches: bool) -> (TestBed, Engine) {
    let mut config = batchdrop_core::testing::small_config(10, 1 << 20);
    for name in ["sandbox", "openai"] {
        if let Some(route) = config.routes.get_mut(name) {
            route.retries.max_attempts = 1;
            route.webhook = Some(WebhookTarget {
                url: url.to_string(),
                secret: KeySource::Env(SECRET_VAR.into()),
                batches,
            });
        }
    }
    let bed = TestBed::with_config(ScriptedProvider::new(), config);
    let secret = secret.to_string();
    let env = move |name: &str| (name == SECRET_VAR).then(|| secret.clone());
    let webhooks = Webhooks::from_routes(&bed.config.routes, &env, &|_| None);
    let engine = bed.engine("worker-a").with_webhooks(Arc::new(webhooks));
    (bed, engine)
}

fn file(n: usize) -> String {
    (1..=n)
        .map(|i| {
            format!(
                r#"{{"custom_id":"r{i}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"q{i}"}}]}}}}"#
            ) + "\n"
        })
        .collect()
}

/// Drops the file and polls until the job has finished; every poll's report, in order.
async fn run_job(bed: &TestBed, engine: &Engine, lines: usize) -> Result<Vec<PollReport>, Error> {
    let meta = bed.upload(KEY, file(lines)).await?;
    let outcome = engine.submit(KEY, Some(&meta.etag)).await?;
    if !matches!(outcome, SubmitOutcome::Started { .. }) {
        return Err(format!("not started: {outcome:?}").into());
    }
    poll_to_end(bed, engine).await
}

/// Polls until no job is active; every poll's report, in order.
async fn poll_to_end(bed: &TestBed, engine: &Engine) -> Result<Vec<PollReport>, Error> {
    let mut reports = Vec::new();
    for _ in 0..20 {
        let report = engine.poll().await?;
        if let Some((id, e)) = report.failures.first() {
            return Err(format!("poll failed on {id}: {e}").into());
        }
        reports.push(report);
        if bed.store.list(ACTIVE).await?.is_empty() {
            return Ok(reports);
        }
    }
    Err("the job did not finish".into())
}

async fn json(store: &dyn ObjectStore, key: &str) -> Result<Value, Error> {
    Ok(serde_json::from_slice(&store.get_bytes(key).await?)?)
}

/// The one outbox entry of the job's end.
async fn job_entry(bed: &TestBed) -> Result<OutboxEntry, Error> {
    let summary = json(bed.store.as_ref(), &format!("{RESULTS}summary.json")).await?;
    let job_id = summary["job_id"].as_str().ok_or("no job_id")?;
    let (entry, _) = bed
        .store
        .get_json(&outbox::entry_key(job_id, "job"))
        .await?;
    Ok(entry)
}

fn now_of(bed: &TestBed) -> i64 {
    use batchdrop_core::clock::Clock;
    bed.clock.now().unix_timestamp()
}

#[tokio::test]
async fn a_completed_job_sends_one_verified_completed_webhook_carrying_its_summary() -> TestResult {
    let secret = WebhookSecret::generate();
    let receiver = Receiver::start(&secret)?;
    let (bed, engine) = bed_with_hook(&format!("{}/hooks", receiver.base), &secret, false);
    receiver.set_now(now_of(&bed)).await?;

    let reports = run_job(&bed, &engine, 3).await?;
    // Polls after the end send nothing again.
    engine.poll().await?;

    let got = receiver.received().await?;
    assert_eq!(got.len(), 1, "{got:#?}");
    let hook = &got[0];
    assert_eq!(hook["verified"], true, "{hook:#?}");
    assert_eq!(hook["body"]["type"], "batch_job.completed");
    let summary = json(bed.store.as_ref(), &format!("{RESULTS}summary.json")).await?;
    assert_eq!(hook["body"]["data"], summary);
    assert_eq!(hook["body"]["timestamp"], summary["finished_at"]);
    let entry = job_entry(&bed).await?;
    assert_eq!(hook["headers"]["webhook-id"], entry.webhook_id.as_str());
    assert_eq!(entry.state, DeliveryState::Delivered);
    assert_eq!(entry.attempts, 1);
    assert!(bed.store.list(outbox::PENDING).await?.is_empty());
    let delivered: usize = reports.iter().map(|r| r.webhooks_delivered).sum();
    assert_eq!(delivered, 1);
    Ok(())
}

#[tokio::test]
async fn a_failed_attempt_is_retried_after_the_backoff_with_the_same_webhook_id() -> TestResult {
    let secret = WebhookSecret::generate();
    let receiver = Receiver::start(&secret)?;
    receiver.script(&[500, 200]).await?;
    let (bed, engine) = bed_with_hook(&format!("{}/hooks", receiver.base), &secret, false);
    receiver.set_now(now_of(&bed)).await?;
    let reports = run_job(&bed, &engine, 2).await?;
    assert_eq!(reports.iter().map(|r| r.webhooks_failed).sum::<usize>(), 1);
    assert_eq!(receiver.received().await?.len(), 1);
    let entry = job_entry(&bed).await?;
    assert_eq!(entry.state, DeliveryState::Pending);
    assert_eq!(entry.next_attempt_at, entry.created_at + 60);

    // Not before the first backoff (1 minute)…
    bed.clock.advance(Duration::from_secs(59));
    engine.poll().await?;
    assert_eq!(receiver.received().await?.len(), 1);
    // …then at it.
    bed.clock.advance(Duration::from_secs(1));
    receiver.set_now(now_of(&bed)).await?;
    let report = engine.poll().await?;
    assert_eq!(report.webhooks_delivered, 1);

    let got = receiver.received().await?;
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|h| h["verified"] == true), "{got:#?}");
    assert_eq!(
        got[0]["headers"]["webhook-id"],
        got[1]["headers"]["webhook-id"]
    );
    assert_eq!(got[0]["body"], got[1]["body"]);
    let stamps: Vec<i64> = got
        .iter()
        .map(|h| {
            h["headers"]["webhook-timestamp"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    assert_eq!(stamps[1] - stamps[0], 60);
    let entry = job_entry(&bed).await?;
    assert_eq!((entry.state, entry.attempts), (DeliveryState::Delivered, 2));
    Ok(())
}

#[tokio::test]
async fn a_receiver_that_always_fails_gets_eight_attempts_within_a_day_then_none() -> TestResult {
    let secret = WebhookSecret::generate();
    let receiver = Receiver::start(&secret)?;
    receiver.script(&[503; 20]).await?;
    let (bed, engine) = bed_with_hook(&format!("{}/hooks", receiver.base), &secret, false);
    run_job(&bed, &engine, 1).await?;
    let start = job_entry(&bed).await?.created_at;
    // Polls every 5 minutes for 30 hours.
    for _ in 0..(30 * 12) {
        bed.clock.advance(Duration::from_secs(300));
        engine.poll().await?;
    }
    let got = receiver.received().await?;
    assert_eq!(got.len(), outbox::MAX_ATTEMPTS as usize);
    let entry = job_entry(&bed).await?;
    assert_eq!(entry.state, DeliveryState::Failed);
    assert!(entry.last_attempt_at.unwrap_or(i64::MAX) - start <= 24 * 3600);
    assert!(bed.store.list(outbox::PENDING).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_counts_as_a_failed_attempt() -> TestResult {
    let secret = WebhookSecret::generate();
    let receiver = Receiver::start(&secret)?;
    let (bed, engine) = bed_with_hook(&format!("{}/redirect", receiver.base), &secret, false);
    receiver.set_now(now_of(&bed)).await?;
    run_job(&bed, &engine, 1).await?;
    let got = receiver.received().await?;
    let paths: Vec<&str> = got.iter().filter_map(|h| h["path"].as_str()).collect();
    assert_eq!(paths, vec!["/redirect"]);
    let entry = job_entry(&bed).await?;
    assert_eq!(entry.state, DeliveryState::Pending);
    assert!(
        entry.last_error.as_deref().unwrap_or("").contains("302"),
        "{entry:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_metadata_address_is_refused_without_a_request_and_the_job_completes() -> TestResult {
    let secret = WebhookSecret::generate();
    let (bed, engine) = bed_with_hook("http://169.254.169.254/latest/hook", &secret, false);
    let events = bed.events.clone();
    run_job(&bed, &engine, 2).await?;
    let summary = json(bed.store.as_ref(), &format!("{RESULTS}summary.json")).await?;
    assert_eq!(summary["status"], "completed");
    let entry = job_entry(&bed).await?;
    assert_eq!(entry.state, DeliveryState::Failed);
    assert_eq!(entry.attempts, 1);
    assert!(
        entry
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("169.254.169.254"),
        "{entry:?}"
    );
    let failed = events.events().into_iter().find_map(|e| match e {
        JobEvent::WebhookFailed { retry_at, .. } => Some(retry_at),
        _ => None,
    });
    assert_eq!(failed, Some(None), "given up at once");
    // And the configuration refuses such a URL before anything runs.
    let toml = "[routes.sandbox]\nwebhook_url = \"http://[::ffff:169.254.169.254]/\"\nwebhook_secret_env = \"S\"\n";
    let err = Config::from_toml(toml, "t.toml", &|_| None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("webhook_url"), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_receiver_that_is_down_never_fails_or_holds_up_the_job() -> TestResult {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let secret = WebhookSecret::generate();
    let (bed, engine) = bed_with_hook(&format!("http://127.0.0.1:{port}/"), &secret, true);
    let reports = run_job(&bed, &engine, 12).await?;
    let summary = json(bed.store.as_ref(), &format!("{RESULTS}summary.json")).await?;
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["counts"]["succeeded"], 12);
    assert!(reports.iter().map(|r| r.webhooks_failed).sum::<usize>() >= 1);
    // The job's end and both batches (12 requests, 10 a batch) wait for a retry.
    let job_id = summary["job_id"].as_str().ok_or("no job id")?;
    let mut names: Vec<String> = bed
        .store
        .list(&outbox::job_entries(job_id))
        .await?
        .into_iter()
        .map(|m| m.key)
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            outbox::entry_key(job_id, "batch-0"),
            outbox::entry_key(job_id, "batch-1"),
            outbox::entry_key(job_id, "job"),
        ]
    );
    assert_eq!(bed.store.list(outbox::PENDING).await?.len(), 3);
    Ok(())
}

#[tokio::test]
async fn batch_events_are_sent_when_the_route_asks_for_them() -> TestResult {
    let secret = WebhookSecret::generate();
    let receiver = Receiver::start(&secret)?;
    let (bed, engine) = bed_with_hook(&format!("{}/hooks", receiver.base), &secret, true);
    receiver.set_now(now_of(&bed)).await?;
    run_job(&bed, &engine, 12).await?;
    let got = receiver.received().await?;
    let mut types: Vec<&str> = got
        .iter()
        .filter_map(|h| h["body"]["type"].as_str())
        .collect();
    types.sort();
    assert_eq!(
        types,
        vec![
            "batch_job.batch_collected",
            "batch_job.batch_collected",
            "batch_job.completed"
        ]
    );
    assert!(got.iter().all(|h| h["verified"] == true), "{got:#?}");
    Ok(())
}

#[tokio::test]
async fn a_file_refused_whole_sends_batch_job_failed() -> TestResult {
    let secret = WebhookSecret::generate();
    let receiver = Receiver::start(&secret)?;
    let (bed, engine) = bed_with_hook(&format!("{}/hooks", receiver.base), &secret, false);
    receiver.set_now(now_of(&bed)).await?;
    // The bed's `openai` route has no provider (its key is not set): the file is refused whole.
    let key = "inbox/openai/hooks/requests.jsonl";
    let meta = bed.upload(key, file(1)).await?;
    let _ = engine.submit(key, Some(&meta.etag)).await?;
    let got = receiver.received().await?;
    let types: Vec<&str> = got
        .iter()
        .filter_map(|h| h["body"]["type"].as_str())
        .collect();
    assert_eq!(types, vec!["batch_job.failed"], "{got:#?}");
    Ok(())
}

#[tokio::test]
async fn the_secret_never_appears_in_debug_output_events_or_the_bucket() -> TestResult {
    let secret = WebhookSecret::generate();
    let receiver = Receiver::start(&secret)?;
    receiver.script(&[500]).await?;
    let (bed, engine) = bed_with_hook(&format!("{}/hooks", receiver.base), &secret, true);
    receiver.set_now(now_of(&bed)).await?;
    run_job(&bed, &engine, 3).await?;
    let key = secret.trim_start_matches("whsec_");
    let env = |name: &str| (name == SECRET_VAR).then(|| secret.clone());
    let webhooks = Webhooks::from_routes(&bed.config.routes, &env, &|_| None);
    let mut seen = format!("{webhooks:?} {:?} {:?}", bed.config, bed.events.events());
    for object in bed.store.list("").await? {
        let bytes = bed.store.get_bytes(&object.key).await?;
        seen.push_str(&String::from_utf8_lossy(&bytes));
    }
    assert!(!seen.contains(key));
    Ok(())
}

#[tokio::test]
async fn a_receiver_holding_another_secret_refuses_the_webhook() -> TestResult {
    let receiver = Receiver::start(&WebhookSecret::generate())?;
    let (bed, engine) = bed_with_hook(
        &format!("{}/hooks", receiver.base),
        &WebhookSecret::generate(),
        false,
    );
    receiver.set_now(now_of(&bed)).await?;
    run_job(&bed, &engine, 1).await?;
    let got = receiver.received().await?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["verified"], false, "{got:#?}");
    Ok(())
}

#[tokio::test]
async fn a_receiver_that_never_answers_costs_one_bounded_attempt() -> TestResult {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", silent.local_addr()?);
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let secret = WebhookSecret::generate();
    let (bed, _) = bed_with_hook(&url, &secret, false);
    let env = |name: &str| (name == SECRET_VAR).then(|| secret.clone());
    let webhooks = Webhooks::from_routes(&bed.config.routes, &env, &|_| None)
        .with_timeout(Duration::from_millis(300));
    let engine = bed.engine("worker-a").with_webhooks(Arc::new(webhooks));
    let started = std::time::Instant::now();
    run_job(&bed, &engine, 1).await?;
    assert!(started.elapsed() < Duration::from_secs(5));
    let entry = job_entry(&bed).await?;
    assert_eq!((entry.state, entry.attempts), (DeliveryState::Pending, 1));
    assert!(
        entry
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("timed out"),
        "{entry:?}"
    );
    held.abort();
    Ok(())
}

// ---- a Batch API key's own webhook -------------------------------------------------------

const TENANT: &str = "acme";
const TENANT_SECRET_VAR: &str = "ACME_HOOKS_TEST_SECRET";
const API_JOB: &str = "japi1";
const API_INPUT: &str = "_batchdrop/api/acme/files/f1.jsonl";

/// Starts, as the Batch API does, a job whose key has a webhook to `url`.
async fn start_api_job(bed: &TestBed, engine: &Engine, url: &str) -> TestResult {
    bed.upload(API_INPUT, file(3)).await?;
    let outcome = engine
        .start(JobStart {
            job_id: API_JOB.into(),
            route: "sandbox".into(),
            input_key: API_INPUT.into(),
            results_prefix: "results/sandbox/api/acme/batch_1/".into(),
            webhook: Some(JobWebhook {
                tenant: TENANT.into(),
                url: url.into(),
                batches: false,
                api_batch_id: Some("batch_1".into()),
            }),
        })
        .await?;
    if !matches!(outcome, SubmitOutcome::Started { .. }) {
        return Err(format!("not started: {outcome:?}").into());
    }
    Ok(())
}

/// `engine`'s webhooks with the keys file's tenant `acme` signing with `secret`.
fn with_tenant(bed: &TestBed, engine: Engine, route_secret: &str, secret: &str) -> Engine {
    let target = WebhookTarget {
        url: "http://unused.example/".into(),
        secret: KeySource::Env(TENANT_SECRET_VAR.into()),
        batches: false,
    };
    let (route_secret, secret) = (route_secret.to_string(), secret.to_string());
    let env = move |name: &str| match name {
        SECRET_VAR => Some(route_secret.clone()),
        TENANT_SECRET_VAR => Some(secret.clone()),
        _ => None,
    };
    let webhooks = Webhooks::from_routes(&bed.config.routes, &env, &|_| None).with_tenants(
        [(TENANT, &target)],
        &env,
        &|_| None,
    );
    engine.with_webhooks(Arc::new(webhooks))
}

async fn tenant_entry(bed: &TestBed) -> Result<OutboxEntry, Error> {
    let (entry, _) = bed
        .store
        .get_json(&outbox::entry_key(API_JOB, "tenant-job"))
        .await?;
    Ok(entry)
}

#[tokio::test]
async fn a_job_started_by_a_key_with_a_webhook_is_sent_to_the_key_and_the_route_each_signed_with_its_own_secret()
-> TestResult {
    let (route_secret, tenant_secret) = (WebhookSecret::generate(), WebhookSecret::generate());
    let route_receiver = Receiver::start(&route_secret)?;
    let tenant_receiver = Receiver::start(&tenant_secret)?;
    let (bed, engine) = bed_with_hook(
        &format!("{}/hooks", route_receiver.base),
        &route_secret,
        false,
    );
    let engine = with_tenant(&bed, engine, &route_secret, &tenant_secret);
    route_receiver.set_now(now_of(&bed)).await?;
    tenant_receiver.set_now(now_of(&bed)).await?;

    start_api_job(&bed, &engine, &format!("{}/acme", tenant_receiver.base)).await?;
    poll_to_end(&bed, &engine).await?;

    let to_route = route_receiver.received().await?;
    let to_tenant = tenant_receiver.received().await?;
    assert_eq!((to_route.len(), to_tenant.len()), (1, 1), "{to_tenant:#?}");
    assert_eq!(to_route[0]["verified"], true, "{to_route:#?}");
    assert_eq!(to_tenant[0]["verified"], true, "{to_tenant:#?}");
    let body = &to_tenant[0]["body"];
    assert_eq!(body["type"], "batch_job.completed");
    assert_eq!(body["data"]["job_id"], API_JOB);
    assert_eq!(body["data"]["api_batch_id"], "batch_1");
    assert!(to_route[0]["body"]["data"].get("api_batch_id").is_none());
    let entry = tenant_entry(&bed).await?;
    assert_eq!(
        to_tenant[0]["headers"]["webhook-id"],
        entry.webhook_id.as_str()
    );
    assert_ne!(
        to_tenant[0]["headers"]["webhook-id"],
        to_route[0]["headers"]["webhook-id"]
    );
    Ok(())
}

#[tokio::test]
async fn a_process_without_the_keys_file_leaves_a_keys_webhook_to_one_that_has_it() -> TestResult {
    let (route_secret, tenant_secret) = (WebhookSecret::generate(), WebhookSecret::generate());
    let tenant_receiver = Receiver::start(&tenant_secret)?;
    let (bed, engine) = bed_with_hook("http://127.0.0.1:9/unused", &route_secret, false);
    tenant_receiver.set_now(now_of(&bed)).await?;

    start_api_job(&bed, &engine, &format!("{}/acme", tenant_receiver.base)).await?;
    poll_to_end(&bed, &engine).await?;
    assert!(tenant_receiver.received().await?.is_empty());
    let entry = tenant_entry(&bed).await?;
    assert_eq!((entry.state, entry.attempts), (DeliveryState::Pending, 0));

    let engine = with_tenant(&bed, bed.engine("worker-b"), &route_secret, &tenant_secret);
    engine.poll().await?;
    let got = tenant_receiver.received().await?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["verified"], true, "{got:#?}");
    assert_eq!(tenant_entry(&bed).await?.state, DeliveryState::Delivered);
    Ok(())
}

#[tokio::test]
async fn a_key_whose_webhook_left_the_keys_file_fails_its_attempt_saying_so() -> TestResult {
    let tenant_receiver = Receiver::start(&WebhookSecret::generate())?;
    let (bed, engine) = bed_with_hook(
        "http://127.0.0.1:9/unused",
        &WebhookSecret::generate(),
        false,
    );
    // This process has a keys file, without tenant acme's webhook.
    let webhooks = Webhooks::from_routes(&bed.config.routes, &|_| None, &|_| None).with_tenants(
        [],
        &|_| None,
        &|_| None,
    );
    let engine = engine.with_webhooks(Arc::new(webhooks));
    start_api_job(&bed, &engine, &format!("{}/acme", tenant_receiver.base)).await?;
    poll_to_end(&bed, &engine).await?;
    assert!(tenant_receiver.received().await?.is_empty());
    let entry = tenant_entry(&bed).await?;
    assert_eq!(entry.attempts, 1);
    let error = entry.last_error.unwrap_or_default();
    assert!(
        error.contains("tenant \"acme\"") && error.contains("keys file"),
        "{error}"
    );
    Ok(())
}
