//! The synchronous lane's pace ([`super::on_demand`]): how many requests of a route may be in
//! flight at once, and when the next one may start.
//!
//! - Concurrency adapts (additive increase, multiplicative decrease). It starts at
//!   min([`START_CONCURRENCY`], the route's `max_concurrency`) and grows by one after as many
//!   good answers in a row as the current level (about one round of answers), up to
//!   `max_concurrency`: against a server that keeps up it reaches 16 after about 120 answers.
//!   A throttle ([`is_throttle`]: HTTP 429, 5xx (503, 529 included), Bedrock's
//!   `ThrottlingException` and `ServiceUnavailableException`) halves it, never below 1, once
//!   per round: the throttles of requests started before the last cut do not cut again.
//! - A throttle that says `retry-after` holds every new request of the route until then.
//! - `requests_per_minute` and `tokens_per_minute` space the starts evenly, without a burst: a
//!   request starts no sooner than 60/rpm s after the one before, and one of `t` tokens
//!   ([`request_tokens`]) holds the next back 60·t/tpm s.
//! - One pace per route and engine ([`Paces`]): the jobs an invocation advances at once share
//!   it. Each process has its own; concurrent invocations do not see each other's.
//!
//! Time is the engine's clock, passed in: nothing here waits.

use crate::provider::{Dialect, ErrorKind, ProviderError};
use crate::route::Route;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::Notify;

/// Requests of a route at once before any answer came, unless `max_concurrency` is lower.
pub const START_CONCURRENCY: usize = 4;
/// A route's concurrency when it sets no `max_concurrency`.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;

/// What a route allows its synchronous lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaceLimits {
    pub max_concurrency: usize,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
}

impl Default for PaceLimits {
    /// A route that sets none of them.
    fn default() -> Self {
        Self {
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            requests_per_minute: None,
            tokens_per_minute: None,
        }
    }
}

impl PaceLimits {
    pub fn of(route: &Route) -> Self {
        Self {
            max_concurrency: route
                .max_concurrency
                .map_or(DEFAULT_MAX_CONCURRENCY, |n| n.max(1) as usize),
            requests_per_minute: route.requests_per_minute,
            tokens_per_minute: route.tokens_per_minute,
        }
    }
}

/// Whether a failure says the provider wants fewer requests: a rate limit or a server error
/// (overloaded: 503, 529; a 500 under load says the same, and one cut more costs little).
pub fn is_throttle(error: &ProviderError) -> bool {
    matches!(
        error.kind(),
        Some(ErrorKind::RateLimited | ErrorKind::ServerError)
    )
}

/// The tokens a request counts for against `tokens_per_minute`: its body's bytes / 4 (about
/// four bytes a token in English text and JSON; no tokenizer here) plus the most it may
/// answer (`max_completion_tokens`, `max_tokens` or `max_output_tokens`, times `n`). A line
/// that is not JSON counts its bytes / 4.
pub fn request_tokens(dialect: &dyn Dialect, request: &[u8]) -> u64 {
    let Ok(line) = serde_json::from_slice::<serde_json::Value>(request) else {
        return (request.len() as u64).div_ceil(4);
    };
    let (_, body) = dialect.request_parts(&line);
    let input = serde_json::to_vec(body).map_or(request.len(), |b| b.len()) as u64;
    let output = ["max_completion_tokens", "max_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| body[*k].as_u64())
        .unwrap_or(0);
    let n = body["n"].as_u64().unwrap_or(1).max(1);
    input.div_ceil(4) + output.saturating_mul(n)
}

/// Starts spaced `per_unit` apart per unit taken, without a burst.
#[derive(Debug)]
struct Spacing {
    per_unit: Duration,
    /// The earliest the next start may be.
    next: Option<OffsetDateTime>,
}

impl Spacing {
    fn per_minute(amount: u64) -> Self {
        Self {
            per_unit: Duration::from_secs(60).div_f64(amount.max(1) as f64),
            next: None,
        }
    }

    fn take(&mut self, now: OffsetDateTime, units: u64) {
        let from = self.next.map_or(now, |n| n.max(now));
        self.next = Some(from + self.per_unit.mul_f64(units as f64));
    }
}

#[derive(Debug)]
struct State {
    limit: usize,
    max: usize,
    in_flight: usize,
    /// Good answers since the limit last changed.
    good: usize,
    /// Cuts so far: a ticket remembers the count it started under.
    cuts: u64,
    /// No request starts before this (the last `retry-after`).
    hold_until: Option<OffsetDateTime>,
    requests: Option<Spacing>,
    tokens: Option<Spacing>,
}

/// One route's pace (see the module doc). Shared: [`Pace::try_start`] takes `Arc<Pace>`.
#[derive(Debug)]
pub struct Pace {
    state: Mutex<State>,
    /// Told whenever a request ends (a slot frees up).
    freed: Notify,
}

/// Whether a request may start now.
#[derive(Debug)]
pub enum Start {
    /// Yes: the ticket holds its slot until it is told the outcome or dropped.
    Go(Ticket),
    /// No: every slot is taken; wait for one to free up ([`Pace::freed`]).
    Full,
    /// Not before this moment (a `retry-after`, or the requests/tokens per minute).
    At(OffsetDateTime),
}

/// A request in flight. Dropping it frees its slot and says nothing of the outcome (a failure
/// that is no throttle).
#[derive(Debug)]
pub struct Ticket {
    pace: Arc<Pace>,
    cuts: u64,
}

impl Pace {
    pub fn new(limits: PaceLimits) -> Self {
        let max = limits.max_concurrency.max(1);
        Self {
            state: Mutex::new(State {
                limit: START_CONCURRENCY.min(max),
                max,
                in_flight: 0,
                good: 0,
                cuts: 0,
                hold_until: None,
                requests: limits
                    .requests_per_minute
                    .map(|n| Spacing::per_minute(n.into())),
                tokens: limits.tokens_per_minute.map(Spacing::per_minute),
            }),
            freed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every step: a panic elsewhere leaves nothing half done.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests that may be in flight now.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Starts a request of `tokens` tokens now, if the pace allows.
    pub fn try_start(self: &Arc<Self>, now: OffsetDateTime, tokens: u64) -> Start {
        let mut s = self.lock();
        if let Some(at) = s.hold_until.filter(|at| *at > now) {
            return Start::At(at);
        }
        if s.in_flight >= s.limit {
            return Start::Full;
        }
        let ready = [&s.requests, &s.tokens]
            .into_iter()
            .filter_map(|b| b.as_ref().and_then(|b| b.next))
            .max();
        if let Some(at) = ready.filter(|at| *at > now) {
            return Start::At(at);
        }
        if let Some(b) = s.requests.as_mut() {
            b.take(now, 1);
        }
        if let Some(b) = s.tokens.as_mut() {
            b.take(now, tokens);
        }
        s.in_flight += 1;
        Start::Go(Ticket {
            pace: self.clone(),
            cuts: s.cuts,
        })
    }

    /// Resolves when a request of the route ends. Make it before [`Pace::try_start`] answers
    /// [`Start::Full`], so that an end in between is not missed.
    pub fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }
}

impl Ticket {
    /// The request was answered (a refusal that will not go away is an answer too).
    pub fn answered(self) {
        let mut s = self.pace.lock();
        s.good += 1;
        if s.good >= s.limit && s.limit < s.max {
            s.limit += 1;
            s.good = 0;
        }
    }

    /// The provider throttled the request ([`is_throttle`]), asking to wait `retry_after`.
    pub fn throttled(self, now: OffsetDateTime, retry_after: Option<Duration>) {
        let mut s = self.pace.lock();
        if self.cuts == s.cuts {
            s.limit = (s.limit / 2).max(1);
            s.cuts += 1;
        }
        s.good = 0;
        if let Some(wait) = retry_after {
            let until = now + wait;
            s.hold_until = Some(s.hold_until.map_or(until, |h| h.max(until)));
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.pace.lock().in_flight -= 1;
        self.pace.freed.notify_waiters();
    }
}

/// The pace of each route, for one engine.
#[derive(Debug, Default)]
pub(crate) struct Paces {
    by_route: Mutex<HashMap<String, Arc<Pace>>>,
}

impl Paces {
    /// The pace of `route`, made with `limits` the first time.
    pub fn of(&self, route: &str, limits: PaceLimits) -> Arc<Pace> {
        self.by_route
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(route.to_string())
            .or_insert_with(|| Arc::new(Pace::new(limits)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: OffsetDateTime = time::macros::datetime!(2026-01-01 0:00 UTC);

    fn pace(max: usize, rpm: Option<u32>, tpm: Option<u64>) -> Arc<Pace> {
        Arc::new(Pace::new(PaceLimits {
            max_concurrency: max,
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
        }))
    }

    fn go(pace: &Arc<Pace>, now: OffsetDateTime, tokens: u64) -> Ticket {
        match pace.try_start(now, tokens) {
            Start::Go(t) => t,
            other => panic!("expected to start, got {other:?}"),
        }
    }

    /// Starts requests until the pace says no; gives back the tickets.
    fn fill(pace: &Arc<Pace>) -> Vec<Ticket> {
        let mut tickets = Vec::new();
        while let Start::Go(t) = pace.try_start(T0, 0) {
            tickets.push(t);
        }
        tickets
    }

    /// `n` requests answered well, one after the other.
    fn answer(pace: &Arc<Pace>, n: usize) {
        for _ in 0..n {
            go(pace, T0, 0).answered();
        }
    }

    #[test]
    fn it_starts_at_four_or_the_route_maximum_if_lower() {
        assert_eq!(pace(16, None, None).limit(), 4);
        assert_eq!(pace(2, None, None).limit(), 2);
    }

    #[test]
    fn no_more_requests_start_than_the_limit() {
        let p = pace(16, None, None);
        let tickets = fill(&p);
        assert_eq!(tickets.len(), 4);
        assert!(matches!(p.try_start(T0, 0), Start::Full));
        drop(tickets);
        assert!(matches!(p.try_start(T0, 0), Start::Go(_)));
    }

    #[test]
    fn good_answers_grow_it_by_one_per_round_up_to_the_maximum() {
        let p = pace(6, None, None);
        answer(&p, 3);
        assert_eq!(p.limit(), 4);
        answer(&p, 1);
        assert_eq!(p.limit(), 5);
        answer(&p, 5);
        assert_eq!(p.limit(), 6);
        answer(&p, 100);
        assert_eq!(p.limit(), 6);
    }

    #[test]
    fn a_throttle_halves_it_and_good_answers_grow_it_back() {
        let p = pace(16, None, None);
        answer(&p, 4 + 5 + 6 + 7);
        assert_eq!(p.limit(), 8);
        go(&p, T0, 0).throttled(T0, None);
        assert_eq!(p.limit(), 4);
        answer(&p, 4);
        assert_eq!(p.limit(), 5);
    }

    #[test]
    fn it_never_falls_below_one() {
        let p = pace(16, None, None);
        for _ in 0..10 {
            go(&p, T0, 0).throttled(T0, None);
        }
        assert_eq!(p.limit(), 1);
        assert!(matches!(p.try_start(T0, 0), Start::Go(_)));
    }

    #[test]
    fn throttles_of_one_round_cut_once() {
        let p = pace(16, None, None);
        let tickets = fill(&p);
        for t in tickets {
            t.throttled(T0, None);
        }
        assert_eq!(p.limit(), 2);
    }

    #[test]
    fn nothing_starts_before_the_retry_after_moment() {
        let p = pace(16, None, None);
        go(&p, T0, 0).throttled(T0, Some(Duration::from_secs(7)));
        let at = T0 + Duration::from_secs(7);
        assert!(matches!(p.try_start(T0, 0), Start::At(t) if t == at));
        assert!(matches!(
            p.try_start(at - Duration::from_millis(1), 0),
            Start::At(t) if t == at
        ));
        assert!(matches!(p.try_start(at, 0), Start::Go(_)));
    }

    #[test]
    fn a_shorter_retry_after_does_not_shorten_the_hold() {
        let p = pace(16, None, None);
        go(&p, T0, 0).throttled(T0, Some(Duration::from_secs(7)));
        go(&p, T0 + Duration::from_secs(7), 0).throttled(T0, Some(Duration::from_secs(1)));
        let at = T0 + Duration::from_secs(7);
        assert!(matches!(p.try_start(T0 + Duration::from_secs(2), 0), Start::At(t) if t == at));
    }

    #[test]
    fn requests_per_minute_space_the_starts() {
        let p = pace(16, Some(60), None);
        drop(go(&p, T0, 0));
        let next = T0 + Duration::from_secs(1);
        assert!(matches!(p.try_start(T0, 0), Start::At(t) if t == next));
        drop(go(&p, next, 0));
        assert!(matches!(
            p.try_start(next, 0),
            Start::At(t) if t == next + Duration::from_secs(1)
        ));
    }

    #[test]
    fn tokens_per_minute_hold_the_next_request_for_the_tokens_of_this_one() {
        let p = pace(16, None, Some(6_000));
        // 500 tokens at 100 a second: the next may start 5 s later, whatever its own size.
        drop(go(&p, T0, 500));
        let next = T0 + Duration::from_secs(5);
        assert!(matches!(p.try_start(T0 + Duration::from_secs(4), 1), Start::At(t) if t == next));
        drop(go(&p, next, 1));
    }

    #[test]
    fn a_route_shares_one_pace() {
        let paces = Paces::default();
        let limits = PaceLimits {
            max_concurrency: 8,
            requests_per_minute: None,
            tokens_per_minute: None,
        };
        assert!(Arc::ptr_eq(&paces.of("a", limits), &paces.of("a", limits)));
        assert!(!Arc::ptr_eq(&paces.of("a", limits), &paces.of("b", limits)));
    }

    #[test]
    fn a_request_counts_its_body_and_its_most_output() {
        let dialect = crate::providers::dialect("openai").expect("openai dialect");
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":100}"#;
        let line = format!(
            r#"{{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{body}}}"#
        );
        assert_eq!(
            request_tokens(dialect, line.as_bytes()),
            (body.len() as u64).div_ceil(4) + 100
        );
        assert_eq!(request_tokens(dialect, b"not json!"), 3);
    }
}
