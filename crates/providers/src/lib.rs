//! batchdrop's batch providers, behind the core's `Provider` port:
//! - [`OpenAiProvider`]: OpenAI Files + Batches, any OpenAI-compatible service, the sandbox;
//! - [`AnthropicProvider`]: Anthropic Message Batches, and the sandbox's Anthropic side.
//!
//! API keys are [`secrecy::SecretString`]s: sent in a header and nowhere else — not in
//! `Debug`, logs or errors.

mod anthropic;
mod http;
mod openai;
mod retry;

pub use anthropic::AnthropicProvider;
pub use openai::OpenAiProvider;
pub use retry::RetryPolicy;

use batchdrop_core::config::{Config, KeySource, Wire};
use batchdrop_core::provider::Provider;
use secrecy::SecretString;
use std::collections::HashMap;
use std::sync::Arc;

/// The providers of every route of `config`, keys resolved from `env` now (once, at start).
/// A route whose key is missing maps to the reason, so only jobs on it fail. Keys from
/// Secrets Manager are not read here (see [`providers_with_secrets`]): such a route is
/// unavailable.
pub fn providers_for(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> HashMap<String, Result<Arc<dyn Provider>, String>> {
    providers_with_secrets(config, env, &|_| None)
}

/// As [`providers_for`], with `secret` giving the key held by a Secrets Manager secret (by
/// ARN) for routes whose key is [`KeySource::Secret`]; `None` makes the route unavailable.
pub fn providers_with_secrets(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
    secret: &dyn Fn(&str) -> Option<SecretString>,
) -> HashMap<String, Result<Arc<dyn Provider>, String>> {
    config
        .routes
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
            let provider = key.map(|key| match route.wire {
                Wire::Openai => {
                    Arc::new(OpenAiProvider::new(&route.base_url, key)) as Arc<dyn Provider>
                }
                Wire::Anthropic => {
                    Arc::new(AnthropicProvider::new(&route.base_url, key)) as Arc<dyn Provider>
                }
            });
            (name.clone(), provider)
        })
        .collect()
}
