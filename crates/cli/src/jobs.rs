//! The bucket's jobs as the commands show them: their manifests loaded and selected, and what
//! each shows (progress, batches by state, usage, cost so far), read from the manifest alone
//! (no provider call, no key needed).
//!
//! A request is done once its batch has been collected, in flight while its batch is at the
//! provider, waiting while its chunk is staged. Batches are counted by the provider's status
//! word. The cost so far is the collected batches' usage at the price table. On a route with
//! spending caps a job also shows its budget check and the day's spend object; on a route
//! with `max_enqueued_tokens`, a chunk held back says how full the provider's queue is
//! ([`with_spend`]: the only part that reads more than the job's manifest).

use crate::bucket::Bucket;
use crate::error::Error;
use crate::selector::Selector;
use batchdrop_core::config::Config;
use batchdrop_core::cost::{self, Cost};
use batchdrop_core::layout::{self, JobKeys};
use batchdrop_core::manifest::{Budget, ChunkState, Deadline, Manifest, Usage};
use batchdrop_core::spend;
use batchdrop_core::store::ObjectStoreExt;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Every job manifest of the bucket (`_batchdrop/jobs/*/manifest.json`) that `selector`
/// matches (all without one), most recent first.
pub async fn load_jobs(
    bucket: &Bucket,
    selector: Option<&Selector>,
) -> Result<Vec<Manifest>, Error> {
    let store = bucket.store.clone();
    let keys: Vec<String> = match selector {
        Some(Selector::Job(id)) if id.len() == 24 => vec![JobKeys::new(id).manifest()],
        _ => {
            let prefix = format!("{}jobs/", layout::STATE);
            store
                .list(&prefix)
                .await
                .map_err(|e| bucket.store_error("list the jobs", e))?
                .into_iter()
                .map(|o| o.key)
                .filter(|k| k.ends_with("/manifest.json"))
                .collect()
        }
    };
    let mut jobs: Vec<Manifest> = futures::stream::iter(keys)
        .map(|key| {
            let store = store.clone();
            async move {
                match store.get_json::<Manifest>(&key).await {
                    Ok((m, _)) => Ok(Some(m)),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                }
            }
        })
        .buffer_unordered(16)
        .try_filter_map(|m| async move { Ok(m) })
        .try_collect()
        .await
        .map_err(|e| bucket.store_error("read a job manifest", e))?;
    if let Some(sel) = selector {
        jobs.retain(|m| sel.matches(m));
    }
    jobs.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.job_id.cmp(&b.job_id))
    });
    Ok(jobs)
}

/// What `status` shows of one job; also its `--json` form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    pub job_id: String,
    pub route: String,
    pub key: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_requested: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub elapsed_seconds: i64,
    pub requests: Requests,
    /// Batches by the provider's status word (`staged`: not sent yet), in progress order.
    #[serde(serialize_with = "as_object")]
    pub batches: Vec<(String, u64)>,
    pub usage: Usage,
    pub cost: Cost,
    /// When the job must be done by, if it must (see `deadline_words`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Deadline>,
    /// The spending check (a route with a cap), once made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// The route's spend on the job's day (a route with `max_usd_per_day`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day_spend: Option<DaySpendView>,
    /// Why staged chunks wait: the provider's queue for their model is full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// The job's webhooks out (a route with `webhook_url`), see [`with_webhooks`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookView>,
}

/// One webhook about a job, as its outbox entry says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookView {
    pub event_type: String,
    /// The Batch API tenant whose webhook it is (its key's `webhook_url`); absent: the
    /// route's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub webhook_id: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: u32,
    /// RFC 3339, while pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A route's spend on one UTC day, against its cap.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaySpendView {
    pub day: String,
    /// USD, by jobs finished.
    pub spent: f64,
    /// USD, reserved by jobs still running.
    pub reserved: f64,
    pub max_usd_per_day: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Requests {
    /// Accepted requests.
    pub total: u64,
    /// Requests whose batch has been collected.
    pub done: u64,
    /// Requests in batches at the provider.
    pub in_flight: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Input lines rejected before sending.
    pub rejected: u64,
    /// Requests sent again after a failure worth retrying.
    pub retried: u64,
}

fn as_object<S: serde::Serializer>(pairs: &[(String, u64)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(pairs.len()))?;
    for (k, v) in pairs {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

/// The progress of a job from its manifest.
pub fn requests_of(m: &Manifest) -> Requests {
    let mut r = Requests {
        total: m.counts.accepted,
        rejected: m.counts.rejected,
        ..Requests::default()
    };
    for c in &m.chunks {
        match c.state {
            ChunkState::Collected => {
                r.done += c.succeeded + c.failed;
                r.succeeded += c.succeeded;
                r.failed += c.failed;
                r.retried += c.retried;
            }
            ChunkState::Submitted | ChunkState::Submitting => r.in_flight += c.plan.requests,
            ChunkState::Staged => {}
        }
    }
    if m.status.is_finished() {
        r.done = r.total;
        r.in_flight = 0;
    }
    r
}

/// Batches by state: staged, submitting, then the provider's words, then the final ones.
fn batches_of(m: &Manifest) -> Vec<(String, u64)> {
    let mut counts: Vec<(u8, String, u64)> = Vec::new();
    for c in &m.chunks {
        let (rank, word) = match c.state {
            ChunkState::Staged => (0, "staged".to_string()),
            ChunkState::Submitting => (1, "submitting".to_string()),
            ChunkState::Submitted => (
                2,
                c.provider_status
                    .clone()
                    .unwrap_or_else(|| "submitted".into()),
            ),
            ChunkState::Collected => (
                3,
                c.provider_status
                    .clone()
                    .unwrap_or_else(|| "collected".into()),
            ),
        };
        match counts.iter_mut().find(|(r, w, _)| *r == rank && *w == word) {
            Some(slot) => slot.2 += 1,
            None => counts.push((rank, word, 1)),
        }
    }
    counts.sort();
    counts.into_iter().map(|(_, w, n)| (w, n)).collect()
}

pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// What a job shows at `now`, priced with `config`'s price table.
pub fn view(m: &Manifest, config: &Config, now: OffsetDateTime) -> JobView {
    let started = parse_time(&m.created_at);
    let ended = m
        .finished_at
        .as_deref()
        .and_then(parse_time)
        .filter(|_| m.status.is_finished());
    let elapsed = match started {
        Some(s) => (ended.unwrap_or(now) - s).whole_seconds().max(0),
        None => 0,
    };
    let default_model = config
        .route(&m.route)
        .and_then(|r| r.defaults.model.as_deref());
    JobView {
        job_id: m.job_id.clone(),
        route: m.route.clone(),
        key: m.input.key.clone(),
        status: status_word(m),
        reason: m.reason.clone(),
        cancel_requested: m
            .cancel_requested
            .clone()
            .filter(|_| !m.status.is_finished()),
        created_at: m.created_at.clone(),
        finished_at: m.finished_at.clone(),
        elapsed_seconds: elapsed,
        requests: requests_of(m),
        batches: batches_of(m),
        usage: m.usage(),
        cost: cost::job_cost(m, &config.prices, default_model),
        deadline: m.deadline.clone(),
        budget: m.budget.clone(),
        day_spend: None,
        waiting: None,
        webhooks: Vec::new(),
    }
}

/// Adds to each view of `jobs` (same order) its webhooks' outbox entries
/// (`_batchdrop/webhooks/<job>/`): one listing per job.
pub async fn with_webhooks(
    bucket: &Bucket,
    views: &mut [JobView],
    jobs: &[Manifest],
) -> Result<(), Error> {
    use batchdrop_core::webhooks::outbox::{self, DeliveryState, OutboxEntry};
    for (v, m) in views.iter_mut().zip(jobs) {
        let listed = bucket
            .store
            .list(&outbox::job_entries(&m.job_id))
            .await
            .map_err(|e| bucket.store_error("list the job's webhooks", e))?;
        for object in listed {
            let entry: OutboxEntry = match bucket.store.get_json(&object.key).await {
                Ok((entry, _)) => entry,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(bucket.store_error("read a webhook's entry", e)),
            };
            let pending = entry.state == DeliveryState::Pending;
            v.webhooks.push(WebhookView {
                event_type: entry.event_type,
                tenant: entry.tenant,
                webhook_id: entry.webhook_id,
                state: match entry.state {
                    DeliveryState::Pending => "pending",
                    DeliveryState::Delivered => "delivered",
                    DeliveryState::Failed => "failed",
                }
                .to_string(),
                attempts: entry.attempts,
                next_attempt_at: pending
                    .then(|| OffsetDateTime::from_unix_timestamp(entry.next_attempt_at).ok())
                    .flatten()
                    .and_then(|t| t.format(&Rfc3339).ok()),
                last_error: entry.last_error,
            });
        }
    }
    Ok(())
}

/// "batch_job.completed delivered (1 attempt)", one phrase per webhook, `; `-separated.
pub fn webhook_words(v: &JobView) -> Option<String> {
    if v.webhooks.is_empty() {
        return None;
    }
    let words: Vec<String> = v
        .webhooks
        .iter()
        .map(|w| {
            let to = match &w.tenant {
                Some(tenant) => format!(" to tenant {tenant}"),
                None => String::new(),
            };
            let mut s = format!(
                "{}{to} {} ({} attempt{})",
                w.event_type,
                w.state,
                w.attempts,
                if w.attempts == 1 { "" } else { "s" }
            );
            if let Some(at) = &w.next_attempt_at {
                s.push_str(&format!(", next at {at}"));
            }
            if let Some(error) = w.last_error.as_ref().filter(|_| w.state != "delivered") {
                s.push_str(&format!(", last error: {error}"));
            }
            s
        })
        .collect();
    Some(words.join("; "))
}

/// Adds to each view of `jobs` (in the same order) the day's spend of its route, for a route
/// with `max_usd_per_day`, and why its staged chunks wait, for a route with
/// `max_enqueued_tokens` (counted over `all`: every job of the bucket).
pub async fn with_spend(
    bucket: &Bucket,
    config: &Config,
    views: &mut [JobView],
    jobs: &[Manifest],
    all: &[Manifest],
) -> Result<(), Error> {
    let mut days: std::collections::BTreeMap<(String, String), Option<spend::DaySpend>> =
        Default::default();
    for (v, m) in views.iter_mut().zip(jobs) {
        let Some(route) = config.route(&m.route) else {
            continue;
        };
        if let Some(cap) = route.spend.max_usd_per_day
            && let Ok(day) = spend::day_of(&m.created_at)
        {
            let slot = (m.route.clone(), day.clone());
            if !days.contains_key(&slot) {
                let found = spend::read_day(bucket.store.as_ref(), &m.route, &day)
                    .await
                    .map_err(|e| bucket.store_error("read the day's spend", e))?;
                days.insert(slot.clone(), found.map(|(s, _)| s));
            }
            let found = days.get(&slot).cloned().flatten().unwrap_or_default();
            v.day_spend = Some(DaySpendView {
                day,
                spent: found.spent(),
                reserved: found.reserved(),
                max_usd_per_day: cap,
            });
        }
        if let Some(limit) = route.spend.max_enqueued_tokens
            && !m.status.is_finished()
            && m.planning.is_none()
        {
            v.waiting = queue_words(m, all, limit, spend::fallback_output(route));
        }
    }
    Ok(())
}

/// "1.2M enqueued tokens of 2M for gpt-4o-mini", when a staged chunk of `m` would not fit in
/// the queue of its model beside the route's batches in flight.
fn queue_words(m: &Manifest, all: &[Manifest], limit: u64, fallback: u64) -> Option<String> {
    let mut words = Vec::new();
    let mut models: Vec<&str> = Vec::new();
    for c in m.chunks.iter().filter(|c| c.state == ChunkState::Staged) {
        let model = c.plan.model.as_str();
        if models.contains(&model) {
            continue;
        }
        let in_flight: u64 = all
            .iter()
            .filter(|o| o.route == m.route && !o.status.is_finished())
            .map(|o| spend::enqueued_tokens(o, model, fallback))
            .sum();
        let mine = spend::chunk_tokens(&c.plan, fallback).input_tokens;
        if in_flight > 0 && in_flight.saturating_add(mine) > limit {
            models.push(model);
            words.push(format!(
                "{} enqueued tokens of {} for {model}",
                tokens_words(in_flight),
                tokens_words(limit)
            ));
        }
    }
    (!words.is_empty()).then(|| words.join("; "))
}

/// 1234 → "1,234"; 1_200_000 → "1.2M".
fn tokens_words(n: u64) -> String {
    if n >= 1_000_000 {
        let m = format!("{:.1}", n as f64 / 1e6);
        format!("{}M", m.trim_end_matches(".0"))
    } else if n >= 10_000 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// "estimate $0.42 of max_usd_per_job $5.00; on 2026-01-01 (UTC) $1.20 spent and $0.42
/// reserved of max_usd_per_day $10.00", for status.
pub fn budget_words(v: &JobView) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(b) = &v.budget {
        let mut words = format!("estimate {}", crate::text::usd(b.estimate));
        if let Some(cap) = b.max_usd_per_job {
            words.push_str(&format!(" of max_usd_per_job {}", crate::text::usd(cap)));
        }
        if b.refused.is_some() {
            words.push_str(": over budget, nothing sent");
        }
        parts.push(words);
    }
    if let Some(d) = &v.day_spend {
        parts.push(format!(
            "on {} (UTC) {} spent and {} reserved of max_usd_per_day {}",
            d.day,
            crate::text::usd(d.spent),
            crate::text::usd(d.reserved),
            crate::text::usd(d.max_usd_per_day)
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// "by 2026-12-02T07:00:00Z (route): met", "… 2h 10m left", "… cut at …: the rest runs
/// on the synchronous lane", for status.
pub fn deadline_words(v: &JobView, now: OffsetDateTime) -> Option<String> {
    let d = v.deadline.as_ref()?;
    let at = parse_time(&d.at);
    let mut words = format!("by {} ({})", d.at, d.source);
    match (&v.finished_at, at) {
        (Some(finished), Some(at)) if v.status != "running" => {
            let met = parse_time(finished).is_some_and(|f| f <= at);
            words.push_str(if met { ": met" } else { ": missed" });
        }
        (_, Some(at)) if at > now => {
            let left = crate::text::elapsed_words((at - now).whole_seconds());
            words.push_str(&format!(", {left} left"));
        }
        (_, Some(_)) => words.push_str(", passed"),
        _ => {}
    }
    if let Some(cut) = &d.cut_at {
        words.push_str(&format!(
            "; cut at {cut}: what the batches had not answered went through the synchronous lane"
        ));
    }
    Some(words)
}

/// `running`, `completed`, …; `planning (42%)` while the upload is still being read.
fn status_word(m: &Manifest) -> String {
    match &m.planning {
        Some(cursor) if !m.status.is_finished() => {
            let read = (cursor.offset * 100)
                .checked_div(m.input.bytes)
                .unwrap_or(100);
            format!("planning ({read}%)")
        }
        _ => m.status.as_str().to_string(),
    }
}

/// "running: 4/9 requests done, 2 batches at the provider", for other commands' messages.
pub fn progress_words(m: &Manifest) -> String {
    let r = requests_of(m);
    let at_provider = m
        .chunks
        .iter()
        .filter(|c| matches!(c.state, ChunkState::Submitted | ChunkState::Submitting))
        .count();
    format!(
        "{}: {}/{} requests done, {at_provider} batch(es) at the provider",
        status_word(m),
        r.done,
        r.total
    )
}
