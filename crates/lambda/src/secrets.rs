//! Provider API keys from AWS Secrets Manager, read once per cold start.
//!
//! A route's key comes from a secret in two ways:
//! - the config names it: `api_key_secret = "arn:aws:secretsmanager:…"` (`KeySource::Secret`);
//! - the deployment names it: a route whose key comes from the environment variable `VAR`
//!   (`KeySource::Env`) reads the secret named by `VAR_SECRET_ARN` instead when that is set
//!   and not empty. The built-in routes read `OPENAI_API_KEY` and `ANTHROPIC_API_KEY`, so the
//!   SAM template sets `OPENAI_API_KEY_SECRET_ARN` / `ANTHROPIC_API_KEY_SECRET_ARN`.
//!
//! Routes' webhook signing secrets (`webhook_secret_arn`, or `webhook_secret_env = "VAR"` with
//! `VAR_SECRET_ARN` set) are read the same way, as plain `whsec_…` strings.
//!
//! A secret holds the key as a plain string, or as a JSON object `{"api_key": "…"}`. Keys are
//! held as [`SecretString`]s from the moment they leave the SDK's response; no error or log
//! line carries a secret's value (only its ARN). A secret that is configured but cannot be
//! read fails the cold start: the function does not serve with a key missing.

use batchdrop_core::config::{Config, KeySource};
use secrecy::SecretString;
use std::collections::{BTreeMap, BTreeSet};

/// The suffix that turns a key variable's name into the name of the variable holding the ARN
/// of the secret to read it from (`OPENAI_API_KEY` → `OPENAI_API_KEY_SECRET_ARN`).
pub const SECRET_ARN_SUFFIX: &str = "_SECRET_ARN";

/// Why a configured secret gave no key. Never carries the secret's value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret {arn}: {message}")]
    Fetch {
        arn: String,
        /// The SDK's error, with its context (no secret value is ever part of it).
        message: String,
        retryable: bool,
    },
    #[error("secret {arn} has no SecretString (binary secrets are not supported)")]
    NotAString { arn: String },
    #[error("secret {arn} is empty")]
    Empty { arn: String },
    #[error(
        "secret {arn} is a JSON object without a non-empty string field \"api_key\" (store the key alone, or as {{\"api_key\": \"…\"}})"
    )]
    NoApiKey { arn: String },
}

impl SecretError {
    /// Whether a later cold start may succeed without a change of configuration.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SecretError::Fetch {
                retryable: true,
                ..
            }
        )
    }
}

/// Points every secret reference of the routes (API keys, webhook signing secrets out and
/// in) whose variable `VAR` has a non-empty `VAR_SECRET_ARN` at that secret, and returns the
/// ARNs of every secret the routes now need, once each.
pub fn secret_key_sources(
    config: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> BTreeSet<String> {
    let mut arns = BTreeSet::new();
    for route in config.routes.values_mut() {
        point_at_secret(&mut route.api_key, env, &mut arns);
        if let Some(hook) = route.webhook.as_mut() {
            point_at_secret(&mut hook.secret, env, &mut arns);
        }
        if let Some(source) = route.webhook_in_secret.as_mut() {
            point_at_secret(source, env, &mut arns);
        }
    }
    arns
}

/// `source` from the variable `VAR` becomes the secret named by a non-empty
/// `VAR_SECRET_ARN`; a secret's ARN goes into `arns`.
fn point_at_secret(
    source: &mut KeySource,
    env: &dyn Fn(&str) -> Option<String>,
    arns: &mut BTreeSet<String>,
) {
    if let KeySource::Env(var) = source
        && let Some(arn) = env(&format!("{var}{SECRET_ARN_SUFFIX}"))
        && !arn.trim().is_empty()
    {
        *source = KeySource::Secret(arn.trim().to_string());
    }
    if let KeySource::Secret(arn) = source {
        arns.insert(arn.clone());
    }
}

/// The API key a secret's `SecretString` holds: the whole string (trimmed), or the `api_key`
/// field of a JSON object.
pub fn key_from_secret_string(arn: &str, value: String) -> Result<SecretString, SecretError> {
    let value = SecretString::from(value);
    let text = secrecy::ExposeSecret::expose_secret(&value).trim();
    if text.is_empty() {
        return Err(SecretError::Empty { arn: arn.into() });
    }
    if text.starts_with('{') {
        // Parsed into a map, never into a typed struct: serde's messages quote the values
        // they did not expect, and those may be the key.
        let key = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
            .ok()
            .and_then(|mut doc| match doc.remove("api_key") {
                Some(serde_json::Value::String(k)) if !k.trim().is_empty() => {
                    Some(SecretString::from(k.trim().to_string()))
                }
                _ => None,
            });
        return key.ok_or_else(|| SecretError::NoApiKey { arn: arn.into() });
    }
    Ok(SecretString::from(text.to_string()))
}

/// Reads each secret once with `client`, in ARN order; the first failure stops the cold start.
pub async fn fetch_keys(
    client: &aws_sdk_secretsmanager::Client,
    arns: &BTreeSet<String>,
) -> Result<BTreeMap<String, SecretString>, SecretError> {
    let mut keys = BTreeMap::new();
    for arn in arns {
        let value = fetch_string(client, arn).await?;
        keys.insert(arn.clone(), key_from_secret_string(arn, value)?);
        tracing::info!(secret = %arn, "API key read from Secrets Manager");
    }
    Ok(keys)
}

/// The `SecretString` of one secret (the API function's keys file is one).
pub async fn fetch_string(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<String, SecretError> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| SecretError::Fetch {
            arn: arn.to_string(),
            retryable: is_retryable(&e),
            message: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
        })?;
    out.secret_string.ok_or_else(|| SecretError::NotAString {
        arn: arn.to_string(),
    })
}

fn is_retryable<E, R>(e: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata,
{
    use aws_sdk_secretsmanager::error::SdkError;
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(s) => matches!(
            s.err().code(),
            Some("InternalServiceError" | "ThrottlingException" | "RequestLimitExceeded")
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:openai-AbCdEf";

    fn env_with<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_plain_secret_string_is_the_key_trimmed() -> Result<(), SecretError> {
        let key = key_from_secret_string(ARN, "  sk-plain-123\n".into())?;
        assert_eq!(key.expose_secret(), "sk-plain-123");
        Ok(())
    }

    #[test]
    fn a_json_secret_gives_its_api_key_field() -> Result<(), SecretError> {
        let key = key_from_secret_string(ARN, r#"{"api_key": "sk-json-456", "note": "x"}"#.into())?;
        assert_eq!(key.expose_secret(), "sk-json-456");
        Ok(())
    }

    #[test]
    fn a_json_secret_without_api_key_is_refused_without_echoing_it() {
        let err = key_from_secret_string(ARN, r#"{"OPENAI_API_KEY": "sk-hidden-789"}"#.into())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("api_key") && err.contains(ARN), "{err}");
        assert!(!err.contains("sk-hidden-789"), "{err}");
        let err = key_from_secret_string(ARN, r#"{"api_key": 97531}"#.into())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!err.contains("97531"), "{err}");
    }

    #[test]
    fn an_empty_secret_is_refused() {
        assert!(matches!(
            key_from_secret_string(ARN, " \n".into()),
            Err(SecretError::Empty { .. })
        ));
    }

    #[test]
    fn a_key_variable_with_a_secret_arn_variable_reads_the_secret() {
        let mut config = Config::builtin(&|_| None);
        let arns = secret_key_sources(
            &mut config,
            &env_with(&[
                ("OPENAI_API_KEY_SECRET_ARN", ARN),
                ("ANTHROPIC_API_KEY_SECRET_ARN", ""),
            ]),
        );
        assert_eq!(arns.into_iter().collect::<Vec<_>>(), vec![ARN.to_string()]);
        assert_eq!(
            config.routes["openai"].api_key,
            KeySource::Secret(ARN.into())
        );
        assert_eq!(
            config.routes["anthropic"].api_key,
            KeySource::Env("ANTHROPIC_API_KEY".into())
        );
        assert_eq!(config.routes["sandbox"].api_key, KeySource::None);
    }

    #[test]
    fn a_webhook_secret_variable_with_a_secret_arn_variable_reads_the_secret()
    -> Result<(), Box<dyn std::error::Error>> {
        let toml = "[routes.sandbox]\nwebhook_url = \"https://h.example/x\"\nwebhook_secret_env = \"BATCHDROP_WEBHOOK_SECRET\"\n";
        let mut config = Config::from_toml(toml, "test.toml", &|_| None)?;
        let arns = secret_key_sources(
            &mut config,
            &env_with(&[("BATCHDROP_WEBHOOK_SECRET_SECRET_ARN", ARN)]),
        );
        assert!(arns.contains(ARN));
        let hook = config.routes["sandbox"]
            .webhook
            .clone()
            .ok_or("no webhook")?;
        assert_eq!(hook.secret, KeySource::Secret(ARN.into()));
        Ok(())
    }

    #[test]
    fn a_route_naming_a_secret_needs_it_once() -> Result<(), Box<dyn std::error::Error>> {
        let toml = format!(
            "[routes.a]\nprovider = \"openai\"\nbase_url = \"http://x/v1\"\napi_key_secret = \"{ARN}\"\n\
             [routes.b]\nprovider = \"openai\"\nbase_url = \"http://y/v1\"\napi_key_secret = \"{ARN}\"\n"
        );
        let mut config = Config::from_toml(&toml, "test.toml", &|_| None)?;
        let arns = secret_key_sources(&mut config, &|_| None);
        assert_eq!(arns.len(), 1);
        Ok(())
    }
}
