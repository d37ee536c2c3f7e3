//! The sandbox provider: a local HTTP server that speaks OpenAI's Files + Batches,
//! Anthropic's Message Batches and AWS Bedrock's batch inference (model invocation jobs and
//! InvokeModel) wire formats well enough that the official SDKs work against it (OpenAI
//! `base_url` = [`Sandbox::base_url`]; Anthropic `base_url` and boto3's `endpoint_url` =
//! [`Sandbox::anthropic_base_url`]), answering every request with a deterministic synthetic
//! result. Users try batchdrop with it without an account; tests run offline against it.
//!
//! What a client can rely on, on both sides:
//! - **Timing.** Batch states are computed from a [`Clock`] when asked, with
//!   [`SandboxConfig::step`] as the unit: a manual clock drives them in tests without sleeping.
//!   With a zero step a batch has ended by the request after its create call.
//! - **Answers.** The same request gets the same answer in any batch (text, embedding, token
//!   counts; only ids and timestamps differ). Tokens are counted as words. Any model name works
//!   except [`MODEL_NOT_FOUND`], which fails the request (OpenAI 404 `model_not_found`,
//!   Anthropic `errored` with `not_found_error`). Results come in an order shuffled by the
//!   batch id, as the real APIs do not keep input order.
//! - **Memory and disk.** The contents of files (uploaded files, output and error files,
//!   Anthropic batch requests and results) are kept on disk, in
//!   [`SandboxConfig::files_dir`] or a temporary directory removed when the sandbox stops;
//!   uploads and request bodies are streamed to disk as they arrive, processed line by line
//!   (request by request) and streamed back. Memory holds only what describes files and
//!   batches (ids, sizes, counts, a batch's totals; a batch being processed, each request's
//!   place in its input and `custom_id`), so it stays flat whatever the size of the files.
//!   Files and batches are forgotten when the sandbox stops. Bedrock jobs read their input
//!   from and write their output to the bucket they name, never into memory.
//!
//! OpenAI (`/v1/files`, `/v1/batches`, `Authorization: Bearer`):
//! - **Synchronous endpoints.** `POST /v1/chat/completions`, `/v1/embeddings`,
//!   `/v1/completions`, `/v1/responses` and `/v1/moderations` answer at once what a batch
//!   answers the same request (or its status and error object): what OpenAI-compatible servers
//!   without a batch API serve, and batchdrop's synchronous lane calls (`openai-sync`). Counted
//!   in [`SandboxStats::sync_requests`].
//! - **States and timestamps.** A batch spends one step in each of `validating`,
//!   `in_progress` and `finalizing`, then is `completed` (or `failed` at the end of
//!   `validating` if its input is invalid). During `in_progress` its request counts grow in
//!   proportion to the time elapsed. A cancel shows `cancelling` for one step, then
//!   `cancelled`. Create answers `validating`.
//! - **Results.** When a batch ends, its output file (successful requests) and error file
//!   (rejected requests, and in a cancelled batch the requests never processed, with code
//!   `batch_cancelled`) appear as File objects with purpose `batch_output`; a file that would
//!   be empty is not written and its id is null.
//! - **Validation.** At the end of `validating` a batch fails as a whole (`errors.data`, no
//!   files) if any line is bad; every bad line is reported (up to [`MAX_REPORTED_ERRORS`])
//!   with its 1-based `line`: `invalid_json_line` (not JSON, not UTF-8, not an object),
//!   `missing_required_parameter` (no `custom_id`, `method`, `url` or `body`; `param` names
//!   it), `invalid_type`, `invalid_value` (a `method` other than `POST`),
//!   `mismatched_endpoint` (a `url` other than the batch's endpoint), `duplicate_custom_id`,
//!   `mismatched_model` (a `body.model` other than the first one); for the whole file
//!   `empty_file` and `too_many_requests` (over [`MAX_REQUESTS`]). Blank lines are skipped.
//! - **Per-request errors** go to the error file as `response.status_code` 400 (a chat request
//!   without `messages`, an embeddings request without `input`, a parameter of the wrong
//!   type, …) or 404 (`model_not_found`), with `error: null`, as the real API does.
//! - **Limits** as the real API's: files up to [`MAX_FILE_BYTES`], batch input files
//!   (`*.jsonl`) up to [`MAX_BATCH_FILE_BYTES`], `completion_window` `24h`, metadata of at
//!   most 16 pairs (keys ≤ 64, values ≤ 512 characters). Endpoints: `/v1/chat/completions`,
//!   `/v1/embeddings`, `/v1/completions`, `/v1/responses`, `/v1/moderations`.
//! - **Counts.** `request_counts` are exact once a batch has ended; in a cancelled batch the
//!   requests never processed count as failed (they are in the error file).
//!
//! Anthropic (`/v1/messages/batches`, a key in `x-api-key` or `Authorization: Bearer`, and an
//! `anthropic-version` header):
//! - **Messages API.** `POST /v1/messages` answers at once the Message a batch's `succeeded`
//!   result holds for the same `params` (the same text and usage; its own id, `usage.
//!   service_tier` `standard`), or the error a batch gives it: 400 `invalid_request_error` for
//!   a body a batch's validation refuses (`max_tokens: Field required`) or a request it answers
//!   `errored`, 404 `not_found_error` for [`MODEL_NOT_FOUND`]. What batchdrop's synchronous
//!   lane calls for an `anthropic` route. Counted in [`SandboxStats::message_requests`].
//! - **States and timestamps.** A batch is `in_progress` for three steps, then `ended`. A
//!   cancel shows `canceling` for one step, then `ended`, with the requests not processed by
//!   the cancel as `{"type":"canceled"}` results (processing runs in proportion to the time
//!   elapsed). A batch that cannot end within 24 hours (a step over 8 hours) ends at
//!   `expires_at` with the rest `expired`. Timestamps are RFC 3339 strings in UTC;
//!   `archived_at` is always null.
//! - **Counts.** Until a batch has ended every request counts as `processing` and the other
//!   counts are 0, as with the real API; then they are exact. `results_url` is null until the
//!   batch has ended, then `http://<Host of the request>/v1/messages/batches/{id}/results`.
//! - **Results.** One JSONL line per request: `succeeded` with a Message (`content` one text
//!   block, `stop_reason` `end_turn`, or `max_tokens` when cut at `max_tokens` words, `usage`),
//!   `errored` (`not_found_error` for [`MODEL_NOT_FOUND`]; `invalid_request_error` for a first
//!   message that is not the user's, a bad `role`, `content` or `system`), `canceled` or
//!   `expired`. Asking before the batch has ended is a 400.
//! - **Validation.** Create refuses the whole batch with a 400 `invalid_request_error` naming
//!   the first bad request (`requests.3.custom_id: …`): a `custom_id` not matching
//!   `^[a-zA-Z0-9_-]{1,64}$` or used twice, `params` without a string `model`, a positive
//!   integer `max_tokens` or a non-empty `messages` list; also no `requests`, or more than
//!   [`MAX_MESSAGE_REQUESTS`]. A body over [`MAX_MESSAGE_BATCH_BYTES`] is a 413
//!   `request_too_large`, refused as soon as that much has streamed in.
//! - **Prompt caching.** A request whose `system` or messages carry a `cache_control`
//!   breakpoint caches its prompt up to the last one when that prefix is at least 1,024
//!   tokens: `usage.cache_creation_input_tokens` when it writes the entry,
//!   `cache_read_input_tokens` when it finds it alive (5 minutes, `"ttl": "1h"` an hour,
//!   renewed by each read), `input_tokens` the rest. A batch reads what was written before
//!   it, by `/v1/messages` or earlier batches, never its own requests' writes: a cold batch
//!   reads nothing, a batch after a one-request primer reads every prefix it wrote.
//! - **Delete** only once ended (else 400); **cancel** only before (else 400). Listings are
//!   newest first, `limit` 1–1000 (default 20), paged by `after_id` / `before_id`.
//!
//! Bedrock (at the root, the real service's paths from botocore's service models: `POST
//! /model-invocation-job`, `GET /model-invocation-job/{jobIdentifier}` (the 12-character id
//! or the URL-encoded ARN), `POST /model-invocation-job/{jobIdentifier}/stop`, `GET
//! /model-invocation-jobs`, and the runtime's `POST /model/{modelId}/invoke`):
//! - **Authentication.** Any `Authorization` header is accepted, SigV4 or bearer: signatures
//!   are **not verified** (the sandbox is a loopback development tool; never expose it).
//!   Without one: 403 `MissingAuthenticationTokenException` ("Missing Authentication Token"),
//!   as AWS answers unsigned requests. Job ARNs are
//!   `arn:aws:bedrock:<region>:123456789012:model-invocation-job/<12 lowercase letters and
//!   digits>`, the region read from the SigV4 credential scope (`us-east-1` without one).
//! - **Errors** have the restJson1 shape botocore reads: the status, `x-amzn-ErrorType:
//!   <Name>` and `{"message"}`: 400 `ValidationException` (a member breaking its constraint
//!   from the service model, in AWS's wording "1 validation error detected: Value '…' at
//!   'jobName' failed to satisfy constraint: …"; a stop of an ended job; a bad listing
//!   parameter; an unreadable InvokeModel body), 400 `ServiceQuotaExceededException`, 404
//!   `ResourceNotFoundException` (no such job), 429 `ThrottlingException`, 500
//!   `InternalServerException`, 503 `ServiceUnavailableException`. Every answer carries an
//!   `x-amzn-RequestId`.
//! - **The bucket.** A job reads `inputDataConfig.s3InputDataConfig.s3Uri` (one object, or,
//!   when the key does not end in `.jsonl`, every `.jsonl` object under that folder, in key
//!   order) and writes under `outputDataConfig.s3OutputDataConfig.s3Uri`, through
//!   [`BedrockConfig::objects`]: a directory (the bucket name ignored: `s3://<any>/<key>` is
//!   `<dir>/<key>`; `batchdrop local` passes its root, `batchdrop sandbox --root DIR`) or an
//!   S3 API (`batchdrop sandbox --s3-endpoint URL`; path-style; the credential chain, else
//!   dummy credentials). Without one, create is refused with a `ValidationException` saying
//!   to start the sandbox with `--root` or `--s3-endpoint`. Inputs are read line by line as
//!   they stream in and outputs go through temporary files: memory stays flat with 1 GB
//!   files.
//! - **Create** checks the members as the service model constrains them (`jobName`
//!   `[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}` of at most 63 characters, `roleArn`
//!   `arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+`, a non-empty `modelId`, `s3://` URIs,
//!   `timeoutDurationInHours` 24–168, default 168) and answers `{"jobArn"}`. A
//!   `clientRequestToken` seen before returns the first job's ARN and makes no job (its other
//!   members are not compared). The model [`MODEL_NOT_FOUND`] is refused with a
//!   `ValidationException` "The provided model identifier is invalid." (what Bedrock answers
//!   for an unknown model id). More than [`BedrockConfig::max_jobs_per_model`] jobs of one
//!   model submitted, validating, scheduled, in progress or stopping: 400
//!   `ServiceQuotaExceededException`.
//! - **States and timestamps.** A job spends one step in each of `Submitted`, `Validating`,
//!   `Scheduled` and `InProgress` (its `processedRecordCount` growing in proportion to the
//!   time elapsed), then is `Completed`, or `PartiallyCompleted` when records failed on the
//!   service's side (a 429 or 5xx `errorCode`; records refused with 400 leave it
//!   `Completed`). A stop shows `Stopping` for one step, then `Stopped`. A job that cannot end
//!   within `timeoutDurationInHours` is `Expired` then. Timestamps (`submitTime`,
//!   `lastModifiedTime`, `endTime`, `jobExpirationTime`) are ISO 8601 in UTC.
//! - **Validation** happens at the end of `Validating`, reading the input once: the job is
//!   `Failed` with `message` when there is no input file, a file is over
//!   [`MAX_BEDROCK_FILE_BYTES`] (1 GB), the records are fewer than
//!   [`BedrockConfig::min_records`] (default 100: `Batch job <arn> contains less records (40)
//!   than the required minimum of: 100`, the wording users report from Bedrock) or more than
//!   [`MAX_BEDROCK_RECORDS`], or a line is not JSONL the service can read (not a JSON object,
//!   no object `modelInput`: `Invalid JSONL in input file <uri>, line <n>: …` — Bedrock fails
//!   a job whose file it cannot parse, while a `modelInput` the model cannot read is only
//!   that record's error). Blank lines are skipped.
//! - **Output**, written once the job has ended (the request that first sees it ended waits
//!   for it, so a client that sees `Completed` can read it at once):
//!   `<output>/<jobId>/<input file name>.out` per input file (`input.jsonl` →
//!   `input.jsonl.out`) and `<output>/<jobId>/manifest.json.out` with
//!   `totalRecordCount`, `processedRecordCount`, `successRecordCount`, `errorRecordCount`,
//!   `inputTokenCount`, `outputTokenCount`. Lines come in an order shuffled by the job id:
//!   `{"recordId","modelInput","modelOutput"}` or `{"recordId","modelInput","error":
//!   {"errorCode","errorMessage"}}`; a record without `recordId` gets
//!   `RECORD<its 1-based position, 10 digits>`. A stopped or expired job's output holds the
//!   records processed by then and no line for the others; a job stopped before validation
//!   ended, or failed, writes nothing. The job's record counts are exact once it has ended.
//! - **Answers** (batch records and InvokeModel alike, the same body to the same model id
//!   getting the same answer): a Claude body (`anthropic_version`) gets a Messages API message
//!   (`content` one text block, `stop_reason` `end_turn` or `max_tokens`, `usage`
//!   `input_tokens`/`output_tokens`); a Nova body (`schemaVersion: "messages-v1"` or
//!   `inferenceConfig`) gets `{"output":{"message"}, "stopReason", "usage":{"inputTokens",
//!   "outputTokens","totalTokens"}}`; a Titan embeddings body (`inputText`) an 8-dimension
//!   `embedding` with `inputTextTokenCount`; anything else, or a body without what its family
//!   needs, a 400 `Malformed input request: #: required key [messages] not found, please
//!   reformat your input and try again.` (a record's `error`, or InvokeModel's
//!   `ValidationException`). InvokeModel also sends `x-amzn-bedrock-input-token-count` and
//!   `x-amzn-bedrock-output-token-count`.
//! - **Listings** take botocore's query parameters: `statusEquals`, `nameContains`,
//!   `submitTimeAfter`/`submitTimeBefore` (exclusive), `sortBy=CreationTime`, `sortOrder`
//!   (default `Descending`: newest first), `maxResults` 1–1000 (default 1000) and the
//!   `nextToken` of the previous page.
//!
//! # Fault injection
//!
//! [`SandboxConfig::faults`] makes the sandbox fail the way the real providers do, on
//! purpose and reproducibly (default: no faults). [`Faults`] comes from Rust (fields and
//! chainable setters), from a spec string ([`Faults::parse`]; `batchdrop sandbox --faults
//! SPEC`, `batchdrop local --sandbox-faults SPEC`), or through serde from a config file, as
//! that string or as a table of the same keys:
//!
//! ```text
//! seed=7,http429=0.1,http500=0.05,timeout=0.02,token_limit=0.2,expire=0.1,expire_keep=0.5,
//! finalizing_extra=3,no_output=0.1,validation=0.1,req429=0.05,req500=0.02,req400=0.01,
//! latency_ms=50
//! ```
//!
//! A spec is comma-separated `key=value` pairs; the empty spec is no faults. A rate is a
//! probability from 0 to 1 or `every:N` (exactly the Nth, 2Nth, … request, batch or line).
//! An unknown key, a bad value, a key given twice, or exclusive probabilities adding up to
//! more than 1 are refused with an error naming the key ([`FaultsError`]), and
//! [`Sandbox::start`] refuses faults that do not [validate](Faults::validate).
//!
//! API faults, on any provider request (not `/sandbox/stats`), one draw among them:
//! - `http429` — 429 with `retry-after` (seconds, rounded up) and `retry-after-ms`
//!   (`retry_after_ms`, default 1000); OpenAI `{"error":{"type":"requests","code":
//!   "rate_limit_exceeded"}}`, Anthropic `rate_limit_error`. Nothing is done.
//! - `http500` — 500, OpenAI `server_error`, Anthropic `api_error`. Nothing is done.
//! - `http529` — Anthropic 529 `overloaded_error`, OpenAI 503 `server_error` ("overloaded"),
//!   with the retry headers. Nothing is done.
//! - `timeout` — the request **is carried out**, then its answer is held for `timeout_ms`
//!   (default 60000): a client with a shorter timeout gives up on a request that took effect
//!   (a batch it created exists). [`Sandbox::stop`] lets held answers go.
//! - `drop` — the request **is carried out**, then the connection is closed without a byte
//!   of answer.
//!
//! `latency_ms=N` (not a rate: every time) holds every synchronous answer (the OpenAI
//! synchronous endpoints, Anthropic's `/v1/messages`, Bedrock's InvokeModel) N milliseconds
//! before it is sent, on tokio's timer, as a model's generation time would; [`Sandbox::stop`]
//! lets held answers go. It is not counted in [`SandboxStats::faults`].
//!
//! Batch faults, decided when the batch is created, one draw among the first four:
//! - `validation` — OpenAI: `failed` at the end of `validating` with `errors.data[0].code`
//!   `invalid_request`; Anthropic: the create call is refused with a 400
//!   `invalid_request_error`.
//! - `token_limit` — OpenAI: the create succeeds, then the batch is `failed` with
//!   `errors.data[0].code` `token_limit_exceeded`, `line` null, and no files; Anthropic (whose
//!   limit is on queued requests): the create call is refused with a 429 `rate_limit_error`
//!   with the retry headers.
//! - `enqueued_token_limit=N` (not a rate: OpenAI only, decided from the batches in flight,
//!   not drawn) — OpenAI's enqueued-token limit per model: the input tokens of the batches of
//!   a model that are `validating`, `in_progress` or `finalizing` (counted when each is
//!   created, as its answers will report them) may not pass N; a new batch that would is
//!   created, then `failed` at the end of `validating` with `errors.data[0].code`
//!   `token_limit_exceeded` ("Enqueued token limit reached for <model> … Limit: N enqueued
//!   tokens …"), `line` null, no files, and holds no place in the queue. Counted in
//!   [`FaultStats::enqueued_token_limit`].
//! - `expire` — only the first `expire_keep` share (default 0.5) of the requests, in
//!   processing order, is answered. OpenAI: `expired` when it would have started finalizing
//!   (`expired_at` = created + 2 steps, not `expires_at`, so that it shows without waiting a
//!   day), the answers in the output file and the rest as `batch_expired` lines in the error
//!   file; Anthropic: `ended` on time with the rest as `expired` results.
//! - `no_output` — every request fails with 500 (OpenAI error lines `response.status_code`
//!   500, `error: null`: the batch is `completed` with a null `output_file_id`; Anthropic
//!   `errored` results with `api_error`).
//! - `finalizing_extra=N` with `finalizing` (a rate, default every batch) — OpenAI: the batch
//!   stays `finalizing` N more steps; Anthropic: it stays `in_progress` N more steps after its
//!   last request is done. Drawn on its own; nothing with a zero step.
//!
//! Bedrock faults (the API and batch faults above apply to Bedrock too: `http429` is a 429
//! `ThrottlingException`, `http500` a 500 `InternalServerException`, `http529` a 503
//! `ServiceUnavailableException`; `validation` fails the job at validation, `token_limit`
//! refuses the create with `ServiceQuotaExceededException`, `expire` makes the job `Expired`
//! at the end of `InProgress` with only the first `expire_keep` share of its records in the
//! output, `no_output` fails every record with `errorCode` 500, `finalizing_extra` keeps it
//! `InProgress` longer):
//! - `throttle` — a control-plane call (create, get, stop, list; not InvokeModel) is refused
//!   with 429 `ThrottlingException`, drawn on the Bedrock control-plane call's number.
//! - `partial` — the job ends `PartiallyCompleted`: a share `partial_errors` (default 0.1)
//!   of its records, drawn per record, fail with `errorCode` 429 or 500 alternately. Drawn
//!   on its own, for jobs without another batch fault.
//!
//! Request faults, decided per request of a batch, one draw among them:
//! - `reqNNN` (any status 400–599, e.g. `req429`, `req500`, `req400`) — OpenAI: an error-file
//!   line with `response.status_code` NNN, `error: null` and OpenAI's error body for that
//!   status; Anthropic: an `errored` result with the matching type (`rate_limit_error`,
//!   `api_error`, `overloaded_error`, `invalid_request_error`, …).
//! - `result_errored`, `result_expired` (Anthropic only) — an `errored` (`api_error`) or
//!   `expired` result.
//! - Bedrock: `reqNNN` is a record line with `"error": {"errorCode": NNN}` (a 429 or 5xx
//!   makes the job `PartiallyCompleted`).
//!
//! **Determinism.** Every decision is a pure function of `seed` and a counter, never of the
//! clock or of random ids: API faults of the request's number (the first provider request the
//! sandbox receives is 1), batch faults of the batch's number (per provider, in creation
//! order), request faults of the batch number and the request's position in the input. A
//! client that makes the same calls in the same order meets the same faults; a request
//! retried in a new batch gets a new draw. Faults of one group exclude each other: one draw
//! splits [0, 1) among its probabilities (so each is the exact share of its fault), after
//! the `every:N` faults, which go first. Injected errors say "sandbox fault injection" in
//! their messages. [`SandboxStats::faults`] counts what was injected, by key.
//!
//! `GET /sandbox/stats` (no key needed) answers [`SandboxStats`] as JSON.

mod anthropic;
mod bedrock;
mod clock;
mod disk;
mod faults;
mod ledger;
mod openai;
mod push;
mod respond;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use anthropic::{MAX_MESSAGE_BATCH_BYTES, MAX_MESSAGE_REQUESTS};
pub use bedrock::{
    BedrockConfig, BedrockObjects, BedrockS3, DEFAULT_MAX_JOBS_PER_MODEL, DEFAULT_MIN_RECORDS,
    MAX_BEDROCK_FILE_BYTES, MAX_BEDROCK_RECORDS,
};
#[cfg(feature = "testing")]
pub use clock::ManualClock;
pub use clock::{Clock, SystemClock};
use faults::{ApiFault, Injector};
pub use faults::{
    DEFAULT_EXPIRE_KEEP, DEFAULT_PARTIAL_ERRORS, DEFAULT_RETRY_AFTER, DEFAULT_TIMEOUT, FaultStats,
    Faults, FaultsError, KEYS as FAULT_KEYS, NO_OUTPUT_STATUS, Rate,
};
pub use openai::{
    MAX_BATCH_FILE_BYTES, MAX_FILE_BYTES, MAX_REPORTED_ERRORS, MAX_REQUESTS, MODEL_NOT_FOUND,
};
pub use push::{PushConfig, PushStats};

/// The largest request body taken: a file at the Files API's limit plus its multipart framing.
/// A file over [`MAX_FILE_BYTES`] but under this gets OpenAI's 400; a bigger body gets 413.
const MAX_BODY_BYTES: usize = 512 * 1024 * 1024;

/// How the sandbox behaves.
#[derive(Clone, Default)]
pub struct SandboxConfig {
    /// The unit of batch timing: the time an OpenAI batch spends in each of `validating`,
    /// `in_progress` and `finalizing`, a third of the time an Anthropic message batch is
    /// `in_progress`, and the time either spends cancelling. Zero = "instant": create answers
    /// `validating` (OpenAI) or `in_progress` (Anthropic) and the batch has ended by the next
    /// request.
    pub step: Duration,
    /// If set, requests must carry this key (OpenAI: `Authorization: Bearer`; Anthropic:
    /// `x-api-key` or `Authorization: Bearer`); otherwise any non-empty key is accepted. A
    /// missing one is a 401 either way, as with the real APIs.
    pub api_key: Option<String>,
    /// The faults to inject (default: none). See "Fault injection" in the crate docs.
    pub faults: Faults,
    /// The Bedrock side: where jobs read and write (default: nowhere, jobs are refused),
    /// its minimum records per job and per-model job quota. See "Bedrock" in the crate docs.
    pub bedrock: BedrockConfig,
    /// Where the contents of files are kept (created if missing; what the sandbox writes
    /// there stays after it stops). `None`: a temporary directory, removed when it stops.
    pub files_dir: Option<PathBuf>,
    /// Push OpenAI batch webhooks when a batch ends (default: none). See [`PushConfig`].
    pub push: Option<PushConfig>,
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("step", &self.step)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("faults", &format_args!("{:?}", self.faults.to_string()))
            .field("bedrock", &self.bedrock)
            .field("files_dir", &self.files_dir)
            .field("push", &self.push)
            .finish()
    }
}

/// What the sandbox has been asked to do since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStats {
    /// Files uploaded by clients (not the output and error files the sandbox writes).
    pub files_uploaded: u64,
    /// OpenAI batches created.
    pub batches_created: u64,
    /// HTTP requests to either provider API, whatever their outcome (not `/sandbox/stats`).
    pub requests_received: u64,
    /// Anthropic message batches created.
    #[serde(default)]
    pub message_batches_created: u64,
    /// Faults injected, by kind.
    #[serde(default)]
    pub faults: FaultStats,
    /// Bedrock model invocation jobs created (a create repeated with the same
    /// `clientRequestToken` is not counted again).
    #[serde(default)]
    pub bedrock_jobs_created: u64,
    /// Bedrock InvokeModel calls.
    #[serde(default)]
    pub bedrock_invocations: u64,
    /// Requests to the OpenAI synchronous endpoints (`/v1/chat/completions`, …).
    #[serde(default)]
    pub sync_requests: u64,
    /// Requests to Anthropic's Messages API (`POST /v1/messages`).
    #[serde(default)]
    pub message_requests: u64,
    /// Batch webhooks pushed (with [`SandboxConfig::push`]).
    #[serde(default)]
    pub webhooks: PushStats,
}

/// What every handler shares.
pub(crate) struct AppState {
    config: SandboxConfig,
    clock: Arc<dyn Clock>,
    stats: Counters,
    openai: openai::Store,
    anthropic: anthropic::Store,
    bedrock: bedrock::Store,
    faults: Injector,
    /// Turns `true` when a [`Sandbox`] is stopping: held answers are let go.
    stopping: watch::Sender<bool>,
    /// The address the server listens on, when it is a [`Sandbox`] (not a bare [`router`]).
    addr: Option<SocketAddr>,
    /// Sends batch webhooks, with [`SandboxConfig::push`].
    pusher: Option<push::Pusher>,
}

#[derive(Default)]
struct Counters {
    files_uploaded: AtomicU64,
    batches_created: AtomicU64,
    requests_received: AtomicU64,
    message_batches_created: AtomicU64,
    bedrock_jobs_created: AtomicU64,
    bedrock_invocations: AtomicU64,
    sync_requests: AtomicU64,
    message_requests: AtomicU64,
}

impl AppState {
    fn new(
        config: SandboxConfig,
        clock: Arc<dyn Clock>,
        addr: Option<SocketAddr>,
    ) -> io::Result<Self> {
        let disk = Arc::new(disk::Disk::open(config.files_dir.as_deref())?);
        let pusher = config
            .push
            .clone()
            .map(push::Pusher::new)
            .transpose()
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        Ok(AppState {
            pusher,
            openai: openai::Store::new(config.step, disk.clone()),
            anthropic: anthropic::Store::new(config.step, disk.clone()),
            bedrock: bedrock::new_store(&config.bedrock, config.step),
            faults: Injector::new(config.faults.clone()),
            stopping: watch::Sender::new(false),
            config,
            clock,
            stats: Counters::default(),
            addr,
        })
    }

    fn now(&self) -> SystemTime {
        self.clock.now()
    }

    fn stats(&self) -> SandboxStats {
        SandboxStats {
            files_uploaded: self.stats.files_uploaded.load(Ordering::Relaxed),
            batches_created: self.stats.batches_created.load(Ordering::Relaxed),
            requests_received: self.stats.requests_received.load(Ordering::Relaxed),
            message_batches_created: self.stats.message_batches_created.load(Ordering::Relaxed),
            faults: self.faults.stats(),
            bedrock_jobs_created: self.stats.bedrock_jobs_created.load(Ordering::Relaxed),
            bedrock_invocations: self.stats.bedrock_invocations.load(Ordering::Relaxed),
            sync_requests: self.stats.sync_requests.load(Ordering::Relaxed),
            message_requests: self.stats.message_requests.load(Ordering::Relaxed),
            webhooks: self
                .pusher
                .as_ref()
                .map(push::Pusher::stats)
                .unwrap_or_default(),
        }
    }

    /// Sends the webhooks of the OpenAI batches that have ended since the last time (with
    /// [`SandboxConfig::push`]); how many events were handled (dropped ones included).
    async fn push_ended(&self) -> usize {
        let Some(pusher) = &self.pusher else {
            return 0;
        };
        if let Err(error) = self.openai.settle(self.now()).await {
            tracing::warn!(?error, "sandbox batches not settled for webhooks");
        }
        let ended = self.openai.take_ended();
        for batch in &ended {
            let Some((delivery, times)) = pusher.prepare(batch, self.now()) else {
                continue;
            };
            if !pusher.delay().is_zero() {
                self.hold(pusher.delay()).await;
            }
            for _ in 0..times {
                pusher.send(&delivery).await;
            }
        }
        ended.len()
    }

    /// Holds a synchronous answer for the `latency_ms` fault, if one is set.
    async fn latency(&self) {
        let latency = self.faults.faults().latency;
        if !latency.is_zero() {
            self.hold(latency).await;
        }
    }

    /// Waits for `duration`, or until the sandbox stops.
    async fn hold(&self, duration: Duration) {
        let mut stopping = self.stopping.subscribe();
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            _ = stopping.wait_for(|stopping| *stopping) => {}
        }
    }
}

/// A running sandbox server. Dropping it without [`Sandbox::stop`] also shuts the server
/// down, without waiting for it.
pub struct Sandbox {
    addr: SocketAddr,
    state: Arc<AppState>,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<io::Result<()>>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("addr", &self.addr)
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Binds `addr` (port 0 picks a free port) and serves on the current tokio runtime.
    /// Faults that do not [validate](Faults::validate) are an `InvalidInput` error; so is a
    /// files directory that cannot be created.
    pub async fn start(addr: SocketAddr, config: SandboxConfig) -> io::Result<Sandbox> {
        Self::start_with_clock(addr, config, Arc::new(SystemClock)).await
    }

    /// [`Sandbox::start`] with the clock batch states are computed from.
    pub async fn start_with_clock(
        addr: SocketAddr,
        config: SandboxConfig,
        clock: Arc<dyn Clock>,
    ) -> io::Result<Sandbox> {
        config
            .faults
            .validate()
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(AppState::new(config, clock, Some(addr))?);
        let app = app(state.clone());
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // A dropped sender also means "stop".
                    let _ = stop.await;
                })
                .await
        });
        if let Some(every) = state.pusher.as_ref().and_then(push::Pusher::every) {
            let pushing = state.clone();
            let mut stopping = state.stopping.subscribe();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(every) => {}
                        _ = stopping.wait_for(|stopping| *stopping) => return,
                    }
                    pushing.push_ended().await;
                }
            });
        }
        tracing::info!(%addr, faults = %state.config.faults, "sandbox provider listening");
        Ok(Sandbox {
            addr,
            state,
            shutdown,
            server,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI base URL, e.g. `http://127.0.0.1:8080/v1` (a loopback address when the
    /// server listens on all interfaces).
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.anthropic_base_url())
    }

    /// The Anthropic base URL (as `ANTHROPIC_BASE_URL`: without `/v1`), e.g.
    /// `http://127.0.0.1:8080` (a loopback address when the server listens on all interfaces).
    pub fn anthropic_base_url(&self) -> String {
        let mut addr = self.addr;
        match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
            IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
            _ => {}
        }
        format!("http://{addr}")
    }

    pub fn stats(&self) -> SandboxStats {
        self.state.stats()
    }

    /// Sends now the webhooks of the OpenAI batches that have ended (by the sandbox's clock)
    /// since the last time, with [`SandboxConfig::push`]; how many ended batches it handled.
    /// What [`PushConfig::every`]'s timer does; tests with a manual clock call it.
    pub async fn push_ended(&self) -> usize {
        self.state.push_ended().await
    }

    /// Stops accepting connections and waits for the requests in flight to finish (answers
    /// held by a `timeout` or `latency_ms` fault are let go at once).
    pub async fn stop(self) {
        self.state.stopping.send_replace(true);
        let _ = self.shutdown.send(());
        match self.server.await {
            Ok(Ok(())) => tracing::info!(addr = %self.addr, "sandbox provider stopped"),
            Ok(Err(error)) => tracing::error!(%error, "sandbox provider failed"),
            Err(error) => tracing::error!(%error, "sandbox provider task failed"),
        }
    }
}

/// The sandbox as a router, to embed in another server; batch states follow the system clock.
/// Fails if the files directory cannot be created; a temporary one is removed when the
/// router (and every clone of it) is dropped.
pub fn router(config: SandboxConfig) -> io::Result<Router> {
    router_with_clock(config, Arc::new(SystemClock))
}

/// [`router`] with the clock batch states are computed from.
pub fn router_with_clock(config: SandboxConfig, clock: Arc<dyn Clock>) -> io::Result<Router> {
    Ok(app(Arc::new(AppState::new(config, clock, None)?)))
}

fn app(state: Arc<AppState>) -> Router {
    let providers = openai::routes(state.clone())
        .merge(anthropic::routes(state.clone()))
        .merge(bedrock::routes(state.clone()))
        .layer(middleware::from_fn_with_state(state.clone(), count_and_tag));
    Router::new()
        .route("/sandbox/stats", get(stats))
        .merge(providers)
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A 404 in the error shape of the provider whose paths the URL is under.
async fn unknown_route(method: Method, uri: Uri) -> Response {
    if anthropic::owns(&uri) {
        anthropic::unknown_route(method, uri).await.into_response()
    } else if bedrock::owns(&uri) {
        bedrock::unknown_route(method, uri).await
    } else {
        openai::unknown_route(method, uri).await.into_response()
    }
}

/// A response whose body fails before its first byte: the server then closes the connection
/// without sending anything, not even the status line.
fn dropped_connection() -> Response {
    let failing = futures::stream::once(async {
        Err::<bytes::Bytes, io::Error>(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "connection dropped by sandbox fault injection",
        ))
    });
    Response::new(axum::body::Body::from_stream(failing))
}

async fn stats(State(state): State<Arc<AppState>>) -> Json<SandboxStats> {
    Json(state.stats())
}

/// Counts a provider request, injects its API fault if it has one, and gives its response an
/// `x-request-id`, as the real APIs do.
async fn count_and_tag(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let number = state
        .stats
        .requests_received
        .fetch_add(1, Ordering::Relaxed)
        + 1;
    let anthropic = anthropic::owns(request.uri());
    let bedrock = bedrock::owns(request.uri());
    let faults = state.faults.faults();
    let refuse = |status: u16, retry_after: Option<Duration>| {
        if bedrock {
            bedrock::injected_error(status)
        } else if anthropic {
            anthropic::injected_error(status, retry_after)
        } else {
            openai::injected_error(status, retry_after)
        }
    };
    let mut response = match state.faults.api(number) {
        None => next.run(request).await,
        Some(ApiFault::RateLimited) => refuse(429, Some(faults.retry_after)),
        Some(ApiFault::ServerError) => refuse(500, None),
        Some(ApiFault::Overloaded) => {
            refuse(if anthropic { 529 } else { 503 }, Some(faults.retry_after))
        }
        Some(ApiFault::Timeout) => {
            let response = next.run(request).await;
            state.hold(faults.timeout_after).await;
            response
        }
        Some(ApiFault::Drop) => {
            let _carried_out = next.run(request).await;
            return dropped_connection();
        }
    };
    if let Ok(id) = HeaderValue::from_str(&openai::new_id("req_", 32)) {
        response.headers_mut().insert("x-request-id", id);
    }
    response
}
