//! Errors of the object store port, the same for every implementation.

use std::io;

/// An object store operation that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object not found: {key}")]
    NotFound { key: String },
    #[error("object already exists: {key}")]
    AlreadyExists { key: String },
    #[error("object changed since it was read (ETag mismatch): {key}")]
    Precondition { key: String },
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("I/O error on {key}: {source}")]
    Io {
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("object store error on {key}: {message}")]
    Backend {
        key: String,
        message: String,
        retryable: bool,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Backend { retryable, .. } => *retryable,
            StoreError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// An I/O error on `key`, mapped to NotFound where it is one.
    pub fn io_at(key: &str, source: io::Error) -> Self {
        Self::io(key, source)
    }

    pub(crate) fn io(key: &str, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            StoreError::NotFound {
                key: key.to_string(),
            }
        } else {
            StoreError::Io {
                key: key.to_string(),
                source,
            }
        }
    }
}
