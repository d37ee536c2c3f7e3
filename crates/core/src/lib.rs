//! batchdrop's core library: every decision of the pipeline, behind small ports.
//!
//! - [`store`]: the object store port; local-directory and in-memory implementations.
//! - [`provider`]: the batch provider port.
//! - [`clock`]: the clock port.
//! - [`config`]: routes, read once at start.
//! - [`cost`]: price table and job costs (batch, synchronous equivalent, saved).
//! - [`layout`]: what each key of the bucket means.
//! - [`input`]: line validation, over [`scan`] (one pass over a JSON line); [`ids`]: duplicate
//!   custom_ids in bounded memory; [`plan`]: chunk planning (`staging` stages one segment).
//! - [`manifest`]: the job manifest (plain data); [`summary`]: the summary.json it ends as.
//! - [`engine`]: the engine that submit and poll run (`chunk_files`: a staged chunk's files).
//! - [`wire`]: the provider result lines batchdrop reads and writes.

mod chunk_files;
pub mod clock;
pub mod config;
pub mod cost;
pub mod engine;
pub mod ids;
pub mod input;
pub mod layout;
pub mod manifest;
pub mod plan;
pub mod provider;
pub mod scan;
mod staging;
pub mod store;
pub mod summary;
pub mod translate;
pub mod wire;
mod writer;

pub use engine::{Engine, JobEvent, Observer, SubmitOutcome};

#[cfg(feature = "testing")]
pub mod testing;
