//! The sandbox provider: a local HTTP server that speaks OpenAI's Files + Batches wire format
//! well enough that the official SDKs work against it (`base_url` = [`Sandbox::base_url`]),
//! answering every request with a deterministic synthetic result. Users try batchdrop with it
//! without an account; tests run offline against it.
//!
//! What a client can rely on:
//! - **States and timestamps.** A batch spends [`SandboxConfig::step`] in each of
//!   `validating`, `in_progress` and `finalizing`, then is `completed` (or `failed` at the end
//!   of `validating` if its input is invalid). During `in_progress` its request counts grow in
//!   proportion to the time elapsed. A cancel shows `cancelling` for one step, then
//!   `cancelled`. With a zero step, create answers `validating` and the batch has ended by the
//!   next request. States are computed from a [`Clock`] when asked: a manual clock drives them
//!   in tests without sleeping.
//! - **Results.** When a batch ends, its output file (successful requests) and error file
//!   (rejected requests, and in a cancelled batch the requests never processed, with code
//!   `batch_cancelled`) appear as File objects with purpose `batch_output`; a file that would
//!   be empty is not written and its id is null. Output lines come in an order shuffled by the
//!   batch id, as the real API does not keep input order.
//! - **Answers.** The same request gets the same answer in any batch (text, embedding, token
//!   counts; only ids and timestamps differ). Tokens are counted as words. Any model name works
//!   except [`MODEL_NOT_FOUND`], which gets a 404 `model_not_found` per request.
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
//! - **Memory.** Files and batches live in memory and are lost when the sandbox stops.
//!
//! `GET /sandbox/stats` (no key needed) answers [`SandboxStats`] as JSON.

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
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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
    /// Time each batch spends in each of `validating`, `in_progress` and `finalizing`. Zero
    /// = "instant": a batch is returned as `validating` by create and has ended by the next
    /// request.
    pub step: Duration,
    /// If set, requests must carry `Authorization: Bearer <this>`; otherwise any non-empty
    /// bearer token is accepted. A missing one is a 401 either way, as with the real API.
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
    /// Batches created.
    pub batches_created: u64,
    /// HTTP requests to the provider API, whatever their outcome (not `/sandbox/stats`).
    pub requests_received: u64,
}

/// What every handler shares.
pub(crate) struct AppState {
    config: SandboxConfig,
    clock: Arc<dyn Clock>,
    stats: Counters,
    openai: openai::Store,
}

#[derive(Default)]
struct Counters {
    files_uploaded: AtomicU64,
    batches_created: AtomicU64,
    requests_received: AtomicU64,
}

impl AppState {
    fn new(config: SandboxConfig, clock: Arc<dyn Clock>) -> Self {
        AppState {
            openai: openai::Store::new(config.step),
            config,
            clock,
            stats: Counters::default(),
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
        let state = Arc::new(AppState::new(config, clock));
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
        let mut addr = self.addr;
        match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
            IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
            _ => {}
        }
        format!("http://{addr}/v1")
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
    app(Arc::new(AppState::new(config, clock)))
}

fn app(state: Arc<AppState>) -> Router {
    let providers = openai::routes(state.clone())
        .layer(middleware::from_fn_with_state(state.clone(), count_and_tag));
    Router::new()
        .route("/sandbox/stats", get(stats))
        .merge(providers)
        .fallback(openai::unknown_route)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
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
