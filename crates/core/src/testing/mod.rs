//! Test fakes that are real implementations of the ports (behind the `testing` feature).
//!
//! - [`ScriptedProvider`]: an in-memory batch provider that behaves like OpenAI's Files +
//!   Batches (ids, statuses, output and error files, shuffled output lines, the error-file
//!   rules) and whose batches each follow a [`Script`]: complete, stay pending for a while,
//!   expire half done, fail validation, fail every request, refuse the submit, … It counts every
//!   call so that tests can say "no duplicate batch" or "a finished job costs nothing".
//! - [`TestBed`]: an [`Engine`](crate::Engine) over a
//!   [`MemoryStore`](crate::store::MemoryStore), a [`ManualClock`](crate::clock::ManualClock) and a scripted
//!   provider, with a `sandbox` route of small chunk limits.
//! - [`EventLog`]: an [`Observer`](crate::Observer) that keeps every event.
//! - [`FaultyStore`]: a store over another that fails chosen writes, to play a crash.
//!
//! Everything here is deterministic: no sleeping, no network, no randomness but seeded.

mod batch;
mod bed;
mod faulty_store;
mod provider;
mod script;

pub use batch::{SubmittedBatch, usage_of};
pub use bed::{BUCKET, EventLog, START_UNIX, TestBed, small_config};
pub use faulty_store::FaultyStore;
pub use provider::{Calls, ScriptedProvider};
pub use script::Script;
