//! What can go wrong talking to a provider. The adapter that met the failure decides its kind
//! and whether trying again may help (an HTTP client from the status, an SDK client from the
//! exception's name); the engine only asks [`ProviderError::is_retryable`].

use crate::store::StoreError;
use std::time::Duration;

/// What a provider's refusal was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Too many requests or tokens now (HTTP 429, `ThrottlingException`).
    RateLimited,
    /// The provider failed or is overloaded (5xx, 529).
    ServerError,
    /// The call took too long (408).
    Timeout,
    /// Conflicting state, often transient (409).
    Conflict,
    /// Bad credentials or no permission (401, 403).
    Unauthorized,
    /// No such batch or file (404).
    NotFound,
    /// The request is wrong and will stay wrong (other 4xx, validation errors).
    Invalid,
    /// A quota or limit of the account (e.g. too many jobs in flight).
    QuotaExceeded,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider answered with a refusal. `answer` is how it said so: `HTTP 429`, or an
    /// SDK's exception name.
    #[error("provider answered {answer} to {operation}: {message}")]
    Refused {
        operation: &'static str,
        kind: ErrorKind,
        answer: String,
        code: Option<String>,
        message: String,
        retryable: bool,
        retry_after: Option<Duration>,
    },
    #[error("cannot reach the provider for {operation}: {message}")]
    Transport {
        operation: &'static str,
        message: String,
    },
    #[error("unexpected answer from the provider to {operation}: {message}")]
    Decode {
        operation: &'static str,
        message: String,
    },
    #[error("cannot read the batch input: {0}")]
    Body(#[from] StoreError),
    #[error("provider unavailable: {reason}")]
    Unavailable { reason: String },
}

impl ProviderError {
    /// Whether the same call may succeed later: as the adapter judged a refusal; always for a
    /// transport failure; never for an answer that could not be read or a missing provider.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Refused { retryable, .. } => *retryable,
            ProviderError::Transport { .. } => true,
            ProviderError::Body(e) => e.is_retryable(),
            ProviderError::Decode { .. } | ProviderError::Unavailable { .. } => false,
        }
    }

    /// How long the provider asked to wait before the next call.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The kind of a refusal; `None` for failures the provider did not answer.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ProviderError::Refused { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}
