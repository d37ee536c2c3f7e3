//! [`TestBed`]: an engine over an in-memory bucket, a manual clock and a scripted provider;
//! [`EventLog`]: an observer that keeps every event.

use super::provider::ScriptedProvider;
use crate::clock::ManualClock;
use crate::config::Config;
use crate::engine::{Engine, JobEvent, Observer, SubmitOutcome};
use crate::provider::{Provider, Providers};
use crate::store::{MemoryStore, ObjectMeta, ObjectStore, PutMode, StoreError};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// An [`Observer`] that keeps every event, in order.
#[derive(Debug, Default)]
pub struct EventLog {
    events: Mutex<Vec<JobEvent>>,
}

impl EventLog {
    pub fn events(&self) -> Vec<JobEvent> {
        self.events.lock().expect("event log lock").clone()
    }
}

impl Observer for EventLog {
    fn event(&self, event: &JobEvent) {
        self.events
            .lock()
            .expect("event log lock")
            .push(event.clone());
    }
}

/// 2026-01-01T00:00:00Z, where every [`TestBed`] clock starts.
pub const START_UNIX: i64 = 1_767_225_600;

/// The built-in configuration with the `sandbox` route limited to `max_requests` requests and
/// `max_bytes` bytes per batch.
pub fn small_config(max_requests: u64, max_bytes: u64) -> Config {
    let mut config = Config::builtin(&|_| None);
    if let Some(sandbox) = config.routes.get_mut("sandbox") {
        sandbox.limits.max_requests_per_batch = max_requests;
        sandbox.limits.max_bytes_per_batch = max_bytes;
        sandbox.limits.max_line_bytes = sandbox.limits.max_line_bytes.min(max_bytes);
    }
    config
}

/// An engine over an in-memory bucket, a manual clock and a [`ScriptedProvider`] that serves
/// the `sandbox` route (the `openai` route has no provider: its key is "not set").
pub struct TestBed {
    pub store: Arc<MemoryStore>,
    pub clock: Arc<ManualClock>,
    pub provider: Arc<ScriptedProvider>,
    pub providers: Arc<dyn Providers>,
    pub config: Arc<Config>,
    pub events: Arc<EventLog>,
    /// The engine of lease owner `worker-a`.
    pub engine: Engine,
}

/// The bucket name every [`TestBed`] engine uses.
pub const BUCKET: &str = "test-bucket";

impl TestBed {
    /// A bed whose `sandbox` route takes at most `max_requests` requests per batch.
    pub fn new(provider: ScriptedProvider, max_requests: u64) -> Self {
        Self::with_config(provider, small_config(max_requests, 1 << 20))
    }

    pub fn with_config(provider: ScriptedProvider, config: Config) -> Self {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(
            OffsetDateTime::from_unix_timestamp(START_UNIX).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        ));
        let provider = Arc::new(provider);
        let mut map: HashMap<String, Result<Arc<dyn Provider>, String>> = HashMap::new();
        map.insert("sandbox".into(), Ok(provider.clone() as Arc<dyn Provider>));
        map.insert("openai".into(), Err("OPENAI_API_KEY is not set".into()));
        let providers: Arc<dyn Providers> = Arc::new(map);
        let config = Arc::new(config);
        let events = Arc::new(EventLog::default());
        let engine = Engine::new(
            store.clone(),
            BUCKET,
            config.clone(),
            providers.clone(),
            clock.clone(),
        )
        .with_owner("worker-a")
        .with_observer(events.clone());
        Self {
            store,
            clock,
            provider,
            providers,
            config,
            events,
            engine,
        }
    }

    /// Another engine over the same bucket, clock and provider, with its own lease owner.
    pub fn engine(&self, owner: &str) -> Engine {
        self.engine_over(self.store.clone(), owner)
    }

    /// An engine over `store` (e.g. a [`FaultyStore`] over [`Self::store`]), with the bed's
    /// clock, config and provider.
    pub fn engine_over(&self, store: Arc<dyn ObjectStore>, owner: &str) -> Engine {
        Engine::new(
            store,
            BUCKET,
            self.config.clone(),
            self.providers.clone(),
            self.clock.clone(),
        )
        .with_owner(owner)
        .with_observer(self.events.clone())
    }

    /// Writes an object as a user's upload would.
    pub async fn upload(
        &self,
        key: &str,
        body: impl Into<Bytes>,
    ) -> Result<ObjectMeta, StoreError> {
        self.store.put(key, body.into(), PutMode::Overwrite).await
    }

    /// Uploads `body` under `key` and delivers its creation event (with the new ETag).
    pub async fn drop_file(
        &self,
        key: &str,
        body: impl Into<Bytes>,
    ) -> Result<(ObjectMeta, SubmitOutcome), crate::engine::JobError> {
        let meta = self.upload(key, body).await?;
        let outcome = self.engine.submit(key, Some(&meta.etag)).await?;
        Ok((meta, outcome))
    }
}
