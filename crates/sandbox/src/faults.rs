//! Fault injection: which faults to inject ([`Faults`], parsed from a spec or deserialized),
//! and the [`Injector`] that decides, from the seed and counters only, which request, batch
//! or line gets which fault, and counts what it injected. The wire shapes and the contract
//! are in the crate docs ("Fault injection").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::respond::{Stream, digest};

/// How long a `timeout` fault holds its answer unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The `retry-after` of an injected 429, 503 or 529 unless told otherwise.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The share of an expired batch's requests answered unless told otherwise.
pub const DEFAULT_EXPIRE_KEEP: f64 = 0.5;
/// The status of every request of a `no_output` batch (OpenAI `server_error`, Anthropic
/// `api_error`).
pub const NO_OUTPUT_STATUS: u16 = 500;
/// The share of a `partial` Bedrock job's records that fail unless told otherwise.
pub const DEFAULT_PARTIAL_ERRORS: f64 = 0.1;

/// How often a fault strikes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Each request, batch or line with this probability (0 to 1), drawn from the seed.
    Share(f64),
    /// Exactly the Nth, 2Nth, 3Nth, … (counted from 1); `Every(0)` never strikes.
    Every(u64),
}

impl Rate {
    /// Never strikes.
    pub const NEVER: Rate = Rate::Share(0.0);
    /// Strikes every time.
    pub const ALWAYS: Rate = Rate::Every(1);

    /// Exactly every `n`th (`n` = 0: never).
    pub fn every(n: u64) -> Rate {
        Rate::Every(n)
    }

    /// Whether it can never strike.
    pub fn is_never(self) -> bool {
        match self {
            Rate::Share(share) => share.is_nan() || share <= 0.0,
            Rate::Every(n) => n == 0,
        }
    }

    /// The probability part, 0 for an `every:N` rate (clamped to 0..=1).
    fn share(self) -> f64 {
        match self {
            Rate::Share(share) if share > 0.0 => share.min(1.0),
            _ => 0.0,
        }
    }

    /// Whether an `every:N` rate hits number `n` (counted from 1).
    fn hits(self, n: u64) -> bool {
        matches!(self, Rate::Every(every) if every > 0 && n.is_multiple_of(every))
    }

    /// Whether the rate strikes decision number `n` (counted from 1) of `site`: exactly every
    /// Nth, or drawn from `seed` (a pure function of seed, site and number).
    pub(crate) fn strikes(self, seed: u64, site: &[u8], n: u64) -> bool {
        self.hits(n) || draw(seed, &[site], &[n]) < self.share()
    }

    /// Reads `0.05` or `every:3` (what a fault spec takes).
    pub fn from_spec(text: &str) -> Result<Self, String> {
        Rate::parse(text).map_err(|expected| format!("{text:?}: expected {expected}"))
    }
}

impl Default for Rate {
    fn default() -> Self {
        Rate::NEVER
    }
}

impl From<f64> for Rate {
    fn from(share: f64) -> Self {
        Rate::Share(share)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Share(share) => write!(f, "{share}"),
            Rate::Every(0) => f.write_str("0"),
            Rate::Every(n) => write!(f, "every:{n}"),
        }
    }
}

impl Rate {
    /// `0.05` or `every:3`; on error, what was expected.
    fn parse(text: &str) -> Result<Self, &'static str> {
        const EXPECTED: &str = "a probability from 0 to 1 or every:N with N >= 1";
        if let Some(n) = text.strip_prefix("every:") {
            return match n.parse::<u64>() {
                Ok(n) if n >= 1 => Ok(Rate::Every(n)),
                _ => Err(EXPECTED),
            };
        }
        match text.parse::<f64>() {
            Ok(share) if (0.0..=1.0).contains(&share) => Ok(Rate::Share(share)),
            _ => Err(EXPECTED),
        }
    }
}

/// Which faults the sandbox injects, and how often. See "Fault injection" in the crate docs
/// for what each fault looks like on the wire and how decisions are made.
///
/// In Rust: `Faults::seeded(7).http429(0.1).token_limit(Rate::every(3)).request_error(500,
/// 0.02)`, or struct update syntax; as a spec: `Faults::parse("seed=7,http429=0.1,
/// token_limit=every:3,req500=0.02")`; with serde, that string or a table of the same keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "String")]
pub struct Faults {
    /// Seeds every probability draw (`seed`).
    pub seed: u64,
    /// API: answer 429 with `retry-after` and `retry-after-ms` (`http429`).
    pub http429: Rate,
    /// API: answer 500 (`http500`).
    pub http500: Rate,
    /// API: answer 529 `overloaded_error` (Anthropic) or 503 overloaded (OpenAI), with
    /// `retry-after` (`http529`).
    pub http529: Rate,
    /// API: carry the request out, then hold the answer for [`Faults::timeout_after`]
    /// (`timeout`).
    pub timeout: Rate,
    /// API: carry the request out, then close the connection without an answer (`drop`).
    pub drop: Rate,
    /// How long a `timeout` holds its answer (`timeout_ms`; default [`DEFAULT_TIMEOUT`]).
    pub timeout_after: Duration,
    /// The `retry-after` of injected 429, 503 and 529 answers (`retry_after_ms`; default
    /// [`DEFAULT_RETRY_AFTER`]).
    pub retry_after: Duration,
    /// How long every synchronous answer (OpenAI's synchronous endpoints, Anthropic's
    /// `/v1/messages`, Bedrock's InvokeModel) is held before it is sent (`latency_ms`; default
    /// zero: at once).
    pub latency: Duration,
    /// Batch: fail validation (`validation`).
    pub validation: Rate,
    /// Batch: fail for the enqueued-token limit (`token_limit`).
    pub token_limit: Rate,
    /// OpenAI's enqueued-token limit, per model (`enqueued_token_limit`; default none): a new
    /// batch whose input tokens, added to those of the batches of its model that are
    /// `validating`, `in_progress` or `finalizing`, would pass it fails with
    /// `token_limit_exceeded`. Not a rate: decided from the batches in flight, every time.
    pub enqueued_token_limit: Option<u64>,
    /// Batch: expire with only the first [`Faults::expire_keep`] of its requests answered
    /// (`expire`).
    pub expire: Rate,
    /// The share of an expiring batch's requests answered (`expire_keep`, 0 to 1; default
    /// [`DEFAULT_EXPIRE_KEEP`]).
    pub expire_keep: f64,
    /// Batch: every request fails, so an OpenAI batch completes with no output file
    /// (`no_output`).
    pub no_output: Rate,
    /// Batch: which batches spend [`Faults::finalizing_extra`] extra steps before they end
    /// (`finalizing`; default every batch).
    pub finalizing: Rate,
    /// Extra steps a long-finalizing batch takes (`finalizing_extra`; default 0: none).
    pub finalizing_extra: u32,
    /// Request: fail with this HTTP status (400–599), by status (`req429`, `req500`, …).
    pub request_errors: BTreeMap<u16, Rate>,
    /// Request, Anthropic only: an `errored` result with `api_error` (`result_errored`).
    pub result_errored: Rate,
    /// Request, Anthropic only: an `expired` result (`result_expired`).
    pub result_expired: Rate,
    /// API, Bedrock control plane only: answer 429 `ThrottlingException` (`throttle`).
    pub throttle: Rate,
    /// Batch, Bedrock only: the job ends `PartiallyCompleted`, a share
    /// [`Faults::partial_errors`] of its records failing with 429 or 500 (`partial`).
    pub partial: Rate,
    /// The share of a `partial` job's records that fail (`partial_errors`, 0 to 1; default
    /// [`DEFAULT_PARTIAL_ERRORS`]).
    pub partial_errors: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            seed: 0,
            http429: Rate::NEVER,
            http500: Rate::NEVER,
            http529: Rate::NEVER,
            timeout: Rate::NEVER,
            drop: Rate::NEVER,
            timeout_after: DEFAULT_TIMEOUT,
            retry_after: DEFAULT_RETRY_AFTER,
            latency: Duration::ZERO,
            validation: Rate::NEVER,
            token_limit: Rate::NEVER,
            enqueued_token_limit: None,
            expire: Rate::NEVER,
            expire_keep: DEFAULT_EXPIRE_KEEP,
            no_output: Rate::NEVER,
            finalizing: Rate::ALWAYS,
            finalizing_extra: 0,
            request_errors: BTreeMap::new(),
            result_errored: Rate::NEVER,
            result_expired: Rate::NEVER,
            throttle: Rate::NEVER,
            partial: Rate::NEVER,
            partial_errors: DEFAULT_PARTIAL_ERRORS,
        }
    }
}

/// The keys of a spec, in canonical order (`reqNNN` stands for every request status key).
pub const KEYS: [&str; 23] = [
    "seed",
    "http429",
    "http500",
    "http529",
    "timeout",
    "drop",
    "timeout_ms",
    "retry_after_ms",
    "latency_ms",
    "validation",
    "token_limit",
    "enqueued_token_limit",
    "expire",
    "expire_keep",
    "no_output",
    "finalizing",
    "finalizing_extra",
    "reqNNN",
    "result_errored",
    "result_expired",
    "throttle",
    "partial",
    "partial_errors",
];

/// Why a fault spec was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultsError {
    /// A key the spec language does not have.
    UnknownKey { key: String },
    /// A `key` without `=value`.
    MissingValue { key: String },
    /// A value that does not fit its key.
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
    },
    /// The same key twice in one spec.
    Duplicate { key: String },
    /// The probabilities of one group of exclusive faults add up to more than 1.
    OverOne { keys: Vec<String>, total: f64 },
    /// A serde value that is neither a spec string nor a table of keys.
    NotASpec { found: String },
}

impl fmt::Display for FaultsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultsError::UnknownKey { key } => {
                write!(f, "unknown fault key `{key}` (known: {})", KEYS.join(", "))
            }
            FaultsError::MissingValue { key } => {
                write!(f, "fault key `{key}` has no value (expected `{key}=VALUE`)")
            }
            FaultsError::BadValue {
                key,
                value,
                expected,
            } => write!(
                f,
                "bad value `{value}` for fault key `{key}`: expected {expected}"
            ),
            FaultsError::Duplicate { key } => write!(f, "fault key `{key}` is given twice"),
            FaultsError::OverOne { keys, total } => write!(
                f,
                "the probabilities of {} add up to {total}: these faults exclude each other, so at most 1",
                keys.join(", ")
            ),
            FaultsError::NotASpec { found } => write!(
                f,
                "faults must be a spec string (\"seed=7,http429=0.1\") or a table of the same keys, not {found}"
            ),
        }
    }
}

impl std::error::Error for FaultsError {}

/// Chainable setters for the rate fields.
macro_rules! rate_setters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, rate: impl Into<Rate>) -> Self {
                self.$name = rate.into();
                self
            }
        )*
    };
}

impl Faults {
    /// No faults yet, with this seed.
    pub fn seeded(seed: u64) -> Self {
        Faults {
            seed,
            ..Faults::default()
        }
    }

    /// Parses a spec: comma-separated `key=value` pairs (spaces around them ignored; an
    /// empty spec is no faults). Keys: see [`KEYS`] and the crate docs. The result is
    /// [validated](Faults::validate).
    pub fn parse(spec: &str) -> Result<Self, FaultsError> {
        let mut faults = Faults::default();
        let mut seen = BTreeSet::new();
        for pair in spec
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
        {
            let (key, value) = pair
                .split_once('=')
                .map(|(key, value)| (key.trim(), value.trim()))
                .ok_or_else(|| FaultsError::MissingValue {
                    key: pair.to_owned(),
                })?;
            if !seen.insert(key) {
                return Err(FaultsError::Duplicate {
                    key: key.to_owned(),
                });
            }
            faults.set(key, value)?;
        }
        faults.validate()?;
        Ok(faults)
    }

    /// Sets one key of the spec language from its text value (not validated against the
    /// other keys: see [`Faults::validate`]).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), FaultsError> {
        let bad = |expected: &'static str| FaultsError::BadValue {
            key: key.to_owned(),
            value: value.to_owned(),
            expected,
        };
        let rate = || Rate::parse(value).map_err(bad);
        let millis = || {
            value
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| bad("a whole number of milliseconds"))
        };
        match key {
            "seed" => {
                self.seed = value
                    .parse()
                    .map_err(|_| bad("a whole number from 0 to 2^64-1"))?;
            }
            "http429" => self.http429 = rate()?,
            "http500" => self.http500 = rate()?,
            "http529" => self.http529 = rate()?,
            "timeout" => self.timeout = rate()?,
            "drop" => self.drop = rate()?,
            "timeout_ms" => self.timeout_after = millis()?,
            "retry_after_ms" => self.retry_after = millis()?,
            "latency_ms" => self.latency = millis()?,
            "validation" => self.validation = rate()?,
            "token_limit" => self.token_limit = rate()?,
            "enqueued_token_limit" => {
                self.enqueued_token_limit = Some(
                    value
                        .parse::<u64>()
                        .ok()
                        .filter(|limit| *limit >= 1)
                        .ok_or_else(|| bad("a whole number of tokens, at least 1"))?,
                );
            }
            "expire" => self.expire = rate()?,
            "expire_keep" => {
                self.expire_keep = value
                    .parse::<f64>()
                    .ok()
                    .filter(|keep| (0.0..=1.0).contains(keep))
                    .ok_or_else(|| bad("a share from 0 to 1"))?;
            }
            "no_output" => self.no_output = rate()?,
            "finalizing" => self.finalizing = rate()?,
            "finalizing_extra" => {
                self.finalizing_extra =
                    value.parse().map_err(|_| bad("a whole number of steps"))?;
            }
            "result_errored" => self.result_errored = rate()?,
            "result_expired" => self.result_expired = rate()?,
            "throttle" => self.throttle = rate()?,
            "partial" => self.partial = rate()?,
            "partial_errors" => {
                self.partial_errors = value
                    .parse::<f64>()
                    .ok()
                    .filter(|share| (0.0..=1.0).contains(share))
                    .ok_or_else(|| bad("a share from 0 to 1"))?;
            }
            _ => {
                let status = key
                    .strip_prefix("req")
                    .filter(|digits| digits.len() == 3)
                    .and_then(|digits| digits.parse::<u16>().ok())
                    .filter(|status| (400..=599).contains(status))
                    .ok_or_else(|| FaultsError::UnknownKey {
                        key: key.to_owned(),
                    })?;
                self.request_errors.insert(status, rate()?);
            }
        }
        Ok(())
    }

    /// Checks what [`Faults::set`] cannot see alone: that the probabilities of each group of
    /// exclusive faults add up to at most 1, and that every field is in range.
    pub fn validate(&self) -> Result<(), FaultsError> {
        let mut rates: Vec<(String, Rate)> = vec![
            ("http429".to_owned(), self.http429),
            ("http500".to_owned(), self.http500),
            ("http529".to_owned(), self.http529),
            ("timeout".to_owned(), self.timeout),
            ("drop".to_owned(), self.drop),
            ("validation".to_owned(), self.validation),
            ("token_limit".to_owned(), self.token_limit),
            ("expire".to_owned(), self.expire),
            ("no_output".to_owned(), self.no_output),
            ("finalizing".to_owned(), self.finalizing),
            ("result_errored".to_owned(), self.result_errored),
            ("result_expired".to_owned(), self.result_expired),
            ("throttle".to_owned(), self.throttle),
            ("partial".to_owned(), self.partial),
        ];
        for (&status, &rate) in &self.request_errors {
            if !(400..=599).contains(&status) {
                return Err(FaultsError::UnknownKey {
                    key: format!("req{status}"),
                });
            }
            rates.push((format!("req{status}"), rate));
        }
        for (key, rate) in &rates {
            if let Rate::Share(share) = rate
                && !(0.0..=1.0).contains(share)
            {
                return Err(FaultsError::BadValue {
                    key: key.clone(),
                    value: share.to_string(),
                    expected: "a probability from 0 to 1",
                });
            }
        }
        if !(0.0..=1.0).contains(&self.expire_keep) {
            return Err(FaultsError::BadValue {
                key: "expire_keep".to_owned(),
                value: self.expire_keep.to_string(),
                expected: "a share from 0 to 1",
            });
        }
        if !(0.0..=1.0).contains(&self.partial_errors) {
            return Err(FaultsError::BadValue {
                key: "partial_errors".to_owned(),
                value: self.partial_errors.to_string(),
                expected: "a share from 0 to 1",
            });
        }
        let groups: [Vec<(String, Rate)>; 3] = [
            self.api_group()
                .iter()
                .map(|(fault, rate)| (fault.key().to_owned(), *rate))
                .collect(),
            self.batch_group()
                .iter()
                .map(|(fault, rate)| (fault.key().to_owned(), *rate))
                .collect(),
            self.request_group(true)
                .iter()
                .map(|(fault, rate)| (fault.key(), *rate))
                .collect(),
        ];
        for group in groups {
            let total: f64 = group.iter().map(|(_, rate)| rate.share()).sum();
            if total > 1.0 + 1e-9 {
                return Err(FaultsError::OverOne {
                    keys: group
                        .into_iter()
                        .filter(|(_, rate)| rate.share() > 0.0)
                        .map(|(key, _)| key)
                        .collect(),
                    total,
                });
            }
        }
        Ok(())
    }

    /// Whether no fault can strike: the sandbox behaves as without fault injection.
    pub fn is_empty(&self) -> bool {
        self.api_group().iter().all(|(_, rate)| rate.is_never())
            && self.batch_group().iter().all(|(_, rate)| rate.is_never())
            && self
                .request_group(true)
                .iter()
                .all(|(_, rate)| rate.is_never())
            && (self.finalizing_extra == 0 || self.finalizing.is_never())
            && self.throttle.is_never()
            && self.partial.is_never()
            && self.latency.is_zero()
            && self.enqueued_token_limit.is_none()
    }

    /// Requests fail with `status` (400–599) at `rate`.
    #[must_use]
    pub fn request_error(mut self, status: u16, rate: impl Into<Rate>) -> Self {
        self.request_errors.insert(status, rate.into());
        self
    }

    /// A `timeout` holds its answer for `hold`.
    #[must_use]
    pub fn timeout_after(mut self, hold: Duration) -> Self {
        self.timeout_after = hold;
        self
    }

    /// OpenAI batches are refused past `limit` enqueued input tokens per model.
    #[must_use]
    pub fn enqueued_token_limit(mut self, limit: u64) -> Self {
        self.enqueued_token_limit = Some(limit);
        self
    }

    /// Injected 429, 503 and 529 answers say to retry after `wait`.
    #[must_use]
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = wait;
        self
    }

    /// Every synchronous answer is held for `hold` before it is sent.
    #[must_use]
    pub fn latency(mut self, hold: Duration) -> Self {
        self.latency = hold;
        self
    }

    /// An expiring batch answers this share (0 to 1) of its requests.
    #[must_use]
    pub fn expire_keep(mut self, keep: f64) -> Self {
        self.expire_keep = keep;
        self
    }

    /// A `partial` Bedrock job fails this share (0 to 1) of its records.
    #[must_use]
    pub fn partial_errors(mut self, share: f64) -> Self {
        self.partial_errors = share;
        self
    }

    /// A long-finalizing batch takes `steps` extra steps.
    #[must_use]
    pub fn finalizing_extra(mut self, steps: u32) -> Self {
        self.finalizing_extra = steps;
        self
    }

    rate_setters! {
        /// API 429s at `rate`.
        http429,
        /// API 500s at `rate`.
        http500,
        /// API 529s (Anthropic) / 503s (OpenAI) at `rate`.
        http529,
        /// Held answers at `rate`.
        timeout,
        /// Dropped connections at `rate`.
        drop,
        /// Batches failing validation at `rate`.
        validation,
        /// Batches failing for the enqueued-token limit at `rate`.
        token_limit,
        /// Batches expiring with partial output at `rate`.
        expire,
        /// Batches completing with every request failed at `rate`.
        no_output,
        /// Which batches finalize for longer (with [`Faults::finalizing_extra`]).
        finalizing,
        /// Anthropic `errored` results at `rate`.
        result_errored,
        /// Anthropic `expired` results at `rate`.
        result_expired,
        /// Bedrock control-plane 429 `ThrottlingException`s at `rate`.
        throttle,
        /// Bedrock jobs ending `PartiallyCompleted` at `rate`.
        partial,
    }

    fn api_group(&self) -> [(ApiFault, Rate); 5] {
        [
            (ApiFault::RateLimited, self.http429),
            (ApiFault::ServerError, self.http500),
            (ApiFault::Overloaded, self.http529),
            (ApiFault::Timeout, self.timeout),
            (ApiFault::Drop, self.drop),
        ]
    }

    fn batch_group(&self) -> [(BatchFault, Rate); 4] {
        [
            (BatchFault::Validation, self.validation),
            (BatchFault::TokenLimit, self.token_limit),
            (BatchFault::Expire, self.expire),
            (BatchFault::NoOutput, self.no_output),
        ]
    }

    /// The request faults; `anthropic` adds the result types only Anthropic has. The status
    /// faults come first, so both providers draw them alike.
    fn request_group(&self, anthropic: bool) -> Vec<(RequestFault, Rate)> {
        let mut group: Vec<(RequestFault, Rate)> = self
            .request_errors
            .iter()
            .map(|(&status, &rate)| (RequestFault::Status(status), rate))
            .collect();
        if anthropic {
            group.push((RequestFault::Errored, self.result_errored));
            group.push((RequestFault::Expired, self.result_expired));
        }
        group.retain(|(_, rate)| !rate.is_never());
        group
    }
}

impl FromStr for Faults {
    type Err = FaultsError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        Faults::parse(spec)
    }
}

/// The canonical spec: the keys that differ from the defaults, in the order of [`KEYS`].
/// Parsing it gives the same `Faults` back.
impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let defaults = Faults::default();
        let rate = |rate: Rate, default: Rate| (rate != default).then(|| rate.to_string());
        let differs = |differs: bool, text: &dyn Fn() -> String| differs.then(text);
        let mut pairs: Vec<(String, Option<String>)> = vec![
            (
                "seed".into(),
                differs(self.seed != defaults.seed, &|| self.seed.to_string()),
            ),
            ("http429".into(), rate(self.http429, Rate::NEVER)),
            ("http500".into(), rate(self.http500, Rate::NEVER)),
            ("http529".into(), rate(self.http529, Rate::NEVER)),
            ("timeout".into(), rate(self.timeout, Rate::NEVER)),
            ("drop".into(), rate(self.drop, Rate::NEVER)),
            (
                "timeout_ms".into(),
                differs(self.timeout_after != defaults.timeout_after, &|| {
                    self.timeout_after.as_millis().to_string()
                }),
            ),
            (
                "retry_after_ms".into(),
                differs(self.retry_after != defaults.retry_after, &|| {
                    self.retry_after.as_millis().to_string()
                }),
            ),
            (
                "latency_ms".into(),
                differs(self.latency != defaults.latency, &|| {
                    self.latency.as_millis().to_string()
                }),
            ),
            ("validation".into(), rate(self.validation, Rate::NEVER)),
            ("token_limit".into(), rate(self.token_limit, Rate::NEVER)),
            (
                "enqueued_token_limit".into(),
                self.enqueued_token_limit.map(|limit| limit.to_string()),
            ),
            ("expire".into(), rate(self.expire, Rate::NEVER)),
            (
                "expire_keep".into(),
                differs(self.expire_keep != defaults.expire_keep, &|| {
                    self.expire_keep.to_string()
                }),
            ),
            ("no_output".into(), rate(self.no_output, Rate::NEVER)),
            ("finalizing".into(), rate(self.finalizing, Rate::ALWAYS)),
            (
                "finalizing_extra".into(),
                differs(self.finalizing_extra != defaults.finalizing_extra, &|| {
                    self.finalizing_extra.to_string()
                }),
            ),
        ];
        pairs.extend(
            self.request_errors
                .iter()
                .map(|(status, rate)| (format!("req{status}"), Some(rate.to_string()))),
        );
        pairs.push((
            "result_errored".into(),
            rate(self.result_errored, Rate::NEVER),
        ));
        pairs.push((
            "result_expired".into(),
            rate(self.result_expired, Rate::NEVER),
        ));
        pairs.push(("throttle".into(), rate(self.throttle, Rate::NEVER)));
        pairs.push(("partial".into(), rate(self.partial, Rate::NEVER)));
        pairs.push((
            "partial_errors".into(),
            differs(self.partial_errors != defaults.partial_errors, &|| {
                self.partial_errors.to_string()
            }),
        ));
        let spec: Vec<String> = pairs
            .into_iter()
            .filter_map(|(key, value)| value.map(|value| format!("{key}={value}")))
            .collect();
        f.write_str(&spec.join(","))
    }
}

impl From<Faults> for String {
    fn from(faults: Faults) -> Self {
        faults.to_string()
    }
}

/// A spec string, or a table whose keys are spec keys and whose values are numbers or
/// strings (`{seed = 7, http429 = 0.1, token_limit = "every:3"}`).
impl TryFrom<Value> for Faults {
    type Error = FaultsError;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        match value {
            Value::String(spec) => Faults::parse(&spec),
            Value::Null => Ok(Faults::default()),
            Value::Object(table) => {
                let mut faults = Faults::default();
                for (key, value) in &table {
                    let text = match value {
                        Value::String(text) => text.clone(),
                        Value::Number(number) => number.to_string(),
                        other => {
                            return Err(FaultsError::BadValue {
                                key: key.clone(),
                                value: other.to_string(),
                                expected: "a number or a string",
                            });
                        }
                    };
                    faults.set(key, &text)?;
                }
                faults.validate()?;
                Ok(faults)
            }
            other => Err(FaultsError::NotASpec {
                found: match other {
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    _ => "a list",
                }
                .to_owned(),
            }),
        }
    }
}

/// Faults injected since the sandbox started, by the spec key that caused them, counted when
/// decided: API faults when the request arrives, batch faults when the batch is created,
/// request faults when its requests are answered, whatever the clock later shows (Anthropic:
/// before the create call answers; OpenAI: in the background after it, done by the time the
/// batch is seen past `validating`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultStats {
    pub http429: u64,
    pub http500: u64,
    pub http529: u64,
    pub timeout: u64,
    pub drop: u64,
    pub validation: u64,
    pub token_limit: u64,
    /// OpenAI batches refused by `enqueued_token_limit`.
    pub enqueued_token_limit: u64,
    pub expire: u64,
    pub no_output: u64,
    pub finalizing: u64,
    /// Requests failed by a `reqNNN` key, whatever the status.
    pub request_errors: u64,
    pub result_errored: u64,
    pub result_expired: u64,
    /// Bedrock control-plane calls refused with `ThrottlingException`.
    pub throttle: u64,
    /// Bedrock jobs made `PartiallyCompleted`.
    pub partial: u64,
}

// ---- Deciding -----------------------------------------------------------------------------

/// Which provider a decision is for: each numbers its batches on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    OpenAi,
    Anthropic,
    Bedrock,
}

impl Provider {
    fn tag(self) -> &'static [u8] {
        match self {
            Provider::OpenAi => b"openai",
            Provider::Anthropic => b"anthropic",
            Provider::Bedrock => b"bedrock",
        }
    }
}

/// A fault of one HTTP request to a provider API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiFault {
    RateLimited,
    ServerError,
    Overloaded,
    Timeout,
    Drop,
}

impl ApiFault {
    fn key(self) -> &'static str {
        match self {
            ApiFault::RateLimited => "http429",
            ApiFault::ServerError => "http500",
            ApiFault::Overloaded => "http529",
            ApiFault::Timeout => "timeout",
            ApiFault::Drop => "drop",
        }
    }
}

/// The fate of a batch as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchFault {
    Validation,
    TokenLimit,
    Expire,
    NoOutput,
}

impl BatchFault {
    fn key(self) -> &'static str {
        match self {
            BatchFault::Validation => "validation",
            BatchFault::TokenLimit => "token_limit",
            BatchFault::Expire => "expire",
            BatchFault::NoOutput => "no_output",
        }
    }
}

/// The fault of one request of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestFault {
    /// Fails with this HTTP status.
    Status(u16),
    /// Anthropic: `errored` with `api_error`.
    Errored,
    /// Anthropic: `expired`.
    Expired,
}

impl RequestFault {
    fn key(self) -> String {
        match self {
            RequestFault::Status(status) => format!("req{status}"),
            RequestFault::Errored => "result_errored".to_owned(),
            RequestFault::Expired => "result_expired".to_owned(),
        }
    }
}

/// What is injected into one batch, decided when it is created.
#[derive(Debug, Clone)]
pub(crate) struct BatchPlan {
    pub outcome: Option<BatchFault>,
    /// The share of requests answered when `outcome` is `Expire`.
    pub expire_keep: f64,
    /// Extra steps before the batch ends.
    pub extra_steps: u32,
    pub requests: RequestPlan,
}

impl BatchPlan {
    /// No faults: a batch the sandbox fails on its own before any could be drawn.
    pub(crate) fn none() -> Self {
        BatchPlan {
            outcome: None,
            expire_keep: DEFAULT_EXPIRE_KEEP,
            extra_steps: 0,
            requests: RequestPlan::none(),
        }
    }

    /// The share of requests answered before an injected expiry, if the batch expires.
    pub(crate) fn expiry(&self) -> Option<f64> {
        (self.outcome == Some(BatchFault::Expire)).then_some(self.expire_keep)
    }
}

/// Decides the faults of the requests of one batch; cheap to clone into worker threads.
#[derive(Debug, Clone)]
pub(crate) struct RequestPlan {
    seed: u64,
    provider: Provider,
    batch: u64,
    group: Arc<[(RequestFault, Rate)]>,
    /// Every request fails so (a `no_output` batch).
    all: Option<RequestFault>,
    /// The share of requests failing with 429 or 500 (a `partial` Bedrock job).
    partial: Option<f64>,
    counts: Option<Arc<Counters>>,
}

impl RequestPlan {
    /// No faults.
    pub(crate) fn none() -> Self {
        RequestPlan {
            seed: 0,
            provider: Provider::OpenAi,
            batch: 0,
            group: Arc::from(Vec::new()),
            all: None,
            partial: None,
            counts: None,
        }
    }

    /// The fault of the request at `index` (0-based, input order), counted in the stats.
    pub(crate) fn decide(&self, index: usize) -> Option<RequestFault> {
        if self.all.is_some() {
            return self.all;
        }
        let n = index as u64 + 1;
        if let Some(share) = self.partial
            && draw(
                self.seed,
                &[b"partial", self.provider.tag()],
                &[self.batch, n],
            ) < share
        {
            // Alternately throttled and failed, as a partly completed job's records are.
            return Some(RequestFault::Status(if n.is_multiple_of(2) {
                500
            } else {
                429
            }));
        }
        let fault = pick(&self.group, n, || {
            draw(
                self.seed,
                &[b"request", self.provider.tag()],
                &[self.batch, n],
            )
        })?;
        if let Some(counts) = &self.counts {
            let counter = match fault {
                RequestFault::Status(_) => &counts.request_errors,
                RequestFault::Errored => &counts.result_errored,
                RequestFault::Expired => &counts.result_expired,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Some(fault)
    }
}

/// The sandbox's fault injection: the configured faults, the counters decisions are made
/// from, and the count of what was injected.
pub(crate) struct Injector {
    faults: Faults,
    counts: Arc<Counters>,
    openai_batches: AtomicU64,
    anthropic_batches: AtomicU64,
    bedrock_batches: AtomicU64,
    bedrock_calls: AtomicU64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    http429: AtomicU64,
    http500: AtomicU64,
    http529: AtomicU64,
    timeout: AtomicU64,
    drop: AtomicU64,
    validation: AtomicU64,
    token_limit: AtomicU64,
    enqueued_token_limit: AtomicU64,
    expire: AtomicU64,
    no_output: AtomicU64,
    finalizing: AtomicU64,
    request_errors: AtomicU64,
    result_errored: AtomicU64,
    result_expired: AtomicU64,
    throttle: AtomicU64,
    partial: AtomicU64,
}

impl Injector {
    pub(crate) fn new(faults: Faults) -> Self {
        Injector {
            faults,
            counts: Arc::default(),
            openai_batches: AtomicU64::new(0),
            anthropic_batches: AtomicU64::new(0),
            bedrock_batches: AtomicU64::new(0),
            bedrock_calls: AtomicU64::new(0),
        }
    }

    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The fault of the `n`th provider request (counted from 1), counted in the stats.
    pub(crate) fn api(&self, n: u64) -> Option<ApiFault> {
        let fault = pick(&self.faults.api_group(), n, || {
            draw(self.faults.seed, &[b"api"], &[n])
        })?;
        let counts = &self.counts;
        let counter = match fault {
            ApiFault::RateLimited => &counts.http429,
            ApiFault::ServerError => &counts.http500,
            ApiFault::Overloaded => &counts.http529,
            ApiFault::Timeout => &counts.timeout,
            ApiFault::Drop => &counts.drop,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(request = n, fault = fault.key(), "sandbox fault injected");
        Some(fault)
    }

    /// Numbers a Bedrock control-plane call and decides whether it is throttled, counted in the
    /// stats.
    pub(crate) fn throttle(&self) -> bool {
        let n = self.bedrock_calls.fetch_add(1, Ordering::Relaxed) + 1;
        let throttled = pick(&[((), self.faults.throttle)], n, || {
            draw(self.faults.seed, &[b"throttle"], &[n])
        })
        .is_some();
        if throttled {
            self.counts.throttle.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(call = n, fault = "throttle", "sandbox fault injected");
        }
        throttled
    }

    /// Counts an OpenAI batch refused by the enqueued-token limit.
    pub(crate) fn over_enqueued_limit(&self) {
        self.counts
            .enqueued_token_limit
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(fault = "enqueued_token_limit", "sandbox fault injected");
    }

    /// Numbers a new batch of `provider` and decides its faults, counted in the stats.
    pub(crate) fn batch(&self, provider: Provider) -> BatchPlan {
        let counter = match provider {
            Provider::OpenAi => &self.openai_batches,
            Provider::Anthropic => &self.anthropic_batches,
            Provider::Bedrock => &self.bedrock_batches,
        };
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        let faults = &self.faults;
        let outcome = pick(&faults.batch_group(), n, || {
            draw(faults.seed, &[b"batch", provider.tag()], &[n])
        });
        let finalizing = faults.finalizing_extra > 0
            && !matches!(
                outcome,
                Some(BatchFault::Validation | BatchFault::TokenLimit | BatchFault::Expire)
            )
            && pick(&[((), faults.finalizing)], n, || {
                draw(faults.seed, &[b"finalizing", provider.tag()], &[n])
            })
            .is_some();
        let counts = &self.counts;
        if let Some(fault) = outcome {
            let counter = match fault {
                BatchFault::Validation => &counts.validation,
                BatchFault::TokenLimit => &counts.token_limit,
                BatchFault::Expire => &counts.expire,
                BatchFault::NoOutput => &counts.no_output,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(batch = n, fault = fault.key(), "sandbox fault injected");
        }
        if finalizing {
            counts.finalizing.fetch_add(1, Ordering::Relaxed);
        }
        let partial = provider == Provider::Bedrock
            && outcome.is_none()
            && pick(&[((), faults.partial)], n, || {
                draw(faults.seed, &[b"partial-job", provider.tag()], &[n])
            })
            .is_some();
        if partial {
            counts.partial.fetch_add(1, Ordering::Relaxed);
        }
        BatchPlan {
            outcome,
            expire_keep: faults.expire_keep.clamp(0.0, 1.0),
            extra_steps: if finalizing {
                faults.finalizing_extra
            } else {
                0
            },
            requests: RequestPlan {
                seed: faults.seed,
                provider,
                batch: n,
                group: faults.request_group(provider == Provider::Anthropic).into(),
                all: (outcome == Some(BatchFault::NoOutput))
                    .then_some(RequestFault::Status(NO_OUTPUT_STATUS)),
                partial: partial.then_some(faults.partial_errors.clamp(0.0, 1.0)),
                counts: Some(counts.clone()),
            },
        }
    }

    pub(crate) fn stats(&self) -> FaultStats {
        let c = &self.counts;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FaultStats {
            http429: get(&c.http429),
            http500: get(&c.http500),
            http529: get(&c.http529),
            timeout: get(&c.timeout),
            drop: get(&c.drop),
            validation: get(&c.validation),
            token_limit: get(&c.token_limit),
            enqueued_token_limit: get(&c.enqueued_token_limit),
            expire: get(&c.expire),
            no_output: get(&c.no_output),
            finalizing: get(&c.finalizing),
            request_errors: get(&c.request_errors),
            result_errored: get(&c.result_errored),
            result_expired: get(&c.result_expired),
            throttle: get(&c.throttle),
            partial: get(&c.partial),
        }
    }
}

/// The fault of number `n` among `group`: the first `every:N` fault that hits `n`, else the
/// drawn fault whose slice of [0, 1) holds `draw()` (drawn only if some fault has a
/// probability).
fn pick<K: Copy>(group: &[(K, Rate)], n: u64, draw: impl FnOnce() -> f64) -> Option<K> {
    if let Some((fault, _)) = group.iter().find(|(_, rate)| rate.hits(n)) {
        return Some(*fault);
    }
    if group.iter().all(|(_, rate)| rate.share() == 0.0) {
        return None;
    }
    let point = draw();
    let mut upto = 0.0;
    for (fault, rate) in group {
        upto += rate.share();
        if point < upto {
            return Some(*fault);
        }
    }
    None
}

/// A number in [0, 1) from the seed, a site and the numbers that identify the decision.
fn draw(seed: u64, site: &[&[u8]], numbers: &[u64]) -> f64 {
    let seed = seed.to_le_bytes();
    let numbers: Vec<[u8; 8]> = numbers.iter().map(|n| n.to_le_bytes()).collect();
    let mut parts: Vec<&[u8]> = vec![b"fault", &seed];
    parts.extend_from_slice(site);
    parts.extend(numbers.iter().map(|n| n.as_slice()));
    Stream::new(&digest(&parts)).unit()
}

// ---- Wire shapes ----------------------------------------------------------------------------

/// The OpenAI error `(type, code, message)` for an injected `status`.
pub(crate) fn openai_error(status: u16) -> (&'static str, Option<&'static str>, String) {
    let (kind, code, message) = match status {
        429 => (
            "requests",
            Some("rate_limit_exceeded"),
            "Rate limit reached for requests. Please try again later.",
        ),
        503 => (
            "server_error",
            None,
            "The engine is currently overloaded, please try again later.",
        ),
        500..=599 => (
            "server_error",
            None,
            "The server had an error while processing your request. Sorry about that!",
        ),
        _ => ("invalid_request_error", None, "The request was rejected."),
    };
    (
        kind,
        code,
        format!("{message} (sandbox fault injection: {status})"),
    )
}

/// The Anthropic error type for an injected `status`.
pub(crate) fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The `retry-after` (whole seconds, rounded up) and `retry-after-ms` header values.
pub(crate) fn retry_after_headers(wait: Duration) -> [(&'static str, String); 2] {
    let millis = wait.as_millis();
    [
        ("retry-after", millis.div_ceil(1000).to_string()),
        ("retry-after-ms", millis.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_every_rate_hits_exact_multiples() {
        let group = [("a", Rate::every(3))];
        let hits: Vec<u64> = (1..=9)
            .filter(|&n| pick(&group, n, || 0.0).is_some())
            .collect();
        assert_eq!(hits, vec![3, 6, 9]);
    }

    #[test]
    fn one_draw_splits_among_exclusive_faults() {
        let group = [("a", Rate::Share(0.25)), ("b", Rate::Share(0.5))];
        assert_eq!(pick(&group, 1, || 0.1), Some("a"));
        assert_eq!(pick(&group, 1, || 0.3), Some("b"));
        assert_eq!(pick(&group, 1, || 0.8), None);
    }

    #[test]
    fn draws_depend_on_seed_and_number_only() {
        assert_eq!(draw(7, &[b"api"], &[3]), draw(7, &[b"api"], &[3]));
        assert_ne!(draw(7, &[b"api"], &[3]), draw(8, &[b"api"], &[3]));
        assert_ne!(draw(7, &[b"api"], &[3]), draw(7, &[b"api"], &[4]));
    }

    #[test]
    fn latency_is_parsed_in_milliseconds_and_written_back() -> Result<(), FaultsError> {
        let faults = Faults::parse("seed=2,latency_ms=50")?;
        assert_eq!(faults.latency, Duration::from_millis(50));
        assert!(!faults.is_empty());
        assert_eq!(faults.to_string(), "seed=2,latency_ms=50");
        assert_eq!(
            Faults::parse("latency_ms=50ms").err(),
            Some(FaultsError::BadValue {
                key: "latency_ms".to_owned(),
                value: "50ms".to_owned(),
                expected: "a whole number of milliseconds",
            })
        );
        Ok(())
    }

    #[test]
    fn the_enqueued_token_limit_is_a_token_count_written_back() -> Result<(), FaultsError> {
        let faults = Faults::parse("enqueued_token_limit=2000")?;
        assert_eq!(faults.enqueued_token_limit, Some(2000));
        assert!(!faults.is_empty());
        assert_eq!(faults.to_string(), "enqueued_token_limit=2000");
        assert!(matches!(
            Faults::parse("enqueued_token_limit=0"),
            Err(FaultsError::BadValue { .. })
        ));
        Ok(())
    }

    #[test]
    fn retry_after_rounds_seconds_up() {
        assert_eq!(
            retry_after_headers(Duration::from_millis(1500)),
            [
                ("retry-after", "2".to_owned()),
                ("retry-after-ms", "1500".to_owned())
            ]
        );
    }
}
