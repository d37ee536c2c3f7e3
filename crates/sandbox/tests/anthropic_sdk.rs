//! The official `anthropic` Python SDK against the sandbox: `anthropic_sdk_check.py` creates,
//! retrieves, lists, reads the results of and deletes message batches, and asks the Messages
//! API (`messages.create`) through `anthropic.Anthropic(base_url=...)`.

mod sdk;

use batchdrop_sandbox::{Sandbox, SandboxConfig};

#[tokio::test]
async fn the_official_anthropic_python_sdk_works_against_the_sandbox() -> sdk::Result {
    // GIVEN an instant sandbox and a Python with the anthropic package
    let sandbox = Sandbox::start(([127, 0, 0, 1], 0).into(), SandboxConfig::default()).await?;
    // Anthropic's base URL has no /v1.
    let base_url = sandbox.anthropic_base_url();
    // WHEN the SDK check script runs against it, THEN every check passed
    sdk::run_check("anthropic", sandbox, base_url).await
}
