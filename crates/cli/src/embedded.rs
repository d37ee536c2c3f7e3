//! The sandbox provider run inside a command (`batchdrop local`, `batchdrop api`): its flags,
//! starting it, and pointing the built-in sandbox routes of the config at it.

use crate::error::Error;
use batchdrop_core::config::Config;
use clap::Args;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The embedded sandbox's flags.
#[derive(Debug, Clone, Args)]
pub struct SandboxFlags {
    /// Do not start the sandbox; the `sandbox` route then uses $BATCHDROP_SANDBOX_URL.
    #[arg(long)]
    pub no_sandbox: bool,
    /// Address of the embedded sandbox.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub sandbox_addr: SocketAddr,
    /// Milliseconds a sandbox batch spends in each state (validating, in_progress, finalizing).
    #[arg(long, default_value_t = 1000)]
    pub sandbox_step_ms: u64,
    /// Faults the embedded sandbox injects, e.g. "seed=7,http429=0.1,req500=0.02" (keys: see
    /// the README). Default: none.
    #[arg(long, value_name = "SPEC")]
    pub sandbox_faults: Option<batchdrop_sandbox::Faults>,
    /// Batch webhooks the embedded sandbox pushes (set by `batchdrop local --webhook-addr`).
    #[arg(skip)]
    pub push: Option<batchdrop_sandbox::PushConfig>,
}

/// Starts the sandbox unless `--no-sandbox`, and points the built-in sandbox routes of
/// `config` at it. Bedrock jobs read and write `root` (a local bucket directory), if given.
pub async fn start_sandbox(
    flags: &SandboxFlags,
    root: Option<&Path>,
    config: &mut Config,
) -> Result<Option<batchdrop_sandbox::Sandbox>, Error> {
    if flags.no_sandbox {
        return Ok(None);
    }
    let sandbox_config = batchdrop_sandbox::SandboxConfig {
        step: Duration::from_millis(flags.sandbox_step_ms),
        faults: flags.sandbox_faults.clone().unwrap_or_default(),
        // Bedrock jobs read and write the same directory the local bucket is.
        bedrock: batchdrop_sandbox::BedrockConfig {
            objects: root.map(|r| batchdrop_sandbox::BedrockObjects::Directory(r.to_path_buf())),
            ..Default::default()
        },
        // A temporary directory, removed when the sandbox stops: the sandbox's copies of the
        // files are not the user's, so they stay out of the bucket directory.
        files_dir: None,
        push: flags.push.clone(),
        ..Default::default()
    };
    let sandbox = batchdrop_sandbox::Sandbox::start(flags.sandbox_addr, sandbox_config)
        .await
        .map_err(|source| Error::Sandbox {
            what: "start the sandbox",
            addr: flags.sandbox_addr,
            source,
        })?;
    // The built-in sandbox routes point at the embedded sandbox: OpenAI paths under /v1,
    // Anthropic's from the root (as ANTHROPIC_BASE_URL).
    for name in ["sandbox", "sandbox-sync"] {
        if let Some(route) = config.routes.get_mut(name) {
            route.base_url = sandbox.base_url();
        }
    }
    if let Some(route) = config.routes.get_mut("sandbox-anthropic") {
        route.base_url = sandbox.anthropic_base_url();
    }
    // Bedrock's control plane and runtime are at the root too.
    if let Some(route) = config.routes.get_mut("sandbox-bedrock") {
        route.base_url = sandbox.anthropic_base_url();
    }
    Ok(Some(sandbox))
}
