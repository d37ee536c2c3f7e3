//! Runs one of the official-SDK check scripts against a sandbox and asserts it passed.
//!
//! The Python is `$BATCHDROP_PYTHON`, else the workspace's `.venv/bin/python` (`make venv`).
//! Without it the test fails (it does not skip): the sandbox's promise is that the official SDKs
//! work, and only running them shows that.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::path::{Path, PathBuf};
use std::time::Duration;

use batchdrop_sandbox::Sandbox;
use tokio::process::Command;

pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn python() -> PathBuf {
    match std::env::var_os("BATCHDROP_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    }
}

/// Runs `tests/<package>_sdk_check.py <base_url>` with the `<PACKAGE>_*` settings of the
/// environment removed, stops the sandbox, and checks the script's last line says
/// `<package> sdk: N checks passed` with N > 0.
pub async fn run_check(package: &str, sandbox: Sandbox, base_url: String) -> Result {
    run_check_with_args(package, sandbox, &[base_url]).await
}

/// [`run_check`] with the script's arguments given (the base URL first).
pub async fn run_check_with_args(package: &str, sandbox: Sandbox, args: &[String]) -> Result {
    let python = python();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/{package}_sdk_check.py"));
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .args(args)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .kill_on_drop(true);
    let prefix = format!("{}_", package.to_uppercase());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with(&prefix) {
            command.env_remove(name);
        }
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output()).await;
    sandbox.stop().await;
    let output = output
        .map_err(|_| "the SDK check did not finish within 120 s")?
        .map_err(|error| {
            format!(
                "cannot run {} ({error}): set BATCHDROP_PYTHON to a Python with the {package} \
                 package, or create the workspace venv: make venv",
                python.display()
            )
        })?;

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
        .strip_prefix(&format!("{package} sdk: "))
        .and_then(|rest| rest.strip_suffix(" checks passed"))
        .and_then(|count| count.parse::<u32>().ok());
    assert!(
        passed.is_some_and(|count| count > 0),
        "unexpected last line {last:?}:\n{stdout}\n{stderr}"
    );
    Ok(())
}
