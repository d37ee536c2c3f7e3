//! The engine's side of webhooks out (`crate::webhooks`): a job that ends on a route with a
//! `webhook_url` (or that a Batch API key with one started: both are sent) puts `batch_job.completed` / `.failed` / `.cancelled` in the outbox (its data
//! is summary.json) before it leaves the index, so the webhook survives a crash; a collected
//! batch puts `batch_job.batch_collected` there when the route asks for batch events. Entry
//! points (submit, start, cancel, poll) then send what is due. Webhooks never fail a job: an
//! attempt's outcome becomes a [`JobEvent::WebhookDelivered`] / [`JobEvent::WebhookFailed`]
//! and a count in the [`super::PollReport`].

use super::{Engine, JobError, JobEvent};
use crate::clock::rfc3339;
use crate::manifest::Manifest;
use crate::summary::summary;
use crate::webhooks::outbox::{self, OutboxEntry};

/// What one round of sending came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sent {
    pub delivered: usize,
    pub failed: usize,
}

/// Where a job's webhooks go: its route's, signed with the route's secret, and the one it was
/// started with (a Batch API key's), signed with its tenant's.
struct Target<'a> {
    url: &'a str,
    tenant: Option<&'a str>,
    batches: bool,
    api_batch_id: Option<&'a str>,
}

impl Target<'_> {
    /// `entry` for this target.
    fn entry(&self, entry: OutboxEntry) -> OutboxEntry {
        match self.tenant {
            Some(tenant) => entry.for_tenant(tenant),
            None => entry,
        }
    }

    /// The event's data for this target: with `api_batch_id` for a Batch API tenant's.
    fn data(&self, data: &serde_json::Value) -> serde_json::Value {
        let mut data = data.clone();
        if let (Some(id), Some(fields)) = (self.api_batch_id, data.as_object_mut()) {
            fields.insert("api_batch_id".into(), id.into());
        }
        data
    }
}

impl Engine {
    fn targets<'a>(&'a self, manifest: &'a Manifest) -> Vec<Target<'a>> {
        let route = self
            .config
            .route(&manifest.route)
            .and_then(|r| r.webhook.as_ref())
            .map(|hook| Target {
                url: &hook.url,
                tenant: None,
                batches: hook.batches,
                api_batch_id: None,
            });
        let own = manifest.webhook.as_ref().map(|hook| Target {
            url: &hook.url,
            tenant: Some(&hook.tenant),
            batches: hook.batches,
            api_batch_id: hook.api_batch_id.as_deref(),
        });
        route.into_iter().chain(own).collect()
    }

    /// Puts the webhooks of a finished job in the outbox, one per target (idempotent: the
    /// same job's end is one entry per target).
    pub(super) async fn enqueue_job_end(&self, manifest: &Manifest) -> Result<(), JobError> {
        let targets = self.targets(manifest);
        if targets.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let data = summary(manifest, &self.config);
        for target in targets {
            let entry = target.entry(OutboxEntry::new(
                &manifest.job_id,
                &manifest.route,
                "job",
                target.url,
                &outbox::job_event_type(manifest.status.as_str()),
                manifest.finished_at.as_deref().unwrap_or(&rfc3339(now)),
                target.data(&data),
                now.unix_timestamp(),
            ));
            outbox::enqueue(self.store.as_ref(), &entry).await?;
        }
        Ok(())
    }

    /// Puts `batch_job.batch_collected` for chunk `chunk` in the outbox for each target that
    /// asks for batch events. A store error is reported as a [`JobEvent::WebhookFailed`], not
    /// to the job: the batch is collected either way.
    pub(super) async fn enqueue_batch_collected(
        &self,
        manifest: &Manifest,
        chunk: u32,
        data: serde_json::Value,
    ) {
        let now = self.clock.now();
        for target in self.targets(manifest).into_iter().filter(|t| t.batches) {
            let entry = target.entry(OutboxEntry::new(
                &manifest.job_id,
                &manifest.route,
                &format!("batch-{chunk}"),
                target.url,
                "batch_job.batch_collected",
                &rfc3339(now),
                target.data(&data),
                now.unix_timestamp(),
            ));
            if let Err(e) = outbox::enqueue(self.store.as_ref(), &entry).await {
                self.observer.event(&JobEvent::WebhookFailed {
                    job_id: entry.job_id,
                    webhook_id: entry.webhook_id,
                    event_type: entry.event_type,
                    attempt: 0,
                    error: format!("not queued: {e}"),
                    retry_at: None,
                });
            }
        }
    }

    /// Sends the due webhooks (of job `only`, if given) and tells the observer how each
    /// attempt went. A store error ends the round early and counts as one failure; the rest
    /// wait for the next round.
    pub(super) async fn send_webhooks(&self, only: Option<&str>) -> Sent {
        let mut sent = Sent::default();
        let deliveries = match self
            .webhooks
            .deliver_due(self.store.as_ref(), self.clock.as_ref(), only, &|| {
                self.near_deadline()
            })
            .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "webhook round stopped; the next poll continues it");
                sent.failed += 1;
                return sent;
            }
        };
        for d in deliveries {
            match d.outcome {
                Ok(()) => {
                    sent.delivered += 1;
                    self.observer.event(&JobEvent::WebhookDelivered {
                        job_id: d.job_id,
                        webhook_id: d.webhook_id,
                        event_type: d.event_type,
                        attempt: d.attempt,
                    });
                }
                Err((error, retry_at)) => {
                    sent.failed += 1;
                    let retry_at = retry_at
                        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                        .map(rfc3339);
                    self.observer.event(&JobEvent::WebhookFailed {
                        job_id: d.job_id,
                        webhook_id: d.webhook_id,
                        event_type: d.event_type,
                        attempt: d.attempt,
                        error,
                        retry_at,
                    });
                }
            }
        }
        sent
    }

    /// Whether any route sends webhooks, or this process signs Batch API keys' webhooks (else
    /// no round lists the outbox).
    pub(super) fn sends_webhooks(&self) -> bool {
        self.webhooks.knows_tenants() || self.config.routes.values().any(|r| r.webhook.is_some())
    }

    /// Sends the due webhooks of `job_id`, if this process sends any.
    pub(super) async fn send_webhooks_of(&self, job_id: &str) {
        if self.sends_webhooks() {
            self.send_webhooks(Some(job_id)).await;
        }
    }
}
