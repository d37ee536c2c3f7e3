//! What the functions tell the outside world about jobs: CloudWatch metrics (EMF lines, see
//! [`crate::metrics`]) for every job event, and — when `BATCHDROP_EVENT_BUS` names an
//! EventBridge bus (name or ARN) — one event per finished job:
//!
//! ```json
//! {"source": "batchdrop", "detail-type": "Batch Job Finished", "detail": <summary.json>}
//! ```
//!
//! `detail` is the job's summary.json (status, counts, usage, cost, …), so a rule can match on
//! `detail.status` or `detail.route` and a workflow can chain on the results. A summary too
//! large for an event (256 KB) goes without its `batches` list (`"batches_omitted": n`).
//! The function's role needs `events:PutEvents` on the bus.
//!
//! [`Completions::observer`] is the engine's [`Observer`]: it logs each event (as the default
//! observer does) and queues it; [`Completions::flush`], awaited by the handler before it
//! returns, emits the metrics and sends the events (Lambda may freeze the process once the
//! handler has returned, so nothing is left running in the background). A completion event
//! that cannot be sent is logged as an error with the job id and counted
//! (`CompletionEventsFailed`); the job itself is finished either way, and summary.json is in
//! the bucket.

use crate::metrics::{self, COUNT, Metrics};
use async_trait::async_trait;
use batchdrop_core::config::Config;
use batchdrop_core::engine::{JobEvent, LogObserver, Observer};
use batchdrop_core::layout::{self, InboxKey, JobKeys};
use batchdrop_core::manifest::{ChunkState, Manifest};
use batchdrop_core::store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// `source` of every event.
pub const SOURCE: &str = "batchdrop";
/// `detail-type` of the event of a finished job.
pub const DETAIL_TYPE: &str = "Batch Job Finished";
/// EventBridge's limit on one entry; the summary is trimmed to stay below it.
pub const MAX_DETAIL_BYTES: usize = 250_000;
/// Entries per `PutEvents` call.
pub const MAX_ENTRIES: usize = 10;

/// One event to send.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionEvent {
    pub job_id: String,
    pub route: String,
    /// The summary as JSON text.
    pub detail: String,
    /// RFC 3339 time the job finished.
    pub time: Option<String>,
}

/// Where completion events go: EventBridge, or a fake in tests.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Sends at most [`MAX_ENTRIES`] events; returns (index, error) of each one not accepted.
    async fn publish(&self, events: &[CompletionEvent]) -> Result<Vec<(usize, String)>, String>;
}

/// `PutEvents` on one bus.
pub struct EventBridge {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl std::fmt::Debug for EventBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBridge")
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

impl EventBridge {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    /// A client from the SDK's default chain (as the S3 one), on `bus`.
    pub async fn from_env(bus: impl Into<String>) -> Self {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        Self::new(aws_sdk_eventbridge::Client::new(&shared), bus)
    }

    pub fn bus(&self) -> &str {
        &self.bus
    }
}

#[async_trait]
impl EventPublisher for EventBridge {
    async fn publish(&self, events: &[CompletionEvent]) -> Result<Vec<(usize, String)>, String> {
        use aws_sdk_eventbridge::types::PutEventsRequestEntry;
        let entries = events
            .iter()
            .map(|e| {
                let time = e.time.as_deref().and_then(|t| {
                    aws_smithy_types::DateTime::from_str(
                        t,
                        aws_smithy_types::date_time::Format::DateTime,
                    )
                    .ok()
                });
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(SOURCE)
                    .detail_type(DETAIL_TYPE)
                    .detail(&e.detail)
                    .set_time(time)
                    .build()
            })
            .collect::<Vec<_>>();
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string())?;
        Ok(out
            .entries()
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                r.error_code().map(|code| {
                    (
                        i,
                        format!("{code}: {}", r.error_message().unwrap_or_default()),
                    )
                })
            })
            .collect())
    }
}

struct Pending {
    store: Arc<dyn ObjectStore>,
    event: JobEvent,
}

/// Queues job events; [`Self::flush`] turns them into metrics and completion events.
pub struct Completions {
    config: Arc<Config>,
    metrics: Metrics,
    publisher: Option<Arc<dyn EventPublisher>>,
    queue: Mutex<Vec<Pending>>,
}

impl std::fmt::Debug for Completions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completions")
            .field("metrics", &self.metrics)
            .field("events", &self.publisher.is_some())
            .finish_non_exhaustive()
    }
}

impl Completions {
    pub fn new(
        config: Arc<Config>,
        metrics: Metrics,
        publisher: Option<Arc<dyn EventPublisher>>,
    ) -> Self {
        Self {
            config,
            metrics,
            publisher,
            queue: Mutex::new(Vec::new()),
        }
    }

    /// EMF lines to stdout; events to `$BATCHDROP_EVENT_BUS` if it is set.
    pub async fn from_env(config: Arc<Config>, env: &dyn Fn(&str) -> Option<String>) -> Self {
        let publisher = match env("BATCHDROP_EVENT_BUS") {
            Some(bus) => {
                Some(Arc::new(EventBridge::from_env(bus).await) as Arc<dyn EventPublisher>)
            }
            None => None,
        };
        Self::new(config, Metrics::stdout(env), publisher)
    }

    /// The observer for an engine on `store`.
    pub fn observer(self: &Arc<Self>, store: Arc<dyn ObjectStore>) -> Arc<dyn Observer> {
        Arc::new(Recorder {
            completions: self.clone(),
            store,
        })
    }

    /// Emits the metrics of every queued event and sends the completion events of the jobs
    /// that finished. Never fails: what cannot be read or sent is logged and counted.
    pub async fn flush(&self) {
        let pending = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        let mut routes: HashMap<String, String> = HashMap::new();
        let mut finished: Vec<CompletionEvent> = Vec::new();
        for p in pending {
            let job_id = job_of(&p.event).to_string();
            let is_finish = matches!(p.event, JobEvent::Finished { .. });
            let values = metrics::of_event(&p.event);
            if values.is_empty() && !is_finish {
                continue;
            }
            if let JobEvent::Started { key, .. } = &p.event
                && let Some(k) = InboxKey::parse(key)
            {
                routes.insert(job_id.clone(), k.route);
            }
            let manifest = if is_finish || !routes.contains_key(&job_id) {
                match p
                    .store
                    .get_json::<Manifest>(&JobKeys::new(&job_id).manifest())
                    .await
                {
                    Ok((m, _)) => {
                        routes.insert(job_id.clone(), m.route.clone());
                        Some(m)
                    }
                    Err(e) => {
                        tracing::error!(job_id, error = %e, "job manifest not readable: metrics of this event left out");
                        None
                    }
                }
            } else {
                None
            };
            let Some(route) = routes.get(&job_id).cloned() else {
                continue;
            };
            self.metrics.emit(&route, &values);
            if let (JobEvent::Finished { .. }, Some(m)) = (&p.event, manifest) {
                let summary = batchdrop_core::summary::summary(&m, &self.config);
                self.metrics.emit(&route, &metrics::of_summary(&summary));
                if self.publisher.is_some() {
                    finished.push(CompletionEvent {
                        job_id: job_id.clone(),
                        route,
                        detail: detail_of(summary),
                        time: m.finished_at.clone(),
                    });
                }
            }
        }
        if let Some(publisher) = &self.publisher {
            for group in finished.chunks(MAX_ENTRIES) {
                let failed = match publisher.publish(group).await {
                    Ok(failed) => failed,
                    Err(e) => (0..group.len()).map(|i| (i, e.clone())).collect(),
                };
                let sent = group.len() - failed.len().min(group.len());
                for (i, error) in failed {
                    if let Some(e) = group.get(i) {
                        tracing::error!(job_id = %e.job_id, route = %e.route, %error, "completion event not sent");
                        self.metrics
                            .emit(&e.route, &[("CompletionEventsFailed", COUNT, 1.0)]);
                    }
                }
                tracing::info!(sent, "completion events published");
            }
        }
    }

    /// The `BatchesInFlight` gauge of every configured route: batches at the provider across
    /// the bucket's unfinished jobs (one manifest read per unfinished job).
    pub async fn batches_in_flight(&self, store: &dyn ObjectStore) {
        let mut by_route: HashMap<String, u64> =
            self.config.routes.keys().map(|r| (r.clone(), 0)).collect();
        let active = match store.list(layout::ACTIVE).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "active jobs not listed: no BatchesInFlight this tick");
                return;
            }
        };
        for entry in active {
            let Some(job_id) = entry.key.strip_prefix(layout::ACTIVE) else {
                continue;
            };
            let Ok((m, _)) = store
                .get_json::<Manifest>(&JobKeys::new(job_id).manifest())
                .await
            else {
                continue;
            };
            let n = m
                .chunks
                .iter()
                .filter(|c| matches!(c.state, ChunkState::Submitted | ChunkState::Submitting))
                .count() as u64;
            *by_route.entry(m.route).or_default() += n;
        }
        let mut routes: Vec<_> = by_route.into_iter().collect();
        routes.sort();
        for (route, n) in routes {
            self.metrics
                .emit(&route, &[("BatchesInFlight", COUNT, n as f64)]);
        }
    }
}

fn job_of(event: &JobEvent) -> &str {
    match event {
        JobEvent::Planning { job_id, .. }
        | JobEvent::PlanningPaused { job_id, .. }
        | JobEvent::Started { job_id, .. }
        | JobEvent::BatchSubmitted { job_id, .. }
        | JobEvent::BatchProgress { job_id, .. }
        | JobEvent::BatchCollected { job_id, .. }
        | JobEvent::Finished { job_id, .. }
        | JobEvent::WebhookDelivered { job_id, .. }
        | JobEvent::WebhookFailed { job_id, .. } => job_id,
    }
}

/// The summary as event detail, without its batch list if it would not fit.
pub fn detail_of(mut summary: Value) -> String {
    let text = summary.to_string();
    if text.len() <= MAX_DETAIL_BYTES {
        return text;
    }
    let n = summary["batches"].as_array().map_or(0, Vec::len);
    if let Some(obj) = summary.as_object_mut() {
        obj.remove("batches");
        obj.insert("batches_omitted".into(), Value::from(n));
        if let Some(cost) = obj.get_mut("cost").and_then(Value::as_object_mut) {
            cost.remove("by_model");
        }
    }
    summary.to_string()
}

/// The engine's observer: logs like [`LogObserver`], queues for [`Completions::flush`].
struct Recorder {
    completions: Arc<Completions>,
    store: Arc<dyn ObjectStore>,
}

impl Observer for Recorder {
    fn event(&self, event: &JobEvent) {
        LogObserver.event(event);
        self.completions
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Pending {
                store: self.store.clone(),
                event: event.clone(),
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_summary_loses_its_batch_list_not_its_counts() {
        let batches: Vec<Value> = (0..5000)
            .map(|i| serde_json::json!({"provider": "openai", "id": format!("batch_{i:040}"), "requests": 1, "status": "completed"}))
            .collect();
        let summary =
            serde_json::json!({"job_id": "j1", "counts": {"accepted": 5000}, "batches": batches});
        let detail: Value = serde_json::from_str(&detail_of(summary)).unwrap();
        assert!(detail.get("batches").is_none());
        assert_eq!(detail["batches_omitted"], 5000);
        assert_eq!(detail["counts"]["accepted"], 5000);
        let small = serde_json::json!({"job_id": "j1", "batches": []});
        assert_eq!(detail_of(small.clone()), small.to_string());
    }
}
