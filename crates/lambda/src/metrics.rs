//! CloudWatch metrics as Embedded Metric Format (EMF) lines on standard output: Lambda sends
//! stdout to CloudWatch Logs, which turns each such line into metric data points. No agent,
//! no API call, no permission beyond the function's log group.
//!
//! One line per job event, dimension `Route`, namespace `batchdrop` (or
//! `$BATCHDROP_METRICS_NAMESPACE`):
//!
//! | event | metrics (unit) |
//! |---|---|
//! | job started | `JobsStarted`, `RequestsAccepted`, `RequestsRejected` (Count) |
//! | batch submitted | `BatchesSubmitted` (Count) |
//! | batch collected | `BatchesCollected`, `RequestsSucceeded`, `RequestsFailed` (Count) |
//! | job finished | `JobsCompleted` / `JobsCancelled` / `JobsFailed`, `InputTokens`, `OutputTokens` (Count); `CostUSD`, `SynchronousEquivalentUSD`, `SavedUSD` (None) |
//! | file refused whole (unknown route) | `JobsFailed`, `RequestsRejected` (Count) |
//! | each poll tick | `BatchesInFlight` (Count, a gauge per configured route) |
//! | completion event not sent | `CompletionEventsFailed` (Count) |
//! | webhook delivered / attempt failed | `WebhooksDelivered` / `WebhookDeliveriesFailed` (Count) |
//!
//! A line carries numbers and the route name only: never a prompt, a completion, a key, an
//! object key or a custom_id.
//!
//! ```json
//! {"_aws":{"Timestamp":1764000000000,"CloudWatchMetrics":[{"Namespace":"batchdrop",
//!   "Dimensions":[["Route"]],"Metrics":[{"Name":"RequestsAccepted","Unit":"Count"}]}]},
//!  "Route":"openai","RequestsAccepted":9}
//! ```

use batchdrop_core::clock::{Clock, SystemClock};
use batchdrop_core::engine::JobEvent;
use batchdrop_core::manifest::JobStatus;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// The default namespace.
pub const NAMESPACE: &str = "batchdrop";
/// CloudWatch's unit for plain counts.
pub const COUNT: &str = "Count";
/// CloudWatch has no currency unit: dollar amounts are unit-less.
pub const NONE: &str = "None";

/// One metric value: name, CloudWatch unit, value.
pub type Metric = (&'static str, &'static str, f64);

/// Where EMF lines go (standard output in Lambda; a buffer in tests).
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// The EMF line for `metrics` of `route` at `timestamp_ms`.
pub fn emf_line(namespace: &str, timestamp_ms: i64, route: &str, metrics: &[Metric]) -> String {
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|(name, unit, _)| json!({"Name": name, "Unit": unit}))
        .collect();
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Route"]],
                "Metrics": definitions,
            }],
        }),
    );
    line.insert("Route".into(), Value::String(route.to_string()));
    for (name, _, value) in metrics {
        let number = if value.fract() == 0.0 && value.abs() < 9.0e15 {
            json!(*value as i64)
        } else {
            json!(value)
        };
        line.insert((*name).to_string(), number);
    }
    Value::Object(line).to_string()
}

/// The metrics a job event carries by itself (tokens and cost come from the summary: see
/// [`of_summary`]).
pub fn of_event(event: &JobEvent) -> Vec<Metric> {
    match event {
        JobEvent::Started { counts, .. } => vec![
            ("JobsStarted", COUNT, 1.0),
            ("RequestsAccepted", COUNT, counts.accepted as f64),
            ("RequestsRejected", COUNT, counts.rejected as f64),
        ],
        JobEvent::Planning { .. } => Vec::new(),
        JobEvent::PlanningPaused { .. } => vec![("PlanningContinued", COUNT, 1.0)],
        JobEvent::BatchSubmitted { .. } => vec![("BatchesSubmitted", COUNT, 1.0)],
        JobEvent::BatchProgress { .. } => Vec::new(),
        JobEvent::BatchCollected {
            succeeded, failed, ..
        } => vec![
            ("BatchesCollected", COUNT, 1.0),
            ("RequestsSucceeded", COUNT, *succeeded as f64),
            ("RequestsFailed", COUNT, *failed as f64),
        ],
        JobEvent::Finished { status, counts, .. } => match status {
            JobStatus::Completed => vec![("JobsCompleted", COUNT, 1.0)],
            JobStatus::Cancelled => vec![("JobsCancelled", COUNT, 1.0)],
            // Only a file refused as a whole fails: it never started, so its lines are
            // counted here.
            JobStatus::Failed => vec![
                ("JobsFailed", COUNT, 1.0),
                ("RequestsRejected", COUNT, counts.rejected as f64),
            ],
            JobStatus::Running => Vec::new(),
        },
        JobEvent::WebhookDelivered { .. } => vec![("WebhooksDelivered", COUNT, 1.0)],
        JobEvent::WebhookFailed { .. } => vec![("WebhookDeliveriesFailed", COUNT, 1.0)],
    }
}

/// Tokens and cost of a finished job, from its summary.json.
pub fn of_summary(summary: &Value) -> Vec<Metric> {
    let n = |v: &Value| v.as_f64().unwrap_or(0.0);
    vec![
        ("InputTokens", COUNT, n(&summary["usage"]["input_tokens"])),
        ("OutputTokens", COUNT, n(&summary["usage"]["output_tokens"])),
        ("CostUSD", NONE, n(&summary["cost"]["batch"])),
        (
            "SynchronousEquivalentUSD",
            NONE,
            n(&summary["cost"]["synchronous_equivalent"]),
        ),
        ("SavedUSD", NONE, n(&summary["cost"]["saved"])),
    ]
}

/// Writes EMF lines.
#[derive(Clone)]
pub struct Metrics {
    namespace: String,
    clock: Arc<dyn Clock>,
    sink: Sink,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// To standard output, namespace from `BATCHDROP_METRICS_NAMESPACE` (default `batchdrop`).
    pub fn stdout(env: &dyn Fn(&str) -> Option<String>) -> Self {
        Self::new(
            env("BATCHDROP_METRICS_NAMESPACE").unwrap_or_else(|| NAMESPACE.to_string()),
            Arc::new(SystemClock),
            Arc::new(|line: &str| println!("{line}")),
        )
    }

    pub fn new(namespace: impl Into<String>, clock: Arc<dyn Clock>, sink: Sink) -> Self {
        Self {
            namespace: namespace.into(),
            clock,
            sink,
        }
    }

    /// One EMF line for `route`; nothing when `metrics` is empty.
    pub fn emit(&self, route: &str, metrics: &[Metric]) {
        if metrics.is_empty() {
            return;
        }
        let now = self.clock.now();
        let ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        (self.sink)(&emf_line(&self.namespace, ms, route, metrics));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use batchdrop_core::manifest::Counts;

    #[test]
    fn a_line_declares_every_metric_it_carries_under_the_route_dimension() {
        let line = emf_line(
            "batchdrop",
            1_764_000_000_123,
            "openai",
            &[("RequestsAccepted", COUNT, 9.0), ("CostUSD", NONE, 0.0042)],
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_764_000_000_123i64);
        let cwm = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cwm["Namespace"], "batchdrop");
        assert_eq!(cwm["Dimensions"], json!([["Route"]]));
        assert_eq!(
            cwm["Metrics"],
            json!([{"Name": "RequestsAccepted", "Unit": "Count"}, {"Name": "CostUSD", "Unit": "None"}])
        );
        assert_eq!(v["Route"], "openai");
        assert_eq!(v["RequestsAccepted"], 9);
        assert_eq!(v["CostUSD"], 0.0042);
        // nothing else: the dimension, the values and _aws
        assert_eq!(v.as_object().unwrap().len(), 4);
        assert!(!line.contains('\n'));
    }

    #[test]
    fn events_map_to_their_metrics() {
        let counts = Counts {
            lines: 14,
            accepted: 9,
            rejected: 5,
            ..Counts::default()
        };
        let started = JobEvent::Started {
            job_id: "j1".into(),
            key: "inbox/openai/x.jsonl".into(),
            counts: counts.clone(),
            chunks: 2,
        };
        assert_eq!(
            of_event(&started),
            vec![
                ("JobsStarted", COUNT, 1.0),
                ("RequestsAccepted", COUNT, 9.0),
                ("RequestsRejected", COUNT, 5.0)
            ]
        );
        let refused = JobEvent::Finished {
            job_id: "j2".into(),
            status: JobStatus::Failed,
            results_prefix: "results/nope/x/".into(),
            counts: Counts {
                lines: 3,
                rejected: 3,
                ..Counts::default()
            },
            reason: Some("route \"nope\" is not configured".into()),
        };
        assert_eq!(
            of_event(&refused),
            vec![("JobsFailed", COUNT, 1.0), ("RequestsRejected", COUNT, 3.0)]
        );
    }
}
