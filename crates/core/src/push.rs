//! Webhooks in: an OpenAI batch event pushed to batchdrop (`POST /webhooks/openai/<route>`)
//! advances the job of its batch at once, instead of at the next scheduled poll.
//!
//! The decision, in this order, nothing acted on before the signature is checked:
//! 1. the route must take webhooks (`webhook_in_secret_env` / `webhook_in_secret`), else
//!    [`ReceiveError::NotConfigured`] (404);
//! 2. the Standard Webhooks signature with the route's secret, and a timestamp within five
//!    minutes of now: a bad or missing signature is a 401, a stale or unreadable timestamp a
//!    400 ([`ReceiveError::status`]);
//! 3. the body must be an OpenAI event (`{"id","type","created_at","data":{"id"}}`), else 400;
//! 4. the `webhook-id` is recorded with a conditional create of
//!    `_batchdrop/webhooks-in/<route>/<webhook-id>`: a second delivery of the same id finds it
//!    and is refused with 409 ([`ReceiveError::Replayed`]), changing nothing;
//! 5. a `batch.completed|failed|expired|cancelled` event's batch is looked up in the batch
//!    index ([`crate::batch_index`]); a batch batchdrop did not submit is answered 200 with
//!    nothing to do ([`Accepted::UnknownBatch`]: OpenAI sends a project's events for every
//!    batch, and a non-2xx answer only makes it retry for three days); other event types are
//!    answered 200 and ignored.
//!
//! The caller answers at once and then runs [`Receiver::advance`], which is
//! [`Engine::advance`] of the job: it takes the job's lease, so a push and a scheduled poll at
//! the same moment advance the job once. A failed advance is counted
//! ([`ReceiverStats::advance_failures`]) and logged; the job is finished by the next poll, as
//! it would have been without webhooks. Any job of the route's provider is advanced, whatever
//! its route (two routes may share one OpenAI project, and so its webhooks).

use crate::batch_index;
use crate::clock::{Clock, rfc3339};
use crate::config::{Config, KeySource};
use crate::engine::{Advance, Engine, JobError};
use crate::layout;
use crate::store::{ObjectStoreExt, PutMode, StoreError};
use crate::webhooks::signature::{SignatureError, SignedHeaders, WebhookSecret};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The OpenAI event types that say a batch has ended.
pub const BATCH_EVENTS: [&str; 4] = [
    "batch.completed",
    "batch.failed",
    "batch.expired",
    "batch.cancelled",
];

/// Each route's inbound webhook secret, resolved once at start. A route whose secret cannot be
/// had maps to the reason (its webhooks are refused with 503; the others work).
#[derive(Debug, Default)]
pub struct InboundSecrets {
    by_route: BTreeMap<String, Result<WebhookSecret, String>>,
}

impl InboundSecrets {
    /// The secrets of the routes of `config` that take webhooks: from the environment variable
    /// it names (unset or empty: the route takes none, so that the built-in `openai` route's
    /// `OPENAI_WEBHOOK_SECRET` is an opt-in), or from `secret` (a Secrets Manager secret by
    /// ARN; `None`: not read, the route's webhooks are refused with 503).
    pub fn resolve(
        config: &Config,
        env: &dyn Fn(&str) -> Option<String>,
        secret: &dyn Fn(&str) -> Option<SecretString>,
    ) -> Self {
        let by_route = config
            .routes
            .iter()
            .filter_map(|(name, route)| {
                let source = route.webhook_in_secret.as_ref()?;
                let text = match source {
                    KeySource::None => return None,
                    KeySource::Env(var) => Ok(env(var)
                        .filter(|v| !v.trim().is_empty())
                        .map(SecretString::from)?),
                    KeySource::Secret(arn) => secret(arn).ok_or_else(|| {
                        format!("the webhook secret in Secrets Manager ({arn}) was not read")
                    }),
                };
                let parsed = text.and_then(|t| {
                    WebhookSecret::parse(t.expose_secret()).map_err(|e| match source {
                        KeySource::Env(var) => format!("environment variable {var}: {e}"),
                        KeySource::Secret(arn) => format!("secret {arn}: {e}"),
                        KeySource::None => e.to_string(),
                    })
                });
                Some((name.clone(), parsed))
            })
            .collect();
        Self { by_route }
    }

    /// Secrets given directly (tests, embedding).
    pub fn from_secrets(secrets: impl IntoIterator<Item = (String, WebhookSecret)>) -> Self {
        Self {
            by_route: secrets.into_iter().map(|(r, s)| (r, Ok(s))).collect(),
        }
    }

    /// Gives `route` this secret (replacing what the config gave it).
    pub fn insert(&mut self, route: impl Into<String>, secret: WebhookSecret) {
        self.by_route.insert(route.into(), Ok(secret));
    }

    /// The routes that take webhooks (with a usable secret or not).
    pub fn routes(&self) -> Vec<&str> {
        self.by_route.keys().map(String::as_str).collect()
    }

    /// Why a route's secret is unusable, for each route whose is.
    pub fn problems(&self) -> Vec<(&str, &str)> {
        self.by_route
            .iter()
            .filter_map(|(r, s)| s.as_ref().err().map(|e| (r.as_str(), e.as_str())))
            .collect()
    }
}

/// Why an event was refused; [`ReceiveError::status`] is the HTTP answer. Nothing was changed
/// by a refused event.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error(
        "route {route:?} takes no webhooks (give it webhook_in_secret_env, with that variable set, or webhook_in_secret)"
    )]
    NotConfigured { route: String },
    #[error("the webhook secret of route {route:?} is unavailable: {reason}")]
    SecretUnavailable { route: String, reason: String },
    #[error("webhook refused: {0}")]
    Signature(#[from] SignatureError),
    #[error("not an OpenAI event: {0}")]
    Malformed(String),
    #[error("webhook {id:?} was already received")]
    Replayed { id: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReceiveError {
    /// The HTTP status to answer with: 404 no such webhook route, 401 bad or missing
    /// signature, 400 stale timestamp or malformed event, 409 replayed id, 503 when the
    /// bucket or the secret failed (the sender retries).
    pub fn status(&self) -> u16 {
        match self {
            ReceiveError::NotConfigured { .. } => 404,
            ReceiveError::SecretUnavailable { .. } => 503,
            ReceiveError::Signature(SignatureError::Stale { .. })
            | ReceiveError::Signature(SignatureError::BadTimestamp(_)) => 400,
            ReceiveError::Signature(_) => 401,
            ReceiveError::Malformed(_) => 400,
            ReceiveError::Replayed { .. } => 409,
            ReceiveError::Store(e) if e.is_retryable() => 503,
            ReceiveError::Store(_) => 500,
        }
    }

    /// Whether the same delivery may succeed later (the sender's retry).
    pub fn is_retryable(&self) -> bool {
        match self {
            ReceiveError::Store(e) => e.is_retryable(),
            ReceiveError::SecretUnavailable { .. } => true,
            _ => false,
        }
    }
}

/// An OpenAI event, as much of it as batchdrop reads.
#[derive(Debug, Clone, Deserialize)]
pub struct OpenAiEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub created_at: Option<i64>,
    pub data: EventData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    pub id: String,
}

/// A verified, first-seen event: what is left to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// A batch of job `job_id` has ended: advance it.
    Job {
        job_id: String,
        batch_id: String,
        event_type: String,
    },
    /// A batch event for a batch batchdrop did not submit: nothing to do.
    UnknownBatch { batch_id: String },
    /// Another event type: nothing to do.
    Ignored { event_type: String },
}

impl Accepted {
    /// The job to advance, if any.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            Accepted::Job { job_id, .. } => Some(job_id),
            _ => None,
        }
    }
}

/// What the receiver has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReceiverStats {
    /// Events verified and recorded (any type).
    pub accepted: u64,
    /// Events refused (any reason).
    pub refused: u64,
    /// Jobs advanced because of an event.
    pub advanced: u64,
    /// Advances that failed (the next poll does them).
    pub advance_failures: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    advanced: AtomicU64,
    advance_failures: AtomicU64,
}

/// What the marker of a received webhook holds.
#[derive(Debug, Serialize)]
struct Marker<'a> {
    received_at: String,
    event_id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    batch_id: &'a str,
}

/// Receives webhooks for the routes of one bucket. Cheap to clone.
#[derive(Clone)]
pub struct Receiver {
    engine: Engine,
    config: Arc<Config>,
    secrets: Arc<InboundSecrets>,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
}

impl Receiver {
    pub fn new(
        engine: Engine,
        config: Arc<Config>,
        secrets: Arc<InboundSecrets>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            engine,
            config,
            secrets,
            clock,
            counters: Arc::default(),
        }
    }

    pub fn stats(&self) -> ReceiverStats {
        let c = &self.counters;
        ReceiverStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            advanced: c.advanced.load(Ordering::Relaxed),
            advance_failures: c.advance_failures.load(Ordering::Relaxed),
        }
    }

    /// Verifies, parses and records one delivery to `route` (see the module docs for the
    /// order); what is left to do is [`Receiver::advance`]'s.
    pub async fn accept(
        &self,
        route: &str,
        headers: &SignedHeaders<'_>,
        body: &[u8],
    ) -> Result<Accepted, ReceiveError> {
        let outcome = self.decide(route, headers, body).await;
        let counter = match &outcome {
            Ok(_) => &self.counters.accepted,
            Err(_) => &self.counters.refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    async fn decide(
        &self,
        route: &str,
        headers: &SignedHeaders<'_>,
        body: &[u8],
    ) -> Result<Accepted, ReceiveError> {
        let secret = match self.secrets.by_route.get(route) {
            None => {
                return Err(ReceiveError::NotConfigured {
                    route: route.to_string(),
                });
            }
            Some(Err(reason)) => {
                return Err(ReceiveError::SecretUnavailable {
                    route: route.to_string(),
                    reason: reason.clone(),
                });
            }
            Some(Ok(secret)) => secret,
        };
        secret.verify(headers, body, self.clock.now())?;
        // Verified: the headers are there and the body is the sender's.
        let webhook_id = headers.id.unwrap_or_default();
        let event: OpenAiEvent = serde_json::from_slice(body).map_err(|e| {
            ReceiveError::Malformed(format!(
                "{e} (expected {{\"id\",\"type\",\"data\":{{\"id\"}}}})"
            ))
        })?;
        let marker = Marker {
            received_at: rfc3339(self.clock.now()),
            event_id: &event.id,
            kind: &event.kind,
            batch_id: &event.data.id,
        };
        match self
            .engine
            .store()
            .put_json(
                &layout::webhook_in_key(route, webhook_id),
                &marker,
                PutMode::Create,
            )
            .await
        {
            Ok(_) => {}
            Err(StoreError::AlreadyExists { .. }) => {
                return Err(ReceiveError::Replayed {
                    id: webhook_id.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        if !BATCH_EVENTS.contains(&event.kind.as_str()) {
            return Ok(Accepted::Ignored {
                event_type: event.kind,
            });
        }
        let provider = self
            .config
            .route(route)
            .map(|r| r.provider.as_str())
            .unwrap_or("openai");
        let owner =
            match batch_index::owner_of(self.engine.store().as_ref(), provider, &event.data.id)
                .await
            {
                Ok(owner) => owner,
                Err(e) => {
                    // Not acted on: the provider's retry of this id must be taken, not refused as
                    // a replay.
                    let _ = self
                        .engine
                        .store()
                        .delete(&layout::webhook_in_key(route, webhook_id))
                        .await;
                    return Err(e.into());
                }
            };
        match owner {
            Some(owner) => Ok(Accepted::Job {
                job_id: owner.job_id,
                batch_id: event.data.id,
                event_type: event.kind,
            }),
            None => Ok(Accepted::UnknownBatch {
                batch_id: event.data.id,
            }),
        }
    }

    /// Advances the job of an accepted event (nothing for the others): [`Engine::advance`],
    /// under the job's lease. Counted either way; a failure is also logged (the next poll
    /// advances the job).
    pub async fn advance(&self, accepted: &Accepted) -> Option<Result<Advance, JobError>> {
        let job_id = accepted.job_id()?;
        let outcome = self.engine.advance(job_id).await;
        match &outcome {
            Ok(advance) => {
                self.counters.advanced.fetch_add(1, Ordering::Relaxed);
                tracing::info!(job_id, ?advance, "job advanced by a webhook");
            }
            Err(e) => {
                self.counters
                    .advance_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(job_id, error = %e, "a webhook's advance failed; the next poll does it");
            }
        }
        Some(outcome)
    }
}

/// Advances only the job that `batch_id` of `provider` belongs to (a Bedrock job's state
/// change on EventBridge): `Ok(None)` when batchdrop did not submit that batch.
pub async fn advance_batch_owner(
    engine: &Engine,
    provider: &str,
    batch_id: &str,
) -> Result<Option<(String, Advance)>, JobError> {
    let Some(owner) = batch_index::owner_of(engine.store().as_ref(), provider, batch_id).await?
    else {
        return Ok(None);
    };
    let advance = engine.advance(&owner.job_id).await?;
    Ok(Some((owner.job_id, advance)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_toml(extra, "t.toml", &|_| None).expect("config")
    }

    #[test]
    fn the_builtin_openai_route_takes_webhooks_once_its_variable_is_set() {
        let c = config("");
        let off = InboundSecrets::resolve(&c, &|_| None, &|_| None);
        assert!(off.routes().is_empty());
        let env = |k: &str| {
            (k == "OPENAI_WEBHOOK_SECRET").then(|| "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into())
        };
        let on = InboundSecrets::resolve(&c, &env, &|_| None);
        assert_eq!(on.routes(), vec!["openai"]);
        assert!(on.problems().is_empty());
    }

    #[test]
    fn an_unusable_secret_is_a_problem_of_its_route_only() {
        let c = config(
            "[routes.sandbox]\nwebhook_in_secret_env = 'BAD'\n[routes.sandbox-sync]\nwebhook_in_secret = 'arn:aws:secretsmanager:us-east-1:1:secret:w'\n",
        );
        let env = |k: &str| (k == "BAD").then(|| "not base64!".to_string());
        let secrets = InboundSecrets::resolve(&c, &env, &|_| None);
        let problems = secrets.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].1.contains("BAD") && !problems[0].1.contains("not base64!"));
        assert!(problems[1].1.contains("arn:aws:secretsmanager"));
    }
}
