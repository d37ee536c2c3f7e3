//! Time for an end-to-end test against the sandbox: the engine's and the sandbox's manual
//! clocks, moved together so that batches progress and deadlines pass without sleeping; and
//! the OpenAI client of such a test (on the engine's clock, retrying at once).

use crate::BoxError;
use batchdrop_core::clock::ManualClock;
use batchdrop_core::provider::Provider;
use batchdrop_core::providers::{OpenAiProvider, RetryPolicy};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// The two clocks of a test, at the same instant.
pub struct Clocks {
    pub engine: Arc<ManualClock>,
    pub sandbox: Arc<batchdrop_sandbox::ManualClock>,
}

impl Clocks {
    /// Both clocks at `seconds` after the Unix epoch.
    pub fn at_unix(seconds: i64) -> Result<Self, BoxError> {
        Ok(Self {
            engine: Arc::new(ManualClock::new(time::OffsetDateTime::from_unix_timestamp(
                seconds,
            )?)),
            sandbox: Arc::new(batchdrop_sandbox::ManualClock::new(
                UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds)?),
            )),
        })
    }

    /// Moves both clocks on by `by`.
    pub fn advance(&self, by: Duration) {
        self.engine.advance(by);
        self.sandbox.advance(by);
    }
}

/// The OpenAI client of the sandbox at `base_url`, on `clock`, its retries a few ms apart.
pub fn openai_provider(base_url: &str, clock: Arc<ManualClock>) -> Arc<dyn Provider> {
    Arc::new(
        OpenAiProvider::new(base_url, None)
            .with_clock(clock)
            .with_retry(RetryPolicy {
                max_attempts: 3,
                initial: Duration::from_millis(1),
                max: Duration::from_millis(10),
            }),
    )
}

/// The providers of an engine with one route.
pub fn one_route(
    route: &str,
    provider: Arc<dyn Provider>,
) -> HashMap<String, Result<Arc<dyn Provider>, String>> {
    HashMap::from([(route.to_string(), Ok(provider))])
}
