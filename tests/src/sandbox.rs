//! The sandbox provider as most end-to-end tests want it: on a free port of 127.0.0.1, its
//! batches ending on their first look (no step between states).

use crate::BoxError;
use batchdrop_sandbox::{Sandbox, SandboxConfig};
use std::time::Duration;

/// Starts it; stop it with [`Sandbox::stop`].
pub async fn instant() -> Result<Sandbox, BoxError> {
    Ok(Sandbox::start(
        "127.0.0.1:0".parse()?,
        SandboxConfig {
            step: Duration::ZERO,
            ..SandboxConfig::default()
        },
    )
    .await?)
}
