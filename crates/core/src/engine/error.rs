//! What can stop an advance: the store, the provider, or another worker taking the job.

use crate::provider::ProviderError;
use crate::store::StoreError;

/// Why an engine call failed; [`JobError::is_retryable`] says whether trying again may help.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("job {job_id}: manifest changed under us (another worker took over)")]
    LostLease { job_id: String },
}

impl JobError {
    pub fn is_retryable(&self) -> bool {
        match self {
            JobError::Store(e) => e.is_retryable(),
            JobError::Provider(e) => e.is_retryable(),
            JobError::LostLease { .. } => true,
        }
    }
}
