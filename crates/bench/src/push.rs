//! Push against poll: how long a job takes from submit to `summary.json` when its batch's end
//! reaches batchdrop as a signed webhook (the sandbox pushing to the endpoint `batchdrop api`
//! and `batchdrop local --webhook-addr` serve) and when only a poll schedule finds it.
//!
//! In this process, on wall-clock time: the sandbox (a batch ends three steps of
//! [`STEP`] after it is created) and the endpoint on loopback ports, an in-memory store, one
//! job of one batch. With push the engine never polls; with poll it polls every
//! [`POLL_EVERY`] (a scaled-down schedule: the wait after a batch ends is up to one interval,
//! at the default `rate(5 minutes)` up to 300 s).

use crate::error::{BenchError, Context};
use batchdrop_core::clock::SystemClock;
use batchdrop_core::config::Config;
use batchdrop_core::engine::Engine;
use batchdrop_core::layout::ACTIVE;
use batchdrop_core::push::{InboundSecrets, Receiver};
use batchdrop_core::store::{MemoryStore, ObjectStore, ObjectStoreExt, PutMode};
use batchdrop_core::webhooks::WebhookSecret;
use batchdrop_sandbox::{PushConfig, Sandbox, SandboxConfig};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A sandbox batch's step: it has ended three steps after it is created.
pub const STEP: Duration = Duration::from_millis(100);
/// The poll-only schedule.
pub const POLL_EVERY: Duration = Duration::from_secs(2);
/// How often the bench looks for `summary.json` (it is the observer, not the provider).
const WATCH: Duration = Duration::from_millis(5);
const ROUTE: &str = "sandbox";
const KEY: &str = "inbox/sandbox/push.jsonl";
const SUMMARY: &str = "results/sandbox/push/summary.json";
/// Requests in the job: one batch.
const REQUESTS: usize = 20;
/// Runs of each mode; the median is reported.
const RUNS: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct PushRun {
    /// Submit to summary.json with the sandbox pushing and no poll, each run.
    pub push_secs: Vec<f64>,
    /// Submit to summary.json polling every `poll_every_secs`, each run.
    pub poll_secs: Vec<f64>,
    pub poll_every_secs: f64,
    /// The batch's own time at the sandbox (three steps).
    pub batch_secs: f64,
}

impl PushRun {
    pub fn push_median(&self) -> f64 {
        median(&self.push_secs)
    }
    pub fn poll_median(&self) -> f64 {
        median(&self.poll_secs)
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs the job [`RUNS`] times with push and [`RUNS`] times with polls only.
pub async fn measure() -> Result<PushRun, BenchError> {
    let mut run = PushRun {
        push_secs: Vec::new(),
        poll_secs: Vec::new(),
        poll_every_secs: POLL_EVERY.as_secs_f64(),
        batch_secs: (STEP * 3).as_secs_f64(),
    };
    for _ in 0..RUNS {
        run.push_secs.push(once(true).await?);
        run.poll_secs.push(once(false).await?);
    }
    Ok(run)
}

/// One job from submit to summary.json, with the sandbox pushing (and no poll) or not.
async fn once(push: bool) -> Result<f64, BenchError> {
    let secret = WebhookSecret::generate();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context(|| "bind the webhook endpoint".into())?;
    let addr = listener
        .local_addr()
        .context(|| "the endpoint's address".into())?;
    let mut push_config = PushConfig::new(
        format!("http://{addr}{}", batchdrop_api::webhooks::path_of(ROUTE)),
        secret.clone(),
    );
    push_config.every = Some(Duration::from_millis(10));
    let sandbox = Sandbox::start(
        ([127, 0, 0, 1], 0).into(),
        SandboxConfig {
            step: STEP,
            push: push.then_some(push_config),
            ..SandboxConfig::default()
        },
    )
    .await
    .context(|| "start the sandbox".into())?;
    let mut config = Config::builtin(&|_| None);
    if let Some(route) = config.routes.get_mut(ROUTE) {
        route.base_url = sandbox.base_url();
    }
    let config = Arc::new(config);
    let store = Arc::new(MemoryStore::new());
    let providers = batchdrop_core::providers::clients(&config.routes, &|_| None);
    let engine = Engine::new(
        store.clone(),
        "bench",
        config.clone(),
        Arc::new(providers),
        Arc::new(SystemClock),
    );
    let parsed =
        WebhookSecret::parse(&secret).map_err(|e| BenchError::program("push", e.to_string()))?;
    let receiver = Receiver::new(
        engine.clone(),
        config,
        Arc::new(InboundSecrets::from_secrets([(ROUTE.to_string(), parsed)])),
        Arc::new(SystemClock),
    );
    let app = batchdrop_api::webhooks::routes(receiver);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let body: String = (0..REQUESTS)
        .map(|i| format!(r#"{{"custom_id":"r{i}","prompt":"question {i}"}}"#) + "\n")
        .collect();
    let started = Instant::now();
    let meta = store
        .put(KEY, body.into(), PutMode::Create)
        .await
        .context(|| "drop the file".into())?;
    engine
        .submit(KEY, Some(&meta.etag))
        .await
        .context(|| "submit".into())?;
    let mut next_poll = started + POLL_EVERY;
    let finished = loop {
        if store
            .exists(SUMMARY)
            .await
            .context(|| "look for the summary".into())?
            && store
                .list(ACTIVE)
                .await
                .context(|| "list".into())?
                .is_empty()
        {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(60) {
            server.abort();
            sandbox.stop().await;
            return Err(BenchError::program(
                "push",
                "the job did not finish within 60 s",
            ));
        }
        if !push && Instant::now() >= next_poll {
            engine.poll().await.context(|| "poll".into())?;
            next_poll += POLL_EVERY;
        }
        tokio::time::sleep(WATCH).await;
    };
    server.abort();
    sandbox.stop().await;
    Ok(finished.as_secs_f64())
}
