//! What the Lambda functions share: settings read once at cold start, and the handlers
//! that turn an event into an engine call and the outcome back into a response.
//!
//! Environment (a variable set to the empty string counts as unset, as CloudFormation cannot
//! always leave one out):
//! - `BATCHDROP_BUCKET` (poll, api): the bucket whose jobs it polls (serves: see [`api`]);
//! - `BATCHDROP_CONFIG`: path of the config file (optional; built-in routes otherwise);
//! - `BATCHDROP_EVENT_BUS` (optional): EventBridge bus (name or ARN) that gets a
//!   `Batch Job Finished` event per finished job (see [`events`]; needs `events:PutEvents`);
//! - `BATCHDROP_METRICS_NAMESPACE` (optional): CloudWatch namespace of the EMF metric lines
//!   (default `batchdrop`; see [`metrics`]);
//! - `OPENAI_API_KEY_SECRET_ARN`, `ANTHROPIC_API_KEY_SECRET_ARN` (and `<VAR>_SECRET_ARN` for
//!   any route's `api_key_env = "<VAR>"`): read that route's key from Secrets Manager, once
//!   per cold start (see [`secrets`]);
//! - a route's `webhook_in_secret_env = "<VAR>"` (OpenAI's webhook secret, for the poll
//!   function's URL, see [`push`]) is read from `<VAR>`, or from the secret `<VAR>_SECRET_ARN`
//!   names; `webhook_in_secret = "arn:…"` reads that secret;
//! - `OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, `OPENAI_BASE_URL`, `ANTHROPIC_BASE_URL`,
//!   `BATCHDROP_SANDBOX_URL`, `AWS_ENDPOINT_URL`: as usual.

pub mod secrets;

pub mod api;

pub mod events;
pub mod metrics;
pub mod push;

use aws_lambda_events::event::s3::S3Event;
use batchdrop_core::clock::{Clock, SystemClock};
use batchdrop_core::config::Config;
use batchdrop_core::engine::{Engine, JobError, SubmitOutcome};
use batchdrop_core::layout::{InboxKey, decode_event_key};
use batchdrop_core::provider::Providers;
use batchdrop_core::store::ObjectStore;
use batchdrop_core::webhooks::Webhooks;
use batchdrop_s3::S3Store;
use serde::Serialize;
use std::sync::Arc;

/// The store of each bucket an event names: S3 in the functions ([`S3Buckets`]), an
/// in-memory store in tests (any `Fn(&str) -> Arc<dyn ObjectStore>`).
pub trait Buckets: Send + Sync {
    fn store(&self, bucket: &str) -> Arc<dyn ObjectStore>;
}

/// Every bucket through one S3 client (the one configured at cold start).
#[derive(Debug, Clone)]
pub struct S3Buckets {
    client: aws_sdk_s3::Client,
}

impl S3Buckets {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }
}

impl Buckets for S3Buckets {
    fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(S3Store::new(self.client.clone(), bucket))
    }
}

impl<F> Buckets for F
where
    F: Fn(&str) -> Arc<dyn ObjectStore> + Send + Sync,
{
    fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        self(bucket)
    }
}

/// Everything built once per cold start: what the handlers run the engine with.
pub struct App {
    buckets: Arc<dyn Buckets>,
    config: Arc<Config>,
    providers: Arc<dyn Providers>,
    clock: Arc<dyn Clock>,
    /// Metrics and completion events of the jobs each invocation moves.
    completions: Arc<events::Completions>,
    /// Bucket polled by the poll function.
    pub bucket: Option<String>,
    /// The routes' webhook signing secrets (and the Batch API tenants', with a keys file).
    webhooks: Arc<Webhooks>,
    /// The Batch API's keys file, when the deployment has one (`api::KEYS_SECRET_ARN_VAR`).
    keys: Option<batchdrop_api::auth::Keys>,
    /// The routes' inbound webhook secrets (the poll function's URL, [`push`]).
    inbound: Arc<batchdrop_core::push::InboundSecrets>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("configuration: {0}")]
    Config(String),
    /// A configured API key secret could not be read at cold start.
    #[error("API key: {0}")]
    Secret(#[from] secrets::SecretError),
    /// Failures worth a retry of the whole invocation (Lambda retries async invocations).
    #[error("{0}")]
    Retryable(String),
}

impl HandlerError {
    /// The `errorType` Lambda records for an invocation that failed with this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            HandlerError::Config(_) => "batchdrop.ConfigError",
            HandlerError::Secret(_) => "batchdrop.SecretError",
            HandlerError::Retryable(_) => "batchdrop.RetryableError",
        }
    }
}

/// What the Lambda runtime reports for a failed invocation: a stable error type and the
/// message (which never holds a key: errors are built without secrets).
impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(error: HandlerError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.error_type().to_string(),
            error_message: error.to_string(),
        }
    }
}

impl App {
    /// An app over these stores, routes, providers and clock, whose jobs' metrics and
    /// completion events go to `completions`; it polls no bucket until [`Self::polling`].
    pub fn new(
        buckets: Arc<dyn Buckets>,
        config: Arc<Config>,
        providers: Arc<dyn Providers>,
        clock: Arc<dyn Clock>,
        completions: Arc<events::Completions>,
    ) -> App {
        App {
            buckets,
            config,
            providers,
            clock,
            completions,
            bucket: None,
            webhooks: Arc::default(),
            inbound: Arc::default(),
            keys: None,
        }
    }

    /// The same app, signing its routes' webhooks with these secrets.
    pub fn with_webhooks(mut self, webhooks: Webhooks) -> App {
        self.webhooks = Arc::new(webhooks);
        self
    }

    /// The same app, taking OpenAI webhooks for the routes of `secrets`.
    pub fn with_webhook_secrets(mut self, secrets: batchdrop_core::push::InboundSecrets) -> App {
        self.inbound = Arc::new(secrets);
        self
    }

    /// The same app, polling `bucket` on each tick.
    pub fn polling(mut self, bucket: impl Into<String>) -> App {
        self.bucket = Some(bucket.into());
        self
    }

    /// Reads the configuration, the API keys it needs from Secrets Manager, and builds the
    /// clients; fails before serving if anything is off.
    pub async fn from_env() -> Result<App, HandlerError> {
        let mut config =
            Config::from_env(&lambda_env).map_err(|e| HandlerError::Config(e.to_string()))?;
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let secrets_client = aws_sdk_secretsmanager::Client::new(&shared);
        let arns = secrets::secret_key_sources(&mut config, &lambda_env);
        let keys = if arns.is_empty() {
            Default::default()
        } else {
            secrets::fetch_keys(&secrets_client, &arns).await?
        };
        let providers =
            batchdrop_core::providers::clients_with_secrets(&config.routes, &lambda_env, &|arn| {
                keys.get(arn).cloned()
            });
        let mut webhooks =
            Webhooks::from_routes(&config.routes, &lambda_env, &|arn| keys.get(arn).cloned());
        // The Batch API's keys file, when deployed: its tenants' webhooks are signed with
        // their own secrets, wherever their jobs end (this function or the API's).
        let api_keys = match api::KeysSource::if_set(&lambda_env)? {
            Some(source) => {
                let api_keys = api::read_keys(&source, || secrets_client.clone()).await?;
                let tenant_secrets = api::tenant_webhook_secrets(&api_keys, &secrets_client).await;
                webhooks = webhooks.with_tenants(api_keys.webhooks(), &lambda_env, &|arn| {
                    tenant_secrets.get(arn).cloned()
                });
                Some(api_keys)
            }
            None => None,
        };
        for problem in webhooks.problems() {
            tracing::warn!(problem, "webhooks will fail");
        }
        let inbound = batchdrop_core::push::InboundSecrets::resolve(&config, &lambda_env, &|arn| {
            keys.get(arn).cloned()
        });
        for (route, problem) in inbound.problems() {
            tracing::warn!(route, problem, "the route's webhooks will be refused");
        }
        drop(keys);
        // The store for the poll bucket (or a placeholder name) carries the configured client.
        let s3 = S3Store::from_env("batchdrop").await.client().clone();
        let config = Arc::new(config);
        let completions =
            Arc::new(events::Completions::from_env(config.clone(), &lambda_env).await);
        let app = App::new(
            Arc::new(S3Buckets::new(s3)),
            config,
            Arc::new(providers),
            Arc::new(SystemClock),
            completions,
        )
        .with_webhooks(webhooks)
        .with_webhook_secrets(inbound);
        let app = App {
            keys: api_keys,
            ..app
        };
        Ok(match lambda_env("BATCHDROP_BUCKET") {
            Some(bucket) => app.polling(bucket),
            None => app,
        })
    }

    /// The engine over `bucket`, whose job events go to the app's completions.
    pub fn engine(&self, bucket: &str) -> Engine {
        let store = self.buckets.store(bucket);
        let observer = self.completions.observer(store.clone());
        Engine::new(
            store,
            bucket,
            self.config.clone(),
            self.providers.clone(),
            self.clock.clone(),
        )
        .with_observer(observer)
        .with_webhooks(self.webhooks.clone())
    }

    /// The engine for an invocation that must end by `deadline_ms` (ms since the epoch), if
    /// known.
    fn engine_until(&self, bucket: &str, deadline_ms: Option<u64>) -> Engine {
        let engine = self.engine(bucket);
        match usable_deadline(deadline_ms, self.clock.now()) {
            Some(d) => engine.until(d),
            None => engine,
        }
    }
}

/// What the submit function did with each record of an S3 event.
#[derive(Debug, Serialize)]
pub struct SubmitResponse {
    pub records: Vec<RecordOutcome>,
}

#[derive(Debug, Serialize)]
pub struct RecordOutcome {
    pub bucket: String,
    pub key: String,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

/// Handles an S3 `ObjectCreated` event: one submit per record (`inbox/…`), or a cancel
/// (`cancel/…`). A record whose failure may pass
/// (throttling, a provider hiccup) fails the invocation so that Lambda retries it; the job is
/// idempotent, so records already handled are found and left alone.
///
/// `deadline_ms` is the invocation's deadline (the Lambda context's, ms since the epoch):
/// planning a big upload checkpoints before it and the next poll continues.
pub async fn handle_s3_event(
    app: &App,
    event: S3Event,
    deadline_ms: Option<u64>,
) -> Result<SubmitResponse, HandlerError> {
    let mut records = Vec::new();
    let mut retry = Vec::new();
    for record in event.records {
        let bucket = record.s3.bucket.name.unwrap_or_default();
        let raw_key = record.s3.object.key.unwrap_or_default();
        let key = match decode_event_key(&raw_key) {
            Ok(k) => k,
            Err(e) => {
                records.push(RecordOutcome {
                    bucket,
                    key: raw_key,
                    outcome: format!("ignored: key is not UTF-8 once decoded ({e})"),
                    job_id: None,
                });
                continue;
            }
        };
        let engine = app.engine_until(&bucket, deadline_ms);
        if InboxKey::parse_cancel(&key).is_some() {
            let (text, retryable) = match engine.cancel(&key).await {
                Ok(jobs) if jobs.is_empty() => {
                    ("cancel: no unfinished job for this path".to_string(), false)
                }
                Ok(jobs) => (format!("cancel requested for {}", jobs.join(", ")), false),
                Err(e) => (format!("cancel failed: {e}"), e.is_retryable()),
            };
            tracing::info!(bucket, key, outcome = %text, "cancel");
            if retryable {
                retry.push(format!("{key}: {text}"));
            }
            records.push(RecordOutcome {
                bucket,
                key,
                outcome: text,
                job_id: None,
            });
            continue;
        }
        let outcome = engine.submit(&key, record.s3.object.e_tag.as_deref()).await;
        let (text, job_id) = match outcome {
            Ok(SubmitOutcome::Started { job_id }) => ("started".to_string(), Some(job_id)),
            Ok(SubmitOutcome::Duplicate { job_id }) => ("duplicate".to_string(), Some(job_id)),
            Ok(SubmitOutcome::Superseded) => ("superseded".to_string(), None),
            Ok(SubmitOutcome::Ignored { reason }) => (format!("ignored: {reason}"), None),
            Err(e) => {
                tracing::error!(bucket, key, error = %e, retryable = e.is_retryable(), "submit failed");
                if e.is_retryable() {
                    retry.push(format!("{key}: {e}"));
                }
                (format!("failed: {e}"), None)
            }
        };
        tracing::info!(bucket, key, outcome = %text, job_id = job_id.as_deref().unwrap_or(""), "submit");
        records.push(RecordOutcome {
            bucket,
            key,
            outcome: text,
            job_id,
        });
    }
    app.completions.flush().await;
    if !retry.is_empty() {
        return Err(HandlerError::Retryable(retry.join("; ")));
    }
    Ok(SubmitResponse { records })
}

#[derive(Debug, Serialize)]
pub struct PollResponse {
    pub active: usize,
    pub finished: Vec<String>,
    pub busy: usize,
    pub failures: Vec<String>,
    /// Webhooks delivered by this tick, and attempts that failed (retried later or given up).
    pub webhooks_delivered: usize,
    pub webhooks_failed: usize,
}

/// Handles one scheduled tick: advances every active job of the bucket. A job that fails is
/// reported and left for the next tick; it never stops the others.
/// `deadline_ms` as for [`handle_s3_event`]: a job still being planned continues until then.
pub async fn handle_tick(
    app: &App,
    deadline_ms: Option<u64>,
) -> Result<PollResponse, HandlerError> {
    let bucket = app
        .bucket
        .as_deref()
        .ok_or_else(|| HandlerError::Config("BATCHDROP_BUCKET is not set".into()))?;
    let engine = app.engine_until(bucket, deadline_ms);
    let report = engine
        .poll()
        .await
        .map_err(|e: JobError| HandlerError::Retryable(e.to_string()))?;
    app.completions.flush().await;
    app.completions
        .batches_in_flight(engine.store().as_ref())
        .await;
    let failures: Vec<String> = report
        .failures
        .iter()
        .map(|(job, e)| format!("{job}: {e}"))
        .collect();
    for f in &failures {
        tracing::warn!(failure = %f, "job not advanced this tick");
    }
    Ok(PollResponse {
        active: report.active,
        finished: report.finished,
        busy: report.busy,
        failures,
        webhooks_delivered: report.webhooks_delivered,
        webhooks_failed: report.webhooks_failed,
    })
}

/// The deadline as a time, unless it is not one: a deadline already past when the invocation
/// begins is not a real Lambda's (`cargo lambda watch` sends the timeout itself, 600000).
fn usable_deadline(
    deadline_ms: Option<u64>,
    now: time::OffsetDateTime,
) -> Option<time::OffsetDateTime> {
    let ms = deadline_ms?;
    let deadline =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    if deadline <= now {
        tracing::warn!(
            deadline_ms = ms,
            "the invocation's deadline is already past; running without one"
        );
        return None;
    }
    Some(deadline)
}

/// The process environment, where a variable set to the empty string is unset.
pub fn lambda_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// JSON logs for CloudWatch; level from `RUST_LOG` (default info).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time()
        .init();
}

#[cfg(test)]
mod diagnostic_tests {
    use super::*;

    #[test]
    fn failed_invocations_report_a_stable_error_type_and_the_message() {
        let d: lambda_runtime::Diagnostic = HandlerError::Retryable("s3 timed out".into()).into();
        assert_eq!(d.error_type, "batchdrop.RetryableError");
        assert_eq!(d.error_message, "s3 timed out");
        let d: lambda_runtime::Diagnostic = HandlerError::Config("bad".into()).into();
        assert_eq!(d.error_type, "batchdrop.ConfigError");
    }
}

#[cfg(test)]
mod deadline_tests {
    use super::usable_deadline;
    use time::OffsetDateTime;

    fn at(ms: u64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
    }

    #[test]
    fn a_lambda_deadline_in_the_future_is_used() {
        let now = at(1_795_753_756_000);
        assert_eq!(
            usable_deadline(Some(1_795_754_656_000), now),
            Some(at(1_795_754_656_000))
        );
    }

    #[test]
    fn a_deadline_already_past_is_ignored() {
        // cargo lambda watch sends the timeout (10 minutes) instead of a time.
        assert_eq!(usable_deadline(Some(600_000), at(1_795_753_756_000)), None);
        assert_eq!(usable_deadline(None, at(1_795_753_756_000)), None);
    }
}
