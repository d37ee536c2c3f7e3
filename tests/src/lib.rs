//! Harness for the end-to-end tests: servers the tests start and stop, and small shared helpers.
//!
//! - [`moto`]: a private moto S3 server per test, and clients and stores pointed at it.
//! - [`lambda`]: `cargo lambda watch` running the workspace's functions, killed on drop.
//! - [`bucket`]: a bucket seen through a plain S3 client (upload, read, list).
//! - [`jobs`]: an engine's jobs polled to their end, and their output and summary read back.
//! - [`fixtures`]: the files of `examples/` and `events/`, and the results they must give.
//! - [`clocks`]: the engine's and the sandbox's manual clocks moved together, and the OpenAI
//!   client of a test against the sandbox.
//! - [`sandbox`]: the sandbox provider with batches that end at once.
//! - [`webhook_receiver`]: the `standardwebhooks` Python receiver that verifies webhooks out.

pub mod bucket;
pub mod clocks;
pub mod fixtures;
pub mod jobs;
pub mod lambda;
pub mod moto;
pub mod sandbox;
pub mod webhook_receiver;

/// The error type of harness helpers and of tests (`-> TestResult`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a test returns, so its body can use `?`.
pub type TestResult = Result<(), BoxError>;
