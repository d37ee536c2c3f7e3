//! Why a measurement could not be taken. A failed measurement becomes a report row with no
//! value and this error as its detail; it never hides the other figures.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{context}: {source}")]
    Engine {
        context: String,
        #[source]
        source: Box<batchdrop_core::engine::JobError>,
    },
    #[error("{context}: {source}")]
    Store {
        context: String,
        #[source]
        source: batchdrop_core::store::StoreError,
    },
    /// A program the bench runs (cat, split, strip, the submit-only child, `batchdrop local`)
    /// failed or did something unexpected.
    #[error("{program}: {message}")]
    Program { program: String, message: String },
}

impl BenchError {
    pub fn program(program: impl Into<String>, message: impl Into<String>) -> Self {
        BenchError::Program {
            program: program.into(),
            message: message.into(),
        }
    }
}

/// Adds what was being done to an I/O or JSON error.
pub trait Context<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, BenchError>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, BenchError> {
        self.map_err(|source| BenchError::Io {
            context: context(),
            source,
        })
    }
}

impl<T> Context<T> for Result<T, serde_json::Error> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, BenchError> {
        self.map_err(|source| BenchError::Json {
            context: context(),
            source,
        })
    }
}

impl<T> Context<T> for Result<T, batchdrop_core::engine::JobError> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, BenchError> {
        self.map_err(|source| BenchError::Engine {
            context: context(),
            source: Box::new(source),
        })
    }
}

impl<T> Context<T> for Result<T, batchdrop_core::store::StoreError> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, BenchError> {
        self.map_err(|source| BenchError::Store {
            context: context(),
            source,
        })
    }
}
