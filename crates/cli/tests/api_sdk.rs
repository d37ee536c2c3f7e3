//! The official Python SDKs against `batchdrop api` (the real binary, with its embedded
//! sandbox, polling its own jobs) on a temporary root:
//! - `api_sdk_check.py` (the `openai` SDK) uploads a file of more requests than a batch takes,
//!   also in parts, creates, retrieves, lists and cancels batches, reads the ordered output, and
//!   checks keys and tenants;
//! - `api_sdk_scale_check.py` runs 120,000 requests uploaded in 5 MB parts on a route to the
//!   sandbox's Anthropic side and reads 120,000 OpenAI-shaped lines;
//! - `api_anthropic_sdk_check.py` (the `anthropic` SDK) creates message batches on a route to
//!   `sandbox` (OpenAI's format), polls them, iterates their results in Anthropic's shape,
//!   lists, cancels, checks keys and tenants; then the `openai` SDK runs a batch on a route to
//!   `sandbox-anthropic`; then a prompt batch is read through both APIs.
//!
//! The Python is `$BATCHDROP_PYTHON`, else the workspace's `.venv/bin/python` (`make venv`);
//! without it the tests fail.

mod common;

use common::{TestResult, batchdrop, workspace};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const REQUESTS: usize = 10;
const MAX_PER_BATCH: usize = 4;

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

    /// Runs the SDK check `script` (beside this file) with `args` against this server: how
    /// many checks passed (its last line ends `N checks passed`), or its failure with what the
    /// server printed.
    fn check(&self, script: &str, args: &[&str]) -> Result<u32, common::Error> {
        let output = Command::new(python())
            .arg(workspace().join("crates/cli/tests").join(script))
            .args(args)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("ANTHROPIC_BASE_URL")
            .output()
            .map_err(|e| format!("cannot run {} ({e}): make venv", python().display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "{script} failed:\n{stdout}\n{}\nthe server printed:\n{}",
                String::from_utf8_lossy(&output.stderr),
                self.printed()
            )
            .into());
        }
        let last = stdout.lines().last().unwrap_or_default();
        last.strip_suffix(" checks passed")
            .and_then(|r| r.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("{script}: unexpected last line {last:?}").into())
    }
}

/// `batchdrop api keygen`: the key it printed and the keys-file entry.
fn keygen(tenant: &str, routes: &[&str]) -> Result<(String, String), common::Error> {
    keygen_with(tenant, routes, &[])
}

/// The same, with more flags (`--webhook-url` …).
fn keygen_with(
    tenant: &str,
    routes: &[&str],
    more: &[&str],
) -> Result<(String, String), common::Error> {
    let mut args = vec!["api", "keygen", "--tenant", tenant];
    for route in routes {
        args.extend(["--route", route]);
    }
    args.extend(more);
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
    let mut command = batchdrop();
    command
        .args(["api", "--addr", "127.0.0.1:0", "--keys"])
        .arg(keys);
    serve(command, "0.2", root, config)
}

/// Runs `command` (a `batchdrop` serving the Batch API) on `root` with `config`, its jobs
/// polled every `poll` seconds (0: never) on the embedded sandbox; the server and the URL it
/// printed.
fn serve(
    mut command: Command,
    poll: &str,
    root: &std::path::Path,
    config: &std::path::Path,
) -> Result<(Server, String), common::Error> {
    let mut child = command
        .args(["--poll-interval", poll, "--sandbox-step-ms", "300"])
        .arg("--root")
        .arg(root)
        .arg("--config")
        .arg(config)
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
fn the_official_openai_sdk_runs_batches_through_batchdrop_api() -> TestResult {
    // GIVEN two tenants' keys, a sandbox route taking 4 requests per batch, and the server
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    let config = dir.path().join("batchdrop.toml");
    std::fs::write(
        &config,
        format!("[routes.sandbox]\nmax_requests_per_batch = {MAX_PER_BATCH}\n"),
    )?;
    let (acme, acme_entry) = keygen("acme", &["sandbox"])?;
    let (globex, globex_entry) = keygen("globex", &["sandbox"])?;
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, format!("{acme_entry}\n{globex_entry}"))?;
    let (server, url) = start(&root, &config, &keys)?;

    // WHEN the SDK check runs against it
    let passed = server.check(
        "api_sdk_check.py",
        &[
            &url,
            &acme,
            &globex,
            &REQUESTS.to_string(),
            &MAX_PER_BATCH.to_string(),
        ],
    )?;

    // THEN every check passed
    assert!(passed > 20, "{passed} checks");
    // AND the job was split into batches of at most 4 requests, and nothing went to inbox/
    let printed = server.printed();
    let submitted = printed
        .lines()
        .filter(|l| l.contains("submitted: batch_"))
        .count();
    assert!(submitted >= REQUESTS.div_ceil(MAX_PER_BATCH), "{printed}");
    let inbox = root.join("inbox");
    assert!(
        !inbox.exists() || std::fs::read_dir(&inbox)?.next().is_none(),
        "something was written under inbox/"
    );
    assert!(root.join("results/sandbox/api/acme").is_dir());
    // AND the operator's commands see the two jobs: one completed, one cancelled
    let root_arg = root.to_string_lossy().to_string();
    let status = common::run(&["status", "--json", "--root", &root_arg])?;
    assert_eq!(status.code, 0, "{}", status.stderr);
    let jobs: serde_json::Value = serde_json::from_str(&status.stdout)?;
    let mut states: Vec<&str> = jobs
        .as_array()
        .ok_or("status --json is not an array")?
        .iter()
        .filter(|j| {
            j["key"]
                .as_str()
                .is_some_and(|k| k.starts_with("_batchdrop/api/acme/files/"))
        })
        .filter_map(|j| j["status"].as_str())
        .collect();
    states.sort();
    assert_eq!(states, ["cancelled", "completed"], "{}", status.stdout);
    let completed = jobs
        .as_array()
        .and_then(|a| a.iter().find(|j| j["status"] == "completed"))
        .and_then(|j| j["job_id"].as_str())
        .ok_or("no completed job")?;
    let results = common::run(&["results", completed, "--root", &root_arg])?;
    assert_eq!(results.code, 0, "{}", results.stderr);
    assert_eq!(results.stdout.lines().count(), REQUESTS);
    drop(server);
    Ok(())
}

/// Requests of the scale check: more than OpenAI's 50,000 per batch file.
const SCALE_REQUESTS: usize = 120_000;
/// The chunked upload's part size: 5 MB, under a Lambda function URL's 6 MB request cap.
const SCALE_PART_BYTES: usize = 5_000_000;

#[test]
fn the_openai_sdk_runs_120000_requests_uploaded_in_5_mb_parts_on_an_anthropic_route() -> TestResult
{
    // GIVEN a tenant of the route to the sandbox's Anthropic side, and the server
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    let config = dir.path().join("batchdrop.toml");
    std::fs::write(&config, "")?;
    let (key, entry) = keygen("acme", &["sandbox-anthropic"])?;
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, entry)?;
    let (server, url) = start(&root, &config, &keys)?;

    // WHEN the SDK uploads 120,000 OpenAI batch lines in 5 MB parts and runs a batch on them
    let passed = server.check(
        "api_sdk_scale_check.py",
        &[
            &url,
            &key,
            "sandbox-anthropic",
            &SCALE_REQUESTS.to_string(),
            &SCALE_PART_BYTES.to_string(),
        ],
    )?;

    // THEN every check passed: 120,000 OpenAI-shaped answers, in input order
    assert!(passed >= 5, "{passed} checks");
    // AND the job went to the provider as more than one batch (Anthropic takes 100,000 at most)
    let printed = server.printed();
    let submitted = printed
        .lines()
        .filter(|l| l.contains("submitted: "))
        .count();
    assert!(submitted >= 2, "{printed}");
    drop(server);
    Ok(())
}

/// Requests of the anthropic SDK check.
const ANTHROPIC_REQUESTS: usize = 6;

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
    let passed = server.check(
        "api_anthropic_sdk_check.py",
        &[&url, &acme, &globex, &ANTHROPIC_REQUESTS.to_string()],
    )?;

    // THEN every check passed
    assert!(passed > 30, "{passed} checks");
    // AND the jobs ran on both routes, their results under the tenant's prefix
    assert!(root.join("results/sandbox/api/acme").is_dir());
    assert!(root.join("results/sandbox-anthropic/api/acme").is_dir());
    drop(server);
    Ok(())
}

#[test]
fn batchdrop_local_with_an_api_address_serves_the_batch_api_over_its_root() -> TestResult {
    // GIVEN two tenants' keys and `batchdrop local --api-addr` on a root
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    let config = dir.path().join("batchdrop.toml");
    std::fs::write(
        &config,
        format!("[routes.sandbox]\nmax_requests_per_batch = {MAX_PER_BATCH}\n"),
    )?;
    let (acme, acme_entry) = keygen("acme", &["sandbox"])?;
    let (globex, globex_entry) = keygen("globex", &["sandbox"])?;
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, format!("{acme_entry}\n{globex_entry}"))?;
    let mut command = batchdrop();
    command
        .args(["local", "--api-addr", "127.0.0.1:0", "--api-keys"])
        .arg(&keys);
    let (server, url) = serve(command, "0.2", &root, &config)?;

    // WHEN the openai SDK check runs against it
    let passed = server.check(
        "api_sdk_check.py",
        &[
            &url,
            &acme,
            &globex,
            &REQUESTS.to_string(),
            &MAX_PER_BATCH.to_string(),
        ],
    )?;

    // THEN every check passed: the loop of `batchdrop local` ran the API's jobs
    assert!(passed > 20, "{passed} checks");
    assert!(root.join("results/sandbox/api/acme").is_dir());
    drop(server);
    Ok(())
}

#[test]
fn batchdrop_cancel_asks_a_job_of_the_batch_api_to_cancel_by_its_id() -> TestResult {
    // GIVEN `batchdrop api` that never polls, and a batch created through it
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    let config = dir.path().join("batchdrop.toml");
    std::fs::write(&config, "")?;
    let (key, entry) = keygen("acme", &["sandbox"])?;
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, entry)?;
    let mut command = batchdrop();
    command
        .args(["api", "--addr", "127.0.0.1:0", "--keys"])
        .arg(&keys);
    let (server, url) = serve(command, "0", &root, &config)?;
    let create = r#"
import io, sys, openai
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key=sys.argv[2], max_retries=0)
line = b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}}\n'
f = client.files.create(file=("one.jsonl", io.BytesIO(line)), purpose="batch")
print(client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h").id)
"#;
    let created = Command::new(python())
        .args(["-c", create, &url, &key])
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()?;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let root_arg = root.to_string_lossy().to_string();
    let status = common::run(&["status", "--json", "--root", &root_arg])?;
    let jobs: serde_json::Value = serde_json::from_str(&status.stdout)?;
    let job_id = jobs[0]["job_id"]
        .as_str()
        .ok_or("no job in status")?
        .to_string();
    assert_ne!(jobs[0]["status"], "cancelled");

    // WHEN the operator cancels it by its job id
    let cancelled = common::run(&["cancel", &job_id, "--root", &root_arg])?;

    // THEN the command says so, and the job's manifest carries the request for the next poll
    assert_eq!(cancelled.code, 0, "{}", cancelled.stderr);
    assert!(
        cancelled.stdout.contains(&format!("job {job_id} (")),
        "{}",
        cancelled.stdout
    );
    let status = common::run(&["status", &job_id, "--json", "--root", &root_arg])?;
    let view: serde_json::Value = serde_json::from_str(&status.stdout)?;
    let view = if view.is_array() {
        view[0].clone()
    } else {
        view
    };
    assert_eq!(view["cancel_requested"], "batchdrop cancel", "{view}");
    assert!(
        !root.join("cancel").exists(),
        "no cancel/ object for an API job"
    );
    drop(server);
    Ok(())
}

#[test]
fn a_keys_webhook_tells_its_tenant_that_its_batch_completed_signed_with_its_secret() -> TestResult {
    // GIVEN acme's keys-file entry with a webhook (secret by reference), globex's without,
    // and the server holding acme's secret in the variable the entry names
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    let config = dir.path().join("batchdrop.toml");
    std::fs::write(&config, "")?;
    let secret = batchdrop_core::webhooks::WebhookSecret::generate();
    let receiver = batchdrop_tests::webhook_receiver::WebhookReceiver::start(&secret)
        .map_err(|e| e.to_string())?;
    let hook = format!("{}/acme", receiver.url);
    let (acme, acme_entry) = keygen_with(
        "acme",
        &["sandbox"],
        &[
            "--webhook-url",
            &hook,
            "--webhook-secret-env",
            "ACME_WEBHOOK_SECRET",
        ],
    )?;
    let (globex, globex_entry) = keygen("globex", &["sandbox"])?;
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, format!("{acme_entry}\n{globex_entry}"))?;
    let mut command = batchdrop();
    command
        .args(["api", "--addr", "127.0.0.1:0", "--keys"])
        .arg(&keys)
        .env("ACME_WEBHOOK_SECRET", &secret);
    let (server, url) = serve(command, "0.2", &root, &config)?;

    // WHEN each tenant runs a batch through the openai SDK
    let passed = server.check(
        "api_webhook_check.py",
        &[&url, &acme, &globex, &receiver.url],
    )?;

    // THEN acme alone was told, by a webhook the standardwebhooks library verified
    assert_eq!(passed, 9, "{passed} checks");
    assert!(
        !server
            .printed()
            .contains(secret.trim_start_matches("whsec_")),
        "the secret is never printed"
    );
    // AND `batchdrop status` shows it delivered to the tenant
    let root_arg = root.to_string_lossy().to_string();
    let status = common::run(&["status", "--root", &root_arg])?;
    assert!(
        status
            .stdout
            .contains("batch_job.completed to tenant acme delivered (1 attempt)"),
        "{}",
        status.stdout
    );
    drop(server);
    Ok(())
}
