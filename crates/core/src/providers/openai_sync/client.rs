//! The client of an OpenAI-compatible server without a batch API: each request line of a chunk
//! is sent as it is to its endpoint (`POST {base_url}/chat/completions` for a line whose `url`
//! is `/v1/chat/completions`) and its answer written as an OpenAI batch output line, as the
//! OpenAI client's synchronous lane does (`providers/openai/sync.rs`).
//! It makes no batches: `submit` and the rest refuse, and the engine never calls them for a
//! provider whose registry entry says it has no batch API.

use crate::provider::{BatchInfo, BatchLookup, ChunkUpload, Provider, ProviderError, Submitted};
use crate::providers::http::{Auth, Http};
use crate::providers::openai::sync;
use crate::store::ByteStream;
use async_trait::async_trait;
use secrecy::SecretString;

pub struct OpenAiSyncProvider {
    http: Http,
}

crate::providers::http::http_provider_common!(OpenAiSyncProvider);

impl OpenAiSyncProvider {
    /// `base_url` ends in `/v1` (a trailing slash is fine); `key` is None where the server takes
    /// none.
    pub fn new(base_url: &str, key: Option<SecretString>) -> Self {
        Self {
            http: Http::new(base_url, Auth::Bearer(key)),
        }
    }
}

fn no_batches() -> ProviderError {
    ProviderError::Unavailable {
        reason: "an OpenAI-compatible server (openai-sync) has no batch API".into(),
    }
}

#[async_trait]
impl Provider for OpenAiSyncProvider {
    async fn submit(&self, _chunk: ChunkUpload<'_>) -> Result<Submitted, ProviderError> {
        Err(no_batches())
    }

    async fn find_batch(
        &self,
        _lookup: BatchLookup<'_>,
    ) -> Result<Option<Submitted>, ProviderError> {
        Ok(None)
    }

    async fn batch(&self, _batch_id: &str) -> Result<BatchInfo, ProviderError> {
        Err(no_batches())
    }

    async fn cancel(&self, _batch_id: &str) -> Result<BatchInfo, ProviderError> {
        Err(no_batches())
    }

    async fn download(&self, _file: &str) -> Result<ByteStream, ProviderError> {
        Err(no_batches())
    }

    async fn invoke(&self, _model: &str, request: &[u8]) -> Result<Vec<u8>, ProviderError> {
        sync::invoke(&self.http, request).await
    }
}
