//! What both provider clients share: sending a request with retries, decoding errors.
//!
//! Calls failing with 408, 409, 429, 5xx (529 included) or a transport error are retried with
//! exponential backoff and jitter, waiting at least what `retry-after-ms` / `retry-after` asks;
//! except the synchronous lane's requests ([`Http::post_invoke`]), sent once: the lane retries
//! them at its own pace.
//! Error messages never carry a header, so no key can leak through them.

use crate::clock::{Clock, SystemClock};
use crate::provider::{ErrorKind, ProviderError};
use crate::providers::retry::RetryPolicy;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// How a provider wants its key.
#[derive(Clone)]
pub(crate) enum Auth {
    /// `Authorization: Bearer <key>`; without a key (the sandbox) any token.
    Bearer(Option<SecretString>),
    /// The key in a header of its own, with fixed headers beside it (a version pin).
    Header {
        name: &'static str,
        key: Option<SecretString>,
        fixed: &'static [(&'static str, &'static str)],
    },
}

pub(crate) struct Http {
    pub client: reqwest::Client,
    pub base_url: String,
    auth: Auth,
    pub clock: Arc<dyn Clock>,
    pub retry: RetryPolicy,
}

/// What one request of the synchronous lane came back with ([`Http::post_invoke`]).
pub(crate) enum Reply {
    /// A success: its HTTP status, request id (`x-request-id` or `request-id`) and JSON body.
    Answered {
        status: u16,
        request_id: String,
        body: serde_json::Value,
    },
    /// A refusal that will not go away: its HTTP status, the error's code or type, message.
    Refused {
        status: u16,
        code: Option<String>,
        message: String,
    },
}

/// Allowance for a provider's clock being behind ours (find-after-crash windows).
pub(crate) const CLOCK_SLACK_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Any retryable failure: for reads and idempotent calls.
    Always,
    /// Only failures the provider answered: for calls that create something.
    OnlyRefusals,
    /// Never: the caller retries (the synchronous lane, which adapts its pace to throttles).
    Never,
}

/// What every provider wrapping an [`Http`] in a field `http` has: a `Debug` that never shows
/// the key, and the builders for the retry clock and policy.
macro_rules! http_provider_common {
    ($ty:ident) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("base_url", &self.http.base_url)
                    .field("key", &self.http.has_key().then_some("[redacted]"))
                    .finish_non_exhaustive()
            }
        }

        impl $ty {
            /// The clock retries wait on (tests inject a manual one).
            pub fn with_clock(mut self, clock: std::sync::Arc<dyn crate::clock::Clock>) -> Self {
                self.http.clock = clock;
                self
            }

            /// How failed calls are tried again.
            pub fn with_retry(mut self, retry: $crate::providers::retry::RetryPolicy) -> Self {
                self.http.retry = retry;
                self
            }
        }
    };
}
pub(crate) use http_provider_common;

impl Http {
    pub fn new(base_url: &str, auth: Auth) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build()
            .unwrap_or_default();
        Self {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            auth,
            clock: Arc::new(SystemClock),
            retry: RetryPolicy::default(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `DELETE <path>`; one already gone (404) is done too.
    pub async fn delete(&self, operation: &'static str, path: &str) -> Result<(), ProviderError> {
        let url = self.url(path);
        match self
            .send(operation, || async { Ok(self.client.delete(&url)) })
            .await
        {
            Ok(_)
            | Err(ProviderError::Refused {
                kind: ErrorKind::NotFound,
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn has_key(&self) -> bool {
        match &self.auth {
            Auth::Bearer(k) | Auth::Header { key: k, .. } => k.is_some(),
        }
    }

    fn authorise(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::Bearer(Some(key)) => req.bearer_auth(key.expose_secret()),
            Auth::Bearer(None) => req.bearer_auth("sandbox"),
            Auth::Header { name, key, fixed } => fixed.iter().fold(
                req.header(
                    *name,
                    key.as_ref().map(|k| k.expose_secret()).unwrap_or("sandbox"),
                ),
                |req, (name, value)| req.header(*name, *value),
            ),
        }
    }

    /// Sends a request built by `make` (called again for every attempt) and returns the
    /// successful response.
    pub async fn send<F, Fut>(
        &self,
        operation: &'static str,
        make: F,
    ) -> Result<reqwest::Response, ProviderError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<reqwest::RequestBuilder, ProviderError>>,
    {
        self.send_with(operation, Retry::Always, make).await
    }

    /// Posts one request of the synchronous lane ([`crate::provider::Provider::invoke`]): the
    /// JSON `body` to `path`, once. A refusal that will not go away (a 4xx other than
    /// 408/409/429) is the request's answer ([`Reply::Refused`]); any other failure, retryable
    /// or not, goes back to the lane, which retries at its own pace (the engine's `on_demand`
    /// and `pace` modules) and needs to see every 429.
    pub async fn post_invoke(
        &self,
        operation: &'static str,
        path: &str,
        body: &str,
    ) -> Result<Reply, ProviderError> {
        let sent = self
            .send_with(operation, Retry::Never, || async {
                Ok(self
                    .client
                    .post(self.url(path))
                    .header("content-type", "application/json")
                    .body(body.to_string()))
            })
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let request_id = ["x-request-id", "request-id"]
                    .iter()
                    .find_map(|h| resp.headers().get(*h).and_then(|v| v.to_str().ok()))
                    .unwrap_or_default()
                    .to_string();
                let bytes = resp.bytes().await.map_err(|e| ProviderError::Transport {
                    operation,
                    message: describe_reqwest(&e),
                })?;
                let body = serde_json::from_slice(&bytes).map_err(|e| ProviderError::Decode {
                    operation,
                    message: e.to_string(),
                })?;
                Ok(Reply::Answered {
                    status,
                    request_id,
                    body,
                })
            }
            Err(ProviderError::Refused {
                retryable: false,
                answer,
                code,
                message,
                ..
            }) => Ok(Reply::Refused {
                status: answer
                    .strip_prefix("HTTP ")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(400),
                code,
                message,
            }),
            Err(other) => Err(other),
        }
    }

    /// Sends a request that creates something billable (a batch): it is sent again only after
    /// an answer saying it failed (429, 5xx), never after a lost connection or a timeout, where
    /// it may have been carried out — the caller looks for it before trying again.
    pub async fn send_once_created<F, Fut>(
        &self,
        operation: &'static str,
        make: F,
    ) -> Result<reqwest::Response, ProviderError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<reqwest::RequestBuilder, ProviderError>>,
    {
        self.send_with(operation, Retry::OnlyRefusals, make).await
    }

    async fn send_with<F, Fut>(
        &self,
        operation: &'static str,
        retry: Retry,
        make: F,
    ) -> Result<reqwest::Response, ProviderError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<reqwest::RequestBuilder, ProviderError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err: ProviderError = match make().await {
                Ok(req) => match self.authorise(req).send().await {
                    Ok(resp) if resp.status().is_success() => return Ok(resp),
                    Ok(resp) => http_error(operation, resp).await,
                    Err(e) => ProviderError::Transport {
                        operation,
                        message: describe_reqwest(&e),
                    },
                },
                Err(e) => e,
            };
            let ambiguous = matches!(err, ProviderError::Transport { .. });
            if !err.is_retryable()
                || retry == Retry::Never
                || attempt >= self.retry.max_attempts
                || (ambiguous && retry == Retry::OnlyRefusals)
            {
                return Err(err);
            }
            let wait = self.retry.delay(attempt, err.retry_after());
            tracing::warn!(
                operation,
                attempt,
                wait_ms = wait.as_millis() as u64,
                error = %err,
                "retrying provider call"
            );
            self.clock.sleep(wait).await;
        }
    }

    /// Reads a successful response as JSON.
    pub async fn json<T: serde::de::DeserializeOwned>(
        operation: &'static str,
        resp: reqwest::Response,
    ) -> Result<T, ProviderError> {
        let bytes = resp.bytes().await.map_err(|e| ProviderError::Transport {
            operation,
            message: describe_reqwest(&e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ProviderError::Decode {
            operation,
            message: e.to_string(),
        })
    }
}

/// Both providers answer errors as `{"error":{"message","type","code"?}}` (Anthropic wraps it
/// in `{"type":"error",…}`, which this reads the same way).
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// `retry-after-ms`, then `retry-after` in seconds or as an HTTP date.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    let value = text("retry-after")?;
    if let Ok(secs) = value.trim().parse::<f64>() {
        return Some(Duration::from_secs_f64(secs.max(0.0)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

pub async fn http_error(operation: &'static str, resp: reqwest::Response) -> ProviderError {
    let status = resp.status().as_u16();
    let retry_after = retry_after(resp.headers());
    let body = resp.bytes().await.unwrap_or_default();
    let (message, code) = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(b) => (
            b.error.message.unwrap_or_default(),
            b.error
                .code
                .and_then(|c| c.as_str().map(str::to_string))
                .or(b.error.kind),
        ),
        Err(_) => (
            String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            None,
        ),
    };
    refused(operation, status, code, message, retry_after)
}

/// A refusal answered with HTTP `status`: its kind and retryability from the status.
pub(crate) fn refused(
    operation: &'static str,
    status: u16,
    code: Option<String>,
    message: String,
    retry_after: Option<Duration>,
) -> ProviderError {
    ProviderError::Refused {
        operation,
        kind: kind_of_status(status),
        answer: format!("HTTP {status}"),
        code,
        message,
        retryable: retryable_status(status),
        retry_after,
    }
}

/// What an HTTP status says about a refusal.
pub fn kind_of_status(status: u16) -> ErrorKind {
    match status {
        401 | 403 => ErrorKind::Unauthorized,
        404 => ErrorKind::NotFound,
        408 => ErrorKind::Timeout,
        409 => ErrorKind::Conflict,
        429 => ErrorKind::RateLimited,
        500.. => ErrorKind::ServerError,
        _ => ErrorKind::Invalid,
    }
}

/// 408, 409, 429 and 5xx (529 included) may succeed when tried again.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || status >= 500
}

/// A transport error without the URL or any header (no secret can leak through it).
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() {
        "body error"
    } else if e.is_decode() {
        "decode error"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn retry_after_ms_wins_over_seconds() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn retry_after_in_seconds() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
    }
}
