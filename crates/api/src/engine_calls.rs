//! How a handler runs an engine call: on a thread of the blocking pool, driven there to the
//! end with the runtime's handle.
//!
//! Why: the engine's futures (`Engine::start`, `Engine::cancel_job`, which advance a job) are
//! `Send` for each concrete lifetime but not provably for all of them (rustc cannot yet show
//! it for futures that hold references across an await inside closures), and an axum handler
//! must be a `Send` future. The closure given here is `Send`; the future it makes is never
//! moved between threads. The pool thread is held for the call (planning a large file takes
//! seconds).

use batchdrop_core::engine::Engine;
use std::future::Future;
use tokio::runtime::Handle;
use tokio::task::JoinError;

/// Runs `call(engine)` to the end on a blocking-pool thread and gives back its output.
pub async fn on_engine<F, Fut, T>(engine: &Engine, call: F) -> Result<T, JoinError>
where
    F: FnOnce(Engine) -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let engine = engine.clone();
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(call(engine))).await
}
