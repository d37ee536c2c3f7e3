//! How a handler runs an engine call: on a thread of the blocking pool, driven there to the
//! end with the runtime's handle.
//!
//! Why: the engine's futures (`Engine::start`, `Engine::cancel_job`, which advance a job) are
//! `Send` for each concrete lifetime but not provably for all of them (rustc cannot yet show
//! it for futures that hold references across an await inside closures), and an axum handler
//! must be a `Send` future. The closure given here is `Send`; the future it makes is never
//! moved between threads. The pool thread is held for the call (planning a large file takes
//! seconds).
//!
//! A request served under a deadline (a Lambda invocation's, set with [`within_deadline`])
//! runs its engine calls with [`Engine::until`]: planning a large file checkpoints and stops
//! before the invocation is killed, the request answers (the batch `validating`), and the
//! poll function carries the planning on. A client never sees a create fail that went
//! through, so it has no reason to create the batch twice.

use batchdrop_core::engine::Engine;
use std::future::Future;
use time::OffsetDateTime;
use tokio::runtime::Handle;
use tokio::task::JoinError;

tokio::task_local! {
    /// When the request being served must have answered by.
    static DEADLINE: OffsetDateTime;
}

/// Serves `request` (a future answering one request) with engine calls that stop starting
/// work in time for `deadline`.
pub async fn within_deadline<F: Future>(deadline: OffsetDateTime, request: F) -> F::Output {
    DEADLINE.scope(deadline, request).await
}

/// Runs `call(engine)` to the end on a blocking-pool thread and gives back its output; under
/// the request's deadline, if it has one.
pub async fn on_engine<F, Fut, T>(engine: &Engine, call: F) -> Result<T, JoinError>
where
    F: FnOnce(Engine) -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let engine = DEADLINE
        .try_with(|deadline| engine.until(*deadline))
        .unwrap_or_else(|_| engine.clone());
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(call(engine))).await
}
