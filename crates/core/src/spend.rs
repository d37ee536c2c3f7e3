//! Spend control: what a job may cost before anything is sent, what a route's jobs have spent
//! on a day, and how much of the provider's batch queue the route's batches take.
//!
//! - **Estimates** ([`ChunkEstimator`]): when a route has a cap or an admission limit
//!   ([`crate::route::Spend::estimates`]), planning counts each accepted request as it will be
//!   sent: input tokens offline with [`crate::tokens`] (exact for OpenAI models on text,
//!   approximate for Claude), output tokens bounded by the request's `max_tokens` /
//!   `max_completion_tokens` / `max_output_tokens` (times `n`), else the route's
//!   `defaults.max_tokens`, else its `assumed_output_tokens`, else
//!   [`DEFAULT_ASSUMED_OUTPUT_TOKENS`]. A chunk carries the sum ([`TokenEstimate`]); a chunk cut
//!   from others (reused ids taken out, balancing, a follow-up of failed requests) carries its
//!   share in proportion to its requests, not a recount. A chunk without an estimate (planned
//!   before the route had a cap) counts its bytes / 4 as input and the assumed output per
//!   request ([`chunk_tokens`]).
//! - **The cost bound** ([`cost_bound`]): estimated input and output at batch prices, at
//!   synchronous prices for chunks that go on demand; models without a price are listed apart.
//! - **The day's spend** ([`DaySpend`], one object per route and UTC day at [`day_key`]):
//!   each job of the day reserves its cost bound there by compare-and-swap ([`change_day`]), and
//!   replaces it by its actual cost when it finishes.
//! - **Admission** ([`enqueued_tokens`]): the input tokens of a job's batches in flight for a
//!   model, which the engine adds up over the route's active jobs.

use crate::clock::parse_rfc3339;
use crate::cost::{Cost, PriceTable, Tally};
use crate::manifest::{ChunkPlan, ChunkState, Manifest, TokenEstimate};
use crate::provider::Dialect;
use crate::route::{DEFAULT_ASSUMED_OUTPUT_TOKENS, Route};
use crate::store::{ObjectStore, ObjectStoreExt, PutMode, StoreError};
use crate::tokens::count_request;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the day's spend objects live: `_batchdrop/spend/<route>/<YYYY-MM-DD>.json`.
pub const SPEND_PREFIX: &str = "_batchdrop/spend/";
/// Compare-and-swap attempts on a day's spend object before giving up for this advance.
const CAS_ATTEMPTS: u32 = 32;

/// Estimates the tokens of a route's requests as they will be sent.
pub struct ChunkEstimator {
    dialect: &'static dyn Dialect,
    /// Output tokens of a request that bounds none itself.
    fallback_output: u64,
}

impl ChunkEstimator {
    /// The estimator of `route`, or None when the route has neither a cap nor an admission
    /// limit (planning then counts nothing).
    pub fn for_route(route: &Route, dialect: &'static dyn Dialect) -> Option<Self> {
        route.spend.estimates().then(|| ChunkEstimator {
            dialect,
            fallback_output: fallback_output(route),
        })
    }

    /// One request line as it will be sent. A line that is not JSON (it never is, once
    /// accepted) counts its bytes / 4.
    pub fn request(&self, request: &[u8]) -> TokenEstimate {
        match count_request(self.dialect, request) {
            Some(counted) => TokenEstimate {
                input_tokens: counted.input,
                output_tokens: counted.output.unwrap_or(self.fallback_output),
            },
            None => TokenEstimate {
                input_tokens: request.len() as u64 / 4,
                output_tokens: self.fallback_output,
            },
        }
    }
}

/// Output tokens assumed for a request that sets no bound: the route's `defaults.max_tokens`,
/// else its `assumed_output_tokens`, else [`DEFAULT_ASSUMED_OUTPUT_TOKENS`].
pub fn fallback_output(route: &Route) -> u64 {
    route
        .defaults
        .max_tokens
        .or(route.spend.assumed_output_tokens)
        .unwrap_or(DEFAULT_ASSUMED_OUTPUT_TOKENS)
}

/// A chunk's tokens: its estimate, else its bytes / 4 as input and `fallback_output` per
/// request as output.
pub fn chunk_tokens(plan: &ChunkPlan, fallback_output: u64) -> TokenEstimate {
    plan.estimate.unwrap_or(TokenEstimate {
        input_tokens: plan.bytes / 4,
        output_tokens: plan.requests.saturating_mul(fallback_output),
    })
}

/// What chunks of (model, tokens, sent on demand) would cost at most at `prices`.
pub fn cost_bound<'a>(
    chunks: impl IntoIterator<Item = (&'a str, TokenEstimate, bool)>,
    prices: &PriceTable,
) -> Cost {
    let mut tally = Tally::new();
    for (model, tokens, on_demand) in chunks {
        if on_demand {
            tally.add_on_demand(model, tokens.input_tokens, tokens.output_tokens);
        } else {
            tally.add(model, tokens.input_tokens, tokens.output_tokens);
        }
    }
    tally.cost(prices)
}

/// Input tokens of `manifest`'s batches in flight (submitting or submitted, not on demand)
/// for `model`, with `fallback_output` for chunks without an estimate (see [`chunk_tokens`]).
pub fn enqueued_tokens(manifest: &Manifest, model: &str, fallback_output: u64) -> u64 {
    manifest
        .chunks
        .iter()
        .filter(|c| {
            matches!(c.state, ChunkState::Submitted | ChunkState::Submitting)
                && !c.on_demand
                && c.plan.model == model
        })
        .map(|c| chunk_tokens(&c.plan, fallback_output).input_tokens)
        .sum()
}

/// The key of `route`'s spend object for `day` (`YYYY-MM-DD`, UTC).
pub fn day_key(route: &str, day: &str) -> String {
    format!("{SPEND_PREFIX}{route}/{day}.json")
}

/// The UTC day (`YYYY-MM-DD`) of an RFC 3339 time, e.g. a job's `created_at`.
pub fn day_of(time: &str) -> Result<String, String> {
    let t = parse_rfc3339(time)?;
    Ok(format!(
        "{:04}-{:02}-{:02}",
        t.year(),
        u8::from(t.month()),
        t.day()
    ))
}

/// A route's spending on one UTC day: every job started that day, with its reservation (its
/// cost bound) until it finishes, then its actual cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DaySpend {
    pub route: String,
    pub day: String,
    pub jobs: BTreeMap<String, JobSpend>,
}

/// One job's line in a [`DaySpend`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JobSpend {
    /// USD: the reservation, or once `settled` the actual cost.
    pub usd: f64,
    /// The job finished: `usd` is what it cost.
    #[serde(default)]
    pub settled: bool,
}

impl DaySpend {
    /// USD reserved by jobs not finished yet.
    pub fn reserved(&self) -> f64 {
        dollars(
            self.jobs
                .values()
                .filter(|j| !j.settled)
                .map(|j| nanos(j.usd))
                .sum(),
        )
    }

    /// USD spent by finished jobs.
    pub fn spent(&self) -> f64 {
        dollars(
            self.jobs
                .values()
                .filter(|j| j.settled)
                .map(|j| nanos(j.usd))
                .sum(),
        )
    }

    /// Reservations and actual costs of every job but `except`.
    pub fn total_without(&self, except: &str) -> f64 {
        dollars(
            self.jobs
                .iter()
                .filter(|(id, _)| id.as_str() != except)
                .map(|(_, j)| nanos(j.usd))
                .sum(),
        )
    }
}

/// Whether `a + b` is above `cap`, to the nano-dollar.
pub fn exceeds(a: f64, b: f64, cap: f64) -> bool {
    nanos(a) + nanos(b) > nanos(cap)
}

fn nanos(usd: f64) -> i64 {
    (usd * 1e9).round() as i64
}

fn dollars(nanos: i64) -> f64 {
    nanos as f64 / 1e9
}

/// An amount for a message: `$12.50`, `$0.000042`.
pub fn usd(amount: f64) -> String {
    if amount >= 1.0 || amount == 0.0 {
        return format!("${amount:.2}");
    }
    let s = format!("{amount:.9}");
    let s = s.trim_end_matches('0');
    let decimals = s.split_once('.').map_or(0, |(_, d)| d.len());
    if decimals < 2 {
        format!("${amount:.2}")
    } else {
        format!("${s}")
    }
}

/// `route`'s spend object for `day` and its ETag, if it exists.
pub async fn read_day(
    store: &dyn ObjectStore,
    route: &str,
    day: &str,
) -> Result<Option<(DaySpend, String)>, StoreError> {
    match store.get_json(&day_key(route, day)).await {
        Ok(found) => Ok(Some(found)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads `route`'s spend object for `day` (empty if there is none), lets `change` look at it
/// and change it, and writes it back by compare-and-swap when `change` says so (its second
/// value), again from a fresh read whenever another writer came first. Returns what `change`
/// returned on the read that was written (or not to be written).
pub async fn change_day<T>(
    store: &dyn ObjectStore,
    route: &str,
    day: &str,
    mut change: impl FnMut(&mut DaySpend) -> (T, bool),
) -> Result<T, StoreError> {
    let key = day_key(route, day);
    for _ in 0..CAS_ATTEMPTS {
        let (mut spend, mode) = match read_day(store, route, day).await? {
            Some((spend, etag)) => (spend, PutMode::Update(etag)),
            None => (
                DaySpend {
                    route: route.to_string(),
                    day: day.to_string(),
                    jobs: BTreeMap::new(),
                },
                PutMode::Create,
            ),
        };
        let (answer, write) = change(&mut spend);
        if !write {
            return Ok(answer);
        }
        match store.put_json(&key, &spend, mode).await {
            Ok(_) => return Ok(answer),
            Err(StoreError::Precondition { .. } | StoreError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Backend {
        key,
        message: format!("the day's spend changed under {CAS_ATTEMPTS} writes in a row"),
        retryable: true,
        source: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn a_day_is_the_utc_date_of_the_start() {
        assert_eq!(day_of("2026-01-01T23:30:00-02:00").unwrap(), "2026-01-02");
        assert_eq!(day_of("2026-03-04T00:00:00Z").unwrap(), "2026-03-04");
        assert!(day_of("yesterday").is_err());
    }

    #[test]
    fn the_estimate_takes_max_tokens_else_the_routes_assumption() {
        let dialect = crate::providers::dialect("openai").unwrap();
        let mut route = crate::config::Config::builtin(&|_| None)
            .route("sandbox")
            .unwrap()
            .clone();
        route.spend.max_usd_per_job = Some(1.0);
        route.spend.assumed_output_tokens = Some(300);
        let estimator = ChunkEstimator::for_route(&route, dialect).unwrap();
        let bounded = br#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}],"max_tokens":7}}"#;
        let unbounded = br#"{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}}"#;
        assert_eq!(
            estimator.request(bounded),
            TokenEstimate {
                input_tokens: 8,
                output_tokens: 7
            }
        );
        assert_eq!(estimator.request(unbounded).output_tokens, 300);
        route.spend = Default::default();
        assert!(ChunkEstimator::for_route(&route, dialect).is_none());
    }

    #[tokio::test]
    async fn change_day_writes_again_after_a_lost_race() -> Result<(), StoreError> {
        let store = MemoryStore::new();
        let mut first = true;
        let seen = change_day(&store, "r", "2026-01-01", |spend| {
            if first {
                first = false;
                // Another writer gets in between this read and its write.
                let other = DaySpend {
                    route: "r".into(),
                    day: "2026-01-01".into(),
                    jobs: [(
                        "other".to_string(),
                        JobSpend {
                            usd: 2.0,
                            settled: false,
                        },
                    )]
                    .into(),
                };
                let body = serde_json::to_vec(&other).unwrap_or_default();
                futures::executor::block_on(store.put(
                    &day_key("r", "2026-01-01"),
                    body.into(),
                    PutMode::Create,
                ))
                .ok();
            }
            let before = spend.total_without("me");
            spend.jobs.insert(
                "me".into(),
                JobSpend {
                    usd: 1.0,
                    settled: false,
                },
            );
            (before, true)
        })
        .await?;
        assert_eq!(seen, 2.0);
        let (spend, _) = read_day(&store, "r", "2026-01-01")
            .await?
            .unwrap_or_default();
        assert_eq!((spend.reserved(), spend.spent()), (3.0, 0.0));
        Ok(())
    }
}
