//! The providers batchdrop can send batches to, one folder each, and the registry that maps the
//! names routes use (`provider = "openai"`) to them. Adding a provider is adding its folder
//! (its client behind [`crate::provider::Provider`], its dialect behind
//! [`crate::provider::Dialect`], its prices and built-in routes, all in one [`Entry`]) and one
//! line to [`REGISTRY`]. Nothing outside this folder names a provider.
//!
//! - [`openai`]: OpenAI Files + Batches (and OpenAI-compatible services, the sandbox);
//! - [`anthropic`]: Anthropic Message Batches;
//! - [`bedrock`]: AWS Bedrock batch inference (model invocation jobs over the bucket);
//! - [`openai_sync`]: any OpenAI-compatible server without a batch API (the synchronous lane);
//! - `chat`, `http`, [`retry`]: what the HTTP chat providers share.
//!
//! API keys are [`secrecy::SecretString`]s: sent in a header and nowhere else — not in
//! `Debug`, logs or errors.

pub mod anthropic;
pub mod bedrock;
mod chat;
pub(crate) mod http;
pub mod openai;
pub mod openai_sync;
pub mod retry;

pub use anthropic::AnthropicProvider;
pub use bedrock::BedrockProvider;
pub use openai::OpenAiProvider;
pub use openai_sync::OpenAiSyncProvider;
pub use retry::RetryPolicy;

use crate::provider::{Dialect, Provider};
use crate::route::{KeySource, Route};
use crate::types::ListPrice;
use secrecy::SecretString;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Built-in routes of a provider, given the environment (for base URLs).
pub type BuiltinRoutes = fn(&dyn Fn(&str) -> Option<String>) -> Vec<(&'static str, Route)>;

/// A provider's client for a route, given its key; `Err` says why the route cannot be used.
pub type MakeClient = fn(&Route, Option<SecretString>) -> Result<Arc<dyn Provider>, String>;

/// What the registry knows of one provider.
pub struct Entry {
    /// Its formats; its `name()` is the registry name.
    pub dialect: &'static dyn Dialect,
    /// Its models' list prices.
    pub prices: &'static [ListPrice],
    /// Its built-in routes, with base URLs from the standard environment variables.
    pub routes: BuiltinRoutes,
    /// Its client for a route, with the route's key (None where it takes none); `Err` says why
    /// the route cannot be used.
    pub client: MakeClient,
    /// Whether its client finds its endpoint itself when a route's `base_url` is empty (the
    /// AWS SDK's endpoint resolution); otherwise `base_url` is required.
    pub finds_endpoint: bool,
    /// Whether it has a batch API. Without one every chunk goes through the synchronous lane,
    /// request by request ([`crate::provider::Provider::invoke`]).
    pub batches: bool,
}

/// Every provider, in the order lines are tried against their batch-line shapes.
pub static REGISTRY: &[&Entry] = &[
    &openai::ENTRY,
    &anthropic::ENTRY,
    &bedrock::ENTRY,
    &openai_sync::ENTRY,
];

/// A provider name no entry has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider {name:?}; known providers: {}", names().join(", "))]
pub struct UnknownProvider {
    pub name: String,
}

/// The entry named `name`.
pub fn get(name: &str) -> Result<&'static Entry, UnknownProvider> {
    REGISTRY
        .iter()
        .copied()
        .find(|e| e.dialect.name() == name)
        .ok_or_else(|| UnknownProvider {
            name: name.to_string(),
        })
}

/// The dialect of the provider named `name`.
pub fn dialect(name: &str) -> Result<&'static dyn Dialect, UnknownProvider> {
    get(name).map(|e| e.dialect)
}

/// Every provider's dialect, in registry order.
pub fn dialects() -> Vec<&'static dyn Dialect> {
    REGISTRY.iter().map(|e| e.dialect).collect()
}

/// Every provider's name, in registry order.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|e| e.dialect.name()).collect()
}

/// The clients of every route, keys resolved from `env` now (once, at start). A route whose
/// key is missing maps to the reason, so only jobs on it fail. Keys from Secrets Manager are
/// not read here (see [`clients_with_secrets`]): such a route is unavailable.
pub fn clients(
    routes: &BTreeMap<String, Route>,
    env: &dyn Fn(&str) -> Option<String>,
) -> HashMap<String, Result<Arc<dyn Provider>, String>> {
    clients_with_secrets(routes, env, &|_| None)
}

/// As [`clients`], with `secret` giving the key held by a Secrets Manager secret (by ARN) for
/// routes whose key is [`KeySource::Secret`]; `None` makes the route unavailable.
pub fn clients_with_secrets(
    routes: &BTreeMap<String, Route>,
    env: &dyn Fn(&str) -> Option<String>,
    secret: &dyn Fn(&str) -> Option<SecretString>,
) -> HashMap<String, Result<Arc<dyn Provider>, String>> {
    routes
        .iter()
        .map(|(name, route)| {
            let key = match &route.api_key {
                KeySource::None => Ok(None),
                KeySource::Env(var) => match env(var) {
                    Some(v) if !v.is_empty() => Ok(Some(SecretString::from(v))),
                    _ => Err(format!("environment variable {var} is not set")),
                },
                KeySource::Secret(arn) => match secret(arn) {
                    Some(key) => Ok(Some(key)),
                    None => Err(format!(
                        "the API key in Secrets Manager ({arn}) was not read: secrets are read by the Lambda functions; elsewhere use api_key_env"
                    )),
                },
            };
            let client = key.and_then(|key| {
                let entry = get(&route.provider).map_err(|e| e.to_string())?;
                (entry.client)(route, key)
            });
            (name.clone(), client)
        })
        .collect()
}
