//! Harness for the end-to-end tests: servers the tests start and stop, and small shared helpers.
//!
//! - [`moto`]: a private moto S3 server per test, and clients and stores pointed at it.

pub mod moto;

/// The error type of harness helpers and of tests (`-> TestResult`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a test returns, so its body can use `?`.
pub type TestResult = Result<(), BoxError>;
