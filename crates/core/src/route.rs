//! A route: what a file dropped under `inbox/<route>/` is sent to, and how. Plain data, read
//! from the configuration (the `config` module) once at start.

use serde::{Deserialize, Serialize};

/// The default address of `batchdrop sandbox`, which the built-in sandbox routes use
/// (`BATCHDROP_SANDBOX_URL` overrides it).
pub const DEFAULT_SANDBOX_URL: &str = "http://127.0.0.1:8089/v1";

/// Where a route's API key comes from. Never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum KeySource {
    /// No key needed (the sandbox; providers that sign with the AWS role).
    None,
    /// An environment variable's name.
    Env(String),
    /// A Secrets Manager secret ARN.
    Secret(String),
}

/// Limits a route's chunks must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkLimits {
    /// Fewest requests a batch may hold (a provider's minimum: 1 for OpenAI and Anthropic,
    /// 100 for Bedrock). Planning balances a group's chunks so that none falls below it
    /// whenever the group holds that many; a smaller chunk goes as [`Route::below_minimum`]
    /// says.
    #[serde(default = "one")]
    pub min_requests_per_batch: u64,
    pub max_requests_per_batch: u64,
    pub max_bytes_per_batch: u64,
    /// Longer input lines are rejected with `line_too_long`.
    pub max_line_bytes: u64,
}

fn one() -> u64 {
    1
}

/// Values that fill in prompt lines and lines that leave them out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub model: Option<String>,
    pub max_tokens: Option<u64>,
    pub system: Option<String>,
    pub temperature: Option<f64>,
    /// Endpoint prompt lines are built for, where a provider has several
    /// (e.g. `/v1/embeddings` on an OpenAI route; default: its chat endpoint).
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    /// The provider's name in the registry (the `providers` module).
    pub provider: String,
    pub base_url: String,
    pub api_key: KeySource,
    pub defaults: Defaults,
    pub limits: ChunkLimits,
    pub retries: Retries,
    /// At most this many batches of the route in flight at once, across jobs (None: no cap).
    pub max_batches_in_flight: Option<u32>,
    /// The IAM role a provider that works inside the AWS account hands to its service (the
    /// Bedrock service role, which reads the chunks and writes the results); None elsewhere.
    pub role_arn: Option<String>,
    /// What becomes of a chunk with fewer requests than the provider's batch minimum.
    pub below_minimum: BelowMinimum,
    /// Most requests of the route in flight at once when chunks go request by request (on
    /// demand, or a provider without a batch API), across the jobs one invocation advances;
    /// None: 4. The lane adapts below it (the `engine::pace` module).
    pub max_concurrency: Option<u32>,
    /// Most requests of the route started per minute by the synchronous lane, spaced evenly;
    /// None: no limit.
    pub requests_per_minute: Option<u32>,
    /// Most tokens (estimated: the body's bytes / 4 plus its `max_tokens`) of the route's
    /// requests started per minute by the synchronous lane, spaced evenly; None: no limit.
    pub tokens_per_minute: Option<u64>,
    /// When its jobs must be done by, unless an upload says (see [`Deadlines`]).
    pub deadlines: Deadlines,
    /// Spending caps and the provider's queue limit (see [`Spend`]).
    pub spend: Spend,
    /// Where signed webhooks about the route's jobs go (the `webhooks` module); None: nowhere.
    pub webhook: Option<WebhookTarget>,
    /// Whether requests answered before are answered again from the bucket (see [`Reuse`]).
    pub reuse: Reuse,
    /// Whether a collected batch's files stay at the provider (`keep_provider_files`); by
    /// default they are removed once their lines are in the bucket (the provider port's `forget`).
    pub keep_provider_files: bool,
    /// Days the provider keeps a batch's files, where it can be told (OpenAI's
    /// `expires_after` on the input file and `output_expires_after` on the batch):
    /// `provider_file_days`, 2 to 30. A backstop for files a crash left behind; None: the
    /// provider's default (compatible services may not take the fields).
    pub provider_file_days: Option<u32>,
    /// Where the secret that signs the provider's webhooks to batchdrop comes from (OpenAI's
    /// `whsec_…` endpoint secret of the project); None: the route takes no webhooks (the
    /// `push` module).
    pub webhook_in_secret: Option<KeySource>,
}

/// A route's reuse of answered requests (`reuse_results`, `reuse_days`; the `reuse` module):
/// a request whose content was answered successfully on this route within `days` is not sent
/// again, and identical requests of one file are sent once. Off by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reuse {
    pub enabled: bool,
    /// How old an answer may be and still be reused.
    pub days: u32,
}

/// How long answers are reused unless the route says (`reuse_days`).
pub const DEFAULT_REUSE_DAYS: u32 = 30;

impl Default for Reuse {
    fn default() -> Self {
        Self {
            enabled: false,
            days: DEFAULT_REUSE_DAYS,
        }
    }
}

/// A route's webhook: the receiver's URL and the signing secret, by reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookTarget {
    /// `http://` or `https://`; never a link-local or cloud metadata address.
    pub url: String,
    /// Where the `whsec_…` signing secret comes from (never [`KeySource::None`]).
    pub secret: KeySource,
    /// Also one `batch_job.batch_collected` per collected batch, not only the job's end.
    pub batches: bool,
}

/// A route's spending caps and its admission limit (the `spend` module applies them), and how
/// it saves with the providers' prompt caches. Caps and limit are `None` by default: then
/// planning records no estimates and costs nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spend {
    /// USD: a job whose cost bound is above this sends nothing and fails `over_budget`.
    pub max_usd_per_job: Option<f64>,
    /// USD: the route's jobs started on one UTC day reserve their cost bound against this; a
    /// job that would pass it sends nothing and fails `over_budget`.
    pub max_usd_per_day: Option<f64>,
    /// The provider's batch queue limit per model (OpenAI's enqueued tokens of the user's
    /// tier): a staged chunk waits while the input tokens of the route's batches in flight for
    /// its model plus its own would pass it.
    pub max_enqueued_tokens: Option<u64>,
    /// Output tokens assumed for a request that sets no `max_tokens` (nor the route's
    /// defaults): None: [`DEFAULT_ASSUMED_OUTPUT_TOKENS`].
    pub assumed_output_tokens: Option<u64>,
    /// Requests sharing a long prompt prefix are planned into the same chunks
    /// (`cache_aware_chunks`, default true; see the `cache_prefix` module).
    pub cache_aware_chunks: bool,
    /// Anthropic: before a chunk whose first request marks a `cache_control` breakpoint goes
    /// out as a batch, that request is sent once through the synchronous API, so that the
    /// batch reads the cache it writes (`cache_primer`, default false).
    pub cache_primer: bool,
}

impl Default for Spend {
    fn default() -> Self {
        Spend {
            max_usd_per_job: None,
            max_usd_per_day: None,
            max_enqueued_tokens: None,
            assumed_output_tokens: None,
            cache_aware_chunks: true,
            cache_primer: false,
        }
    }
}

/// Output tokens assumed per request without any `max_tokens`, unless the route says.
pub const DEFAULT_ASSUMED_OUTPUT_TOKENS: u64 = 1024;

impl Spend {
    /// Whether the route caps spending.
    pub fn has_cap(&self) -> bool {
        self.max_usd_per_job.is_some() || self.max_usd_per_day.is_some()
    }

    /// Whether planning records each chunk's estimated tokens: a cap or an admission limit.
    pub fn estimates(&self) -> bool {
        self.has_cap() || self.max_enqueued_tokens.is_some()
    }
}

/// A route's deadline rules: how long after it starts a job must be done (`deadline_hours`),
/// and how long before the deadline, beyond the time the synchronous lane needs for what is
/// left, batches are given up for the lane (`deadline_margin_minutes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Deadlines {
    /// None: a job has a deadline only when its upload carries one.
    pub after: Option<std::time::Duration>,
    /// Time kept for cancelling the batches (OpenAI's `cancelling` lasts up to 10 minutes),
    /// the poll interval and the unexpected.
    pub margin: std::time::Duration,
}

/// The margin before a deadline unless the route says: a cancel's drain, a poll interval or
/// two, and slack.
pub const DEFAULT_DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(30 * 60);

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            after: None,
            margin: DEFAULT_DEADLINE_MARGIN,
        }
    }
}

/// What becomes of a chunk below the provider's batch minimum (a small file, a retry
/// remainder).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BelowMinimum {
    /// Its requests are sent one by one through the provider's synchronous API, at the
    /// on-demand price (`Provider::invoke` in the `provider` module).
    #[default]
    OnDemand,
    /// Its requests fail with `below_minimum`.
    Fail,
}

/// How failed requests are tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retries {
    /// Attempts per request in all, the first included. Requests that failed for a reason
    /// worth retrying (rate limits and server errors in results, expiry, provider capacity) go
    /// into follow-up batches until then; permanent errors never do.
    pub max_attempts: u32,
}

impl Default for Retries {
    fn default() -> Self {
        Self { max_attempts: 3 }
    }
}
