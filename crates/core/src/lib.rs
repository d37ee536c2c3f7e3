//! batchdrop's core library: every decision of the pipeline, behind small ports.
//!
//! - [`store`]: the object store port; local-directory and in-memory implementations.
//! - [`provider`]: the batch provider port, the dialect a provider's formats implement, and the
//!   common request lines of one provider's format reach another through.
//! - [`providers`]: one folder per provider (client, dialect, prices, built-in routes) and the
//!   registry of them by name.
//! - [`clock`]: the clock port.
//! - [`config`]: routes ([`route`]), read once at start.
//! - [`cost`]: price table and job costs (batch, synchronous equivalent, saved); [`tokens`]:
//!   a request's tokens counted offline (input exactly for OpenAI models, output bound).
//! - [`layout`]: what each key of the bucket means.
//! - [`input`]: line validation, over [`scan`] (one pass over a JSON line), [`fields`] and
//!   [`prompt`]; [`ids`]: duplicate custom_ids in bounded memory; [`plan`]: chunk planning
//!   (`staging` stages one segment).
//! - [`manifest`]: the job manifest (plain data); [`summary`]: the summary.json it ends as.
//! - [`spend`]: spending caps and queue-aware admission (estimates, the day's spend object).
//! - [`reuse`]: paying once: a request's content hash, the route's index of answered
//!   requests, stored answers read back (the engine's `reuse` applies them).
//! - [`engine`]: the engine that submit and poll run (`chunk_files`: a staged chunk's files).
//! - [`webhooks`]: webhooks in and out (the Standard Webhooks signature).
//! - [`types`]: plain data shared by the modules above (a leaf).

mod chunk_files;
pub mod clock;
pub mod config;
pub mod cost;
pub mod engine;
pub mod fields;
pub mod ids;
pub mod input;
pub mod layout;
pub mod manifest;
pub mod plan;
pub mod prompt;
pub mod provider;
pub mod providers;
pub mod reuse;
pub mod route;
pub mod scan;
pub mod spend;
mod staging;
pub mod store;
pub mod summary;
pub mod tokens;
pub mod types;
pub mod webhooks;
mod writer;

pub use engine::{Engine, JobEvent, Observer, SubmitOutcome};

#[cfg(feature = "testing")]
pub mod testing;
