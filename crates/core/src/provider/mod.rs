//! The provider port: submit a chunk as a batch, watch it, cancel it, download its files.
//!
//! Implementations: one per provider folder in `providers/`. Types here are domain
//! types; no HTTP or SDK type appears.

mod dialect;
mod error;
pub mod reply;
mod request;

pub use dialect::{Built, Dialect, Reject, ResultFacts};
pub use error::{ErrorKind, ProviderError};
pub use reply::{Answer, Failure, Outcome, Part, Reply, StopReason, translate_result};

/// The idempotency token of chunk `chunk` of job `job_id` ([`ChunkUpload::token`]): letters,
/// digits and dashes, at most 64 characters.
pub fn submit_token(job_id: &str, chunk: u32) -> String {
    format!("{job_id}-{chunk}")
}
pub use request::{Content, Message, Request, Role, Stop, Untranslatable};

use crate::store::{ByteStream, ObjectStore, StoreError};
use async_trait::async_trait;
use std::sync::Arc;

/// A request body that can be read again from the start (each retry reopens it).
#[async_trait]
pub trait BodySource: Send + Sync {
    async fn open(&self) -> Result<ByteStream, StoreError>;
}

/// An object in a store, as a [`BodySource`].
pub struct StoredBody {
    pub store: Arc<dyn ObjectStore>,
    pub key: String,
}

#[async_trait]
impl BodySource for StoredBody {
    async fn open(&self) -> Result<ByteStream, StoreError> {
        Ok(self.store.get(&self.key).await?.body)
    }
}

/// Where an object is: a bucket and a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
}

/// One chunk to submit as a batch. A provider that uploads takes the bytes from `body`; one
/// that reads the bucket itself takes `location` and uploads nothing.
pub struct ChunkUpload<'a> {
    pub job_id: &'a str,
    pub chunk: u32,
    pub endpoint: &'a str,
    /// The model every request of the chunk names; empty where a batch mixes models.
    pub model: &'a str,
    /// The chunk file: one request line per line.
    pub body: &'a dyn BodySource,
    /// Where the chunk file is.
    pub location: Location<'a>,
    /// A prefix under the job's own state where a provider that writes to the bucket puts
    /// the batch's output (`…/output/<chunk>/`), chosen by batchdrop.
    pub output: Location<'a>,
    /// The same for every attempt at creating this chunk's batch, fixed before the first one:
    /// a provider that takes an idempotency token sends it, so that a create repeated after a
    /// crash or a lost answer cannot make a second batch.
    pub token: &'a str,
    pub bytes: u64,
    pub requests: u64,
}

/// What identifies a batch batchdrop may have created without saving its id (a crash
/// between the create call and saving its id). Each provider uses what it can: its own
/// metadata, the idempotency token, or the time window, size and the batches already known.
#[derive(Debug, Clone, Copy)]
pub struct BatchLookup<'a> {
    pub job_id: &'a str,
    pub chunk: u32,
    /// The chunk's idempotency token ([`ChunkUpload::token`]).
    pub token: &'a str,
    /// Unix time the submit began: the batch cannot be older.
    pub since: i64,
    pub requests: u64,
    /// Batches already known to belong to other chunks of the job.
    pub exclude: &'a [String],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub batch_id: String,
    pub input_file_id: Option<String>,
}

/// Where a batch is, in batchdrop's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    /// Validating, in progress, finalizing, or cancelling: ask again later.
    Pending,
    Completed,
    Failed,
    Expired,
    Cancelled,
}

impl BatchState {
    pub fn is_terminal(self) -> bool {
        self != BatchState::Pending
    }
}

/// A validation error reported for the batch as a whole or for one of its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    pub code: String,
    pub message: String,
    /// 1-based line of the chunk file, when the provider names one.
    pub line: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInfo {
    pub id: String,
    /// The provider's own status word (`in_progress`, `finalizing`, …).
    pub status: String,
    pub state: BatchState,
    /// The files (or objects) holding its result lines, in the order to read them (outputs,
    /// then errors).
    pub result_files: Vec<ResultFile>,
    pub errors: Vec<BatchError>,
    pub counts: RequestCounts,
}

/// A file of result lines: one the provider serves, or an object it wrote into the job's own
/// bucket (under [`ChunkUpload::output`]), which batchdrop reads itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultFile {
    /// A name only [`Provider::download`] has to understand (a file id, a URL).
    Provider(String),
    /// A key in the job's bucket.
    Bucket(String),
}

/// What a collected batch left at the provider ([`Provider::forget`]).
#[derive(Debug, Clone, Copy)]
pub struct Leftovers<'a> {
    pub batch_id: &'a str,
    /// The uploaded chunk file, where the provider took one.
    pub input_file_id: Option<&'a str>,
    /// The files its result lines were read from.
    pub result_files: &'a [ResultFile],
}

#[async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// Uploads the chunk and creates a batch for it.
    async fn submit(&self, chunk: ChunkUpload<'_>) -> Result<Submitted, ProviderError>;
    /// Looks for a batch created for this chunk by a submit whose outcome was lost (a crash
    /// between the create call and saving its id). `None` when there is none.
    async fn find_batch(&self, lookup: BatchLookup<'_>)
    -> Result<Option<Submitted>, ProviderError>;
    async fn batch(&self, batch_id: &str) -> Result<BatchInfo, ProviderError>;
    async fn cancel(&self, batch_id: &str) -> Result<BatchInfo, ProviderError>;
    /// Streams a result file named by [`BatchInfo::result_files`] ([`ResultFile::Provider`]).
    async fn download(&self, file: &str) -> Result<ByteStream, ProviderError>;
    /// Removes what a collected batch left at the provider (its input and result files, or
    /// the batch itself where that holds the results), once its lines are in the bucket. One
    /// already gone is not an error. Best effort: the engine logs a failure and carries on.
    /// A provider that keeps nothing (it wrote into the bucket) does nothing.
    async fn forget(&self, batch: Leftovers<'_>) -> Result<(), ProviderError> {
        let _ = batch;
        Ok(())
    }
    /// Sends one request line of a chunk now, outside any batch (the provider's synchronous
    /// API, at its on-demand price), and gives back its result line in the provider's result
    /// shape: a failure the provider answered is a result line too. `Err` only when no answer
    /// came (the caller may try again later). For the requests of a chunk below the provider's
    /// batch minimum ([`crate::route::BelowMinimum::OnDemand`]).
    async fn invoke(&self, model: &str, request: &[u8]) -> Result<Vec<u8>, ProviderError> {
        let _ = (model, request);
        Err(ProviderError::Unavailable {
            reason: format!("{self:?} cannot send a request outside a batch"),
        })
    }
}

/// The providers of the configured routes, built once at start.
pub trait Providers: Send + Sync {
    /// The provider of a route, or why it cannot be used (e.g. its API key is not set).
    fn for_route(&self, route: &str) -> Result<Arc<dyn Provider>, String>;
}

impl Providers for std::collections::HashMap<String, Result<Arc<dyn Provider>, String>> {
    fn for_route(&self, route: &str) -> Result<Arc<dyn Provider>, String> {
        match self.get(route) {
            Some(Ok(p)) => Ok(p.clone()),
            Some(Err(reason)) => Err(reason.clone()),
            None => Err(format!("no provider for route {route:?}")),
        }
    }
}
