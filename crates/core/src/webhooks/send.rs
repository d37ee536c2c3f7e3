//! Sending the outbox's webhooks: each due entry is claimed (compare-and-swap on the entry, so
//! two pollers never send the same attempt), signed with its route's secret, or its Batch API
//! tenant's for a tenant's webhook (Standard
//! Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`) and POSTed once, with a
//! bounded timeout ([`TIMEOUT`]), no redirect followed (a 3xx is a failed attempt) and only to
//! the addresses checked by [`super::address`]. Only a 2xx delivers. A failure is recorded in
//! the entry and retried on the outbox's schedule; nothing here ever fails a job.
//!
//! Tenants' secrets come from the keys file of the process ([`Webhooks::with_tenants`]); a
//! process that has no keys file leaves tenants' entries untouched, for one that has.

use super::address::{self, AddressError};
use super::outbox::{self, DeliveryState, OutboxEntry, PENDING, entry_key};
use super::signature::WebhookSecret;
use crate::clock::Clock;
use crate::route::{KeySource, Route, WebhookTarget};
use crate::store::{ObjectStore, ObjectStoreExt, PutMode, StoreError};
use secrecy::{ExposeSecret, SecretString};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// How long one attempt may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claimed attempt keeps others off it when it is the last one (a crash mid-way
/// then ends the entry as failed after this).
const LAST_CLAIM: Duration = Duration::from_secs(10 * 60);

/// Why one attempt did not deliver. The secret never appears in it.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error("route {route:?} has no webhook signing secret: {reason}")]
    NoSecret { route: String, reason: String },
    #[error("Batch API tenant {tenant:?} has no webhook signing secret: {reason}")]
    NoTenantSecret { tenant: String, reason: String },
    #[error("the request failed: {message}")]
    Request { message: String },
    #[error("the receiver answered HTTP {status} (only 2xx delivers; redirects are not followed)")]
    Status { status: u16 },
}

impl SendError {
    /// Whether another attempt may succeed (a refused address or URL never will).
    pub fn is_retryable(&self) -> bool {
        match self {
            SendError::Address(e) => e.is_retryable(),
            _ => true,
        }
    }
}

/// What one attempt on one entry came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub job_id: String,
    pub webhook_id: String,
    pub event_type: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// `Ok(())`: delivered. Otherwise why not, and when the next attempt may start (unix
    /// seconds; None: given up).
    pub outcome: Result<(), (String, Option<i64>)>,
}

/// A signing secret, or why there is none.
type Resolved = Result<WebhookSecret, String>;

/// The webhook signing secrets of the routes and of the Batch API tenants (resolved once, at
/// start) and the sending.
pub struct Webhooks {
    secrets: HashMap<String, Resolved>,
    /// None: this process has no keys file, and leaves tenants' entries alone.
    tenants: Option<HashMap<String, Resolved>>,
    timeout: Duration,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes: Vec<&String> = self.secrets.keys().collect();
        let tenants: Option<Vec<&String>> = self.tenants.as_ref().map(|t| t.keys().collect());
        f.debug_struct("Webhooks")
            .field("routes", &routes)
            .field("tenants", &tenants)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for Webhooks {
    /// No route's secret: every delivery fails until they are resolved.
    fn default() -> Self {
        Self {
            secrets: HashMap::new(),
            tenants: None,
            timeout: TIMEOUT,
        }
    }
}

impl Webhooks {
    /// The secrets of every route with a webhook: from the environment variable it names, or
    /// from `secret` (a Secrets Manager secret by ARN, read by the caller). A route whose
    /// secret is missing or not `whsec_…` keeps the reason; its deliveries fail with it.
    pub fn from_routes(
        routes: &BTreeMap<String, Route>,
        env: &dyn Fn(&str) -> Option<String>,
        secret: &dyn Fn(&str) -> Option<SecretString>,
    ) -> Self {
        let secrets = routes
            .iter()
            .filter_map(|(name, route)| Some((name, route.webhook.as_ref()?)))
            .map(|(name, hook)| (name.clone(), resolve(&hook.secret, env, secret)))
            .collect();
        Self {
            secrets,
            tenants: None,
            timeout: TIMEOUT,
        }
    }

    /// The same, signing the webhooks of the Batch API keys too: `tenants` are the keys file's
    /// tenants with a webhook (name and target), whose secrets are resolved as the routes'
    /// are. A tenant's entry whose tenant is not among them fails: it left the keys file, or
    /// its webhook did.
    pub fn with_tenants<'a>(
        mut self,
        tenants: impl IntoIterator<Item = (&'a str, &'a WebhookTarget)>,
        env: &dyn Fn(&str) -> Option<String>,
        secret: &dyn Fn(&str) -> Option<SecretString>,
    ) -> Self {
        self.tenants = Some(
            tenants
                .into_iter()
                .map(|(name, hook)| (name.to_string(), resolve(&hook.secret, env, secret)))
                .collect(),
        );
        self
    }

    /// Why the webhooks of a route or tenant will fail (its secret is missing or malformed),
    /// one line each (`route R: …`, `tenant T: …`): for the start-up log.
    pub fn problems(&self) -> Vec<String> {
        let routes = self.secrets.iter().map(|(name, r)| ("route", name, r));
        let tenants = self
            .tenants
            .iter()
            .flatten()
            .map(|(name, r)| ("tenant", name, r));
        let mut lines: Vec<String> = routes
            .chain(tenants)
            .filter_map(|(kind, name, r)| Some(format!("{kind} {name}: {}", r.as_ref().err()?)))
            .collect();
        lines.sort();
        lines
    }

    /// Whether this process signs the webhooks of Batch API tenants (it has a keys file).
    pub fn knows_tenants(&self) -> bool {
        self.tenants.is_some()
    }

    /// The same, with attempts cut off after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// One signed POST of `entry`'s body, stamped `now` (unix seconds).
    pub async fn post(&self, entry: &OutboxEntry, now: i64) -> Result<(), SendError> {
        let secret = self.secret_of(entry)?;
        let url = address::check_url(&entry.url)?;
        let addrs = address::resolve(&url).await?;
        let host = url.host_str().unwrap_or_default().to_string();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .resolve_to_addrs(&host, &addrs)
            .user_agent(concat!("batchdrop/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SendError::Request {
                message: e.to_string(),
            })?;
        let signature = secret.sign(&entry.webhook_id, now, entry.body.as_bytes());
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &entry.webhook_id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", signature)
            .body(entry.body.clone())
            .send()
            .await
            .map_err(|e| SendError::Request {
                message: describe(&e),
            })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(SendError::Status { status })
        }
    }

    /// The secret that signs `entry`: its tenant's, else its route's.
    fn secret_of(&self, entry: &OutboxEntry) -> Result<&WebhookSecret, SendError> {
        let reason = |found: Option<&Resolved>, missing: &str| match found {
            Some(Err(reason)) => reason.clone(),
            _ => missing.to_string(),
        };
        match &entry.tenant {
            Some(tenant) => match self.tenants.as_ref().and_then(|t| t.get(tenant)) {
                Some(Ok(secret)) => Ok(secret),
                found => Err(SendError::NoTenantSecret {
                    tenant: tenant.clone(),
                    reason: reason(found, "the keys file gives it no webhook_url and secret"),
                }),
            },
            None => match self.secrets.get(&entry.route) {
                Some(Ok(secret)) => Ok(secret),
                found => Err(SendError::NoSecret {
                    route: entry.route.clone(),
                    reason: reason(found, "not resolved by this process"),
                }),
            },
        }
    }

    /// Sends every due pending entry (of job `only`, if given) once: claims it, posts it,
    /// records the outcome, and takes delivered or given-up entries off the pending list.
    /// What each attempt came to, in key order. A store error stops the pass, and so does
    /// `stop()` answering true before an attempt (the invocation's deadline is near): the
    /// entries left are tried by the next.
    pub async fn deliver_due(
        &self,
        store: &dyn ObjectStore,
        clock: &dyn Clock,
        only: Option<&str>,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<Delivery>, StoreError> {
        let prefix = match only {
            Some(job) => format!("{PENDING}{job}/"),
            None => PENDING.to_string(),
        };
        let mut done = Vec::new();
        for marker in store.list(&prefix).await? {
            if stop() {
                break;
            }
            let Some((job_id, name)) = marker
                .key
                .strip_prefix(PENDING)
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            if name.starts_with(outbox::TENANT_PREFIX) && !self.knows_tenants() {
                // A tenant's webhook, for a process with the keys file: not even read.
                continue;
            }
            if let Some(delivery) = self
                .attempt(store, clock, &entry_key(job_id, name), &marker.key)
                .await?
            {
                done.push(delivery);
            }
        }
        Ok(done)
    }

    /// One attempt on the entry at `key` if it is due and this worker claims it.
    async fn attempt(
        &self,
        store: &dyn ObjectStore,
        clock: &dyn Clock,
        key: &str,
        marker: &str,
    ) -> Result<Option<Delivery>, StoreError> {
        let (mut entry, etag): (OutboxEntry, String) = match store.get_json(key).await {
            Ok(found) => found,
            // A marker whose entry was never written (a crash between the two).
            Err(StoreError::NotFound { .. }) => {
                store.delete(marker).await?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let now = clock.now().unix_timestamp();
        if entry.state != DeliveryState::Pending {
            store.delete(marker).await?;
            return Ok(None);
        }
        if entry.next_attempt_at > now {
            return Ok(None);
        }
        let attempt = entry.attempts + 1;
        let retry_at = entry.next_after(attempt, now);
        if entry.attempts >= super::outbox::MAX_ATTEMPTS {
            // The last attempt was claimed and never recorded (a crash).
            entry.state = DeliveryState::Failed;
            entry
                .last_error
                .get_or_insert_with(|| "attempt interrupted".into());
            return self.record(store, entry, &etag, marker, None).await;
        }
        // Claim: the attempt is counted, and the next is scheduled, before it is made.
        entry.attempts = attempt;
        entry.last_attempt_at = Some(now);
        entry.next_attempt_at = retry_at.unwrap_or(now + LAST_CLAIM.as_secs() as i64);
        let etag = match store.put_json(key, &entry, PutMode::Update(etag)).await {
            Ok(meta) => meta.etag,
            Err(StoreError::Precondition { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let outcome = self.post(&entry, now).await;
        let delivery = |outcome| Delivery {
            job_id: entry.job_id.clone(),
            webhook_id: entry.webhook_id.clone(),
            event_type: entry.event_type.clone(),
            attempt,
            outcome,
        };
        match outcome {
            Ok(()) => {
                let made = delivery(Ok(()));
                entry.state = DeliveryState::Delivered;
                entry.delivered_at = Some(now);
                entry.last_error = None;
                self.record(store, entry, &etag, marker, Some(made)).await
            }
            Err(e) => {
                let retry_at = retry_at.filter(|_| e.is_retryable());
                let made = delivery(Err((e.to_string(), retry_at)));
                tracing::warn!(
                    job_id = entry.job_id,
                    webhook_id = entry.webhook_id,
                    attempt,
                    retry_at,
                    error = %e,
                    "webhook not delivered"
                );
                entry.last_error = Some(e.to_string());
                if retry_at.is_none() {
                    entry.state = DeliveryState::Failed;
                }
                self.record(store, entry, &etag, marker, Some(made)).await
            }
        }
    }

    /// Saves the attempt's outcome; an ended entry leaves the pending list.
    async fn record(
        &self,
        store: &dyn ObjectStore,
        entry: OutboxEntry,
        etag: &str,
        marker: &str,
        delivery: Option<Delivery>,
    ) -> Result<Option<Delivery>, StoreError> {
        match store
            .put_json(&entry.key(), &entry, PutMode::Update(etag.to_string()))
            .await
        {
            Ok(_) => {}
            // Another worker moved it on (it took over after the claim ran out).
            Err(StoreError::Precondition { .. }) => return Ok(delivery),
            Err(e) => return Err(e),
        }
        if entry.state != DeliveryState::Pending {
            store.delete(marker).await?;
        }
        Ok(delivery)
    }
}

/// A `whsec_…` secret from where `source` says: the environment variable it names, or a
/// Secrets Manager secret by ARN (read by the caller, handed over by `secret`); or why not.
fn resolve(
    source: &KeySource,
    env: &dyn Fn(&str) -> Option<String>,
    secret: &dyn Fn(&str) -> Option<SecretString>,
) -> Resolved {
    let text = match source {
        KeySource::None => Err("no secret is configured".to_string()),
        KeySource::Env(var) => env(var)
            .filter(|v| !v.trim().is_empty())
            .map(SecretString::from)
            .ok_or_else(|| format!("environment variable {var} is not set")),
        KeySource::Secret(arn) => {
            secret(arn).ok_or_else(|| format!("the secret {arn} was not read"))
        }
    };
    text.and_then(|t| WebhookSecret::parse(t.expose_secret()).map_err(|e| e.to_string()))
}

/// A request error with its causes (reqwest's own message is terse), without the URL's query.
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request error".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
