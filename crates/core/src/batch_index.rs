//! Which job a provider batch belongs to: one small object per batch submitted,
//! `_batchdrop/batches/<provider>/<batch id>.json`, written when the engine records the batch
//! (before the manifest says `submitted`), so that an event naming only the batch (an OpenAI
//! webhook, a Bedrock state change on EventBridge) finds its job with one read.
//!
//! Written with overwrite: the same batch always names the same job, so writing it again
//! (a resumed submit) changes nothing. Never deleted by batchdrop (a lifecycle rule on the
//! prefix may expire them once jobs are done; a job submitted before the index existed is
//! found by the schedule's poll only).

use crate::layout;
use crate::store::{ObjectStore, ObjectStoreExt, PutMode, StoreError};
use serde::{Deserialize, Serialize};

/// The index entry of one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOwner {
    pub job_id: String,
    pub route: String,
    /// The chunk the batch holds.
    pub chunk: u32,
}

/// Records that `batch_id` of `provider` holds chunk `owner.chunk` of job `owner.job_id`.
pub async fn record(
    store: &dyn ObjectStore,
    provider: &str,
    batch_id: &str,
    owner: &BatchOwner,
) -> Result<(), StoreError> {
    store
        .put_json(
            &layout::batch_index_key(provider, batch_id),
            owner,
            PutMode::Overwrite,
        )
        .await
        .map(|_| ())
}

/// The job `batch_id` of `provider` belongs to; `None` when batchdrop did not submit it (or
/// submitted it before the index existed).
pub async fn owner_of(
    store: &dyn ObjectStore,
    provider: &str,
    batch_id: &str,
) -> Result<Option<BatchOwner>, StoreError> {
    match store
        .get_json::<BatchOwner>(&layout::batch_index_key(provider, batch_id))
        .await
    {
        Ok((owner, _)) => Ok(Some(owner)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}
