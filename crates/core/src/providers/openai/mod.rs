//! OpenAI Files + Batches — and any OpenAI-compatible batch service, and the sandbox's OpenAI
//! side. Everything batchdrop knows of this provider is in this folder:
//! - [`client`]: the HTTP client (upload the chunk as a file, create, watch, cancel, download,
//!   and one request at a time for the synchronous lane); [`batch`]: the batch object it reads;
//! - `sync`: one request line sent through the synchronous API, its answer a batch output line
//!   (the OpenAI client's and `openai-sync`'s synchronous lane);
//! - `lines`: its request lines (the user's own, prompt lines, the common request's);
//!   [`translate`]: chat bodies to and from the common request;
//! - [`results`]: its result lines; [`reply`]: its result lines to and from the common result;
//! - `prices`: its list prices; below: its limits, built-in routes and registry entry.

pub mod batch;
pub mod client;
mod lines;
mod prices;
pub mod reply;
pub mod results;
pub(crate) mod sync;
pub mod translate;

pub use client::OpenAiProvider;

use super::Entry;
use crate::prompt::{Plain, PromptParts, Written};
use crate::provider::{BatchError, Built, Dialect, Provider, Reject, Reply, Request, ResultFacts};
use crate::route::{
    BelowMinimum, ChunkLimits, DEFAULT_SANDBOX_URL, Defaults, KeySource, Retries, Route,
};
use crate::scan;
use secrecy::SecretString;
use std::sync::Arc;

pub const CHAT_COMPLETIONS: &str = "/v1/chat/completions";
pub const EMBEDDINGS: &str = "/v1/embeddings";
/// Endpoints an OpenAI batch accepts (text ones).
pub const ENDPOINTS: &[&str] = &[
    CHAT_COMPLETIONS,
    "/v1/responses",
    EMBEDDINGS,
    "/v1/completions",
    "/v1/moderations",
];

/// The dialect of OpenAI batch lines.
#[derive(Debug)]
pub struct OpenAi;

pub(crate) static DIALECT: OpenAi = OpenAi;

/// The registry's entry.
pub(crate) static ENTRY: Entry = Entry {
    dialect: &DIALECT,
    prices: prices::PRICES,
    routes,
    client,
    finds_endpoint: false,
    batches: true,
};

/// OpenAI's own API.
const OPENAI_URL: &str = "https://api.openai.com/v1";
/// Days OpenAI keeps the files of the built-in routes' batches (its longest).
const PROVIDER_FILE_DAYS: u32 = 30;

fn client(route: &Route, key: Option<SecretString>) -> Result<Arc<dyn Provider>, String> {
    Ok(Arc::new(
        OpenAiProvider::new(&route.base_url, key).with_file_days(route.provider_file_days),
    ))
}

/// `sandbox` (the local sandbox, no key) and `openai` (`OPENAI_API_KEY`, `OPENAI_BASE_URL`).
fn routes(env: &dyn Fn(&str) -> Option<String>) -> Vec<(&'static str, Route)> {
    let defaults = Defaults {
        model: Some("gpt-4o-mini".into()),
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
    let openai_url = env("OPENAI_BASE_URL").unwrap_or_else(|| OPENAI_URL.into());
    vec![
        (
            "sandbox",
            Route {
                provider_file_days: Some(PROVIDER_FILE_DAYS),
                ..route(
                    env("BATCHDROP_SANDBOX_URL").unwrap_or_else(|| DEFAULT_SANDBOX_URL.into()),
                    KeySource::None,
                )
            },
        ),
        (
            "openai",
            Route {
                // The project's webhook secret, when set: its batch webhooks are taken.
                webhook_in_secret: Some(KeySource::Env("OPENAI_WEBHOOK_SECRET".into())),
                // OpenAI itself takes file expiry; a compatible service elsewhere may not.
                provider_file_days: (openai_url == OPENAI_URL).then_some(PROVIDER_FILE_DAYS),
                ..route(openai_url.clone(), KeySource::Env("OPENAI_API_KEY".into()))
            },
        ),
    ]
}

impl Dialect for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn title(&self) -> &'static str {
        "OpenAI"
    }

    fn limits(&self) -> ChunkLimits {
        ChunkLimits {
            min_requests_per_batch: 1,
            max_requests_per_batch: 50_000,
            max_bytes_per_batch: 200_000_000,
            max_line_bytes: 16 << 20,
        }
    }

    fn line_shape(&self) -> &'static str {
        "an OpenAI batch line (custom_id, method, url, body)"
    }

    fn is_own_line(&self, line: &scan::Line<'_>) -> bool {
        crate::fields::given(line.body).is_some() || crate::fields::given(line.url).is_some()
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
        defaults: &Defaults,
    ) -> Option<Built<'static>> {
        lines::plain_prompt_line(plain, written, id, defaults)
    }

    fn prompt_line(
        &self,
        parts: PromptParts,
        id: &str,
        defaults: &Defaults,
    ) -> Result<Built<'static>, Reject> {
        lines::prompt_line(parts, id, defaults)
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

    fn request_parts<'v>(&self, line: &'v serde_json::Value) -> (&'v str, &'v serde_json::Value) {
        (line["url"].as_str().unwrap_or(""), &line["body"])
    }

    fn public_tokenizer(&self) -> bool {
        true
    }

    /// OpenAI fails a batch with `token_limit_exceeded` when the organisation's enqueued-token
    /// limit is full.
    fn is_capacity_refusal(&self, error: &BatchError) -> bool {
        error.code == "token_limit_exceeded"
    }
}
