//! The prompt-cache primer (a route's `cache_primer`, for Anthropic): the requests of a cold
//! batch run in parallel and mostly miss each other's cache writes, so before a chunk whose
//! first request marks a `cache_control` breakpoint goes out as a batch, that request is sent
//! once through the provider's synchronous API (`Provider::invoke`). Its answer comes in
//! seconds and writes the cache; the batch created right after reads it (Anthropic keeps an
//! entry 5 minutes from its last read, an hour with `"ttl": "1h"`, which suits batches that
//! may wait in the queue).
//!
//! The synchronous lane rather than a one-request batch: a batch may take minutes to hours to
//! end, holding the chunk back all that time (and the entry may have expired by then), while
//! the synchronous answer costs one request at the synchronous price. The primer's answer is
//! not a result (the request also goes in the batch and gets its line there); its tokens are
//! recorded on the chunk (`primer`) and priced as on-demand tokens in the job's cost. Each
//! chunk is primed at most once: a primer that gets no answer is recorded with no tokens, and
//! the chunk goes without it. The primer is saved with the chunk's `Submitting` state; a crash
//! between the answer and that save primes again (one more request).

use super::JobError;
use super::run::JobRun;
use crate::chunk_files::ChunkRows;
use crate::manifest::{Manifest, Usage};
use crate::provider::Provider;

impl JobRun<'_> {
    /// Primes the prompt cache for staged chunk `i` if its route asks and it was not yet.
    pub(super) async fn prime(
        &mut self,
        manifest: &mut Manifest,
        i: usize,
        provider: &dyn Provider,
    ) -> Result<(), JobError> {
        let engine = self.engine;
        let wanted = engine
            .config
            .route(&manifest.route)
            .is_some_and(|route| route.spend.cache_primer);
        if !wanted || manifest.chunks[i].primer.is_some() {
            return Ok(());
        }
        let index = manifest.chunks[i].plan.index;
        let first = {
            let mut rows = ChunkRows::open(engine.store.as_ref(), &self.keys, index).await?;
            rows.next().await?.map(|row| row.request.to_vec())
        };
        let Some(first) = first else {
            return Ok(());
        };
        let request = first.strip_suffix(b"\n").unwrap_or(&first);
        if memchr::memmem::find(request, b"\"cache_control\"").is_none() {
            return Ok(());
        }
        let dialect = super::reuse::dialect_of(manifest)?;
        let model = manifest.chunks[i].plan.model.clone();
        let usage = match provider.invoke(&model, request).await {
            Ok(answer) => dialect
                .read_result(&answer)
                .map(|facts| facts.usage())
                .unwrap_or_default(),
            Err(e) => {
                tracing::info!(job_id = manifest.job_id, chunk = index, error = %e, "cache primer got no answer: the chunk goes unprimed");
                Usage::default()
            }
        };
        // Saved with the chunk's `Submitting`, the caller's next step.
        manifest.chunks[i].primer = Some(usage);
        Ok(())
    }
}
