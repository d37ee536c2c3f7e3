//! The job manifest: one JSON document per job, the single source of truth about it, updated
//! only by compare-and-swap. Plain data: it imports nothing from the crate (the summary it
//! becomes at the end is made in `summary.rs`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Batches are being submitted or are running.
    Running,
    Completed,
    Cancelled,
    Failed,
}

impl JobStatus {
    pub fn is_finished(self) -> bool {
        self != JobStatus::Running
    }
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Failed => "failed",
        }
    }
}

/// A chunk's progress: staged → submitting → submitted → collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkState {
    /// Written under `_batchdrop/`; not yet sent.
    Staged,
    /// Recorded before the provider is asked to create the batch: after a crash, the batch may
    /// exist without its id being saved, and is looked for before submitting again.
    Submitting,
    /// A provider batch exists for it.
    Submitted,
    /// Its results are in the store, one per request, in chunk order.
    Collected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRef {
    pub bucket: String,
    pub key: String,
    pub etag: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub lines: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Requests sent again after a failure worth retrying (one per extra attempt).
    #[serde(default)]
    pub retried: u64,
}

impl Counts {
    /// Adds the lines, accepted and rejected requests of one planning segment.
    pub fn add_planned(&mut self, more: &Counts) {
        self.lines += more.lines;
        self.accepted += more.accepted;
        self.rejected += more.rejected;
    }
}

/// How far planning has read an upload: set while the upload is still being planned, so that
/// the next invocation continues from there (submit stops near its Lambda deadline).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanCursor {
    /// Bytes of the upload planned so far (always a line boundary).
    pub offset: u64,
    /// Lines read so far, blank ones included: the number of the line that ends at `offset`.
    pub line: u64,
    /// Segments planned so far; the next one writes its parts under this number.
    pub segment: u32,
}

/// Tokens the provider reported. `input_tokens` counts every input token, those read from or
/// written to a prompt cache included; the cache fields say how many of them were.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from a prompt cache (OpenAI `cached_tokens`, Anthropic
    /// `cache_read_input_tokens`), priced at the model's cached-input price.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_read_tokens: u64,
    /// Input tokens written to a prompt cache (Anthropic `cache_creation_input_tokens`), priced
    /// at the model's cache-write price.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    /// Adds `more` to these counts.
    pub fn add(&mut self, more: &Usage) {
        self.input_tokens += more.input_tokens;
        self.output_tokens += more.output_tokens;
        self.cache_read_tokens += more.cache_read_tokens;
        self.cache_write_tokens += more.cache_write_tokens;
    }

    /// Whether it counts no token at all.
    pub fn is_empty(&self) -> bool {
        self.input_tokens == 0 && self.output_tokens == 0
    }
}

/// A chunk's tokens as estimated before it is sent: its input counted offline, its output
/// bounded by the requests' `max_tokens` (see the `spend` module for the rules).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEstimate {
    pub input_tokens: u64,
    /// An upper bound when every request sets its `max_tokens`; else the route's assumption.
    pub output_tokens: u64,
}

impl TokenEstimate {
    pub fn add(&mut self, more: TokenEstimate) {
        self.input_tokens += more.input_tokens;
        self.output_tokens += more.output_tokens;
    }

    /// The share of `part` requests out of `whole` (rounded down): what a chunk cut from
    /// another one carries, in proportion to its requests.
    pub fn share(self, part: u64, whole: u64) -> TokenEstimate {
        let of = |tokens: u64| {
            if whole == 0 {
                0
            } else {
                (u128::from(tokens) * u128::from(part.min(whole)) / u128::from(whole)) as u64
            }
        };
        TokenEstimate {
            input_tokens: of(self.input_tokens),
            output_tokens: of(self.output_tokens),
        }
    }
}

/// A chunk as planned: what it holds and what it weighs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPlan {
    pub index: u32,
    pub endpoint: String,
    pub model: String,
    pub requests: u64,
    /// Bytes of the chunk file, newlines included.
    pub bytes: u64,
    /// Its tokens, estimated at planning; only when the route has a spending cap or an
    /// admission limit (absent in manifests written before, or without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<TokenEstimate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRecord {
    #[serde(flatten)]
    pub plan: ChunkPlan,
    pub state: ChunkState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_file_id: Option<String>,
    /// Unix time the (last) submit of this chunk began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_started_at: Option<i64>,
    /// The provider's last status word for the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<String>,
    #[serde(default)]
    pub succeeded: u64,
    #[serde(default)]
    pub failed: u64,
    #[serde(default)]
    pub usage: Usage,
    /// The provider was asked to cancel this batch.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_sent: bool,
    /// 1 for a chunk planned from the input; n + 1 for the follow-up of a chunk of attempt n.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// The chunk whose failed requests this one sends again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<u32>,
    /// Requests of this chunk sent again in a follow-up chunk (their final outcome is counted
    /// there, not here).
    #[serde(default)]
    pub retried: u64,
    /// Submitted only once no other batch of the job is in flight (the provider refused the
    /// work for capacity: `Dialect::is_capacity_refusal`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub after_drain: bool,
    /// `usage` split by the model each result named (empty key: results that named none),
    /// for pricing batches that mix models.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub usage_by_model: std::collections::BTreeMap<String, Usage>,
    /// Below the provider's batch minimum, its requests went one by one through the
    /// provider's synchronous API (priced at on-demand prices).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_demand: bool,
    /// Its batch was cancelled at the job's deadline cutoff: the requests it had not answered
    /// go on through the synchronous lane.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deadline_cut: bool,
    /// Its prompt-cache primer's tokens, once it was primed (a route's `cache_primer`; no
    /// tokens: the primer got no answer). Priced as on-demand tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primer: Option<Usage>,
    /// Never sent: its requests were answered with answers already in the bucket (a route
    /// with `reuse_results`; the `reuse` module). Collected from the start, at no cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused: Option<ReusedAnswers>,
}

/// Where the answers of a chunk that was never sent came from, and what sending its requests
/// would have used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReusedAnswers {
    /// `bucket`: answers of earlier jobs of the route; `in_file`: the answer of the same
    /// request earlier in this file.
    pub source: ReuseSource,
    /// The tokens the answers used when they were first sent, by model: what was saved.
    #[serde(default)]
    pub saved_usage_by_model: std::collections::BTreeMap<String, Usage>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReuseSource {
    #[default]
    Bucket,
    InFile,
}

fn first_attempt() -> u32 {
    1
}

impl ChunkRecord {
    /// A staged chunk, not yet sent.
    pub fn staged(plan: ChunkPlan) -> Self {
        Self {
            plan,
            state: ChunkState::Staged,
            batch_id: None,
            input_file_id: None,
            submit_started_at: None,
            provider_status: None,
            succeeded: 0,
            failed: 0,
            usage: Usage::default(),
            cancel_sent: false,
            attempt: 1,
            retry_of: None,
            retried: 0,
            after_drain: false,
            usage_by_model: Default::default(),
            on_demand: false,
            deadline_cut: false,
            reused: None,
            primer: None,
        }
    }
}

/// When a job must be done by, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    /// RFC 3339.
    pub at: String,
    /// Where it came from: `metadata` (the upload's `x-amz-meta-batchdrop-deadline`),
    /// `sidecar` (a `<upload>.deadline` object beside it) or `route` (`deadline_hours`).
    pub source: String,
    /// When the cutoff was reached (RFC 3339): from then on, batches still running were
    /// cancelled and every request not yet answered went through the synchronous lane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_at: Option<String>,
}

/// A job's spending check, made once its planning ended and before anything was sent (routes
/// with `max_usd_per_job` or `max_usd_per_day`). Amounts in USD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// The job's cost bound: estimated input tokens and output bounds at batch prices (at
    /// synchronous prices for chunks that go on demand).
    pub estimate: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_usd_per_job: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_usd_per_day: Option<f64>,
    /// The UTC day (`YYYY-MM-DD`, the job's start) whose spend object holds its reservation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    /// What the route's other jobs had reserved or spent that day when this one was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_spent_before: Option<f64>,
    /// Why nothing was sent (`over_budget: …`); None: the job was let through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// A webhook target a job was started with, besides its route's: a Batch API key's
/// (`webhook_url` of its tenant in the keys file). Its entries are signed with that tenant's
/// secret, which the sending process resolves from its own keys file: nothing secret is kept
/// here, and a tenant cannot make batchdrop sign with another's secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobWebhook {
    /// The tenant whose secret signs.
    pub tenant: String,
    /// Where the POSTs go, as the keys file said when the job started.
    pub url: String,
    /// Also one `batch_job.batch_collected` per collected batch.
    #[serde(default)]
    pub batches: bool,
    /// The id the tenant knows the job by (its batch in the Batch API), put in each webhook's
    /// data as `api_batch_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_batch_id: Option<String>,
}

/// Who may act on a job until when (unix seconds). Renewed on every save.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub until: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub job_id: String,
    pub route: String,
    /// The route's provider, by its registry name (`openai`).
    pub provider: String,
    pub input: InputRef,
    pub results_prefix: String,
    pub status: JobStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub counts: Counts,
    /// Attempts per request in all (from the route when the job started).
    #[serde(default = "first_attempt")]
    pub max_attempts: u32,
    /// Why the job is being cancelled, once someone asked (`cancel/…` object, `batchdrop cancel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested: Option<String>,
    /// Present until the whole upload is planned; `chunks` then holds every chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planning: Option<PlanCursor>,
    /// When the job must be done by, if it must.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Deadline>,
    /// The spending check, once made (routes with a cap only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// The webhook of the Batch API key that started it, if that key has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<JobWebhook>,
    pub chunks: Vec<ChunkRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

impl Manifest {
    pub fn usage(&self) -> Usage {
        // Prompt-cache primers included: tokens the provider charged for.
        self.chunks.iter().fold(Usage::default(), |mut acc, c| {
            acc.add(&c.usage);
            if let Some(primer) = &c.primer {
                acc.add(primer);
            }
            acc
        })
    }
}
