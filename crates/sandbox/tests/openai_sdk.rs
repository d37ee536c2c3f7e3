//! The official `openai` Python SDK against the sandbox: `openai_sdk_check.py` uploads, creates,
//! retrieves, lists and downloads through `openai.OpenAI(base_url=...)`.

mod sdk;

use batchdrop_sandbox::{Sandbox, SandboxConfig};

#[tokio::test]
async fn the_official_openai_python_sdk_works_against_the_sandbox() -> sdk::Result {
    // GIVEN an instant sandbox and a Python with the openai package
    let sandbox = Sandbox::start(([127, 0, 0, 1], 0).into(), SandboxConfig::default()).await?;
    let base_url = sandbox.base_url();
    // WHEN the SDK check script runs against it, THEN every check passed
    sdk::run_check("openai", sandbox, base_url).await
}
