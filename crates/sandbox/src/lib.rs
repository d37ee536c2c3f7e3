//! The sandbox provider: a local HTTP server that speaks OpenAI's Files + Batches and
//! Anthropic's Message Batches wire formats well enough that the official SDKs work against it
//! (OpenAI `base_url` = [`Sandbox::base_url`]; Anthropic `base_url` =
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
//! - **Memory.** Files and batches live in memory and are lost when the sandbox stops.
//!
//! OpenAI (`/v1/files`, `/v1/batches`, `Authorization: Bearer`):
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
//! - **Delete** only once ended (else 400); **cancel** only before (else 400). Listings are
//!   newest first, `limit` 1–1000 (default 20), paged by `after_id` / `before_id`.
//!
//! `GET /sandbox/stats` (no key needed) answers [`SandboxStats`] as JSON.

mod anthropic;
mod clock;
mod openai;
mod respond;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use anthropic::{MAX_MESSAGE_BATCH_BYTES, MAX_MESSAGE_REQUESTS};
#[cfg(feature = "testing")]
pub use clock::ManualClock;
pub use clock::{Clock, SystemClock};
pub use openai::{
    MAX_BATCH_FILE_BYTES, MAX_FILE_BYTES, MAX_REPORTED_ERRORS, MAX_REQUESTS, MODEL_NOT_FOUND,
};

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
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("step", &self.step)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
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
}

/// What every handler shares.
pub(crate) struct AppState {
    config: SandboxConfig,
    clock: Arc<dyn Clock>,
    stats: Counters,
    openai: openai::Store,
    anthropic: anthropic::Store,
    /// The address the server listens on, when it is a [`Sandbox`] (not a bare [`router`]).
    addr: Option<SocketAddr>,
}

#[derive(Default)]
struct Counters {
    files_uploaded: AtomicU64,
    batches_created: AtomicU64,
    requests_received: AtomicU64,
    message_batches_created: AtomicU64,
}

impl AppState {
    fn new(config: SandboxConfig, clock: Arc<dyn Clock>, addr: Option<SocketAddr>) -> Self {
        AppState {
            openai: openai::Store::new(config.step),
            anthropic: anthropic::Store::new(config.step),
            config,
            clock,
            stats: Counters::default(),
            addr,
        }
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
    pub async fn start(addr: SocketAddr, config: SandboxConfig) -> io::Result<Sandbox> {
        Self::start_with_clock(addr, config, Arc::new(SystemClock)).await
    }

    /// [`Sandbox::start`] with the clock batch states are computed from.
    pub async fn start_with_clock(
        addr: SocketAddr,
        config: SandboxConfig,
        clock: Arc<dyn Clock>,
    ) -> io::Result<Sandbox> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(AppState::new(config, clock, Some(addr)));
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
        tracing::info!(%addr, "sandbox provider listening");
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

    /// Stops accepting connections and waits for the requests in flight to finish.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        match self.server.await {
            Ok(Ok(())) => tracing::info!(addr = %self.addr, "sandbox provider stopped"),
            Ok(Err(error)) => tracing::error!(%error, "sandbox provider failed"),
            Err(error) => tracing::error!(%error, "sandbox provider task failed"),
        }
    }
}

/// The sandbox as a router, to embed in another server; batch states follow the system clock.
pub fn router(config: SandboxConfig) -> Router {
    router_with_clock(config, Arc::new(SystemClock))
}

/// [`router`] with the clock batch states are computed from.
pub fn router_with_clock(config: SandboxConfig, clock: Arc<dyn Clock>) -> Router {
    app(Arc::new(AppState::new(config, clock, None)))
}

fn app(state: Arc<AppState>) -> Router {
    let providers = openai::routes(state.clone())
        .merge(anthropic::routes(state.clone()))
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
    } else {
        openai::unknown_route(method, uri).await.into_response()
    }
}

async fn stats(State(state): State<Arc<AppState>>) -> Json<SandboxStats> {
    Json(state.stats())
}

/// Counts a provider request and gives its response an `x-request-id`, as the real APIs do.
async fn count_and_tag(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    state
        .stats
        .requests_received
        .fetch_add(1, Ordering::Relaxed);
    let mut response = next.run(request).await;
    if let Ok(id) = HeaderValue::from_str(&openai::new_id("req_", 32)) {
        response.headers_mut().insert("x-request-id", id);
    }
    response
}
