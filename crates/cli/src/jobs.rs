//! The bucket's jobs as the commands show them: their manifests loaded and selected, and what
//! each shows (progress, batches by state, usage, cost so far), read from the manifest alone
//! (no provider call, no key needed).
//!
//! A request is done once its batch has been collected, in flight while its batch is at the
//! provider, waiting while its chunk is staged. Batches are counted by the provider's status
//! word. The cost so far is the collected batches' usage at the price table.

use crate::bucket::Bucket;
use crate::error::Error;
use crate::selector::Selector;
use batchdrop_core::config::Config;
use batchdrop_core::cost::{self, Cost};
use batchdrop_core::layout::{self, JobKeys};
use batchdrop_core::manifest::{ChunkState, Deadline, Manifest, Usage};
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
    }
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
