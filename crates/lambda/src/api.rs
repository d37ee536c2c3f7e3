//! The API function's state: batchdrop's Batch API (`batchdrop_api::router`) over the
//! bucket, built once per cold start from the same settings as the other functions ([`App`])
//! plus the keys file.
//!
//! Environment, besides [`App::from_env`]'s:
//! - `BATCHDROP_BUCKET` (required): the bucket the API's files and batches live in;
//! - `BATCHDROP_API_KEYS_SECRET_ARN`: a Secrets Manager secret whose string is the keys file
//!   (TOML, tenants with the SHA-256 of their keys: see `batchdrop_api::auth`); or
//! - `BATCHDROP_API_KEYS`: the keys file's text itself (emulators and tests). Exactly one of
//!   the two must be set.
//!
//! Downloads of objects served as they are redirect to presigned S3 URLs valid
//! [`DOWNLOAD_URL_VALIDITY`] (a Lambda response is capped at 6 MB). The API starts and
//! cancels jobs; the poll function advances them (they live in the same bucket).

use crate::{App, HandlerError, lambda_env};
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use batchdrop_api::auth::Keys;
use batchdrop_api::{ApiState, DOWNLOAD_URL_VALIDITY, router};
use std::sync::Arc;

/// The variable naming the secret that holds the keys file.
pub const KEYS_SECRET_ARN_VAR: &str = "BATCHDROP_API_KEYS_SECRET_ARN";
/// The variable holding the keys file's text.
pub const KEYS_VAR: &str = "BATCHDROP_API_KEYS";

/// Where the keys file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysSource {
    Secret(String),
    Inline(String),
}

impl KeysSource {
    /// The source `env` names: exactly one of [`KEYS_SECRET_ARN_VAR`] and [`KEYS_VAR`].
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<KeysSource, HandlerError> {
        KeysSource::if_set(env)?.ok_or_else(|| HandlerError::Config(format!(
            "the API needs its keys file: set {KEYS_SECRET_ARN_VAR} (a Secrets Manager secret holding it) or {KEYS_VAR} (its text)"
        )))
    }

    /// The same, None when neither is set (a deployment without the Batch API).
    pub fn if_set(
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<KeysSource>, HandlerError> {
        match (env(KEYS_SECRET_ARN_VAR), env(KEYS_VAR)) {
            (Some(arn), None) => Ok(Some(KeysSource::Secret(arn.trim().to_string()))),
            (None, Some(text)) => Ok(Some(KeysSource::Inline(text))),
            (Some(_), Some(_)) => Err(HandlerError::Config(format!(
                "set one of {KEYS_SECRET_ARN_VAR} and {KEYS_VAR}, not both"
            ))),
            (None, None) => Ok(None),
        }
    }
}

/// Reads and checks the keys file, from Secrets Manager through `client` when it is a secret.
pub async fn read_keys(
    source: &KeysSource,
    client: impl FnOnce() -> aws_sdk_secretsmanager::Client,
) -> Result<Keys, HandlerError> {
    let (text, origin) = match source {
        KeysSource::Inline(text) => (text.clone(), KEYS_VAR.to_string()),
        KeysSource::Secret(arn) => {
            let text = crate::secrets::fetch_string(&client(), arn).await?;
            (text, format!("secret {arn}"))
        }
    };
    let keys = Keys::from_toml(&text)
        .map_err(|e| HandlerError::Config(format!("keys file ({origin}): {e}")))?;
    if keys.is_empty() {
        return Err(HandlerError::Config(format!(
            "keys file ({origin}) lists no tenant: no request could be served"
        )));
    }
    Ok(keys)
}

/// The tenants' webhook signing secrets kept in Secrets Manager (`webhook_secret_arn`), by
/// ARN. One that cannot be read is left out, with a warning: that tenant's webhooks fail (and
/// say why in `batchdrop status`), and no other tenant's job is held up by it.
pub async fn tenant_webhook_secrets(
    keys: &Keys,
    client: &aws_sdk_secretsmanager::Client,
) -> std::collections::BTreeMap<String, secrecy::SecretString> {
    let mut secrets = std::collections::BTreeMap::new();
    for (tenant, hook) in keys.webhooks() {
        let batchdrop_core::config::KeySource::Secret(arn) = &hook.secret else {
            continue;
        };
        if secrets.contains_key(arn) {
            continue;
        }
        match crate::secrets::fetch_string(client, arn).await {
            Ok(text) => {
                secrets.insert(
                    arn.clone(),
                    secrecy::SecretString::from(text.trim().to_string()),
                );
            }
            Err(e) => tracing::warn!(tenant, error = %e, "the tenant's webhooks will fail"),
        }
    }
    secrets
}

impl App {
    /// The API's state over the app's bucket (`BATCHDROP_BUCKET`): its store, routes and
    /// engine (whose job events go to the app's completions), `keys`, and downloads
    /// redirected.
    pub fn api_state(&self, keys: Keys) -> Result<ApiState, HandlerError> {
        let bucket = self
            .bucket
            .as_deref()
            .ok_or_else(|| HandlerError::Config("BATCHDROP_BUCKET is not set".into()))?;
        let engine = self.engine(bucket);
        Ok(ApiState {
            store: engine.store().clone(),
            engine,
            config: self.config.clone(),
            keys: Arc::new(keys),
            clock: self.clock.clone(),
            download_redirects: Some(DOWNLOAD_URL_VALIDITY),
        })
    }

    /// The API's router over [`Self::api_state`]; each request's job events are flushed
    /// (metrics, completion events) before its response goes.
    pub fn api_router(self: &Arc<Self>, keys: Keys) -> Result<Router, HandlerError> {
        let state = self.api_state(keys)?;
        Ok(router(state).layer(middleware::from_fn_with_state(self.clone(), flush_after)))
    }

    /// Everything the API function needs, from the environment; fails before serving if
    /// anything is off (no bucket, no keys, a keys file that does not parse).
    pub async fn api_from_env() -> Result<Router, HandlerError> {
        KeysSource::from_env(&lambda_env)?;
        if lambda_env("BATCHDROP_BUCKET").is_none() {
            return Err(HandlerError::Config(
                "BATCHDROP_BUCKET is not set: the API needs the bucket its files and batches live in"
                    .into(),
            ));
        }
        let app = Arc::new(App::from_env().await?);
        let keys = app
            .keys
            .clone()
            .ok_or_else(|| HandlerError::Config("the keys file was not read".into()))?;
        tracing::info!(tenants = keys.len(), "API keys file read");
        app.api_router(keys)
    }
}

/// Serves the request under its invocation's deadline (planning stops in time and the poll
/// function carries it on), then flushes its job events (metrics, completion events).
async fn flush_after(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let deadline = request
        .extensions()
        .get::<lambda_runtime::Context>()
        .and_then(|context| crate::usable_deadline(Some(context.deadline), app.clock.now()));
    let response = match deadline {
        Some(deadline) => batchdrop_api::within_deadline(deadline, next.run(request)).await,
        None => next.run(request).await,
    };
    app.completions.flush().await;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_keys_come_from_exactly_one_source() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:keys-AbCdEf";
        assert_eq!(
            KeysSource::from_env(&env_with(&[(KEYS_SECRET_ARN_VAR, arn)])).ok(),
            Some(KeysSource::Secret(arn.into()))
        );
        assert_eq!(
            KeysSource::from_env(&env_with(&[(KEYS_VAR, "[[tenant]]")])).ok(),
            Some(KeysSource::Inline("[[tenant]]".into()))
        );
        let both = KeysSource::from_env(&env_with(&[(KEYS_VAR, "x"), (KEYS_SECRET_ARN_VAR, arn)]));
        assert!(matches!(both, Err(HandlerError::Config(m)) if m.contains("not both")));
        let none = KeysSource::from_env(&env_with(&[]));
        assert!(matches!(none, Err(HandlerError::Config(m)) if m.contains(KEYS_SECRET_ARN_VAR)));
    }

    #[tokio::test]
    async fn a_keys_file_that_does_not_parse_or_names_no_tenant_stops_the_cold_start() {
        let unused = || unreachable!("an inline keys file reads no secret");
        let bad = read_keys(&KeysSource::Inline("[[tenant]]\nname = 3".into()), unused).await;
        assert!(
            matches!(&bad, Err(HandlerError::Config(m)) if m.contains(KEYS_VAR)),
            "{bad:?}"
        );
        let empty = read_keys(&KeysSource::Inline(String::new()), unused).await;
        assert!(
            matches!(&empty, Err(HandlerError::Config(m)) if m.contains("no tenant")),
            "{empty:?}"
        );
    }
}
