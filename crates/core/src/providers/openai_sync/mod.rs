//! Any OpenAI-compatible server without a batch API (vLLM, SGLang, llama.cpp, Ollama, TGI, a
//! LiteLLM proxy; the sandbox's `/v1/chat/completions`): every chunk goes through the
//! synchronous lane, one request at a time per slot (`Provider::invoke`, the engine's
//! `on_demand`). Its lines are OpenAI batch lines and its result lines OpenAI's batch output
//! lines, so a file dropped here gives the same output.jsonl as the OpenAI Batch API.
//! - [`client`]: the HTTP client (`POST {base_url}/chat/completions`, …);
//! - below: its dialect (OpenAI's, under its own name), built-in route and registry entry.
//!   Prices: a self-hosted model has none built in; give the route's model a
//!   `[prices."model"]` entry (0 for your own hardware) to see a cost.

pub mod client;

pub use client::OpenAiSyncProvider;

use super::Entry;
use super::openai::DIALECT as OPENAI;
use crate::prompt::{Plain, PromptParts, Written};
use crate::provider::{BatchError, Built, Dialect, Provider, Reject, Reply, Request, ResultFacts};
use crate::route::{
    BelowMinimum, ChunkLimits, DEFAULT_SANDBOX_URL, Defaults, KeySource, Retries, Route,
};
use crate::scan;
use secrecy::SecretString;
use std::sync::Arc;

/// The dialect of an OpenAI-compatible server: OpenAI's lines, its own name.
#[derive(Debug)]
pub struct OpenAiSync;

pub(crate) static DIALECT: OpenAiSync = OpenAiSync;

/// The registry's entry: no batch API.
pub(crate) static ENTRY: Entry = Entry {
    dialect: &DIALECT,
    prices: &[],
    routes,
    client,
    finds_endpoint: false,
    batches: false,
};

fn client(route: &Route, key: Option<SecretString>) -> Result<Arc<dyn Provider>, String> {
    Ok(Arc::new(OpenAiSyncProvider::new(&route.base_url, key)))
}

/// `sandbox-sync`: the sandbox's synchronous OpenAI endpoints, no key. A route of your own
/// server needs `base_url` (and `api_key_env` if it takes a key).
fn routes(env: &dyn Fn(&str) -> Option<String>) -> Vec<(&'static str, Route)> {
    let base_url = env("BATCHDROP_SANDBOX_URL").unwrap_or_else(|| DEFAULT_SANDBOX_URL.into());
    vec![(
        "sandbox-sync",
        Route {
            provider: DIALECT.name().to_string(),
            base_url,
            api_key: KeySource::None,
            defaults: Defaults {
                model: Some("gpt-4o-mini".into()),
                ..Defaults::default()
            },
            limits: DIALECT.limits(),
            retries: Retries::default(),
            max_batches_in_flight: None,
            role_arn: None,
            below_minimum: BelowMinimum::OnDemand,
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
        },
    )]
}

impl Dialect for OpenAiSync {
    fn name(&self) -> &'static str {
        "openai-sync"
    }

    fn format(&self) -> &'static str {
        OPENAI.name()
    }

    fn title(&self) -> &'static str {
        "an OpenAI-compatible server"
    }

    /// OpenAI's: a chunk is a unit of work here, not a batch the server takes.
    fn limits(&self) -> ChunkLimits {
        OPENAI.limits()
    }

    fn line_shape(&self) -> &'static str {
        OPENAI.line_shape()
    }

    /// Its lines are told as OpenAI's (the registry tries OpenAI first).
    fn is_own_line(&self, _line: &scan::Line<'_>) -> bool {
        false
    }

    fn own_line<'a>(
        &self,
        line: &'a [u8],
        fields: &scan::Line<'a>,
        set_id: Option<&str>,
        defaults: &Defaults,
    ) -> Result<Built<'a>, Reject> {
        OPENAI.own_line(line, fields, set_id, defaults)
    }

    fn read_common(
        &self,
        fields: &scan::Line<'_>,
        target: &dyn Dialect,
    ) -> Result<Request, Reject> {
        OPENAI.read_common(fields, target)
    }

    fn write_common(
        &self,
        request: Request,
        id: &str,
        defaults: &Defaults,
    ) -> Result<Built<'static>, Reject> {
        OPENAI.write_common(request, id, defaults)
    }

    fn plain_prompt_line(
        &self,
        plain: &Plain<'_>,
        written: &Written,
        id: &str,
        defaults: &Defaults,
    ) -> Option<Built<'static>> {
        OPENAI.plain_prompt_line(plain, written, id, defaults)
    }

    fn prompt_line(
        &self,
        parts: PromptParts,
        id: &str,
        defaults: &Defaults,
    ) -> Result<Built<'static>, Reject> {
        OPENAI.prompt_line(parts, id, defaults)
    }

    fn read_result(&self, line: &[u8]) -> Result<ResultFacts, serde_json::Error> {
        OPENAI.read_result(line)
    }

    fn missing_result(&self, custom_id: &str, code: &str, message: &str) -> Vec<u8> {
        OPENAI.missing_result(custom_id, code, message)
    }

    fn read_reply(&self, line: &[u8]) -> Option<Reply> {
        OPENAI.read_reply(line)
    }

    fn write_reply(&self, reply: &Reply) -> Vec<u8> {
        OPENAI.write_reply(reply)
    }

    fn request_parts<'v>(&self, line: &'v serde_json::Value) -> (&'v str, &'v serde_json::Value) {
        OPENAI.request_parts(line)
    }

    fn public_tokenizer(&self) -> bool {
        OPENAI.public_tokenizer()
    }

    fn is_capacity_refusal(&self, error: &BatchError) -> bool {
        OPENAI.is_capacity_refusal(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{Outcome, Validator};

    fn route() -> Route {
        routes(&|_| None).remove(0).1
    }

    #[test]
    fn an_openai_batch_line_passes_through_byte_for_byte() {
        let line: &[u8] = br#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"llama-3","messages":[{"role":"user","content":"hi"}]},"x":1}"#;
        let mut v = Validator::new(&route(), &DIALECT);
        let Outcome::Accepted(a) = v.check(1, line) else {
            panic!("rejected")
        };
        assert_eq!(&*a.request, line);
    }

    #[test]
    fn an_anthropic_line_is_translated_to_an_openai_line() {
        let line: &[u8] = br#"{"custom_id":"a","params":{"model":"claude-x","max_tokens":9,"messages":[{"role":"user","content":"hi"}]}}"#;
        let mut v = Validator::new(&route(), &DIALECT);
        let Outcome::Accepted(a) = v.check(1, line) else {
            panic!("rejected")
        };
        let sent: serde_json::Value = serde_json::from_slice(&a.request).unwrap_or_default();
        assert_eq!(sent["url"], "/v1/chat/completions");
        assert_eq!(sent["body"]["max_tokens"], 9);
    }
}
