//! A chunk below the provider's batch minimum (a small file, a retry remainder): not a batch.
//! As the route says ([`BelowMinimum`]), its requests go one by one through the provider's
//! synchronous API ([`Provider::invoke`]) at the on-demand price, or fail with `below_minimum`.
//!
//! `invoke` makes one attempt; this lane does the rest. Requests go at the route's pace
//! ([`super::pace`]: adaptive concurrency up to `max_concurrency`, halved on a throttle, held
//! until `retry-after`, requests and tokens per minute). A request that failed for a reason
//! worth retrying ([`ProviderError::is_retryable`]) goes again after a backoff
//! ([`RetryPolicy::delay`], never sooner than `retry-after`), waited on the engine's clock, up
//! to the route's `max_attempts` failures in all; "too many requests" answers (429, a
//! throttling exception) slow the pace and have a budget of their own
//! ([`RATE_LIMITED_RETRIES`]).
//!
//! The answers are saved in pieces of [`ON_DEMAND_PIECE`] requests in chunk order (or four per
//! slot of `max_concurrency`, if more: `output/<chunk>/on-demand/part-<first position>-<count>.jsonl`
//! in the job's state), each piece once all its requests are done (answers in the order they
//! came), and collected like a batch's results ([`super::collect`], which matches them by id):
//! the same matching and output rules. A request still unanswered after its last attempt
//! (or failing for a reason that will not go away: an answer that cannot be read) gets a
//! failure line of its own with code `no_answer` and the last error: its attempts are spent,
//! it is not sent again in a follow-up chunk.
//!
//! Crash and deadline safety: the chunk is marked `Submitting` and `on_demand` before the
//! first request. Near the invocation's deadline no new request starts (nor a wait that would
//! end past it): the answers the piece has so far are saved aside (`partial-<start>-<count>`),
//! the requests still in flight are let go, and the next advance goes on from the first piece
//! not saved, sending only what that piece has no answer for. A run after a crash goes on the
//! same way: only the requests of the piece in flight are asked again, and no answer is
//! recorded twice. Each run's pace (answers per second) is recorded for deadline cutoffs
//! ([`super::deadline`]). A job cancelled meanwhile keeps the
//! saved answers; its other requests are never sent (`batch_cancelled`).

use super::JobError;
use super::collect::Ending;
use super::pace::{Pace, PaceLimits, Start, Ticket, is_throttle, request_tokens};
use super::run::JobRun;
use crate::chunk_files::ChunkRows;
use crate::manifest::{ChunkState, Manifest};
use crate::provider::{
    BatchError, BatchInfo, BatchState, Provider, ProviderError, RequestCounts, ResultFile,
};
use crate::providers::{self, RetryPolicy};
use crate::route::BelowMinimum;
use crate::store::{ObjectStoreExt, PutMode};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::collections::BTreeSet;
use std::sync::Arc;
use time::OffsetDateTime;

/// Times a request is sent again after "too many requests", beside its `max_attempts`.
pub const RATE_LIMITED_RETRIES: u32 = 10;

/// The error code of a request the lane gave up on.
pub const NO_ANSWER: &str = "no_answer";

/// Requests answered between two saves of their answers (or four per slot, if more): at
/// most what a crash asks again.
pub const ON_DEMAND_PIECE: usize = 16;

/// A request of the piece being sent.
struct Pending {
    request: Vec<u8>,
    /// Its tokens, for `tokens_per_minute`.
    tokens: u64,
    /// Attempts made so far.
    attempts: u32,
    /// Of which answered "too many requests" (429, a throttling exception).
    rate_limited: u32,
    /// After a failure: not again before this.
    not_before: Option<OffsetDateTime>,
}

/// What became of a piece's requests.
enum Sent {
    /// Every request is done: these answers came, the others got none after their last
    /// attempt.
    Done {
        answers: Vec<Vec<u8>>,
        unanswered: u64,
    },
    /// The invocation's deadline came first: these answers came; the piece's other requests
    /// are asked next time.
    Deadline { answers: Vec<Vec<u8>> },
}

/// How one run of the lane sends: the route's pace, the provider and model, the attempts
/// per request and their backoff.
struct Lane<'a> {
    pace: Arc<Pace>,
    provider: &'a dyn Provider,
    model: &'a str,
    /// Attempts per request in all (`max_attempts`), and the waits between them.
    retry: RetryPolicy,
    job_id: String,
    chunk: u32,
    /// How the route's result lines are written: a request whose attempts are spent gets a
    /// failure line of its own (`no_answer`).
    dialect: Option<&'static dyn crate::provider::Dialect>,
}

/// The name of the piece holding the answers of `count` requests from position `start` on.
fn piece_name(start: u64, count: u64) -> String {
    format!("part-{start:08}-{count:06}.jsonl")
}

/// Where the answers of a piece cut short by the invocation's deadline wait for the rest.
fn partial_name(start: u64, count: u64) -> String {
    format!("partial-{start:08}-{count:06}.jsonl")
}

/// The (start, count) of a saved piece, from its key.
fn piece_of(prefix: &str, key: &str) -> Option<(u64, u64)> {
    let (start, count) = key
        .strip_prefix(prefix)?
        .strip_prefix("part-")?
        .strip_suffix(".jsonl")?
        .split_once('-')?;
    Some((start.parse().ok()?, count.parse().ok()?))
}

impl JobRun<'_> {
    /// Whether chunk `i` goes request by request: it holds fewer requests than its route's
    /// batch minimum, or the provider has no batch API (then always on demand).
    pub(super) fn below_minimum(&self, manifest: &Manifest, i: usize) -> Option<BelowMinimum> {
        let route = self.engine.config.route(&manifest.route)?;
        if providers::get(&route.provider).is_ok_and(|e| !e.batches) {
            return Some(BelowMinimum::OnDemand);
        }
        let chunk = &manifest.chunks[i];
        // Already on its way, or past the job's deadline cutoff before it was sent.
        if chunk.on_demand
            || (chunk.state == ChunkState::Staged && super::deadline::is_cut(manifest))
        {
            return Some(BelowMinimum::OnDemand);
        }
        (chunk.plan.requests < route.limits.min_requests_per_batch).then_some(route.below_minimum)
    }

    /// Sends chunk `i` on demand, or fails it, as `policy` says; then collects it.
    pub(super) async fn below_minimum_step(
        &mut self,
        manifest: &mut Manifest,
        i: usize,
        provider: &dyn Provider,
        policy: BelowMinimum,
    ) -> Result<(), JobError> {
        if policy == BelowMinimum::Fail {
            let minimum = self
                .engine
                .config
                .route(&manifest.route)
                .map_or(0, |r| r.limits.min_requests_per_batch);
            let message = format!(
                "the chunk holds {} requests, fewer than the provider's minimum of {minimum} per batch, and the route says below_minimum = \"fail\"",
                manifest.chunks[i].plan.requests
            );
            let ending = Ending::NeverSent {
                state: BatchState::Failed,
                status: "below_minimum",
                error: Some(BatchError {
                    code: "below_minimum".into(),
                    message,
                    line: None,
                }),
            };
            return self.collect(manifest, i, provider, ending).await;
        }
        // Intent first: from here on the chunk goes on demand, also after a crash.
        if manifest.chunks[i].state != ChunkState::Submitting || !manifest.chunks[i].on_demand {
            let chunk = &mut manifest.chunks[i];
            chunk.state = ChunkState::Submitting;
            chunk.on_demand = true;
            chunk.submit_started_at = Some(self.engine.clock.now().unix_timestamp());
            self.save(manifest).await?;
        }
        let index = manifest.chunks[i].plan.index;
        let model = manifest.chunks[i].plan.model.clone();
        let store = self.engine.store.clone();
        let prefix = format!("{}on-demand/", self.keys.provider_output(index));
        // The pieces an earlier run saved: their requests are answered.
        let saved: BTreeSet<(u64, u64)> = store
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|m| piece_of(&prefix, &m.key))
            .collect();
        let limits = self
            .engine
            .config
            .route(&manifest.route)
            .map_or_else(PaceLimits::default, PaceLimits::of);
        let dialect = providers::dialect(&manifest.provider).ok();
        let lane = Lane {
            pace: self.engine.paces.of(&manifest.route, limits),
            provider,
            model: &model,
            // The job's attempts per request (its route's `max_attempts`), with the backoff of
            // the providers' clients.
            retry: RetryPolicy {
                max_attempts: manifest.max_attempts.max(1),
                ..RetryPolicy::default()
            },
            job_id: manifest.job_id.clone(),
            chunk: index,
            dialect,
        };
        // Tokens are only estimated where they are limited.
        let tokens_of = |request: &[u8]| match (limits.tokens_per_minute, dialect) {
            (Some(_), Some(d)) => request_tokens(d, request),
            _ => 0,
        };
        // A piece keeps every slot busy: at least four requests per slot.
        let piece = ON_DEMAND_PIECE.max(4 * limits.max_concurrency) as u64;
        let mut rows = ChunkRows::open(store.as_ref(), &self.keys, index).await?;
        let (mut position, mut total, mut unanswered) = (0u64, 0u64, 0u64);
        let (started, mut answered_now) = (self.engine.clock.now(), 0u64);
        let mut cancelled = false;
        loop {
            let mut window = Vec::with_capacity(piece as usize);
            while (window.len() as u64) < piece {
                let Some(row) = rows.next().await? else { break };
                let request = row.request.trim_ascii_end().to_vec();
                window.push(Pending {
                    tokens: tokens_of(&request),
                    request,
                    attempts: 0,
                    rate_limited: 0,
                    not_before: None,
                });
            }
            if window.is_empty() {
                break;
            }
            let start = position;
            position += window.len() as u64;
            total += window.len() as u64;
            if saved.contains(&(start, window.len() as u64)) {
                continue;
            }
            if manifest.cancel_requested.is_some() {
                // What is saved is kept; the rest is never sent.
                cancelled = true;
                break;
            }
            if self.engine.near_deadline() {
                // The next advance goes on from the first piece not saved.
                self.record_lane_rate(manifest, answered_now, self.since(started))
                    .await;
                return Ok(());
            }
            self.keep_lease(manifest).await?;
            // Answers an earlier run got before its deadline: those requests are not sent again.
            let partial = format!("{prefix}{}", partial_name(start, window.len() as u64));
            let (earlier, window) = self.answered_before(&partial, dialect, window).await?;
            let (answers, missed) = match self.send_piece(&lane, window, earlier).await {
                Sent::Done {
                    answers,
                    unanswered,
                } => (answers, unanswered),
                Sent::Deadline { answers } => {
                    store
                        .put(
                            &partial,
                            Bytes::from(lines_of(&answers)),
                            PutMode::Overwrite,
                        )
                        .await?;
                    self.record_lane_rate(manifest, answered_now, self.since(started))
                        .await;
                    return Ok(());
                }
            };
            unanswered += missed;
            answered_now += answers.len() as u64;
            store
                .put(
                    &format!("{prefix}{}", piece_name(start, position - start)),
                    Bytes::from(lines_of(&answers)),
                    PutMode::Overwrite,
                )
                .await?;
        }
        self.record_lane_rate(manifest, answered_now, self.since(started))
            .await;
        // Every piece saved, in order (a piece cut otherwise by an earlier run may overlap
        // another: collect keeps the first answer of a request and ignores the second).
        let pieces = store
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|m| piece_of(&prefix, &m.key).map(|at| (at, m.key)))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_values()
            .map(ResultFile::Bucket)
            .collect();
        let (state, status) = if cancelled {
            (BatchState::Cancelled, "cancelled")
        } else {
            (BatchState::Completed, "on_demand")
        };
        let info = BatchInfo {
            id: format!("on-demand-{index}"),
            status: status.into(),
            state,
            result_files: pieces,
            errors: Vec::new(),
            counts: RequestCounts {
                total,
                completed: total - unanswered,
                failed: unanswered,
            },
        };
        manifest.chunks[i].batch_id = Some(info.id.clone());
        self.collect(manifest, i, provider, Ending::Batch(&info))
            .await
    }

    /// Sends the requests of one piece at the lane's pace, each until it is answered or has
    /// had its attempts; stops early, giving the piece up, near the invocation's deadline.
    async fn send_piece(
        &self,
        lane: &Lane<'_>,
        window: Vec<Pending>,
        earlier: Vec<Vec<u8>>,
    ) -> Sent {
        let clock = &self.engine.clock;
        let mut answers = earlier;
        let mut unanswered = 0u64;
        let mut waiting = window;
        let mut in_flight = FuturesUnordered::new();
        loop {
            // Made before asking the pace, so that a slot freed meanwhile is not missed.
            let freed = lane.pace.freed();
            let mut full = false;
            let mut wake_at: Option<OffsetDateTime> = None;
            while !waiting.is_empty() {
                let now = clock.now();
                // The first request that may go now; one that failed waits out its backoff.
                let Some(k) = waiting
                    .iter()
                    .position(|p| p.not_before.is_none_or(|at| at <= now))
                else {
                    wake_at = waiting.iter().filter_map(|p| p.not_before).min();
                    break;
                };
                if self.engine.near_deadline() {
                    return Sent::Deadline { answers };
                }
                match lane.pace.try_start(now, waiting[k].tokens) {
                    Start::Go(ticket) => {
                        let mut pending = waiting.remove(k);
                        pending.attempts += 1;
                        let (provider, model) = (lane.provider, lane.model);
                        in_flight.push(async move {
                            let answer = provider.invoke(model, &pending.request).await;
                            (pending, ticket, answer)
                        });
                    }
                    Start::Full => {
                        full = true;
                        break;
                    }
                    Start::At(at) => {
                        wake_at = Some(at);
                        break;
                    }
                }
            }
            if waiting.is_empty() && in_flight.is_empty() {
                return Sent::Done {
                    answers,
                    unanswered,
                };
            }
            if in_flight.is_empty()
                && wake_at.is_some_and(|at| self.engine.stop_at.is_some_and(|stop| at >= stop))
            {
                // The wait would end past the point where this invocation stops starting work.
                return Sent::Deadline { answers };
            }
            let wait = wake_at.map_or(std::time::Duration::ZERO, |at| {
                (at - clock.now()).try_into().unwrap_or_default()
            });
            tokio::select! {
                Some((pending, ticket, answer)) = in_flight.next(), if !in_flight.is_empty() => {
                    match self.answered(lane, pending, ticket, answer) {
                        Ok(line) => answers.push(line),
                        Err(Some(again)) => waiting.insert(0, again),
                        Err(None) => unanswered += 1,
                    }
                }
                () = clock.sleep(wait), if wake_at.is_some() => {}
                () = freed, if full => {}
            }
        }
    }

    /// The answers saved aside in `partial` by a run its deadline stopped, and the requests
    /// of `window` they do not answer.
    async fn answered_before(
        &self,
        partial: &str,
        dialect: Option<&'static dyn crate::provider::Dialect>,
        window: Vec<Pending>,
    ) -> Result<(Vec<Vec<u8>>, Vec<Pending>), JobError> {
        let bytes = match self.engine.store.get_bytes(partial).await {
            Ok(bytes) => bytes,
            Err(crate::store::StoreError::NotFound { .. }) => return Ok((Vec::new(), window)),
            Err(e) => return Err(e.into()),
        };
        let Some(dialect) = dialect else {
            return Ok((Vec::new(), window));
        };
        let mut earlier = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(facts) = dialect.read_result(line) {
                ids.insert(facts.custom_id);
                earlier.push(line.to_vec());
            }
        }
        let rest = window
            .into_iter()
            .filter(|p| {
                dialect
                    .request_id(&p.request)
                    .is_none_or(|id| !ids.contains(&id))
            })
            .collect();
        Ok((earlier, rest))
    }

    /// The time since `started`, on the engine's clock.
    fn since(&self, started: OffsetDateTime) -> std::time::Duration {
        (self.engine.clock.now() - started)
            .try_into()
            .unwrap_or_default()
    }

    /// What an attempt's outcome means: the result line (its answer, or a `no_answer` failure
    /// once its attempts are spent or the failure will not go away), or the request to send
    /// again (when, it says), or none (no line can be written: no dialect). Tells the pace.
    fn answered(
        &self,
        lane: &Lane<'_>,
        mut pending: Pending,
        ticket: Ticket,
        answer: Result<Vec<u8>, ProviderError>,
    ) -> Result<Vec<u8>, Option<Pending>> {
        let e = match answer {
            Ok(line) => {
                ticket.answered();
                return Ok(line);
            }
            Err(e) => e,
        };
        let now = self.engine.clock.now();
        if is_throttle(&e) {
            ticket.throttled(now, e.retry_after());
        } else {
            drop(ticket);
        }
        // "Too many requests" says slow down, not that the request failed: the pace has
        // slowed, and such answers have a budget of their own beside `max_attempts`.
        if e.kind() == Some(crate::provider::ErrorKind::RateLimited) {
            pending.rate_limited += 1;
        }
        let failures = pending.attempts - pending.rate_limited;
        let again = e.is_retryable()
            && pending.rate_limited <= RATE_LIMITED_RETRIES
            && failures < lane.retry.max_attempts;
        if again {
            let wait = lane.retry.delay(pending.attempts, e.retry_after());
            tracing::debug!(job_id = %lane.job_id, chunk = lane.chunk, attempt = pending.attempts, concurrency = lane.pace.limit(), wait_ms = wait.as_millis() as u64, error = %e, "a request sent on demand goes again");
            pending.not_before = Some(now + wait);
            return Err(Some(pending));
        }
        tracing::warn!(job_id = %lane.job_id, chunk = lane.chunk, attempts = pending.attempts, error = %e, "a request sent on demand got no answer");
        // Its attempts are spent (or the failure will not go away): a failure line says why,
        // and it is not sent again in a follow-up chunk.
        match lane
            .dialect
            .and_then(|d| d.request_id(&pending.request).map(|id| (d, id)))
        {
            Some((dialect, id)) => Ok(dialect.missing_result(
                &id,
                NO_ANSWER,
                &format!("no answer after {} attempt(s): {e}", pending.attempts),
            )),
            None => Err(None),
        }
    }
}

/// Answer lines, one per line.
fn lines_of(answers: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(answers.iter().map(|a| a.len() + 1).sum());
    for answer in answers {
        body.extend_from_slice(answer.trim_ascii_end());
        body.push(b'\n');
    }
    body
}
