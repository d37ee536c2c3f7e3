//! Paying once: a route with `reuse_results` answers a request whose content was answered
//! successfully on the route before (within `reuse_days`) with that answer, and sends
//! identical requests of one file once.
//!
//! - [`content`]: what "the same request" means: a hash of the request as built, without its
//!   id (`custom_id`, `recordId`), keys sorted, with its endpoint and model.
//! - [`index`]: the route's index of answered requests in the bucket,
//!   `_batchdrop/reuse/<route>/<job>/<chunk>.idx`: one object per sent chunk of a finished
//!   job, written once (conditional create), sorted by content hash, each entry saying where
//!   the answer lies (job, chunk, byte range of its results) and when it was answered.
//!   Looking up a job's requests is a merge of its sorted hashes with those objects (at most
//!   [`crate::ids::MERGE_FAN_IN`] at a time): memory holds one entry per object and the
//!   matches found, never the index.
//! - [`compact`]: merging the index's objects 64 into one once a route has 128, dropping
//!   what is too old to reuse.
//! - [`answers`]: reading stored answers by their byte range (adjacent ones in one read), and
//!   the line output.jsonl gets: the provider's answer under the new line's `custom_id`, with
//!   `"batchdrop": {"reused_from": {"job", "line"}}`.
//!
//! The engine's side (`engine::reuse`) takes reused and repeated requests out of the staged
//! chunks at the end of planning, and answers the repeats and indexes the job's answers at
//! its end.

pub mod answers;
pub mod compact;
pub mod content;
pub mod index;

pub use answers::{Fetcher, marked};
pub use content::content_hash;
pub use index::{IndexEntry, Location};
