//! The webhook outbox: one object per webhook to send, so that a webhook outlives the
//! invocation that made it and is retried by later polls.
//!
//! - `_batchdrop/webhooks/<job_id>/<name>.json` ([`OutboxEntry`]): the event's exact body, its
//!   stable `webhook-id`, the attempts so far, when the next may start, and how it ended
//!   (`pending`, `delivered`, `failed`). Made with a conditional create: the same event made
//!   twice (a retried invocation) is one entry and one `webhook-id`. Kept after it ends, for
//!   `batchdrop status`.
//! - `_batchdrop/webhooks-pending/<job_id>/<name>`: an empty marker for each entry not yet
//!   ended, written before the entry (an entry is never unreachable); what each poll lists.
//!
//! `<name>` is `job` for the job's end, `batch-<chunk>` for a collected batch; `tenant-job` and
//! `tenant-batch-<chunk>` for the same events sent to the webhook of the Batch API key that
//! started the job (signed with that tenant's secret).
//! Retries: after the 1st, 2nd, … failed attempt the next waits [`BACKOFF`] (1 m, 5 m, 30 m,
//! 2 h, 5 h, 10 h, 10 h), never later than [`GIVE_UP_AFTER`] (24 h) after the entry was made;
//! after [`MAX_ATTEMPTS`] (8) attempts, or when no attempt is left within the 24 h, it is
//! `failed`.

use crate::store::{ObjectStore, ObjectStoreExt, PutMode, StoreError};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The prefix of the entries.
pub const ENTRIES: &str = "_batchdrop/webhooks/";
/// What the name of a Batch API tenant's entry starts with.
pub const TENANT_PREFIX: &str = "tenant-";
/// The prefix of the markers of entries still to deliver.
pub const PENDING: &str = "_batchdrop/webhooks-pending/";
/// Attempts per webhook, the first included.
pub const MAX_ATTEMPTS: u32 = 8;
/// No attempt starts later than this after the entry was made.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// The wait after the n-th failed attempt (the last repeats).
pub const BACKOFF: [Duration; 6] = [
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
];

/// How a webhook stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet delivered; the next attempt starts at `next_attempt_at`.
    Pending,
    /// A 2xx answer came back.
    Delivered,
    /// Given up: every attempt failed, or the address is refused.
    Failed,
}

/// One webhook to send: `_batchdrop/webhooks/<job_id>/<name>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// `webhook-id`: the same for every attempt, so receivers can drop repeats.
    pub webhook_id: String,
    /// `batch_job.completed`, `batch_job.failed`, `batch_job.cancelled` or
    /// `batch_job.batch_collected`.
    pub event_type: String,
    pub job_id: String,
    pub route: String,
    /// The Batch API tenant whose secret signs it; None: the route's secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `job` or `batch-<chunk>` (`tenant-` before either for a tenant's).
    pub name: String,
    /// The receiver, as the route said when the entry was made.
    pub url: String,
    /// The request body, byte for byte the same at every attempt.
    pub body: String,
    /// Unix seconds.
    pub created_at: i64,
    pub attempts: u32,
    /// Unix seconds; an attempt that starts sets it to when the following one may, so an
    /// attempt cut short by a crash is retried then.
    pub next_attempt_at: i64,
    pub state: DeliveryState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<i64>,
}

impl OutboxEntry {
    /// A pending entry for `event_type` about job `job_id`, due now; the body is
    /// `{"type", "timestamp", "data"}`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        job_id: &str,
        route: &str,
        name: &str,
        url: &str,
        event_type: &str,
        timestamp: &str,
        data: serde_json::Value,
        now: i64,
    ) -> Self {
        let body = serde_json::json!({
            "type": event_type,
            "timestamp": timestamp,
            "data": data,
        });
        Self {
            webhook_id: webhook_id(job_id, name),
            event_type: event_type.to_string(),
            job_id: job_id.to_string(),
            route: route.to_string(),
            tenant: None,
            name: name.to_string(),
            url: url.to_string(),
            body: body.to_string(),
            created_at: now,
            attempts: 0,
            next_attempt_at: now,
            state: DeliveryState::Pending,
            last_attempt_at: None,
            last_error: None,
            delivered_at: None,
        }
    }

    /// The same entry for the webhook of Batch API tenant `tenant`: signed with its secret,
    /// named (and so identified) apart from the route's.
    pub fn for_tenant(mut self, tenant: &str) -> Self {
        self.name = format!("{TENANT_PREFIX}{}", self.name);
        self.webhook_id = webhook_id(&self.job_id, &self.name);
        self.tenant = Some(tenant.to_string());
        self
    }

    /// The entry's key.
    pub fn key(&self) -> String {
        entry_key(&self.job_id, &self.name)
    }

    /// Its marker's key while pending.
    pub fn pending_key(&self) -> String {
        format!("{PENDING}{}/{}", self.job_id, self.name)
    }

    /// When the attempt after the `attempts`-th may start, if one is left: the backoff after
    /// it, no later than [`GIVE_UP_AFTER`] after the entry was made.
    pub fn next_after(&self, attempts: u32, now: i64) -> Option<i64> {
        let last = self.created_at + GIVE_UP_AFTER.as_secs() as i64;
        if attempts >= MAX_ATTEMPTS || now >= last {
            return None;
        }
        let step = (attempts.max(1) as usize - 1).min(BACKOFF.len() - 1);
        Some((now + BACKOFF[step].as_secs() as i64).min(last))
    }
}

/// Puts `entry` in the outbox unless an entry of the same event is there: the marker first,
/// then the entry (conditional create). Whether it was new.
pub async fn enqueue(store: &dyn ObjectStore, entry: &OutboxEntry) -> Result<bool, StoreError> {
    if store.exists(&entry.key()).await? {
        return Ok(false);
    }
    store
        .put(&entry.pending_key(), Bytes::new(), PutMode::Overwrite)
        .await?;
    match store.put_json(&entry.key(), entry, PutMode::Create).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The key of job `job_id`'s entry `name`.
pub fn entry_key(job_id: &str, name: &str) -> String {
    format!("{ENTRIES}{job_id}/{name}.json")
}

/// The prefix of job `job_id`'s entries.
pub fn job_entries(job_id: &str) -> String {
    format!("{ENTRIES}{job_id}/")
}

/// The stable `webhook-id` of job `job_id`'s event `name`: `msg_` and 32 hex digits.
pub fn webhook_id(job_id: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("{job_id}/{name}").as_bytes());
    format!("msg_{}", hex::encode(&digest[..16]))
}

/// The event type of a job that ended with `status` (`completed`, `failed`, `cancelled`).
pub fn job_event_type(status: &str) -> String {
    format!("batch_job.{status}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> OutboxEntry {
        OutboxEntry::new(
            "job1",
            "r",
            "job",
            "http://x/",
            "batch_job.completed",
            "2026-01-01T00:00:00Z",
            serde_json::json!({}),
            0,
        )
    }

    #[test]
    fn the_webhook_id_is_stable_and_names_the_event() {
        assert_eq!(webhook_id("a", "job"), webhook_id("a", "job"));
        assert_ne!(webhook_id("a", "job"), webhook_id("a", "batch-0"));
        assert_ne!(webhook_id("a", "job"), webhook_id("b", "job"));
        assert_eq!(webhook_id("a", "job").len(), 4 + 32);
    }

    #[test]
    fn a_tenants_entry_has_its_own_name_and_id() {
        let tenant = entry().for_tenant("acme");
        assert_eq!(tenant.name, "tenant-job");
        assert_eq!(tenant.tenant.as_deref(), Some("acme"));
        assert_ne!(tenant.webhook_id, entry().webhook_id);
        assert_ne!(tenant.key(), entry().key());
        assert_eq!(tenant.webhook_id, webhook_id("job1", "tenant-job"));
    }

    #[test]
    fn eight_attempts_fit_in_a_day_and_then_it_gives_up() {
        let e = entry();
        let mut at = 0;
        let mut times = vec![at];
        for attempts in 1.. {
            match e.next_after(attempts, at) {
                Some(next) => {
                    at = next;
                    times.push(at);
                }
                None => break,
            }
        }
        let minutes: Vec<i64> = times.iter().map(|t| t / 60).collect();
        assert_eq!(minutes, vec![0, 1, 6, 36, 156, 456, 1056, 1440]);
        assert_eq!(times.len() as u32, MAX_ATTEMPTS);
    }
}
