//! The official `anthropic` Python SDK against the sandbox: `anthropic_sdk_check.py` creates,
//! retrieves, lists, reads the results of and deletes message batches through
//! `anthropic.Anthropic(base_url=...)`.
//!
//! Needs a Python with the `anthropic` package: `$BATCHDROP_PYTHON`, else the workspace's
//! `.venv/bin/python` (`make venv`). Without one the test fails (it does not skip): the
//! sandbox's promise is that the official SDK works, and only running it shows that.

use std::path::{Path, PathBuf};
use std::time::Duration;

use batchdrop_sandbox::{Sandbox, SandboxConfig};
use tokio::process::Command;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn python() -> PathBuf {
    match std::env::var_os("BATCHDROP_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    }
}

#[tokio::test]
async fn the_official_anthropic_python_sdk_works_against_the_sandbox() -> Result {
    // GIVEN an instant sandbox and a Python with the anthropic package
    let python = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/anthropic_sdk_check.py");
    let sandbox = Sandbox::start(([127, 0, 0, 1], 0).into(), SandboxConfig::default()).await?;

    // WHEN the SDK check script runs against it (Anthropic's base URL has no /v1), with no
    // ANTHROPIC_* settings of the environment in the way
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .arg(sandbox.anthropic_base_url())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ANTHROPIC_") {
            command.env_remove(name);
        }
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output()).await;
    sandbox.stop().await;
    let output = output
        .map_err(|_| "the SDK check did not finish within 120 s")?
        .map_err(|error| {
            format!(
                "cannot run {} ({error}): set BATCHDROP_PYTHON to a Python with the anthropic package, \
                 or create the workspace venv: make venv",
                python.display()
            )
        })?;

    // THEN every check passed
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the SDK check failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    eprintln!("{last}");
    let passed = last
        .strip_prefix("anthropic sdk: ")
        .and_then(|rest| rest.strip_suffix(" checks passed"))
        .and_then(|count| count.parse::<u32>().ok());
    assert!(
        passed.is_some_and(|count| count > 0),
        "unexpected last line {last:?}:\n{stdout}\n{stderr}"
    );
    Ok(())
}
