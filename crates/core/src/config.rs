//! Configuration: the routes a file can be dropped under, read once at start.
//!
//! The same TOML file serves local mode and the Lambda functions (`BATCHDROP_CONFIG` names it).
//! Secrets appear only by reference: the name of an environment variable or a Secrets Manager
//! ARN, never the key itself.
//!
//! ```toml
//! [routes.sandbox]                 # overrides fields of the built-in route
//! max_requests_per_batch = 1000
//!
//! [routes.labelling]               # a new route
//! provider = "openai"              # a registered provider (see `providers`): openai, anthropic, bedrock
//! base_url = "https://api.openai.com/v1"
//! api_key_env = "OPENAI_API_KEY"   # or api_key_secret = "arn:aws:secretsmanager:…"
//! max_bytes_per_batch = 100_000_000
//! max_line_bytes = 1_000_000
//! max_attempts = 3                 # per request, retries of 429/5xx/expired included
//! max_batches_in_flight = 4        # across jobs of this route
//! min_requests_per_batch = 100     # a provider's minimum (Bedrock's: 100); smaller chunks
//! below_minimum = "on_demand"      #   go one by one on demand, or "fail"
//! role_arn = "arn:aws:iam::…"      # Bedrock: the service role its jobs run as
//! max_concurrency = 16             # requests at once when chunks go request by request
//! requests_per_minute = 600        #   (adaptive, up to this); at most this many started a
//! tokens_per_minute = 200_000      #   minute, and this many tokens (bytes/4 + max_tokens)
//! deadline_hours = 6               # jobs must be done 6 h after they start (an upload may
//! deadline_margin_minutes = 30     #   say otherwise); batches are given up for the
//!                                  #   synchronous lane this long before, plus its time
//! max_usd_per_job = 20.0           # spending caps (USD, batch prices): a job over either
//! max_usd_per_day = 100.0          #   sends nothing and fails over_budget (`spend` module)
//! max_enqueued_tokens = 2_000_000  # the provider's batch queue limit per model: chunks wait
//! assumed_output_tokens = 512      # output per request without max_tokens (default 1024)
//! reuse_results = true             # requests answered on this route before are not sent
//! reuse_days = 30                  #   again: their stored answers are (`reuse` module)
//! webhook_url = "https://hooks.example.com/batchdrop"  # signed POST when a job ends
//! webhook_secret_env = "LABELLING_WEBHOOK_SECRET"   # whsec_…; or webhook_secret_arn = "arn:…"
//! webhook_events = ["job", "batch"]                # also one per collected batch (default ["job"])
//! cache_aware_chunks = true        # requests sharing a long prompt prefix share chunks
//! cache_primer = false             # Anthropic: prime the prompt cache before each batch
//! keep_provider_files = false      # true: a collected batch's files stay at the provider
//! provider_file_days = 30          # OpenAI: its files expire after this many days anyway
//! webhook_in_secret_env = "OPENAI_WEBHOOK_SECRET"  # the project's webhook secret (whsec_…):
//!                                  #   POST /webhooks/openai/<route> advances the job at once
//!                                  #   (or webhook_in_secret = "arn:aws:secretsmanager:…")
//! [routes.labelling.defaults]      # fill in prompt lines and lines without a model
//! model = "gpt-4o-mini"
//! max_tokens = 512
//!
//! [prices."gpt-4o-mini"]           # USD per million tokens; see the `cost` module
//! input = 0.15                     # synchronous; batch_input defaults to half
//! output = 0.60                    # synchronous; batch_output defaults to half
//! ```

pub use crate::route::{
    BelowMinimum, ChunkLimits, DEFAULT_ASSUMED_OUTPUT_TOKENS, DEFAULT_SANDBOX_URL, Deadlines,
    Defaults, KeySource, Retries, Reuse, Route, Spend, WebhookTarget,
};

use crate::cost::{PriceOverride, PriceTable};
use crate::providers;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub routes: BTreeMap<String, Route>,
    /// Model prices: the built-in list, amended by `[prices."model"]` tables.
    pub prices: PriceTable,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("route {route:?}: {message}")]
    Route { route: String, message: String },
    #[error("prices of {model:?}: {message}")]
    Price { model: String, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    routes: BTreeMap<String, FileRoute>,
    #[serde(default)]
    prices: BTreeMap<String, PriceOverride>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    provider: Option<String>,
    base_url: Option<String>,
    api_key_env: Option<String>,
    api_key_secret: Option<String>,
    max_requests_per_batch: Option<u64>,
    max_bytes_per_batch: Option<u64>,
    max_line_bytes: Option<u64>,
    max_attempts: Option<u32>,
    max_batches_in_flight: Option<u32>,
    min_requests_per_batch: Option<u64>,
    role_arn: Option<String>,
    below_minimum: Option<BelowMinimum>,
    max_concurrency: Option<u32>,
    deadline_hours: Option<f64>,
    deadline_margin_minutes: Option<f64>,
    requests_per_minute: Option<i64>,
    tokens_per_minute: Option<i64>,
    max_usd_per_job: Option<f64>,
    max_usd_per_day: Option<f64>,
    max_enqueued_tokens: Option<i64>,
    assumed_output_tokens: Option<i64>,
    reuse_results: Option<bool>,
    reuse_days: Option<i64>,
    keep_provider_files: Option<bool>,
    provider_file_days: Option<i64>,
    webhook_url: Option<String>,
    webhook_secret_env: Option<String>,
    webhook_secret_arn: Option<String>,
    webhook_events: Option<Vec<String>>,
    cache_aware_chunks: Option<bool>,
    cache_primer: Option<bool>,
    webhook_in_secret_env: Option<String>,
    webhook_in_secret: Option<String>,
    defaults: Option<Defaults>,
}

impl Config {
    /// The built-in routes of every registered provider, with base URLs from the standard
    /// environment variables.
    pub fn builtin(env: &dyn Fn(&str) -> Option<String>) -> Config {
        let routes = providers::REGISTRY
            .iter()
            .flat_map(|entry| (entry.routes)(env))
            .map(|(name, route)| (name.to_string(), route))
            .collect();
        Config {
            routes,
            prices: PriceTable::builtin(),
        }
    }

    /// The built-in routes, amended by a TOML document.
    pub fn from_toml(
        text: &str,
        path: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let mut config = Config::builtin(env);
        for (name, fr) in file.routes {
            let route_err = |message: String| ConfigError::Route {
                route: name.clone(),
                message,
            };
            if let Some(name) = &fr.provider {
                providers::get(name).map_err(|e| route_err(e.to_string()))?;
            }
            let mut route = match (config.routes.remove(&name), fr.provider) {
                (Some(mut builtin), Some(provider)) => {
                    builtin.provider = provider;
                    builtin
                }
                (Some(builtin), None) => builtin,
                // A new route starts from the provider's own built-in route (the one named
                // after it: its endpoint, key variable, limits and defaults), if it has one.
                (None, Some(provider)) => match Config::builtin(env).routes.remove(&provider) {
                    Some(main) => main,
                    None => Route {
                        limits: providers::dialect(&provider)
                            .map_err(|e| route_err(e.to_string()))?
                            .limits(),
                        provider,
                        base_url: String::new(),
                        api_key: KeySource::None,
                        defaults: Defaults::default(),
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
                    },
                },
                (None, None) => {
                    return Err(route_err(format!(
                        "a new route needs `provider` (one of {})",
                        providers::names().join(", ")
                    )));
                }
            };
            if let Some(url) = fr.base_url {
                route.base_url = url;
            }
            match (fr.api_key_env, fr.api_key_secret) {
                (Some(_), Some(_)) => {
                    return Err(route_err(
                        "set api_key_env or api_key_secret, not both".into(),
                    ));
                }
                (Some(var), None) => route.api_key = KeySource::Env(var),
                (None, Some(arn)) => route.api_key = KeySource::Secret(arn),
                (None, None) => {}
            }
            match (fr.webhook_in_secret_env, fr.webhook_in_secret) {
                (Some(_), Some(_)) => {
                    return Err(route_err(
                        "set webhook_in_secret_env or webhook_in_secret, not both".into(),
                    ));
                }
                (Some(var), None) => route.webhook_in_secret = Some(KeySource::Env(var)),
                (None, Some(arn)) => route.webhook_in_secret = Some(KeySource::Secret(arn)),
                (None, None) => {}
            }
            if let Some(d) = fr.defaults {
                route.defaults = d;
            }
            let caps = providers::dialect(&route.provider)
                .map_err(|e| route_err(e.to_string()))?
                .limits();
            for (field, value, cap, slot) in [
                (
                    "max_requests_per_batch",
                    fr.max_requests_per_batch,
                    caps.max_requests_per_batch,
                    &mut route.limits.max_requests_per_batch,
                ),
                (
                    "max_bytes_per_batch",
                    fr.max_bytes_per_batch,
                    caps.max_bytes_per_batch,
                    &mut route.limits.max_bytes_per_batch,
                ),
                (
                    "max_line_bytes",
                    fr.max_line_bytes,
                    caps.max_line_bytes,
                    &mut route.limits.max_line_bytes,
                ),
            ] {
                if let Some(v) = value {
                    if v == 0 || v > cap {
                        return Err(route_err(format!(
                            "{field} = {v} must be between 1 and the provider's limit {cap}"
                        )));
                    }
                    *slot = v;
                }
            }
            if let Some(n) = fr.max_attempts {
                if n == 0 {
                    return Err(route_err("max_attempts must be at least 1".into()));
                }
                route.retries.max_attempts = n;
            }
            if let Some(n) = fr.max_batches_in_flight {
                if n == 0 {
                    return Err(route_err("max_batches_in_flight must be at least 1".into()));
                }
                route.max_batches_in_flight = Some(n);
            }
            if let Some(n) = fr.min_requests_per_batch {
                // Balanced chunks stay within both only when the maximum is at least twice it.
                if n == 0 || n.saturating_mul(2) > route.limits.max_requests_per_batch {
                    return Err(route_err(format!(
                        "min_requests_per_batch = {n} must be between 1 and half of max_requests_per_batch ({})",
                        route.limits.max_requests_per_batch
                    )));
                }
                route.limits.min_requests_per_batch = n;
            }
            if let Some(arn) = fr.role_arn {
                route.role_arn = Some(arn);
            }
            if let Some(policy) = fr.below_minimum {
                route.below_minimum = policy;
            }
            if let Some(n) = fr.max_concurrency {
                if n == 0 {
                    return Err(route_err("max_concurrency must be at least 1".into()));
                }
                route.max_concurrency = Some(n);
            }
            if let Some(hours) = fr.deadline_hours {
                if !(hours > 0.0 && hours <= 24.0 * 365.0) {
                    return Err(route_err(format!(
                        "deadline_hours must be a number of hours above 0 (got {hours})"
                    )));
                }
                route.deadlines.after = Some(std::time::Duration::from_secs_f64(hours * 3600.0));
            }
            if let Some(minutes) = fr.deadline_margin_minutes {
                if !(0.0..=24.0 * 60.0).contains(&minutes) {
                    return Err(route_err(format!(
                        "deadline_margin_minutes must be between 0 and 1440 (got {minutes})"
                    )));
                }
                route.deadlines.margin = std::time::Duration::from_secs_f64(minutes * 60.0);
            }
            if let Some(n) = fr.requests_per_minute {
                route.requests_per_minute =
                    Some(u32::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
                        route_err(format!(
                            "requests_per_minute = {n} must be between 1 and {}",
                            u32::MAX
                        ))
                    })?);
            }
            if let Some(n) = fr.tokens_per_minute {
                route.tokens_per_minute =
                    Some(u64::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
                        route_err(format!("tokens_per_minute = {n} must be at least 1"))
                    })?);
            }
            for (field, value, slot) in [
                (
                    "max_usd_per_job",
                    fr.max_usd_per_job,
                    &mut route.spend.max_usd_per_job,
                ),
                (
                    "max_usd_per_day",
                    fr.max_usd_per_day,
                    &mut route.spend.max_usd_per_day,
                ),
            ] {
                if let Some(usd) = value {
                    if !(usd.is_finite() && usd > 0.0) {
                        return Err(route_err(format!(
                            "{field} must be an amount in USD above 0 (got {usd})"
                        )));
                    }
                    *slot = Some(usd);
                }
            }
            for (field, value, slot) in [
                (
                    "max_enqueued_tokens",
                    fr.max_enqueued_tokens,
                    &mut route.spend.max_enqueued_tokens,
                ),
                (
                    "assumed_output_tokens",
                    fr.assumed_output_tokens,
                    &mut route.spend.assumed_output_tokens,
                ),
            ] {
                if let Some(n) = value {
                    let n = u64::try_from(n)
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| route_err(format!("{field} = {n} must be at least 1")))?;
                    *slot = Some(n);
                }
            }
            if let Some(on) = fr.reuse_results {
                route.reuse.enabled = on;
            }
            if let Some(keep) = fr.keep_provider_files {
                route.keep_provider_files = keep;
            }
            if let Some(days) = fr.provider_file_days {
                route.provider_file_days = Some(
                    u32::try_from(days)
                        .ok()
                        .filter(|d| (2..=30).contains(d))
                        .ok_or_else(|| {
                            route_err(format!(
                                "provider_file_days = {days} must be between 2 and 30 (a batch takes up to a day, and OpenAI keeps files at most 30)"
                            ))
                        })?,
                );
            }
            if let Some(days) = fr.reuse_days {
                route.reuse.days = u32::try_from(days)
                    .ok()
                    .filter(|d| (1..=3650).contains(d))
                    .ok_or_else(|| {
                        route_err(format!("reuse_days = {days} must be between 1 and 3650"))
                    })?;
            }
            if let Some(webhook) = webhook_of(
                fr.webhook_url,
                fr.webhook_secret_env,
                fr.webhook_secret_arn,
                fr.webhook_events,
                route.webhook.take(),
            )
            .map_err(route_err)?
            {
                route.webhook = Some(webhook);
            }
            if let Some(on) = fr.cache_aware_chunks {
                route.spend.cache_aware_chunks = on;
            }
            if let Some(on) = fr.cache_primer {
                route.spend.cache_primer = on;
            }
            if route.limits.max_line_bytes > route.limits.max_bytes_per_batch {
                route.limits.max_line_bytes = route.limits.max_bytes_per_batch;
            }
            if route.base_url.is_empty() && !entry_finds_endpoint(&route.provider) {
                return Err(route_err("`base_url` is required".into()));
            }
            config.routes.insert(name, route);
        }
        for (model, o) in &file.prices {
            config
                .prices
                .apply(model, o)
                .map_err(|message| ConfigError::Price {
                    model: model.clone(),
                    message,
                })?;
        }
        Ok(config)
    }

    /// Reads the file named by `BATCHDROP_CONFIG`, or the built-ins when it is unset.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        match env("BATCHDROP_CONFIG") {
            Some(path) if !path.is_empty() => Self::from_path(&path, env),
            _ => Ok(Config::builtin(env)),
        }
    }

    pub fn from_path(
        path: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_string(),
            source,
        })?;
        Self::from_toml(&text, path, env)
    }

    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.get(name)
    }

    pub fn route_names(&self) -> Vec<&str> {
        self.routes.keys().map(String::as_str).collect()
    }
}

/// A webhook target from `webhook_*` keys (a route's, or a Batch API tenant's in the keys file)
/// over the one it had (a built-in route has none): a URL (`http`/`https`, not a link-local or
/// metadata address) needs exactly one secret reference; `webhook_events` lists `job` (always)
/// and optionally `batch`.
pub fn webhook_of(
    url: Option<String>,
    secret_env: Option<String>,
    secret_arn: Option<String>,
    events: Option<Vec<String>>,
    had: Option<WebhookTarget>,
) -> Result<Option<WebhookTarget>, String> {
    let secret = match (secret_env, secret_arn) {
        (Some(_), Some(_)) => {
            return Err("set webhook_secret_env or webhook_secret_arn, not both".into());
        }
        (Some(var), None) => Some(KeySource::Env(var)),
        (None, Some(arn)) => Some(KeySource::Secret(arn)),
        (None, None) => None,
    };
    let batches = match &events {
        None => None,
        Some(names) => {
            let mut batches = false;
            for name in names {
                match name.as_str() {
                    "job" => {}
                    "batch" => batches = true,
                    other => {
                        return Err(format!(
                            "webhook_events: {other:?} is not an event group (use \"job\" and \"batch\")"
                        ));
                    }
                }
            }
            Some(batches)
        }
    };
    let Some(url) = url.or_else(|| had.as_ref().map(|h| h.url.clone())) else {
        if secret.is_some() || batches.is_some() {
            return Err(
                "webhook_secret_env, webhook_secret_arn and webhook_events need webhook_url".into(),
            );
        }
        return Ok(None);
    };
    crate::webhooks::address::check_url(&url).map_err(|e| format!("webhook_url: {e}"))?;
    let Some(secret) = secret.or_else(|| had.as_ref().map(|h| h.secret.clone())) else {
        return Err(
            "webhook_url needs webhook_secret_env or webhook_secret_arn (webhooks are always signed)"
                .into(),
        );
    };
    Ok(Some(WebhookTarget {
        url,
        secret,
        batches: batches.unwrap_or(had.is_some_and(|h| h.batches)),
    }))
}

/// Whether the provider's client finds its endpoint itself when `base_url` is empty.
fn entry_finds_endpoint(provider: &str) -> bool {
    providers::get(provider).is_ok_and(|e| e.finds_endpoint)
}

/// The process environment, for [`Config::from_env`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_webhook_needs_an_http_url_and_one_secret_reference() {
        let parse = |extra: &str| {
            Config::from_toml(&format!("[routes.sandbox]\n{extra}"), "t.toml", &no_env)
                .map(|c| c.routes["sandbox"].webhook.clone())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            parse(
                "webhook_url = \"https://h.example/x\"\nwebhook_secret_arn = \"arn:s\"\nwebhook_events = [\"job\", \"batch\"]"
            ),
            Ok(Some(WebhookTarget {
                url: "https://h.example/x".into(),
                secret: KeySource::Secret("arn:s".into()),
                batches: true,
            }))
        );
        assert_eq!(parse(""), Ok(None));
        for (extra, names) in [
            (
                "webhook_url = \"https://h.example/x\"",
                "webhook_secret_env",
            ),
            (
                "webhook_url = \"ftp://h.example/x\"\nwebhook_secret_env = \"S\"",
                "webhook_url",
            ),
            (
                "webhook_url = \"http://169.254.169.254/\"\nwebhook_secret_env = \"S\"",
                "webhook_url",
            ),
            ("webhook_secret_env = \"S\"", "need webhook_url"),
            (
                "webhook_url = \"https://h/\"\nwebhook_secret_env = \"S\"\nwebhook_events = [\"all\"]",
                "webhook_events",
            ),
            (
                "webhook_url = \"https://h/\"\nwebhook_secret_env = \"S\"\nwebhook_secret_arn = \"a\"",
                "not both",
            ),
        ] {
            let err = parse(extra).err().unwrap_or_default();
            assert!(err.contains(names), "{extra}: {err}");
        }
    }

    #[test]
    fn builtin_routes_exist_without_a_file() {
        let c = Config::builtin(&no_env);
        assert_eq!(
            c.route_names(),
            vec![
                "anthropic",
                "bedrock",
                "openai",
                "sandbox",
                "sandbox-anthropic",
                "sandbox-bedrock",
                "sandbox-sync"
            ]
        );
        assert_eq!(c.route("sandbox").unwrap().base_url, DEFAULT_SANDBOX_URL);
        assert_eq!(
            c.route("openai").unwrap().api_key,
            KeySource::Env("OPENAI_API_KEY".into())
        );
    }

    #[test]
    fn standard_env_vars_set_base_urls() {
        let env = |k: &str| (k == "OPENAI_BASE_URL").then(|| "http://x/v1".to_string());
        assert_eq!(
            Config::builtin(&env).route("openai").unwrap().base_url,
            "http://x/v1"
        );
    }

    #[test]
    fn file_lowers_limits_of_a_builtin_route() {
        let c = Config::from_toml(
            "[routes.sandbox]\nmax_requests_per_batch = 3\nmax_bytes_per_batch = 1000\n",
            "t.toml",
            &no_env,
        )
        .unwrap();
        let r = c.route("sandbox").unwrap();
        assert_eq!(r.limits.max_requests_per_batch, 3);
        assert_eq!(r.limits.max_bytes_per_batch, 1000);
        assert_eq!(r.limits.max_line_bytes, 1000);
    }

    #[test]
    fn limits_above_the_provider_cap_are_refused() {
        let err = Config::from_toml(
            "[routes.sandbox]\nmax_requests_per_batch = 50001\n",
            "t.toml",
            &no_env,
        )
        .unwrap_err();
        assert!(err.to_string().contains("50000"), "{err}");
    }

    #[test]
    fn new_route_needs_a_provider_and_takes_a_secret_reference() {
        assert!(Config::from_toml("[routes.x]\nbase_url='http://a'\n", "t", &no_env).is_err());
        let c = Config::from_toml(
            "[routes.x]\nprovider='openai'\nbase_url='http://a/v1'\napi_key_secret='arn:aws:secretsmanager:us-east-1:1:secret:k'\n",
            "t",
            &no_env,
        )
        .unwrap();
        assert!(matches!(
            c.route("x").unwrap().api_key,
            KeySource::Secret(_)
        ));
    }

    #[test]
    fn price_tables_override_and_add_models() {
        let c = Config::from_toml(
            "[prices.\"gpt-4o-mini\"]\ninput = 1.0\nas_of = \"2026-11-01\"\n\n[prices.\"my-model\"]\nprovider = \"openai\"\ninput = 4.0\noutput = 8.0\nbatch_output = 3.0\n",
            "t.toml",
            &no_env,
        )
        .unwrap();
        let mini = c.prices.entry("gpt-4o-mini").unwrap();
        assert_eq!((mini.input, mini.batch_input), (1.0, 0.5));
        assert_eq!((mini.output, mini.batch_output), (0.60, 0.30));
        assert_eq!(mini.as_of, "2026-11-01");
        let mine = c.prices.entry("my-model").unwrap();
        assert_eq!(
            (mine.input, mine.output, mine.batch_input, mine.batch_output),
            (4.0, 8.0, 2.0, 3.0)
        );
        assert_eq!(mine.as_of, "config");
    }

    #[test]
    fn a_new_price_needs_input_and_output_and_no_negatives() {
        let err = Config::from_toml("[prices.x]\ninput = 1.0\n", "t", &no_env).unwrap_err();
        assert!(
            err.to_string().contains("needs `input` and `output`"),
            "{err}"
        );
        let err = Config::from_toml("[prices.gpt-4o]\ninput = -1.0\n", "t", &no_env).unwrap_err();
        assert!(err.to_string().contains("non-negative"), "{err}");
        assert!(Config::from_toml("[prices.gpt-4o]\ncost = 1\n", "t", &no_env).is_err());
    }

    #[test]
    fn the_synchronous_lane_takes_requests_and_tokens_per_minute() {
        let c = Config::from_toml(
            "[routes.sandbox-sync]\nmax_concurrency = 16\nrequests_per_minute = 600\ntokens_per_minute = 200_000\n",
            "t.toml",
            &no_env,
        )
        .unwrap();
        let r = c.route("sandbox-sync").unwrap();
        assert_eq!(r.max_concurrency, Some(16));
        assert_eq!(r.requests_per_minute, Some(600));
        assert_eq!(r.tokens_per_minute, Some(200_000));
        let builtin = Config::builtin(&no_env);
        let r = builtin.route("sandbox-sync").unwrap();
        assert_eq!((r.requests_per_minute, r.tokens_per_minute), (None, None));
    }

    #[test]
    fn requests_and_tokens_per_minute_must_be_positive() {
        for (key, value) in [
            ("requests_per_minute", "0"),
            ("requests_per_minute", "-5"),
            ("tokens_per_minute", "0"),
            ("tokens_per_minute", "-1"),
            ("max_concurrency", "0"),
        ] {
            let err = Config::from_toml(
                &format!("[routes.sandbox-sync]\n{key} = {value}\n"),
                "t.toml",
                &no_env,
            )
            .unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, ConfigError::Route { .. }) && text.contains(key),
                "{key} = {value}: {text}"
            );
        }
    }

    #[test]
    fn a_route_takes_deadline_hours_and_a_margin() {
        let c = Config::from_toml(
            "[routes.sandbox]\ndeadline_hours = 6.5\ndeadline_margin_minutes = 45\n",
            "t.toml",
            &no_env,
        )
        .unwrap();
        let d = c.route("sandbox").unwrap().deadlines;
        assert_eq!(
            d.after,
            Some(std::time::Duration::from_secs(6 * 3600 + 1800))
        );
        assert_eq!(d.margin, std::time::Duration::from_secs(45 * 60));
        let builtin = Config::builtin(&no_env);
        assert_eq!(
            builtin.route("sandbox").unwrap().deadlines,
            Deadlines::default()
        );
    }

    #[test]
    fn deadline_hours_and_margin_must_be_in_range() {
        for (key, value) in [
            ("deadline_hours", "0"),
            ("deadline_hours", "-1"),
            ("deadline_hours", "nan"),
            ("deadline_margin_minutes", "-1"),
            ("deadline_margin_minutes", "1441"),
        ] {
            let err = Config::from_toml(
                &format!("[routes.sandbox]\n{key} = {value}\n"),
                "t.toml",
                &no_env,
            )
            .unwrap_err();
            assert!(err.to_string().contains(key), "{key} = {value}: {err}");
        }
    }

    #[test]
    fn a_route_turns_prompt_cache_chunking_off_and_the_primer_on() {
        let builtin = Config::builtin(&no_env);
        let spend = builtin.route("anthropic").unwrap().spend;
        assert!(spend.cache_aware_chunks && !spend.cache_primer);
        let c = Config::from_toml(
            "[routes.anthropic]\ncache_aware_chunks = false\ncache_primer = true\n",
            "t.toml",
            &no_env,
        )
        .unwrap();
        let spend = c.route("anthropic").unwrap().spend;
        assert!(!spend.cache_aware_chunks && spend.cache_primer);
        assert!(!spend.estimates());
        assert!(Config::from_toml("[routes.anthropic]\ncache_primer = 1\n", "t", &no_env).is_err());
    }

    #[test]
    fn a_route_takes_spending_caps_and_an_admission_limit() {
        let c = Config::from_toml(
            "[routes.sandbox]\nmax_usd_per_job = 2.5\nmax_usd_per_day = 10\nmax_enqueued_tokens = 2_000_000\nassumed_output_tokens = 300\n",
            "t.toml",
            &no_env,
        )
        .unwrap();
        let spend = c.route("sandbox").unwrap().spend;
        assert_eq!(
            spend,
            Spend {
                max_usd_per_job: Some(2.5),
                max_usd_per_day: Some(10.0),
                max_enqueued_tokens: Some(2_000_000),
                assumed_output_tokens: Some(300),
                ..Spend::default()
            }
        );
        assert!(spend.has_cap() && spend.estimates());
        let builtin = Config::builtin(&no_env);
        assert!(!builtin.route("sandbox").unwrap().spend.estimates());
    }

    #[test]
    fn provider_file_days_is_read_within_2_to_30() {
        let days = |text: &str| {
            Config::from_toml(text, "t.toml", &no_env)
                .map(|c| c.route("sandbox").unwrap().provider_file_days)
        };
        assert_eq!(
            days("[routes.sandbox]\nprovider_file_days = 7\n").ok(),
            Some(Some(7))
        );
        for bad in [0, 1, 31] {
            assert!(days(&format!("[routes.sandbox]\nprovider_file_days = {bad}\n")).is_err());
        }
    }

    #[test]
    fn provider_files_are_deleted_unless_a_route_keeps_them() {
        let c = Config::from_toml(
            "[routes.sandbox]\nkeep_provider_files = true\n",
            "t.toml",
            &no_env,
        )
        .unwrap();
        assert!(c.route("sandbox").unwrap().keep_provider_files);
        let builtin = Config::builtin(&no_env);
        assert!(builtin.routes.values().all(|r| !r.keep_provider_files));
    }

    #[test]
    fn a_route_takes_reuse_results_and_reuse_days() {
        let c = Config::from_toml(
            "[routes.sandbox]\nreuse_results = true\nreuse_days = 7\n",
            "t.toml",
            &no_env,
        )
        .unwrap();
        let reuse = c.route("sandbox").unwrap().reuse;
        assert_eq!(
            reuse,
            Reuse {
                enabled: true,
                days: 7
            }
        );
        let builtin = Config::builtin(&no_env);
        assert_eq!(builtin.route("sandbox").unwrap().reuse, Reuse::default());
        for days in ["0", "-1", "3651"] {
            let err = Config::from_toml(
                &format!("[routes.sandbox]\nreuse_results = true\nreuse_days = {days}\n"),
                "t.toml",
                &no_env,
            )
            .unwrap_err();
            assert!(err.to_string().contains("reuse_days"), "{days}: {err}");
        }
    }

    #[test]
    fn spending_caps_and_token_limits_must_be_positive() {
        for (key, value) in [
            ("max_usd_per_job", "0"),
            ("max_usd_per_job", "-1.5"),
            ("max_usd_per_job", "nan"),
            ("max_usd_per_job", "inf"),
            ("max_usd_per_day", "0.0"),
            ("max_usd_per_day", "-3"),
            ("max_usd_per_day", "nan"),
            ("max_enqueued_tokens", "0"),
            ("max_enqueued_tokens", "-100"),
            ("assumed_output_tokens", "0"),
            ("assumed_output_tokens", "-1"),
        ] {
            let err = Config::from_toml(
                &format!("[routes.sandbox]\n{key} = {value}\n"),
                "t.toml",
                &no_env,
            )
            .unwrap_err();
            assert!(
                matches!(err, ConfigError::Route { .. }) && err.to_string().contains(key),
                "{key} = {value}: {err}"
            );
        }
    }

    #[test]
    fn a_route_takes_its_inbound_webhook_secret_by_reference() {
        let c = Config::from_toml(
            "[routes.sandbox]\nwebhook_in_secret_env = 'HOOK_SECRET'\n[routes.openai]\nwebhook_in_secret = 'arn:aws:secretsmanager:us-east-1:1:secret:w'\n",
            "t.toml",
            &no_env,
        )
        .unwrap();
        assert_eq!(
            c.route("sandbox").unwrap().webhook_in_secret,
            Some(KeySource::Env("HOOK_SECRET".into()))
        );
        assert!(matches!(
            c.route("openai").unwrap().webhook_in_secret,
            Some(KeySource::Secret(_))
        ));
        let err = Config::from_toml(
            "[routes.sandbox]\nwebhook_in_secret_env = 'A'\nwebhook_in_secret = 'arn:b'\n",
            "t.toml",
            &no_env,
        )
        .unwrap_err();
        assert!(err.to_string().contains("webhook_in_secret"), "{err}");
    }

    #[test]
    fn unknown_fields_are_errors() {
        assert!(Config::from_toml("[routes.sandbox]\napi_key='sk-123'\n", "t", &no_env).is_err());
    }
}
