//! The handful of OpenAI wire types the client needs, and error decoding.

use batchdrop_core::provider::{BatchError, BatchInfo, BatchState, ProviderError, RequestCounts};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize)]
pub struct FileObject {
    pub id: String,
}

#[derive(Debug, Deserialize)]
pub struct BatchObject {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub output_file_id: Option<String>,
    #[serde(default)]
    pub error_file_id: Option<String>,
    #[serde(default)]
    pub errors: Option<ErrorList>,
    #[serde(default)]
    pub request_counts: Option<Counts>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorList {
    #[serde(default)]
    pub data: Vec<ErrorEntry>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorEntry {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub line: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Counts {
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub completed: u64,
    #[serde(default)]
    pub failed: u64,
}

impl BatchObject {
    pub fn into_info(self) -> BatchInfo {
        let state = match self.status.as_str() {
            "completed" => BatchState::Completed,
            "failed" => BatchState::Failed,
            "expired" => BatchState::Expired,
            "cancelled" => BatchState::Cancelled,
            _ => BatchState::Pending,
        };
        let counts = self.request_counts.unwrap_or_default();
        BatchInfo {
            id: self.id,
            status: self.status,
            state,
            // A clean batch may report an empty-string error file.
            output_file: self.output_file_id.filter(|f| !f.is_empty()),
            error_file: self.error_file_id.filter(|f| !f.is_empty()),
            errors: self
                .errors
                .map(|e| e.data)
                .unwrap_or_default()
                .into_iter()
                .map(|e| BatchError {
                    code: e.code.unwrap_or_else(|| "unknown".into()),
                    message: e.message.unwrap_or_default(),
                    line: e.line,
                })
                .collect(),
            counts: RequestCounts {
                total: counts.total,
                completed: counts.completed,
                failed: counts.failed,
            },
        }
    }
}

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
    ProviderError::Http {
        operation,
        status,
        code,
        message,
        retry_after,
    }
}

/// A transport error without the URL's query or any header (no secret can leak through it).
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
