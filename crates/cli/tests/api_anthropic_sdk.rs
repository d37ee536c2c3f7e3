//! The official `anthropic` Python SDK against `batchdrop api` (the real binary, with its
//! embedded sandbox, polling its own jobs) on a temporary root: `api_anthropic_sdk_check.py`
//! creates message batches on a route to `sandbox` (OpenAI's format), polls them, iterates
//! their results in Anthropic's shape, lists, cancels, and checks keys and tenants; then the
//! `openai` SDK runs a batch on a route to `sandbox-anthropic` and reads OpenAI-shaped output
//! lines; then a prompt batch is read through both APIs.
//!
//! The Python is `$BATCHDROP_PYTHON`, else the workspace's `.venv/bin/python` (`make venv`);
//! without it the test fails.

mod common;

use common::{TestResult, batchdrop, workspace};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const REQUESTS: usize = 6;

/// A running `batchdrop api`, killed when dropped; what it printed is kept.
struct Server {
    child: Child,
    printed: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn printed(&self) -> String {
        self.printed
            .lock()
            .map(|p| p.join("\n"))
            .unwrap_or_default()
    }
}

/// `batchdrop api keygen`: the key it printed and the keys-file entry.
fn keygen(tenant: &str, routes: &[&str]) -> Result<(String, String), common::Error> {
    let mut args = vec!["api", "keygen", "--tenant", tenant];
    for route in routes {
        args.extend(["--route", route]);
    }
    let out = common::run(&args)?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let key = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("key for tenant {tenant}: ")))
        .ok_or("no key printed")?
        .to_string();
    let entry = out.stdout[out.stdout.find("[[tenant]]").ok_or("no entry printed")?..].to_string();
    assert!(
        !entry.contains(&key),
        "the keys file entry must not hold the key"
    );
    Ok((key, entry))
}

fn start(
    root: &std::path::Path,
    config: &std::path::Path,
    keys: &std::path::Path,
) -> Result<(Server, String), common::Error> {
    let mut child = batchdrop()
        .args([
            "api",
            "--addr",
            "127.0.0.1:0",
            "--poll-interval",
            "0.2",
            "--sandbox-step-ms",
            "300",
        ])
        .arg("--root")
        .arg(root)
        .arg("--config")
        .arg(config)
        .arg("--keys")
        .arg(keys)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let printed = Arc::new(Mutex::new(Vec::new()));
    let (first, url) = mpsc::channel();
    let keep = printed.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("batchdrop api: http://") {
                let addr = rest.split('/').next().unwrap_or_default().to_string();
                let _ = first.send(format!("http://{addr}"));
            }
            if let Ok(mut p) = keep.lock() {
                p.push(line);
            }
        }
    });
    let server = Server { child, printed };
    let url = url
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| format!("batchdrop api did not start:\n{}", server.printed()))?;
    Ok((server, url))
}

fn python() -> PathBuf {
    match std::env::var_os("BATCHDROP_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => workspace().join(".venv/bin/python"),
    }
}

#[test]
fn the_official_anthropic_sdk_runs_message_batches_on_an_openai_format_route() -> TestResult {
    // GIVEN acme's key for sandbox and sandbox-anthropic, globex's for sandbox, and the server
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    let config = dir.path().join("batchdrop.toml");
    std::fs::write(&config, "[routes.sandbox]\nmax_requests_per_batch = 4\n")?;
    let (acme, acme_entry) = keygen("acme", &["sandbox", "sandbox-anthropic"])?;
    let (globex, globex_entry) = keygen("globex", &["sandbox"])?;
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, format!("{acme_entry}\n{globex_entry}"))?;
    let (server, url) = start(&root, &config, &keys)?;

    // WHEN the SDK check runs against it
    let output = Command::new(python())
        .arg(workspace().join("crates/cli/tests/api_anthropic_sdk_check.py"))
        .args([&url, &acme, &globex, &REQUESTS.to_string()])
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .output()
        .map_err(|e| format!("cannot run {} ({e}): make venv", python().display()))?;

    // THEN every check passed
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the SDK check failed:\n{stdout}\n{stderr}\nbatchdrop api printed:\n{}",
        server.printed()
    );
    let last = stdout.lines().last().unwrap_or_default();
    let passed = last
        .strip_prefix("api anthropic sdk: ")
        .and_then(|r| r.strip_suffix(" checks passed"))
        .and_then(|n| n.parse::<u32>().ok());
    assert!(
        passed.is_some_and(|n| n > 30),
        "unexpected last line {last:?}"
    );
    // AND the jobs ran on both routes, their results under the tenant's prefix
    assert!(root.join("results/sandbox/api/acme").is_dir());
    assert!(root.join("results/sandbox-anthropic/api/acme").is_dir());
    drop(server);
    Ok(())
}
