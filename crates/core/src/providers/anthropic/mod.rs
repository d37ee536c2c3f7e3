//! Anthropic Message Batches (and the sandbox's Anthropic side). Everything batchdrop knows of
//! this provider is in this folder:
//! - [`client`]: the HTTP client (the chunk streamed as the `{"requests":[…]}` body, watch,
//!   cancel, results by `results_url`, find-after-crash, one request at a time for the
//!   synchronous lane);
//! - `sync`: one request line sent through the Messages API (`POST /v1/messages`), its answer
//!   a batch results line;
//! - `lines`: its request lines and id rules; [`translate`]: params to and from the common
//!   request;
//! - [`results`]: its result lines; [`reply`]: its result lines to and from the common result;
//! - `prices`: its list prices; below: its limits, built-in routes and registry entry.

pub mod client;
pub(crate) mod lines;
mod prices;
pub mod reply;
pub mod results;
mod sync;
pub mod translate;

pub use client::AnthropicProvider;

use super::Entry;
use crate::prompt::{Plain, PromptParts, Written};
use crate::provider::{Built, Dialect, Provider, Reject, Reply, Request, ResultFacts};
use crate::route::{
    BelowMinimum, ChunkLimits, DEFAULT_SANDBOX_URL, Defaults, KeySource, Retries, Route,
};
use crate::scan;
use secrecy::SecretString;
use std::sync::Arc;

/// The one endpoint of an Anthropic batch.
pub const MESSAGES: &str = "/v1/messages";
/// Prefix of the ids batchdrop sends for custom_ids Anthropic would refuse.
pub const MAPPED_ID_PREFIX: &str = "bd_";

/// The dialect of Anthropic batch lines.
#[derive(Debug)]
pub struct Anthropic;

pub(crate) static DIALECT: Anthropic = Anthropic;

/// The registry's entry.
pub(crate) static ENTRY: Entry = Entry {
    dialect: &DIALECT,
    prices: prices::PRICES,
    routes,
    client,
    finds_endpoint: false,
    batches: true,
};

fn client(route: &Route, key: Option<SecretString>) -> Result<Arc<dyn Provider>, String> {
    Ok(Arc::new(AnthropicProvider::new(&route.base_url, key)))
}

/// `sandbox-anthropic` (the sandbox's Anthropic side, no key) and `anthropic`
/// (`ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`).
fn routes(env: &dyn Fn(&str) -> Option<String>) -> Vec<(&'static str, Route)> {
    let defaults = Defaults {
        model: Some("claude-sonnet-4-5".into()),
        max_tokens: Some(1024),
        ..Defaults::default()
    };
    let route = |base_url: String, api_key: KeySource| Route {
        provider: DIALECT.name().to_string(),
        base_url,
        api_key,
        defaults: defaults.clone(),
        limits: DIALECT.limits(),
        retries: Retries::default(),
        max_batches_in_flight: None,
        role_arn: None,
        below_minimum: BelowMinimum::default(),
        max_concurrency: None,
        deadlines: Default::default(),
        requests_per_minute: None,
        tokens_per_minute: None,
        spend: Default::default(),
        reuse: Default::default(),
        webhook: None,
        webhook_in_secret: None,
        keep_provider_files: false,
        provider_file_days: None,
    };
    // The sandbox serves Anthropic's API at its root, OpenAI's under /v1.
    let sandbox_root = env("BATCHDROP_SANDBOX_URL")
        .unwrap_or_else(|| DEFAULT_SANDBOX_URL.into())
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .to_string();
    vec![
        ("sandbox-anthropic", route(sandbox_root, KeySource::None)),
        (
            "anthropic",
            route(
                env("ANTHROPIC_BASE_URL").unwrap_or_else(|| "https://api.anthropic.com".into()),
                KeySource::Env("ANTHROPIC_API_KEY".into()),
            ),
        ),
    ]
}

impl Dialect for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn title(&self) -> &'static str {
        "Anthropic"
    }

    /// 256 MB less room for the `{"requests":[…]}` wrapper around the lines.
    fn limits(&self) -> ChunkLimits {
        ChunkLimits {
            min_requests_per_batch: 1,
            max_requests_per_batch: 100_000,
            max_bytes_per_batch: 255_999_000,
            max_line_bytes: 16 << 20,
        }
    }

    fn line_shape(&self) -> &'static str {
        "an Anthropic batch line (custom_id, params)"
    }

    fn is_own_line(&self, line: &scan::Line<'_>) -> bool {
        crate::fields::given(line.params).is_some()
    }

    /// An id Anthropic refuses (or one starting with the reserved `bd_`) is sent as
    /// `bd_<line number>`.
    fn id_to_send(&self, custom_id: &str, line_no: u64) -> Option<String> {
        (!lines::safe_id(custom_id)).then(|| format!("{MAPPED_ID_PREFIX}{line_no}"))
    }

    fn own_line<'a>(
        &self,
        line: &'a [u8],
        fields: &scan::Line<'a>,
        set_id: Option<&str>,
        defaults: &Defaults,
    ) -> Result<Built<'a>, Reject> {
        lines::own_line(line, fields, set_id, defaults)
    }

    fn read_common(
        &self,
        fields: &scan::Line<'_>,
        target: &dyn Dialect,
    ) -> Result<Request, Reject> {
        lines::to_common(fields, target)
    }

    fn write_common(
        &self,
        request: Request,
        id: &str,
        defaults: &Defaults,
    ) -> Result<Built<'static>, Reject> {
        lines::from_common(request, id, defaults)
    }

    fn plain_prompt_line(
        &self,
        plain: &Plain<'_>,
        written: &Written,
        id: &str,
        _defaults: &Defaults,
    ) -> Option<Built<'static>> {
        lines::plain_prompt_line(plain, written, id)
    }

    fn prompt_line(
        &self,
        parts: PromptParts,
        id: &str,
        defaults: &Defaults,
    ) -> Result<Built<'static>, Reject> {
        lines::prompt_line(parts, id, defaults)
    }

    fn request_parts<'v>(&self, line: &'v serde_json::Value) -> (&'v str, &'v serde_json::Value) {
        (MESSAGES, &line["params"])
    }

    fn read_result(&self, line: &[u8]) -> Result<ResultFacts, serde_json::Error> {
        results::read(line)
    }

    fn missing_result(&self, custom_id: &str, code: &str, message: &str) -> Vec<u8> {
        results::missing(custom_id, code, message)
    }

    fn read_reply(&self, line: &[u8]) -> Option<Reply> {
        reply::read(line)
    }

    fn write_reply(&self, reply: &Reply) -> Vec<u8> {
        reply::write(reply)
    }
}
