//! The synchronous lane's pace through the engine: retries of throttled requests wait out
//! `retry-after` on the engine's clock, a request's attempts are the route's `max_attempts`,
//! and `requests_per_minute` spaces the requests. Over an in-memory bucket, a manual clock
//! (nothing sleeps for real) and a scripted provider behind a gate that refuses some calls.

mod common;

use async_trait::async_trait;
use batchdrop_core::clock::{Clock, ManualClock};
use batchdrop_core::config::{BelowMinimum, Config};
use batchdrop_core::engine::Engine;
use batchdrop_core::provider::{
    BatchInfo, BatchLookup, ChunkUpload, ErrorKind, Provider, ProviderError, Providers, Submitted,
};
use batchdrop_core::store::{ByteStream, MemoryStore, ObjectStore, PutMode};
use batchdrop_core::testing::{BUCKET, START_UNIX, ScriptedProvider, small_config};
use bytes::Bytes;
use common::{Error, TestResult, expected_ids, file, ids, jsonl};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "inbox/sandbox/run/requests.jsonl";
const RESULTS: &str = "results/sandbox/run/requests/";

/// Which calls to refuse, from the call's number (from 1) and the request's custom_id.
type Refuse = Box<dyn Fn(u64, &str) -> bool + Send + Sync>;

/// Refuses the calls `refuse` says (by call number, from 1, and request line) with `error`;
/// passes the others to a [`ScriptedProvider`].
struct Gate {
    inner: ScriptedProvider,
    refuse: Refuse,
    error: fn() -> ProviderError,
    /// Every call, in order: its custom_id and whether it was refused.
    calls: Mutex<Vec<(String, bool)>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gate")
    }
}

impl Gate {
    fn calls_of(&self, id: &str) -> usize {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.iter().filter(|(i, _)| i == id).count()
    }
    fn refused(&self) -> usize {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.iter().filter(|(_, r)| *r).count()
    }
}

#[async_trait]
impl Provider for Gate {
    async fn submit(&self, chunk: ChunkUpload<'_>) -> Result<Submitted, ProviderError> {
        self.inner.submit(chunk).await
    }
    async fn find_batch(
        &self,
        lookup: BatchLookup<'_>,
    ) -> Result<Option<Submitted>, ProviderError> {
        self.inner.find_batch(lookup).await
    }
    async fn batch(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        self.inner.batch(batch_id).await
    }
    async fn cancel(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        self.inner.cancel(batch_id).await
    }
    async fn download(&self, file: &str) -> Result<ByteStream, ProviderError> {
        self.inner.download(file).await
    }
    async fn invoke(&self, model: &str, request: &[u8]) -> Result<Vec<u8>, ProviderError> {
        let id = serde_json::from_slice::<Value>(request)
            .ok()
            .and_then(|v| v["custom_id"].as_str().map(str::to_string))
            .unwrap_or_default();
        let refused = {
            let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            let refused = (self.refuse)(calls.len() as u64 + 1, &id);
            calls.push((id, refused));
            refused
        };
        if refused {
            return Err((self.error)());
        }
        self.inner.invoke(model, request).await
    }
}

fn rate_limited() -> ProviderError {
    ProviderError::Refused {
        operation: "invoke",
        kind: ErrorKind::RateLimited,
        answer: "HTTP 429".into(),
        code: Some("rate_limit_exceeded".into()),
        message: "slow down".into(),
        retryable: true,
        retry_after: Some(RETRY_AFTER),
    }
}

fn server_error() -> ProviderError {
    ProviderError::Refused {
        operation: "invoke",
        kind: ErrorKind::ServerError,
        answer: "HTTP 500".into(),
        code: None,
        message: "boom".into(),
        retryable: true,
        retry_after: None,
    }
}

const RETRY_AFTER: Duration = Duration::from_secs(7);

struct Bed {
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    gate: Arc<Gate>,
    engine: Engine,
}

/// The `sandbox` route with a batch minimum above any file here (every chunk goes on
/// demand), `attempts` per request, changed further by `route`; its provider is `gate`.
fn bed(gate: Gate, attempts: u32, route: impl FnOnce(&mut batchdrop_core::config::Route)) -> Bed {
    let mut config: Config = small_config(100, 1 << 20);
    if let Some(r) = config.routes.get_mut("sandbox") {
        r.limits.min_requests_per_batch = 50;
        r.below_minimum = BelowMinimum::OnDemand;
        r.retries.max_attempts = attempts;
        route(r);
    }
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(
        time::OffsetDateTime::from_unix_timestamp(START_UNIX)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
    ));
    let gate = Arc::new(gate);
    let mut map: HashMap<String, Result<Arc<dyn Provider>, String>> = HashMap::new();
    map.insert("sandbox".into(), Ok(gate.clone() as Arc<dyn Provider>));
    let engine = Engine::new(
        store.clone(),
        BUCKET,
        Arc::new(config),
        Arc::new(map) as Arc<dyn Providers>,
        clock.clone(),
    );
    Bed {
        store,
        clock,
        gate,
        engine,
    }
}

fn gate(
    refuse: impl Fn(u64, &str) -> bool + Send + Sync + 'static,
    error: fn() -> ProviderError,
) -> Gate {
    Gate {
        inner: ScriptedProvider::new(),
        refuse: Box::new(refuse),
        error,
        calls: Mutex::new(Vec::new()),
    }
}

/// Drops `n` requests and polls the job to its end; gives back output.jsonl.
async fn run(bed: &Bed, n: usize) -> Result<Vec<Value>, Error> {
    let meta = bed
        .store
        .put(KEY, Bytes::from(file(n)), PutMode::Create)
        .await?;
    bed.engine.submit(KEY, Some(&meta.etag)).await?;
    common::poll_until_idle(&bed.engine, bed.store.as_ref(), 10, || {}).await?;
    jsonl(bed.store.as_ref(), &format!("{RESULTS}output.jsonl")).await
}

#[tokio::test]
async fn a_throttled_request_goes_again_after_retry_after_and_is_answered() -> TestResult {
    // GIVEN a provider that answers the 3rd and 7th calls 429 with retry-after 7 s
    let bed = bed(
        gate(|call, _| call == 3 || call == 7, rate_limited),
        3,
        |_| {},
    );

    // WHEN 20 requests go on demand
    let out = run(&bed, 20).await?;

    // THEN each was answered, once, in input order
    assert_eq!(ids(&out), expected_ids(20));
    assert!(out.iter().all(|l| l["response"]["status_code"] == 200));
    assert_eq!(bed.gate.refused(), 2);
    assert_eq!(bed.gate.inner.calls().invokes, 20);
    // AND the lane waited out the retry-after on the engine's clock, never less
    let sleeps = bed.clock.sleeps();
    assert!(sleeps.contains(&RETRY_AFTER), "{sleeps:?}");
    assert!(sleeps.iter().all(|s| *s >= RETRY_AFTER), "{sleeps:?}");
    Ok(())
}

#[tokio::test]
async fn a_request_failing_every_attempt_is_tried_max_attempts_times_in_all() -> TestResult {
    // GIVEN a route of 2 attempts per request, and a provider that answers every call for
    // r0003 with a 500
    let bed = bed(gate(|_, id| id == "r0003", server_error), 2, |_| {});

    // WHEN 5 requests go on demand
    let out = run(&bed, 5).await?;

    // THEN r0003 was sent twice, no more (no follow-up chunk sends it again)
    assert_eq!(bed.gate.calls_of("r0003"), 2);
    assert_eq!(bed.gate.calls_of("r0001"), 1);
    // AND it ends with no answer, saying why; the others are answered, in input order
    assert_eq!(ids(&out), expected_ids(5));
    assert_eq!(out[2]["error"]["code"], "no_answer", "{}", out[2]);
    let why = out[2]["error"]["message"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("no answer after 2 attempt(s): ") && why.contains("500"),
        "{why}"
    );
    let answered = out
        .iter()
        .filter(|l| l["response"]["status_code"] == 200)
        .count();
    assert_eq!(answered, 4);
    Ok(())
}

#[tokio::test]
async fn requests_per_minute_spaces_the_requests_on_the_clock() -> TestResult {
    // GIVEN a route of 60 requests per minute and a provider that answers at once
    let bed = bed(gate(|_, _| false, server_error), 1, |r| {
        r.requests_per_minute = Some(60);
    });
    let start = bed.clock.now();

    // WHEN 10 requests go on demand
    let out = run(&bed, 10).await?;

    // THEN they took 9 s at least on the engine's clock (one a second), without sleeping for
    // real
    assert_eq!(ids(&out), expected_ids(10));
    let took = bed.clock.now() - start;
    assert!(
        took >= time::Duration::seconds(9) && took < time::Duration::seconds(12),
        "{took}"
    );
    Ok(())
}
