//! batchdrop's core library: every decision of the pipeline, behind small ports.
//!
//! - [`store`]: the object store port and its local-directory and in-memory implementations.

pub mod store;
