//! The command line's one error type, and the exit code of each kind of error.
//!
//! Every command returns [`Error`]; `main` alone prints it (one line, `batchdrop: …`, or for a
//! usage error the way clap prints its own) and exits with [`Error::exit_code`].

use batchdrop_core::config::ConfigError;
use batchdrop_core::store::StoreError;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The exit codes, as `--help` states them (and the README).
pub const EXIT_CODES: &str = "Exit codes: 0 ok, 1 failure (a message says what to do), 2 usage.";

/// Exit code of a failure: the message says what to do.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of a usage error: a bad argument.
pub const EXIT_USAGE: u8 = 2;

/// What went wrong, in words that say what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad argument (a selector that is neither a path nor a job id, an unknown route, an
    /// upload key the store refuses, …): printed like clap's own usage errors.
    #[error("{0}")]
    Usage(String),
    /// The config file cannot be read or is not valid; `hint` says what to do (may be empty).
    #[error("{source}{hint}")]
    Config {
        #[source]
        source: ConfigError,
        hint: &'static str,
    },
    /// `--bucket` with an empty name.
    #[error("--bucket needs a bucket name")]
    EmptyBucketName,
    /// `--root` names no directory.
    #[error(
        "no bucket directory at {}: pass --root DIR (what `batchdrop local` watches) or --bucket NAME",
        root.display()
    )]
    NoBucketDir { root: PathBuf },
    /// A local directory cannot be opened as the bucket.
    #[error("cannot open {} as the bucket: {source}", root.display())]
    OpenRoot {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An operation on the bucket failed; `hint` says what to check.
    #[error("cannot {what} in {location}: {source} — {hint}")]
    Store {
        what: &'static str,
        location: String,
        #[source]
        source: Box<StoreError>,
        hint: &'static str,
    },
    /// Local mode cannot list a prefix of its bucket.
    #[error("cannot list {what}: {source}")]
    List {
        what: &'static str,
        #[source]
        source: Box<StoreError>,
    },
    /// An object's body broke off while being read.
    #[error("reading {key}: {source}")]
    Download {
        key: String,
        #[source]
        source: std::io::Error,
    },
    /// A local file cannot be read, created or written (`action`: `read`, `create`, `write`).
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Standard output cannot be written (other than a closed pipe, which is not an error).
    #[error("cannot write to standard output: {0}")]
    Stdout(#[source] std::io::Error),
    /// The bucket's jobs do not allow what was asked: no such job, no results yet, nothing to
    /// cancel, … The message says why and what to do.
    #[error("{0}")]
    Job(String),
    /// The sandbox provider cannot start (`what`: `listen`, `start the sandbox`).
    #[error("cannot {what} on {addr}: {source}")]
    Sandbox {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The Batch API's keys file cannot be used.
    #[error(
        "{source} (fix the keys file; `batchdrop api keygen --tenant NAME --route R` prints an entry)"
    )]
    ApiKeys {
        #[source]
        source: batchdrop_api::auth::KeysError,
    },
    /// The Batch API cannot listen, or stopped serving.
    #[error("the Batch API cannot {what} on {addr}: {source}")]
    ApiServe {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// No random bytes for a new key.
    #[error("cannot make a key: {0}")]
    KeyGen(#[source] std::io::Error),
    /// A JSON rendering failed.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// The async runtime cannot start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl Error {
    /// A usage error with this message.
    pub fn usage(message: impl std::fmt::Display) -> Error {
        Error::Usage(message.to_string())
    }

    /// A config error with the hint the operator's commands give.
    pub fn config(source: ConfigError) -> Error {
        Error::Config {
            source,
            hint: " (fix the file, or pass another with --config)",
        }
    }

    /// The process's exit code for this error (see [`EXIT_CODES`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_exit_2_and_the_rest_1() {
        assert_eq!(Error::usage("bad").exit_code(), 2);
        assert_eq!(Error::Job("no job".into()).exit_code(), 1);
        assert_eq!(Error::EmptyBucketName.exit_code(), 1);
        assert!(EXIT_CODES.contains("0 ok, 1 failure"));
        assert!(EXIT_CODES.contains("2 usage"));
    }
}
