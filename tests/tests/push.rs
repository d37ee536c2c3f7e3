//! Push instead of poll, end to end: the sandbox pushes signed OpenAI batch webhooks over HTTP
//! to the webhook endpoint (`batchdrop_api::webhooks`, as `batchdrop local --webhook-addr`
//! serves it), whose receiver advances the job at once. The schedule polls hourly: with the
//! push, a job finishes at the instant its last batch ends, with no poll; with the push
//! dropped, the next poll still finishes it; a duplicated push and a poll racing a push
//! advance the job once.
//!
//! The engine's and the sandbox's clocks are manual and move together; the only waiting is
//! for the receiver's advance, which runs after the endpoint has answered.

use batchdrop_core::clock::{Clock, ManualClock, rfc3339};
use batchdrop_core::config::Config;
use batchdrop_core::engine::{Engine, JobEvent};
use batchdrop_core::layout::{self, ACTIVE};
use batchdrop_core::push::{InboundSecrets, Receiver};
use batchdrop_core::store::{MemoryStore, ObjectStore, ObjectStoreExt, PutMode};
use batchdrop_core::testing::EventLog;
use batchdrop_core::webhooks::WebhookSecret;
use batchdrop_sandbox::{PushConfig, Rate, Sandbox, SandboxConfig};
use batchdrop_tests::clocks::{one_route, openai_provider};
use batchdrop_tests::{BoxError, TestResult};
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

const ROUTE: &str = "sandbox";
const KEY: &str = "inbox/sandbox/pushed.jsonl";
const SUMMARY: &str = "results/sandbox/pushed/summary.json";
const BUCKET: &str = "bucket";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The sandbox's step: a batch has ended three steps after it is created.
const STEP: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

struct Run {
    sandbox: Sandbox,
    store: Arc<MemoryStore>,
    engine_clock: Arc<ManualClock>,
    sandbox_clock: Arc<batchdrop_sandbox::ManualClock>,
    engine: Engine,
    receiver: Receiver,
    events: Arc<EventLog>,
    server: tokio::task::JoinHandle<()>,
}

/// The webhook endpoint on a free port, the sandbox pushing to it with `faults` applied to
/// [`PushConfig`], and an engine polling nothing by itself.
async fn start(faults: impl FnOnce(&mut PushConfig)) -> Result<Run, BoxError> {
    let start = 1_800_000_000_i64;
    let engine_clock = Arc::new(ManualClock::new(time::OffsetDateTime::from_unix_timestamp(
        start,
    )?));
    let sandbox_clock = Arc::new(batchdrop_sandbox::ManualClock::new(
        UNIX_EPOCH + Duration::from_secs(start as u64),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut push = PushConfig::new(
        format!("http://{addr}{}", batchdrop_api::webhooks::path_of(ROUTE)),
        SECRET,
    );
    faults(&mut push);
    let sandbox = Sandbox::start_with_clock(
        "127.0.0.1:0".parse()?,
        SandboxConfig {
            step: STEP,
            push: Some(push),
            ..SandboxConfig::default()
        },
        sandbox_clock.clone(),
    )
    .await?;
    let providers = one_route(
        ROUTE,
        openai_provider(&sandbox.base_url(), engine_clock.clone()),
    );
    let mut config = Config::builtin(&|_| None);
    config
        .routes
        .get_mut(ROUTE)
        .ok_or("no sandbox route")?
        .limits
        .max_requests_per_batch = 4;
    let config = Arc::new(config);
    let store = Arc::new(MemoryStore::new());
    let events = Arc::new(EventLog::default());
    let engine = Engine::new(
        store.clone(),
        BUCKET,
        config.clone(),
        Arc::new(providers),
        engine_clock.clone(),
    )
    .with_observer(events.clone());
    let secrets =
        InboundSecrets::from_secrets([(ROUTE.to_string(), WebhookSecret::parse(SECRET)?)]);
    let receiver = Receiver::new(
        engine.clone(),
        config,
        Arc::new(secrets),
        engine_clock.clone(),
    );
    let app = batchdrop_api::webhooks::routes(receiver.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Run {
        sandbox,
        store,
        engine_clock,
        sandbox_clock,
        engine,
        receiver,
        events,
        server,
    })
}

impl Run {
    /// Ten requests (three batches of at most four) dropped and submitted.
    async fn drop_file(&self) -> TestResult {
        let body: String = (0..10)
            .map(|i| format!(r#"{{"custom_id":"r{i}","prompt":"question {i}"}}"#) + "\n")
            .collect();
        let meta = self
            .store
            .put(KEY, Bytes::from(body), PutMode::Create)
            .await?;
        self.engine.submit(KEY, Some(&meta.etag)).await?;
        Ok(())
    }

    fn advance(&self, by: Duration) {
        self.engine_clock.advance(by);
        self.sandbox_clock.advance(by);
    }

    async fn finished(&self) -> Result<bool, BoxError> {
        Ok(self.store.list(ACTIVE).await?.is_empty() && self.store.exists(SUMMARY).await?)
    }

    /// Waits (in real time, at most 20 s) until the receiver has done `advances` advances
    /// since it started, successful or not: they run after the endpoint has answered.
    async fn advances_done(&self, advances: u64) -> TestResult {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let stats = self.receiver.stats();
            if stats.advanced + stats.advance_failures >= advances {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(format!("the receiver did {stats:?}, not {advances} advances").into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn finished_events(&self) -> usize {
        self.events
            .events()
            .iter()
            .filter(|e| matches!(e, JobEvent::Finished { .. }))
            .count()
    }

    async fn summary(&self) -> Result<Value, BoxError> {
        Ok(serde_json::from_slice(
            &self.store.get_bytes(SUMMARY).await?,
        )?)
    }

    async fn stop(self) {
        self.server.abort();
        self.sandbox.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_webhook_finishes_the_job_when_its_last_batch_ends_without_a_poll() -> TestResult {
    // GIVEN a job of three batches in flight, and a schedule that polls once an hour
    let run = start(|_| {}).await?;
    run.drop_file().await?;
    assert_eq!(
        run.store
            .list(&format!("{}openai/", layout::BATCHES))
            .await?
            .len(),
        3,
        "every batch is in the batch index"
    );

    // WHEN the batches end (three steps later) and the sandbox pushes their webhooks
    run.advance(STEP * 3);
    let ended_at = run.engine_clock.now();
    assert_eq!(run.sandbox.push_ended().await, 3);
    run.advances_done(3).await?;

    // THEN the job is finished, at the instant its batches ended, with no poll
    assert!(run.finished().await?, "the job is not finished");
    let summary = run.summary().await?;
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["counts"]["succeeded"], 10);
    assert_eq!(summary["finished_at"], rfc3339(ended_at));
    assert_eq!(run.sandbox.stats().webhooks.delivered, 3);
    assert_eq!(run.finished_events(), 1);
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_push_dropped_the_hourly_poll_still_finishes_the_job() -> TestResult {
    // GIVEN a job in flight, and a sandbox that drops every webhook
    let run = start(|push| push.drop = Rate::ALWAYS).await?;
    run.drop_file().await?;

    // WHEN its batches end and nothing is pushed
    run.advance(STEP * 3);
    assert_eq!(run.sandbox.push_ended().await, 3);
    assert_eq!(run.sandbox.stats().webhooks.dropped, 3);
    assert!(!run.finished().await?, "finished without push or poll");

    // THEN the next hourly poll finishes it
    run.advance(HOUR);
    run.engine.poll().await?;
    assert!(run.finished().await?, "the poll did not finish the job");
    assert_eq!(run.summary().await?["status"], "completed");
    assert_eq!(run.receiver.stats().accepted, 0);
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_push_is_refused_as_a_replay_and_the_job_advances_once() -> TestResult {
    // GIVEN a sandbox that sends every webhook twice
    let run = start(|push| push.duplicate = Rate::ALWAYS).await?;
    run.drop_file().await?;

    // WHEN the batches end and each webhook arrives twice
    run.advance(STEP * 3);
    run.sandbox.push_ended().await;
    run.advances_done(3).await?;

    // THEN the second delivery of each is refused (409) and the job finished once
    let pushed = run.sandbox.stats().webhooks;
    assert_eq!(
        (pushed.delivered, pushed.failed, pushed.duplicated),
        (3, 3, 3)
    );
    let received = run.receiver.stats();
    assert_eq!((received.accepted, received.refused), (3, 3));
    assert!(run.finished().await?);
    assert_eq!(run.finished_events(), 1);
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_racing_the_pushes_finishes_the_job_once() -> TestResult {
    // GIVEN a job whose batches have ended
    let run = start(|_| {}).await?;
    run.drop_file().await?;
    run.advance(STEP * 3);

    // WHEN the pushes and a scheduled poll arrive at the same moment
    let (pushed, polled) = tokio::join!(run.sandbox.push_ended(), run.engine.poll());
    polled?;
    assert_eq!(pushed, 3);
    run.advances_done(3).await?;
    // (an advance that found the job leased by the poll leaves it to the poll or the next one)
    if !run.finished().await? {
        run.engine.poll().await?;
    }

    // THEN the job finished exactly once, with every request answered
    assert!(run.finished().await?);
    assert_eq!(run.finished_events(), 1);
    assert_eq!(run.summary().await?["counts"]["succeeded"], 10);
    run.stop().await;
    Ok(())
}
